"""Where a named binary tensor goes in a request: its name is the dot-joined JSON path of
the tensor field it fills, resolved against the request model's own field types.

    >>> from service.schemas.requests import PenaltiesRequest
    >>> tensor_path(PenaltiesRequest, "weights.dense/kernel.tensor")
    ['weights', 'dense/kernel', 'tensor']
    >>> tensor_path(PenaltiesRequest, "weights.a.b.tensor")   # a dict key may hold dots
    ['weights', 'a.b', 'tensor']

A path resolves through model fields (by name), ``list[...]`` items (by index) and
``dict[str, ...]`` values (by key, which may span several dot-separated parts), and must
end on a tensor field (an ``np.ndarray`` one, i.e. ``Tensor``).  Any request model gets
this for free: nothing here names a route or a field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, RootModel

Key = str | int


class PlacementError(ValueError):
    """A tensor name that fills no tensor field, or a field given twice."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


#: Dot-separated parts a tensor name may have (bounds the search through dict keys).
MAX_PARTS = 256


def tensor_path(model: Any, name: str) -> list[Key] | None:
    """The keys of the tensor field ``name`` fills in ``model``, or None when it fills none."""
    if name.count(".") >= MAX_PARTS:
        return None
    return _resolve(model, name.split("."))


def _resolve(annotation: Any, parts: list[str]) -> list[Key] | None:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _resolve(get_args(annotation)[0], parts)
    if annotation is np.ndarray:
        return [] if not parts else None
    if origin in (Union, types.UnionType):
        for option in get_args(annotation):
            found = _resolve(option, parts)
            if found is not None:
                return found
        return None
    if not parts:
        return None
    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return _resolve(annotation.model_fields["root"].rebuild_annotation(), parts)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(parts[0])
        if field is None:
            return None
        found = _resolve(field.rebuild_annotation(), parts[1:])
        return None if found is None else [parts[0], *found]
    if origin in (list, typing.List):  # noqa: UP006 - both spellings may appear
        if not parts[0].isdigit():
            return None
        found = _resolve(get_args(annotation)[0], parts[1:])
        return None if found is None else [int(parts[0]), *found]
    if origin in (dict, typing.Dict, Mapping):  # noqa: UP006
        value = get_args(annotation)[1]
        for k in range(1, len(parts) + 1):  # the shortest key that leads to a tensor
            found = _resolve(value, parts[k:])
            if found is not None:
                return [".".join(parts[:k]), *found]
    return None


def place(model: type[BaseModel], document: Any, tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``document`` (the JSON metadata) with every tensor put at its path; containers on
    the way are created (a list grows by one item at a time, in index order)."""
    if not isinstance(document, dict):
        raise PlacementError("__metadata__", 'the JSON in __metadata__["json"] must be an object')
    paths = {}
    for name in tensors:
        path = tensor_path(model, name)
        if path is None:
            raise PlacementError(
                name, f"tensor {_shown(name)} fills no tensor field of {model.__name__}; name each "
                "tensor by the dot-joined JSON path of its field (e.g. layers.0.kernel)"
            )
        paths[name] = path
    order = sorted(paths, key=lambda n: [(0, k, "") if isinstance(k, int) else (1, 0, k) for k in paths[n]])
    for name in order:
        _put(document, paths[name], tensors[name], name)
    return document


def _put(document: dict[str, Any], path: list[Key], value: np.ndarray, name: str) -> None:
    node: Any = document
    for i, key in enumerate(path):
        last = i == len(path) - 1
        if isinstance(key, int):
            if not isinstance(node, list) or key > len(node):
                have = f"{len(node)} items" if isinstance(node, list) else "no array"
                raise PlacementError(name, f"tensor {_shown(name)}: index {key} is past the end "
                                           f"({have} there); send the items before it")
            if key == len(node):
                node.append(value if last else _container(path[i + 1]))
                node = node[-1]
                continue
            if last:
                raise PlacementError(name, f"tensor {_shown(name)}: the field is given twice")
            node = node[key]
            continue
        if not isinstance(node, dict):
            raise PlacementError(name, f"tensor {_shown(name)}: the JSON metadata holds a value where "
                                       "its path needs an object")
        if last:
            if key in node:
                raise PlacementError(name, f"tensor {_shown(name)}: the field is given twice (as a "
                                           "tensor and in the JSON metadata)")
            node[key] = value
        else:
            node = node.setdefault(key, _container(path[i + 1]))


def _shown(name: str) -> str:
    """A tensor name for a message, clipped (a name may be as long as the header)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _container(next_key: Key) -> Any:
    return [] if isinstance(next_key, int) else {}
