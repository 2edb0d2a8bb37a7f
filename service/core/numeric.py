"""Dtype rules, finiteness checks and cache-blocked reductions shared by the core.

Conventions
-----------
* A computation runs in the dtype of its tensors (float16, float32 or float64).
  float16 work is carried out in float32 and rounded back to float16 at the end
  (NumPy has no fast half-precision kernels, and half accumulators overflow at
  65504 long before the rounded result would).
* Keras rounds regularization factors to float32 (its ``floatx``).  For float16
  and float32 tensors the service does the same, so results match Keras; for
  float64 tensors it keeps the exact float64 factor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.core.errors import NonFiniteError, SpecError

FloatArray = NDArray[np.floating[Any]]

#: Open Inference Protocol datatype names and their NumPy dtypes.
DATATYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
DATATYPE_NAMES: dict[np.dtype[Any], str] = {v: k for k, v in DATATYPES.items()}

# Elements per block of a blocked reduction: 16 Ki float32 = 64 KiB, well inside L2.
_BLOCK = 1 << 14


def datatype_name(dtype: np.dtype[Any]) -> str:
    """``np.float32`` -> ``"FP32"``."""
    return DATATYPE_NAMES[np.dtype(dtype)]


def result_dtype(*arrays: np.ndarray | None) -> np.dtype[Any]:
    """The dtype a computation over ``arrays`` runs in (NumPy promotion, floats only)."""
    dtypes = [a.dtype for a in arrays if a is not None]
    dt = np.result_type(*dtypes) if dtypes else np.dtype(np.float32)
    if dt not in DATATYPE_NAMES:
        raise SpecError(f"unsupported dtype {dt}; use FP16, FP32 or FP64")
    return np.dtype(dt)


def work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype arithmetic is carried out in: float16 is widened to float32."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def as_work(x: np.ndarray) -> FloatArray:
    """``x`` in its working dtype (no copy unless float16)."""
    return np.asarray(x, dtype=work_dtype(x.dtype))


def factor_in(factor: float, dtype: np.dtype[Any]) -> np.floating[Any]:
    """A regularization factor as Keras applies it: float32 unless the data is float64."""
    return np.float64(factor) if dtype == np.float64 else np.float32(factor)


def validate_factor(name: str, value: Any) -> float:
    """A factor must be a real number, finite and >= 0 (as Keras 3 requires)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SpecError(f"{name} must be a number, got {value!r}", field=name)
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise SpecError(f"{name} must be finite and >= 0, got {value!r}", field=name)
    return v


def sum_abs(x: np.ndarray) -> np.floating[Any]:
    """``Σ|x|`` in the working dtype, one pass over memory.

    Blocks of 16 Ki elements are taken with ``np.abs(..., out=buf)`` into a buffer
    that stays in cache and summed pairwise; block sums accumulate in float64, so
    the result is at least as accurate as a single pairwise sum.
    """
    flat = as_work(x).reshape(-1)
    n = flat.size
    if n <= _BLOCK:
        return flat.dtype.type(np.abs(flat).sum())
    buf = np.empty(_BLOCK, dtype=flat.dtype)
    total = 0.0
    for start in range(0, n - _BLOCK + 1, _BLOCK):
        np.abs(flat[start : start + _BLOCK], out=buf)
        total += float(buf.sum())
    tail = n % _BLOCK
    if tail:
        total += float(np.abs(flat[n - tail :]).sum())
    return flat.dtype.type(total)


def sum_squares(x: np.ndarray) -> np.floating[Any]:
    """``Σx²`` in the working dtype, by BLAS dot products on cache-sized blocks.

    Block results accumulate in float64; the total is rounded to the working dtype
    (so a float32 sum of squares beyond 3.4e38 becomes inf and is reported by
    :func:`check_finite`, as it would overflow in Keras).
    """
    flat = as_work(x).reshape(-1)
    n = flat.size
    if n <= _BLOCK:
        return flat.dtype.type(np.dot(flat, flat))
    total = 0.0
    for start in range(0, n, _BLOCK):
        block = flat[start : start + _BLOCK]
        total += float(np.dot(block, block))
    with np.errstate(over="ignore"):
        return flat.dtype.type(total)


def check_finite(what: str, value: Any, *, dtype: np.dtype[Any] | None = None) -> None:
    """Raise :class:`NonFiniteError` unless every element of ``value`` is finite."""
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        name = datatype_name(dtype) if dtype is not None and dtype in DATATYPE_NAMES else str(arr.dtype)
        raise NonFiniteError(
            f"{what} is not finite in {name} (it overflowed the dtype); "
            "use smaller values or a wider datatype such as FP64",
            field=what,
        )


def to_dtype(x: Any, dtype: np.dtype[Any]) -> Any:
    """Round a working-dtype result back to the tensor's dtype (overflow -> inf, checked later)."""
    with np.errstate(over="ignore"):
        if isinstance(x, np.ndarray):
            return x.astype(dtype, copy=False)
        return np.dtype(dtype).type(x)


def all_finite(values: Iterable[Any]) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in values)
