"""The HTTP routes: one module per resource, every route a :class:`WireRoute`."""

from fastapi import APIRouter

from service.api import discovery, health, layers, model, penalties, playground

router = APIRouter()
for module in (penalties, layers, model, discovery, health, playground):
    router.include_router(module.router)

__all__ = ["router"]
