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

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
# Blocks of the absolute-sum reduction: 64 Ki elements (256 KiB of float32, inside L2).
_ABS_BLOCK = 1 << 16
# Reductions over at least this many elements use a small thread pool.
_PARALLEL_MIN = 1 << 20
_THREADS = min(2, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None


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


def _abs_dot_ones(flat: FloatArray) -> float:
    """``Σ|flat|`` (float32 or float64, contiguous).

    Each block's ``|x|`` is formed by clearing the sign bit into a buffer that stays
    in cache, then reduced by a BLAS dot product with ones; block sums accumulate
    in float64.
    """
    n = flat.size
    full = n - n % _ABS_BLOCK
    total = 0.0
    if full:
        uint = np.dtype(f"u{flat.dtype.itemsize}")
        mask = uint.type(np.iinfo(uint).max >> 1)  # every bit but the sign bit
        bits = flat.view(uint)
        buf = np.empty(_ABS_BLOCK, dtype=flat.dtype)
        buf_bits = buf.view(uint)
        ones = np.ones(_ABS_BLOCK, dtype=flat.dtype)
        for start in range(0, full, _ABS_BLOCK):
            np.bitwise_and(bits[start : start + _ABS_BLOCK], mask, out=buf_bits)
            total += float(np.dot(buf, ones))
    if full < n:
        total += float(np.abs(flat[full:]).sum())
    return total


def _parallel_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="reduce")
    return _POOL


def sum_abs(x: np.ndarray) -> np.floating[Any]:
    """``Σ|x|`` in the working dtype, one pass over memory.

    ``np.abs(x).sum()`` writes a full temporary and reads it back (about 6x the
    time of ``x @ x`` on 10M float32).  Here blocks of 64 Ki elements go through
    a buffer that stays in cache (see :func:`_abs_dot_ones`); tensors of 1 Mi
    elements or more are split across two threads (NumPy releases the GIL in
    both ``abs`` and ``dot``).  Each block is summed in the working dtype, the
    block sums in float64, so the result is as accurate as a pairwise sum.
    """
    flat = np.ascontiguousarray(as_work(x)).reshape(-1)
    if _THREADS > 1 and flat.size >= _PARALLEL_MIN:
        total = sum(_parallel_pool().map(_abs_dot_ones, np.array_split(flat, _THREADS)))
    else:
        total = _abs_dot_ones(flat)
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


def total(values: Mapping[str, Any], like: Any) -> Any:
    """Sum of ``values`` in their order (zeros shaped like ``like`` when there are none)."""
    parts = list(values.values())
    if not parts:
        return np.zeros_like(like)
    acc = parts[0]
    with np.errstate(over="ignore", invalid="ignore"):  # an inf total is refused by finish()
        for v in parts[1:]:
            acc = acc + v
    return acc


def finish(
    values: Mapping[str, Any], dtype: np.dtype[Any], *, prefix: str = ""
) -> dict[str, Any]:
    """Round each result to ``dtype`` and refuse any that is not finite there."""
    out = {}
    for key, v in values.items():
        out[key] = to_dtype(v, dtype)
        check_finite(f"{prefix}{key}", out[key], dtype=dtype)
    return out
