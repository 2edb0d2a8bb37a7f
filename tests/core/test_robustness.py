"""Property: for any shapes (zero-sized ones included), names, parameters and dtypes, the
core either returns finite numbers of the right shapes or raises one of its typed errors
(which the API turns into a 4xx) — never anything else."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core import activations, losses, regularizers
from service.core.dense import dense
from service.core.errors import CoreError
from service.core.network import LayerSpec, network

DTYPES = [np.float16, np.float32, np.float64]
dims = st.integers(0, 3)
values = st.floats(-8, 8, allow_nan=False, allow_infinity=False)
regularizer_specs = st.one_of(
    st.none(),
    st.sampled_from(list(regularizers.IDENTIFIERS)),
    st.builds(lambda k, f: {"type": k, **({"factor": f} if k == "orthogonal" else {})},
              st.sampled_from(list(regularizers.REGISTRY)), st.floats(0, 2)),
)
activation_specs = st.sampled_from([None, *activations.NAMES])
loss_specs = st.sampled_from(list(losses.NAMES))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _array(draw: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(flat, dtype=np.float64).reshape(shape).astype(dtype)


def _assert_finite(result: Any) -> None:
    assert np.all(np.isfinite(result.outputs))
    assert all(np.isfinite(v) for v in result.losses.values())
    for terms in (result.gradients or {}).values():
        for g in terms.values():
            assert np.all(np.isfinite(g))


@st.composite
def dense_cases(draw: Any) -> dict[str, Any]:
    dtype = draw(st.sampled_from(DTYPES))
    batch = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    n_in, units = draw(dims), draw(dims)
    return {
        "inputs": _array(draw, (*batch, n_in), dtype),
        "kernel": _array(draw, (n_in, units), dtype),
        "bias": draw(st.one_of(st.none(), st.just(_array(draw, (units,), dtype)))),
        "activation": draw(activation_specs),
        "kernel_regularizer": draw(regularizer_specs),
        "activity_regularizer": draw(regularizer_specs),
        "activity_normalization": draw(st.sampled_from(["batch", "none"])),
    }


@SETTINGS
@given(dense_cases())
def test_dense_returns_finite_results_or_a_typed_error(case: dict[str, Any]) -> None:
    try:
        result = dense(**case)
    except CoreError:
        return
    z_shape = (*case["inputs"].shape[:-1], case["kernel"].shape[1])
    assert result.outputs.shape == activations.get(case["activation"]).output_shape(z_shape)  # glu halves
    assert result.gradients is not None
    assert result.gradients["kernel"]["total"].shape == case["kernel"].shape
    _assert_finite(result)


@st.composite
def network_cases(draw: Any) -> dict[str, Any]:
    dtype = draw(st.sampled_from(DTYPES))
    batch = tuple(draw(st.lists(dims, min_size=1, max_size=2)))
    widths = draw(st.lists(dims, min_size=2, max_size=4))
    layers = [
        LayerSpec(
            kernel=_array(draw, (a, b), dtype),
            bias=_array(draw, (b,), dtype) if draw(st.booleans()) else None,
            activation=draw(activation_specs),
            kernel_regularizer=draw(regularizer_specs),
            activity_regularizer=draw(regularizer_specs),
        )
        for a, b in pairwise(widths)
    ]
    targets = draw(st.lists(st.floats(0, 1), min_size=int(np.prod(batch)) * widths[-1],
                            max_size=int(np.prod(batch)) * widths[-1]))
    return {
        "inputs": _array(draw, (*batch, widths[0]), dtype),
        "targets": np.array(targets, dtype=dtype).reshape(*batch, widths[-1]),
        "layers": layers,
        "loss": draw(loss_specs),
    }


@SETTINGS
@given(network_cases())
def test_network_returns_finite_results_or_a_typed_error(case: dict[str, Any]) -> None:
    try:
        result = network(**case)
    except CoreError:
        return
    _assert_finite(result)
