"""The safetensors layout: named raw tensors in one body, read as views, written with one join.

Layout (the published safetensors format)::

    8 bytes   N, the header's length, unsigned little-endian
    N bytes   JSON header: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                            ..., "__metadata__": {"<key>": "<string>"}}
    rest      the tensors' bytes, little-endian, C order; offsets are relative to this part

:func:`read` checks everything before it makes a single array: the header's length
against the body and ``max_header_bytes``, each entry's dtype (``F16``, ``F32``, ``F64``),
shape (rank, element ``budget``), and that the offsets match the shape, stay inside the
body, neither overlap nor leave holes.  Each tensor is then an ``np.frombuffer`` view of
the body (read-only, no copy).  :func:`write` lays out the header (padded with spaces to
8 bytes, and the widest dtypes first, so every tensor starts aligned) and joins the
header and the arrays' buffers once.

    >>> body = write({"x": np.arange(3, dtype=np.float32)}, {"json": "{}"})
    >>> tensors, metadata = read(body)
    >>> tensors["x"], metadata
    (array([0., 1., 2.], dtype=float32), {'json': '{}'})
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from service.wire.json_tensors import Budget

MEDIA_TYPE = "application/x-safetensors"
#: safetensors dtype names <-> little-endian NumPy dtypes (the three the service computes in).
DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
DTYPE_NAMES = {np.dtype(v.newbyteorder("=")): k for k, v in DTYPES.items()}
#: Default bound of the JSON header (a header names tensors; 1 MiB names tens of thousands).
MAX_HEADER_BYTES = 1 << 20
METADATA = "__metadata__"
ENTRY_KEYS = ("data_offsets", "dtype", "shape")


class SafetensorsError(ValueError):
    """A body that is not a well-formed safetensors layout; the message says where."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


def read(
    body: bytes | bytearray | memoryview,
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    budget: Budget | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``body`` -> ``(tensors, metadata)``: read-only views of ``body``, in header order."""
    size = len(body)
    if size < 8:
        raise SafetensorsError(
            f"the body has {size} bytes; a safetensors body starts with an 8-byte header length"
        )
    n = int.from_bytes(bytes(body[:8]), "little")
    if n > max_header_bytes:
        raise SafetensorsError(
            f"the safetensors header declares {n} bytes; the limit is {max_header_bytes}",
            too_large=True,
        )
    if n > size - 8:
        raise SafetensorsError(
            f"the safetensors header declares {n} bytes but only {size - 8} follow the length"
        )
    header = _header(bytes(body[8 : 8 + n]))
    metadata = _metadata(header.pop(METADATA, None))
    data_size = size - 8 - n
    entries = [(name, *_entry(name, spec, budget)) for name, spec in header.items()]
    covered = 0
    for name, _, _, (begin, end) in sorted(entries, key=lambda e: (e[3][0], e[3][1])):
        if begin != covered:
            what = "overlaps the tensor before it" if begin < covered else "leaves a hole"
            raise SafetensorsError(
                f"tensor {_shown(name)}: data_offsets [{begin}, {end}] {what} (the previous "
                f"tensor ends at {covered}); tensors must tile the data without gaps"
            )
        covered = end
    if covered != data_size:
        raise SafetensorsError(
            f"the tensors cover {covered} bytes of data but the body has {data_size} after "
            "the header: the body is truncated or has trailing bytes"
        )
    tensors = {}
    for name, dtype, shape, (begin, _) in entries:
        count = math.prod(shape)
        view = np.frombuffer(body, dtype=dtype, count=count, offset=8 + n + begin)
        tensors[name] = view.reshape(shape)
    return tensors, metadata


def _header(raw: bytes) -> dict[str, Any]:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise SafetensorsError(f"the safetensors header names {_shown(key)} twice")
            seen[key] = value
        return seen

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)
    except SafetensorsError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SafetensorsError(f"the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError("the safetensors header must be a JSON object of tensor entries")
    return header


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SafetensorsError('__metadata__ must be an object of strings, e.g. {"json": "{...}"}')
    return value


def _entry(
    name: str, spec: Any, budget: Budget | None
) -> tuple[np.dtype[Any], tuple[int, ...], tuple[int, int]]:
    where = f"tensor {_shown(name)}"
    if not isinstance(spec, dict) or sorted(spec) != list(ENTRY_KEYS):
        raise SafetensorsError(f"{where}: an entry is an object with exactly dtype, shape, data_offsets")
    dtype = DTYPES.get(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    if dtype is None:
        raise SafetensorsError(
            f"{where}: dtype {spec['dtype']!r} is not supported; use one of {', '.join(DTYPES)}"
        )
    shape, offsets = spec["shape"], spec["data_offsets"]
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise SafetensorsError(f"{where}: shape must be an array of integers >= 0, got {shape!r}")
    if budget is not None and len(shape) > budget.max_depth:
        raise SafetensorsError(
            f"{where}: shape has {len(shape)} dimensions; at most {budget.max_depth} are allowed"
        )
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_natural(o) for o in offsets):
        raise SafetensorsError(f"{where}: data_offsets must be [begin, end] (integers >= 0)")
    if math.prod(max(d, 1) for d in shape) * dtype.itemsize >= 1 << 62:
        raise SafetensorsError(f"{where}: shape {_shown_shape(shape)} is larger than any array can be, "
                               "even with a dimension of 0")
    begin, end = offsets
    count = math.prod(shape)
    if budget is not None:
        budget.reserve(count, f"{where} of shape {shape}")
    if end < begin or end - begin != count * dtype.itemsize:
        raise SafetensorsError(
            f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes but shape {shape} "
            f"in {spec['dtype']} needs {count * dtype.itemsize} ({count} × {dtype.itemsize} bytes)"
        )
    return dtype, tuple(shape), (begin, end)


def _shown(name: str) -> str:
    """A tensor name for a message, clipped (a name may be as long as the header)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _shown_shape(shape: list[int]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else text[:77] + "..."


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def write(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Named arrays (F16, F32 or F64) and string metadata -> one safetensors body."""
    return b"".join(parts(tensors, metadata))


def parts(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> list[Any]:
    """The pieces of :func:`write`'s body, in order, without joining them: the length and
    header bytes, then a memoryview of each array's bytes (a sender may hand them to the
    socket one by one instead of copying them into one buffer first)."""
    header: dict[str, Any] = {METADATA: dict(metadata)} if metadata else {}
    buffers: list[Any] = []
    offset = 0
    named = {}
    for name, array in tensors.items():
        dtype = DTYPE_NAMES.get(np.dtype(array.dtype.newbyteorder("=")))
        if dtype is None:
            raise SafetensorsError(f"tensor {name!r} has dtype {array.dtype}; send F16, F32 or F64")
        named[name] = (dtype, array)
    # widest items first: with the 8-byte-padded header, every tensor starts aligned
    for name, (dtype, array) in sorted(named.items(), key=lambda kv: -kv[1][1].dtype.itemsize):
        little = np.asarray(array, dtype=DTYPES[dtype], order="C")
        header[name] = {"dtype": dtype, "shape": list(little.shape),
                        "data_offsets": [offset, offset + little.nbytes]}
        offset += little.nbytes
        buffers.append(little.reshape(-1).view(np.uint8).data if little.size else b"")
    raw = orjson.dumps(header)
    raw += b" " * (-len(raw) % 8)
    return [len(raw).to_bytes(8, "little") + raw, *buffers]


def flatten(document: Any, prefix: str = "") -> tuple[dict[str, np.ndarray], Any]:
    """Split a JSON-like document into its arrays (named by dot-joined path) and the rest.

    An array is an ``np.ndarray`` leaf, or a tensor object ``{"shape", "datatype",
    "data": ndarray}`` (then it takes the object's path).  The rest keeps every other
    value in place.

    >>> flatten({"a": {"b": np.zeros(2)}, "c": [np.ones(1), 3]})
    ({'a.b': array([0., 0.]), 'c.0': array([1.])}, {'a': {}, 'c': [3]})
    """
    tensors: dict[str, np.ndarray] = {}
    _, rest = _split(document, prefix, tensors)
    return tensors, rest


def _split(value: Any, path: str, tensors: dict[str, np.ndarray]) -> tuple[bool, Any]:
    """:func:`flatten`'s walk: ``(taken, rest)``.  A module function, not a closure: a
    recursive closure is a reference cycle, and it held every answer's arrays until the
    cyclic garbage collector ran (a server worker grew by each answer's size per request)."""
    if isinstance(value, np.ndarray):
        tensors[path] = value
        return True, None
    if isinstance(value, dict):
        if isinstance(value.get("data"), np.ndarray) and "datatype" in value:
            tensors[path] = value["data"].reshape(value.get("shape", value["data"].shape))
            return True, None
        kept = {}
        for key, item in value.items():
            taken, rest = _split(item, f"{path}.{key}" if path else str(key), tensors)
            if not taken:
                kept[key] = rest
        return False, kept
    if isinstance(value, list | tuple):
        items = [_split(item, f"{path}.{i}" if path else str(i), tensors) for i, item in enumerate(value)]
        return False, [rest for taken, rest in items if not taken]
    return False, value


__all__ = ["DTYPES", "MAX_HEADER_BYTES", "MEDIA_TYPE", "SafetensorsError", "flatten", "parts", "read", "write"]
