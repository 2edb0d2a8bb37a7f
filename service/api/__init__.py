"""The HTTP routes: one module per resource, every route a :class:`WireRoute`."""

from fastapi import APIRouter

from service.api import (
    conventions,
    discovery,
    health,
    layers,
    model,
    optimizer,
    penalties,
    playground,
    train,
)

router = APIRouter()
for module in (penalties, layers, model, optimizer, train, conventions, discovery, health, playground):
    router.include_router(module.router)

__all__ = ["router"]
