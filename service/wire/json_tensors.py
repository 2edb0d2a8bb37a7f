"""JSON tensors <-> NumPy arrays (the JSON half of :mod:`service.wire`).

Input forms (API.md, "Tensors")::

    [[1, 2], [3, 4]]                                          nested arrays, FP32
    {"shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}   flat or nested data
    {"shape": [2, 2], "datatype": "FP16", "b64": "ADwAQABCAEQ="}  little-endian C order

Output forms: ``{"shape", "datatype", "data"}`` with ``data`` flat and row-major, or
``{"shape", "datatype", "b64"}``.  Every number written is the shortest decimal that
reads back to the same value *in the tensor's datatype* (an FP32 4.8 is ``4.8``, not
``4.800000190734863``), and nothing non-finite is ever written.

Decoding is vectorised: the nested lists a JSON parser produces are checked with one
C-level pass over their leaf types (``set(map(type, ...))``) and converted with one
``np.array`` call.  Only when that finds a problem does a Python walk locate it, so
that the message can say where: ``[1] has 3 elements but [0] has 4``.

Sizes are checked from the declared or probed shape before anything is allocated:
:class:`Budget` raises :class:`~service.errors.TooManyElements` (a 413).

    >>> b = Budget(max_tensor_elements=100, max_request_elements=100, max_depth=8, max_layers=4)
    >>> decode([[1, 2], [3, 4]], b).dtype
    dtype('float32')
    >>> encode(decode({"shape": [2], "datatype": "FP32", "data": [4.8, 0.1]}, b))
    {'shape': [2], 'datatype': 'FP32', 'data': array([4.8, 0.1], dtype=float32)}
"""

from __future__ import annotations

import binascii
import contextvars
import functools
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybase64

from service.core.numeric import DATATYPES, check_finite, datatype_name
from service.errors import TooManyElements, did_you_mean

DEFAULT_DATATYPE = "FP32"
#: Keys of the object forms.
OBJECT_KEYS = ("shape", "datatype", "data", "b64")


class TensorError(ValueError):
    """A tensor that is not well formed; the message names where, and the numbers."""


@dataclass
class Budget:
    """Limits of one request: elements per tensor and in all, rank, layers.

    ``reserve`` is called with a shape's element count *before* the tensor is
    allocated; the running total covers every tensor of the request (and the layer
    outputs a request would make, see ``service.schemas``).
    """

    max_tensor_elements: int
    max_request_elements: int
    max_depth: int
    max_layers: int
    used: int = 0

    def reserve(self, elements: int, what: str) -> None:
        """Count ``elements`` of one tensor (``what`` names it in the 413's message)."""
        if elements > self.max_tensor_elements:
            raise TooManyElements(
                f"{what} has {elements} elements; the limit is {self.max_tensor_elements} "
                "per tensor: send a smaller tensor or split the request"
            )
        self.used += elements
        if self.used > self.max_request_elements:
            raise TooManyElements(
                f"{what} brings the request to {self.used} elements; the limit is "
                f"{self.max_request_elements} per request: split the request"
            )


# --------------------------------------------------------------------------- decoding


def decode(value: Any, budget: Budget) -> np.ndarray:
    """Any input form -> an array of its datatype (FP32 for nested arrays).

    Raises :class:`TensorError` for anything malformed and ``TooManyElements``
    for a shape over the budget (before allocating it).
    """
    if isinstance(value, list):
        return _from_nested(value, DATATYPES[DEFAULT_DATATYPE], budget, declared=None)
    if isinstance(value, dict):
        return _from_object(value, budget)
    if isinstance(value, np.ndarray) and value.dtype in _FLOAT_DTYPES:
        return _from_array(value, budget)
    raise TensorError(
        f"a tensor is a JSON array of numbers or an object with shape, datatype and data "
        f"(or b64), got {_kind(value)}"
    )


#: The dtypes a binary body may carry (``service.wire.safetensors`` reads F16, F32, F64).
_FLOAT_DTYPES = frozenset(DATATYPES.values())


def _from_array(array: np.ndarray, budget: Budget) -> np.ndarray:
    """A tensor that arrived as raw bytes (a read-only view of the body): counted and checked."""
    budget.reserve(array.size, f"shape {list(array.shape)}")
    if array.ndim > budget.max_depth:
        raise TensorError(f"shape has {array.ndim} dimensions; at most {budget.max_depth} are allowed")
    _check_values(array, lambda index: array[index].item(), "the tensor")
    return array


def _from_object(obj: dict[str, Any], budget: Budget) -> np.ndarray:
    unknown = [k for k in obj if k not in OBJECT_KEYS]
    if unknown:
        hint = did_you_mean(unknown[0], OBJECT_KEYS)
        raise TensorError(f"unknown key {_show(unknown[0])} in a tensor object{hint}; expected {', '.join(OBJECT_KEYS)}")
    dtype = _datatype(obj.get("datatype", DEFAULT_DATATYPE))
    has_data, has_b64 = "data" in obj, "b64" in obj
    if has_data == has_b64:
        raise TensorError(
            "a tensor object needs exactly one of data (numbers) and b64 "
            f"(base64 of little-endian bytes), got {'both' if has_data else 'neither'}"
        )
    shape = _shape(obj["shape"], budget) if "shape" in obj else None
    if has_b64:
        if shape is None:
            raise TensorError("a b64 tensor needs its shape, e.g. \"shape\": [2, 3]")
        return _from_b64(obj["b64"], shape, dtype, budget)
    data = obj["data"]
    if not isinstance(data, list):
        raise TensorError(f"data must be a JSON array of numbers, got {_kind(data)}")
    return _from_nested(data, dtype, budget, declared=shape, name="data")


def _datatype(name: Any) -> np.dtype[Any]:
    if isinstance(name, str) and name in DATATYPES:
        return DATATYPES[name]
    shown = _show(name) if isinstance(name, str) else _kind(name)
    raise TensorError(f"datatype {shown} is not supported; use one of {', '.join(DATATYPES)}")


def _shape(shape: Any, budget: Budget) -> tuple[int, ...]:
    if not isinstance(shape, list):
        raise TensorError(f"shape must be an array of dimension sizes, got {_kind(shape)}")
    if len(shape) > budget.max_depth:
        raise TensorError(f"shape has {len(shape)} dimensions; at most {budget.max_depth} are allowed")
    for i, dim in enumerate(shape):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise TensorError(f"shape[{i}] is {_kind(dim)}; dimensions are integers >= 0")
        if dim > budget.max_tensor_elements:  # even beside a 0: no axis longer than a whole tensor
            raise TooManyElements(
                f"shape[{i}] is {dim}; one dimension is at most {budget.max_tensor_elements} "
                "(the elements of a whole tensor), even in an empty tensor"
            )
    return tuple(shape)


def _from_nested(
    value: list[Any],
    dtype: np.dtype[Any],
    budget: Budget,
    *,
    declared: tuple[int, ...] | None,
    name: str = "",
) -> np.ndarray:
    probed = _probe(value, budget.max_depth, name)
    if declared is None:
        budget.reserve(math.prod(probed), f"{name or 'the array'} of shape {list(probed)}")
    else:
        _check_declared(probed, declared, budget)
    if not _only_numbers(value, len(probed)):
        _locate_bad_element(value, probed, name)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.array(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        _locate_bad_element(value, probed, name)
        raise  # pragma: no cover - _locate_bad_element always raises here
    if array.shape != probed:  # pragma: no cover - guarded by _only_numbers and _probe
        _locate_bad_element(value, probed, name)
    _check_values(array, lambda index: _at(value, index), name)
    return array.reshape(declared) if declared is not None else array


def _check_declared(probed: tuple[int, ...], declared: tuple[int, ...], budget: Budget) -> None:
    """``data`` is flat with as many numbers as ``shape`` needs, or nested exactly as it (an
    empty tensor's nesting stops at its first zero: ``[[]]`` is data of shape ``[1, 0, 3]``)."""
    needed = math.prod(declared)
    budget.reserve(needed, f"shape {list(declared)}")
    if len(probed) == 1 and len(declared) != 1:
        if probed[0] != needed:
            raise TensorError(f"data has {probed[0]} numbers but shape {list(declared)} needs {needed}")
    elif probed != declared and not (needed == 0 and declared[: len(probed)] == probed):
        raise TensorError(
            f"data is nested as {list(probed)} but shape is {list(declared)}; send data flat "
            "in row-major order or nested exactly as the shape"
        )


def _probe(value: list[Any], max_depth: int, name: str) -> tuple[int, ...]:
    """The shape along the first elements (iterative: depth is bounded before recursing)."""
    shape: list[int] = []
    node: Any = value
    while isinstance(node, list):
        if len(shape) == max_depth:
            raise TensorError(
                f"{name or 'the array'} nests more than {max_depth} levels deep; "
                f"tensors have at most {max_depth} dimensions"
            )
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return tuple(shape)


def _only_numbers(value: list[Any], rank: int) -> bool:
    """True when the leaves at depth ``rank`` are all ints or floats (one C-level pass)."""
    leaves: Iterable[Any] = value
    try:
        for _ in range(rank - 1):
            leaves = itertools.chain.from_iterable(leaves)
        return set(map(type, leaves)) <= {float, int}
    except TypeError:  # a number where a row was expected
        return False


def _locate_bad_element(value: list[Any], shape: tuple[int, ...], name: str) -> None:
    """Raise a TensorError for the first element (row-major) that breaks the rules."""
    stack: list[tuple[Any, tuple[int, ...]]] = [(value, ())]
    while stack:
        node, index = stack.pop()
        depth = len(index)
        where = _where(name, index)
        if depth < len(shape):
            if not isinstance(node, list):
                raise TensorError(
                    f"ragged array: {where} is {_kind(node)} but {_where(name, (0,) * depth)} "
                    f"is an array of {shape[depth]}; every row must have the same length"
                )
            if len(node) != shape[depth]:
                raise TensorError(
                    f"ragged array: {where} has {_elements(len(node))} but "
                    f"{_where(name, (0,) * depth)} has {shape[depth]}; every row must have the "
                    "same length"
                )
            stack.extend((child, (*index, i)) for i, child in reversed(list(enumerate(node))))
        elif isinstance(node, list):
            raise TensorError(
                f"ragged array: {where} is an array but {_where(name, (0,) * depth)} is a number; "
                "every row must have the same depth"
            )
        elif isinstance(node, bool) or not isinstance(node, int | float):
            raise TensorError(f"{where} is {_kind(node)}; tensor elements must be JSON numbers")
        elif isinstance(node, int) and node.bit_length() > 1024:
            raise TensorError(f"{where} is an integer of {node.bit_length()} bits; it overflows every datatype")
    raise TensorError(f"{name or 'the array'} could not be read as numbers")  # pragma: no cover


def _from_b64(text: Any, shape: tuple[int, ...], dtype: np.dtype[Any], budget: Budget) -> np.ndarray:
    if not isinstance(text, str):
        raise TensorError(f"b64 must be a base64 string, got {_kind(text)}")
    count = math.prod(shape)
    budget.reserve(count, f"shape {list(shape)}")
    try:
        raw = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TensorError(
            f"b64 is not valid base64 ({_base64_problem(text)}); encode the little-endian "
            "bytes with the standard alphabet and padding"
        ) from None
    needed = count * dtype.itemsize
    if len(raw) != needed:
        raise TensorError(
            f"b64 holds {len(raw)} bytes but shape {list(shape)} in {datatype_name(dtype)} needs "
            f"{needed} ({_elements(count)} × {dtype.itemsize} bytes)"
        )
    array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
    array = array.reshape(shape)
    _check_values(array, lambda index: array[index].item(), "b64")
    return array


def _base64_problem(text: str) -> str:
    """What is wrong with ``text`` (on the error path only: pybase64 says only "Non-base64
    digit found" for every problem; binascii's strict mode names it)."""
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        return str(exc)
    return "not canonical base64"  # pragma: no cover - both decoders refuse the same strings


def _check_values(array: np.ndarray, original: Any, name: str) -> None:
    """Every element finite in the array's dtype (so no NaN/inf given, nothing overflowed)."""
    finite = np.isfinite(array)
    if finite.all():
        return
    index = np.unravel_index(int(np.argmin(finite)), array.shape)
    given = original(index)
    where = _where(name, tuple(int(i) for i in index))
    if isinstance(given, float) and not math.isfinite(given):
        raise TensorError(f"{where} is {given}; tensor elements must be finite")
    largest = str(np.finfo(array.dtype).max)
    raise TensorError(
        f"{where} = {given!r} overflows {datatype_name(array.dtype)} (largest finite value "
        f"{largest}); send it as FP64 or scale the tensor down"
    )


def _at(value: Any, index: Sequence[int]) -> Any:
    for i in index:
        value = value[i]
    return value


# --------------------------------------------------------------------------- encoding


#: Set while a response is written as safetensors: :func:`encode` keeps arrays as they are.
RAW_TENSORS: contextvars.ContextVar[bool] = contextvars.ContextVar("raw_tensors", default=False)


def encode(array: np.ndarray, encoding: str = "json", *, what: str = "tensor") -> dict[str, Any]:
    """An array -> ``{"shape", "datatype", "data" | "b64"}``; refuses non-finite values.

    ``data`` stays a NumPy array, flat and C-contiguous, for ``orjson`` to write directly
    (``OPT_SERIALIZE_NUMPY``); FP16 is mapped to the float64 values whose shortest repr
    is the FP16 one, because orjson writes half floats as float32.  While
    :data:`RAW_TENSORS` is set (a safetensors response), ``data`` is the array itself,
    in its shape and dtype, whatever ``encoding`` says.
    """
    dtype = array.dtype
    check_finite(what, array, dtype=dtype)
    head: dict[str, Any] = {"shape": list(array.shape), "datatype": datatype_name(dtype)}
    if RAW_TENSORS.get():
        return {**head, "data": array}
    flat = np.ascontiguousarray(array).reshape(-1)
    if encoding == "b64":
        little = flat.astype(dtype.newbyteorder("<"), copy=False)  # no copy on little-endian hosts
        return {**head, "b64": pybase64.b64encode_as_string(little.data)}
    if dtype == np.float16:
        flat = _half_as_shortest_double()[flat.view(np.uint16)]
    return {**head, "data": flat}


def scalar(value: Any, *, what: str) -> float:
    """A NumPy scalar -> the float whose JSON form is its shortest repr in its own dtype.

    >>> scalar(np.float32(4.8), what="penalty")
    4.8
    """
    x = np.asarray(value)[()]
    check_finite(what, x, dtype=x.dtype)
    return float(str(x))


@functools.cache
def _half_as_shortest_double() -> np.ndarray:
    """For each of the 65536 FP16 bit patterns, the float64 read from its shortest repr."""
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    with np.errstate(invalid="ignore"):
        return np.array([float(str(h)) for h in halves], dtype=np.float64)


# --------------------------------------------------------------------------- messages


def _where(name: str, index: Sequence[int]) -> str:
    """``data[1][0]``; a bare ``[1][0]`` for a tensor given as nested arrays."""
    return name + "".join(f"[{i}]" for i in index) if index else (name or "the array")


def _elements(n: int) -> str:
    return f"{n} element" if n == 1 else f"{n} elements"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({_show(value)})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"the number {value!r}" if isinstance(value, int | float) else type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["RAW_TENSORS", "Budget", "TensorError", "decode", "encode", "scalar"]
