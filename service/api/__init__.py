"""The HTTP routes: one module per resource, every route a :class:`WireRoute`."""

from fastapi import APIRouter

from service.api import conventions, discovery, health, layers, optimizer, penalties, train

router = APIRouter()
for module in (penalties, layers, optimizer, train, conventions, discovery, health):
    router.include_router(module.router)

__all__ = ["router"]
