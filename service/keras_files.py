"""Keras 3 files → model config and weights, read without running or extracting anything.

* ``.keras`` — a zip holding ``config.json`` (the model JSON), ``metadata.json`` and
  ``model.weights.h5``.  The archive is checked before anything is decompressed: at most
  :attr:`Limits.max_members` members, no member name with ``..``, a leading ``/`` or ``\\``
  or a drive letter, no encrypted member, declared sizes within the limits and no member
  expanding more than :data:`MAX_RATIO` times (a zip bomb); each member read is cut at its
  declared size.  Members are read into memory, never extracted.
* ``.weights.h5`` (and the ``.keras``'s ``model.weights.h5``) — HDF5 read with h5py from
  memory: ``layers/<key>/vars/<i>`` datasets only (hard links, no external or virtual
  storage), float16/32/64, element counts (and chunk sizes) checked before a dataset is read;
  any error of the HDF5 library on a malformed file is a 422.  ``<key>`` is
  the layer's name when the group records it (``vars`` attribute ``name``), otherwise
  Keras's key, the snake-case class name numbered in layer order (``dense``,
  ``dense_1``, …; InputLayers count in Functional models only).  ``vars/<i>`` is the i-th
  weight the layer declares (``kernel``, ``bias``; BatchNormalization ``gamma``, ``beta``,
  ``moving_mean``, ``moving_variance``).
* Nothing is unpickled or executed: config JSON is data; ``Lambda`` layers are refused by
  :mod:`service.core.keras_config`.
"""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py  # type: ignore[import-untyped]
import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile

from service.config import Settings
from service.core import keras_config
from service.core.errors import CoreError, SpecError
from service.core.model import shapes_of
from service.errors import ApiError, PayloadTooLarge, TooManyElements

#: A member may expand at most this many times (JSON and HDF5 compress 3-10x).
MAX_RATIO = 200
PARTS = ("model", "weights", "request")
#: Stands in for a size the config leaves open (a sequence length) when working out the
#: weights' shapes; no layer's weights depend on such a size.
UNKNOWN_SIZE = 4096


class InvalidUpload(ApiError):
    status_code = 422
    code = "invalid_upload"


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_tensor_elements: int
    max_request_elements: int
    max_members: int = 64
    max_config_bytes: int = 8 << 20

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_tensor_elements, settings.max_request_elements)

    @property
    def max_uncompressed(self) -> int:
        return self.max_request_elements * 8 + self.max_config_bytes


async def read_form(request: Request, limits: Limits) -> dict[str, bytes]:
    """The parts ``model``, ``weights``, ``request`` as bytes (each a field or a file)."""
    form = await request.form(max_files=len(PARTS), max_fields=len(PARTS), max_part_size=limits.max_bytes)
    parts: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if key not in PARTS:
            raise InvalidUpload(f"unknown form part {key!r}; the parts are {', '.join(PARTS)}")
        if key in parts:
            raise InvalidUpload(f"the form part {key!r} is given twice")
        if isinstance(value, UploadFile):
            data = await value.read(limits.max_bytes + 1)
            await value.close()
        else:
            data = value.encode()
        parts[key] = data
    if "model" not in parts:
        raise InvalidUpload("the form needs a part 'model' (a .keras file or the model JSON)")
    return parts


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidUpload(f"{what} is not valid JSON ({exc})") from None


def request_fields(parts: Mapping[str, bytes], limits: Limits) -> dict[str, Any]:
    """The JSON request the form stands for (weights as b64 tensors)."""
    fields = _json(parts["request"], "the part 'request'") if "request" in parts else {}
    if not isinstance(fields, dict):
        raise InvalidUpload("the part 'request' must be a JSON object")
    for key in ("model", "weights"):
        if key in fields and key in parts:
            raise InvalidUpload(f"{key!r} is given both as a form part and inside 'request'")
    if parts["model"][:8] == b"\x89HDF\r\n\x1a\n":
        raise InvalidUpload("the part 'model' is an HDF5 file: Keras 2 .h5 models are not read; save the model "
                            "with model.save('model.keras') (Keras 3), or send its JSON with a .weights.h5")
    if parts["model"][:4] == b"PK\x03\x04":
        if "weights" in parts:
            raise InvalidUpload("a .keras file holds its weights: send no 'weights' part with it")
        config, archived = read_keras(parts["model"], limits)
        h5: bytes | None = archived
    else:
        config = _json(parts["model"], "the part 'model'")
        h5 = parts.get("weights")
    fields["model"] = config
    if h5 is not None:
        fields["weights"] = {k: _wire(v) for k, v in read_weights(h5, config, limits).items()}
    return fields


def _wire(a: np.ndarray) -> dict[str, Any]:
    size = a.dtype.itemsize
    raw = np.ascontiguousarray(a, dtype=f"<f{size}").tobytes()
    return {"shape": list(a.shape), "datatype": {2: "FP16", 4: "FP32", 8: "FP64"}[size],
            "b64": base64.b64encode(raw).decode()}


_BAD_NAME = re.compile(r"(^[/\\])|(^[A-Za-z]:)|(\\)")


def read_keras(data: bytes, limits: Limits) -> tuple[Any, bytes]:
    """``(config, model.weights.h5 bytes)`` of a ``.keras`` archive, bounded (see module doc)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidUpload(f"the part 'model' starts like a zip but is not a readable .keras archive ({exc})") from None
    if len(members) > limits.max_members:
        raise InvalidUpload(f"the archive has {len(members)} members; a .keras file has a few (limit {limits.max_members})")
    total = 0
    for m in members:
        if _BAD_NAME.search(m.filename) or ".." in m.filename.split("/"):
            raise InvalidUpload(f"the archive member {m.filename!r} has an absolute or parent ('..') path; refused")
        if m.flag_bits & 0x1:
            raise InvalidUpload(f"the archive member {m.filename!r} is encrypted; refused")
        if m.file_size > MAX_RATIO * max(m.compress_size, 1) and m.file_size > 1 << 20:
            raise PayloadTooLarge(
                f"the archive member {m.filename!r} expands from {m.compress_size} to {m.file_size} bytes "
                f"(more than {MAX_RATIO}x): refused as a zip bomb")
        total += m.file_size
    if total > limits.max_uncompressed:
        raise PayloadTooLarge(f"the archive expands to {total} bytes; the limit is {limits.max_uncompressed}")
    names = {m.filename: m for m in members}
    for need in ("config.json", "model.weights.h5"):
        if need not in names:
            raise InvalidUpload(f"the archive has no {need!r}; members: {', '.join(sorted(names))[:300]}")
    config = _json(_member(archive, names["config.json"], limits.max_config_bytes), "config.json")
    return config, _member(archive, names["model.weights.h5"], limits.max_uncompressed)


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise PayloadTooLarge(f"the archive member {info.filename!r} has {info.file_size} bytes; the limit is {limit}")
    try:
        with archive.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
        raise InvalidUpload(f"the archive member {info.filename!r} cannot be read ({exc})") from None
    if len(data) != info.file_size:
        raise InvalidUpload(f"the archive member {info.filename!r} does not hold its declared {info.file_size} bytes")
    return data


def snake_case(class_name: str) -> str:
    """Keras's key for a class name: ``"BatchNormalization"`` → ``"batch_normalization"``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_keys(config: Any) -> dict[str, tuple[str, str]]:
    """Keras's file key of each layer → (layer name, class name), in saving order."""
    inner = config.get("config", config) if isinstance(config, dict) and "class_name" in config else config
    entries = inner.get("layers", []) if isinstance(inner, dict) else []
    functional = isinstance(inner, dict) and "input_layers" in inner
    keys: dict[str, tuple[str, str]] = {}
    used: dict[str, int] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("class_name"), str):
            continue
        cls = e["class_name"]
        if cls == "InputLayer" and not functional:
            continue
        base = snake_case(cls)
        key = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
        cfg = e["config"] if isinstance(e.get("config"), dict) else {}
        keys[key] = (str(e.get("name", cfg.get("name", key))), cls)
    return keys


def read_weights(h5: bytes, config: Any, limits: Limits) -> dict[str, np.ndarray]:
    """``{"<layer>/<weight>": array}`` from Keras 3 weights HDF5 bytes, for the model ``config``."""
    try:
        model = keras_config.from_config(config)
        shapes = shapes_of(model, {n: (1, *(UNKNOWN_SIZE if d is None else d for d in s[1:]))
                                   for n, s in model.input_shapes.items()})
    except CoreError as exc:
        raise SpecError(exc.message, field="model") from None
    except (KeyError, TypeError) as exc:
        raise SpecError(f"the model config has no usable input shapes ({exc}); give InputLayer batch_shape",
                        field="model") from None
    try:
        f = h5py.File(io.BytesIO(h5), "r")
    except OSError as exc:
        raise InvalidUpload(f"the weights are not an HDF5 file ({exc})") from None
    try:
        with f:
            return _read_layers(f, model, shapes, config, limits)
    except (ApiError, CoreError):
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InvalidUpload(f"the weights file cannot be read ({type(exc).__name__}: {exc})") from None


def _read_layers(f: Any, model: Any, shapes: Mapping[str, Any], config: Any, limits: Limits) -> dict[str, np.ndarray]:
    root = f.get("layers", getlink=True)
    if not isinstance(root, h5py.HardLink) or not isinstance(f["layers"], h5py.Group):
        raise InvalidUpload("an HDF5 file, but not Keras 3 weights: it has no 'layers' group "
                            "(Keras 2 .h5 files with model_weights/ are not read)")
    keys = _layer_keys(config)
    out: dict[str, np.ndarray] = {}
    budget = limits.max_request_elements
    for key in f["layers"]:
        group = _group(f["layers"], key)
        vars_ = _group(group, "vars") if "vars" in group else None
        if vars_ is None or not len(vars_):
            continue
        name = vars_.attrs.get("name")
        name = name.decode() if isinstance(name, bytes) else name
        if not isinstance(name, str) or name not in model.nodes:
            if key not in keys:
                raise InvalidUpload(f"the weights file has layer {key!r}, which the model does not have")
            name = keys[key][0]
        node = model.nodes.get(name)
        if node is None or node.layer is None:
            raise InvalidUpload(f"the weights file has weights for {name!r}, which has none in the model")
        specs = node.layer.weight_specs([shapes[i] for i in node.inputs])
        if len(vars_) != len(specs):
            raise InvalidUpload(f"the weights file has {len(vars_)} variables for layer {name!r}; "
                                f"{node.layer.CLASS_NAME} has {len(specs)} ({', '.join(s.name for s in specs)})")
        for i, spec in enumerate(specs):
            ds = _dataset(vars_, str(i), f"layers/{key}/vars/{i}", limits)
            budget -= ds.size
            if budget < 0:
                raise TooManyElements(f"the weights hold more than {limits.max_request_elements} elements")
            out[f"{name}/{spec.name}"] = np.asarray(ds[()])
    return out


def _group(parent: h5py.Group, key: str) -> h5py.Group:
    link = parent.get(key, getlink=True)
    obj = parent.get(key) if isinstance(link, h5py.HardLink) else None
    if not isinstance(obj, h5py.Group):
        raise InvalidUpload(f"{parent.name}/{key} is not a plain HDF5 group (links are refused)")
    return obj


def _dataset(parent: h5py.Group, key: str, where: str, limits: Limits) -> h5py.Dataset:
    link = parent.get(key, getlink=True)
    obj = parent.get(key) if isinstance(link, h5py.HardLink) else None
    if not isinstance(obj, h5py.Dataset):
        raise InvalidUpload(f"{where} is missing or not a plain dataset")
    if obj.is_virtual or obj.external:
        raise InvalidUpload(f"{where} uses virtual or external storage; refused")
    if obj.dtype.kind != "f" or obj.dtype.itemsize not in (2, 4, 8):
        raise InvalidUpload(f"{where} has dtype {obj.dtype}; weights must be float16, float32 or float64")
    if obj.size > limits.max_tensor_elements:
        raise TooManyElements(f"{where} has {obj.size} elements; the limit is {limits.max_tensor_elements}")
    if obj.chunks is not None and int(np.prod(obj.chunks, dtype=np.float64)) > max(obj.size, 1):
        raise InvalidUpload(f"{where} declares chunks {list(obj.chunks)} larger than its {obj.size} elements; refused")
    return obj
