"""Tensors on the wire <-> NumPy arrays: the only place that reads or writes one.

* :mod:`service.wire.json_tensors` — the JSON forms (nested arrays, ``{"shape",
  "datatype", "data"}``, ``{"shape", "datatype", "b64"}``) and the request's element
  :class:`Budget`;
* :mod:`service.wire.safetensors` — the binary layout (``application/x-safetensors``):
  named raw tensors read as zero-copy views, bounds-checked before anything is made.

Nothing here imports the web framework: the thin client (``service.client``) uses it too.
"""

from service.wire import safetensors
from service.wire.json_tensors import RAW_TENSORS, Budget, TensorError, decode, encode, scalar

__all__ = ["RAW_TENSORS", "Budget", "TensorError", "decode", "encode", "safetensors", "scalar"]
