"""JSON+b64 bodies for the thin client, written and read without fresh memory per call.

A Dense call over JSON used to allocate, besides the arrays it returns, the request's b64
strings and its JSON text (2.1 MB each), the answer's text (6.3 MB) and a Python string per
b64 tensor of the answer (6.3 MB more).  Memory that large comes fresh from the kernel on
every call unless the caller's malloc keeps it: 3,716 pages a call in a fresh interpreter,
at 12.8 ms a call, against 0–1 pages and 8.6–9.3 ms with this module (``python -m
bench.client``, section 2).  Here:

* :func:`encode` writes the request into a buffer kept per thread (:class:`Buffers`): the
  structure by ``orjson``, each array's b64 text by pybase64 in 64 KiB pieces straight into
  the buffer;
* the answer is read into the other kept buffer (the transport's
  :data:`~service.client.transport.READ_INTO` extension), and :func:`decode` parses only its
  skeleton: every string of :data:`LONG` bytes or more is cut out and replaced by a
  placeholder, and a ``b64`` tensor is decoded from the buffer's own bytes (pybase64 reads a
  memoryview).  This needs an answer without a single backslash (the service's never has
  one: orjson escapes nothing in b64 text or in the keys); then every ``"`` ends or begins
  a string, no string holds an escape, and no string of the answer can be a placeholder
  (``"\\u0000<n>"``: an escape).  Any other answer is parsed whole, as before.

The arrays returned are new memory (an answer's b64 tensors are decoded into one new array,
each tensor a view of it); nothing returned refers to a kept buffer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pybase64
from pydantic_core import from_json

#: Strings of at least this many bytes are read from the answer's buffer, not parsed.
LONG = 1024
#: Bytes of an array encoded per step: a multiple of 3 (no padding inside the text), and
#: 64 KiB of text, small enough that malloc reuses the same block for every step.
STEP = 3 * (1 << 14)
#: Characters of b64 text decoded per step (a multiple of 4): 48 KiB of bytes.
DECODE_STEP = 1 << 16
#: Each decoded tensor starts at a multiple of this in the answer's one array.
ALIGN = 64
#: A kept buffer grows up to this many bytes; a larger body gets a buffer of its own.
KEPT_BYTES = 64 << 20


class Buffers(threading.local):
    """One request buffer and one answer buffer per thread, grown as needed up to
    :data:`KEPT_BYTES` and kept between calls."""

    def __init__(self) -> None:
        self.kept: dict[str, bytearray] = {}

    def get(self, which: str, n: int) -> memoryview:
        """A writable view of ``n`` bytes: the kept buffer ``which``, or a new one when
        ``n`` is over :data:`KEPT_BYTES`."""
        if n > KEPT_BYTES:
            return memoryview(bytearray(n))
        buffer = self.kept.get(which)
        if buffer is None or len(buffer) < n:
            grown = min(2 * len(buffer), KEPT_BYTES) if buffer else 0  # doubling, up to the cap
            buffer = self.kept[which] = bytearray(max(n, grown))
        return memoryview(buffer)[:n]


def b64_length(nbytes: int) -> int:
    return 4 * ((nbytes + 2) // 3)


def pieces(value: Any, datatype: Mapping[np.dtype[Any], str], out: list[bytes | np.ndarray]) -> None:
    """``value`` as JSON text pieces: bytes, and each array (already little-endian and
    contiguous, its dtype in ``datatype``) where its b64 text goes, between its quotes."""
    if isinstance(value, np.ndarray):
        head = {"shape": list(value.shape), "datatype": datatype[value.dtype.newbyteorder("=")]}
        out.append(orjson.dumps(head)[:-1] + b',"b64":"')
        out.append(value)
        out.append(b'"}')
    elif isinstance(value, Mapping):
        out.append(b"{")
        for i, (key, item) in enumerate(value.items()):
            out.append(b"," + orjson.dumps(key) + b":" if i else orjson.dumps(key) + b":")
            pieces(item, datatype, out)
        out.append(b"}")
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            pieces(item, datatype, out)
        out.append(b"]")
    else:
        out.append(orjson.dumps(value))


def encode(body: Mapping[str, Any], datatype: Mapping[np.dtype[Any], str], buffers: Buffers) -> memoryview:
    """``body`` (arrays anywhere in it, little-endian and contiguous) as JSON with b64
    tensors, written into the thread's request buffer; the view is valid until the
    thread's next call."""
    parts: list[bytes | np.ndarray] = []
    pieces(body, datatype, parts)
    n = sum(b64_length(p.nbytes) if isinstance(p, np.ndarray) else len(p) for p in parts)
    view = buffers.get("request", n)
    at = 0
    for part in parts:
        if isinstance(part, np.ndarray):
            raw = memoryview(part.reshape(-1).view(np.uint8).data)
            for start in range(0, raw.nbytes, STEP):
                text = pybase64.b64encode(raw[start:start + STEP])
                view[at:at + len(text)] = text
                at += len(text)
        else:
            view[at:at + len(part)] = part
            at += len(part)
    assert at == n
    return view


def skeleton(data: bytes | bytearray, n: int) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The first ``n`` bytes of a JSON answer with every string of :data:`LONG` bytes or
    more replaced by ``"\\u0000<i>"``, and the strings' ``(start, end)`` in ``data`` (the
    i-th at index i); None for an answer holding a backslash."""
    if data.find(b"\\", 0, n) >= 0:
        return None
    parts: list[bytes] = []
    spans: list[tuple[int, int]] = []
    kept = at = 0
    while (opening := data.find(b'"', at, n)) >= 0:
        closing = data.find(b'"', opening + 1, n)
        if closing < 0:
            return None  # unterminated: the whole parse reports it
        if closing - opening - 1 >= LONG:
            parts += (bytes(data[kept:opening + 1]), b"\\u0000%d" % len(spans))
            spans.append((opening + 1, closing))
            kept = closing
        at = closing + 1
    parts.append(bytes(data[kept:n]))
    return b"".join(parts), spans


def decode(data: bytes | bytearray, n: int, datatypes: Mapping[str, np.dtype[Any]]) -> tuple[Any, dict[str, np.ndarray]]:
    """A JSON answer (the first ``n`` bytes of ``data``) -> ``(the answer without its
    tensors, the tensors by dot-joined path)``, as :func:`service.wire.safetensors.flatten`
    splits a document (a tensor in a list is taken out of it too); the tensors are new memory."""
    cut = skeleton(data, n)
    if cut is None:
        return _Answer(data, [], datatypes).split(from_json(bytes(data[:n]) if n < len(data) else data))
    text, spans = cut
    return _Answer(data, spans, datatypes).split(from_json(text))


class _Answer:
    """Tensors taken out of a parsed answer; placeholders read from the answer's bytes.

    The b64 tensors are decoded, piece by piece, into one array allocated for all of them
    (each tensor a view of it, as the arrays of a safetensors answer are views of its
    bytes).  One block of the same size per call is what glibc's malloc reuses; a block
    per tensor, or pybase64's own results (allocated for the longest possible result, then
    shrunk), came as fresh pages on every call."""

    def __init__(self, data: bytes | bytearray, spans: list[tuple[int, int]],
                 datatypes: Mapping[str, np.dtype[Any]]) -> None:
        self.data, self.spans, self.datatypes = data, spans, datatypes
        self.tensors: dict[str, np.ndarray] = {}
        self.order: list[str] = []  # every tensor's path, in the answer's order
        self.pending: list[tuple[str, str | memoryview, np.dtype[Any], Any]] = []  # the b64 ones

    def split(self, document: Any) -> tuple[Any, dict[str, np.ndarray]]:
        rest = self.walk(document, "")[1]
        sizes = [_aligned(len(text) // 4 * 3) for _, text, _, _ in self.pending]
        raw = np.empty(sum(sizes), np.uint8)
        at = 0
        for (path, text, dtype, shape), size in zip(self.pending, sizes, strict=True):
            n = _decode_into(raw[at:at + size], text)
            self.tensors[path] = raw[at:at + n].view(dtype).reshape(shape)
            at += size
        return rest, {path: self.tensors[path] for path in self.order}

    def span(self, value: Any) -> memoryview | None:
        """The bytes a placeholder stands for (None for any other value)."""
        if not (self.spans and isinstance(value, str) and value[:1] == "\x00"):
            return None
        start, end = self.spans[int(value[1:])]
        return memoryview(self.data)[start:end]

    def text(self, value: Any) -> Any:
        span = self.span(value)
        return value if span is None else bytes(span).decode("utf-8")

    def walk(self, value: Any, path: str) -> tuple[bool, Any]:
        """``(taken, rest)``: whether ``value`` was a tensor (now in ``tensors`` or
        ``pending``), and what remains of it otherwise."""
        if isinstance(value, list):
            items = [self.walk(item, f"{path}.{i}" if path else str(i)) for i, item in enumerate(value)]
            return False, [rest for taken, rest in items if not taken]
        if not isinstance(value, dict):
            return False, self.text(value)
        if "datatype" in value and "shape" in value and ("b64" in value or "data" in value):
            dtype = self.datatypes[value["datatype"]]
            self.order.append(path)
            if "b64" in value:
                span = self.span(value["b64"])
                self.pending.append((path, value["b64"] if span is None else span, dtype, value["shape"]))
            else:
                self.tensors[path] = np.asarray(value["data"], dtype).reshape(value["shape"])
            return True, None
        kept = {}
        for key, item in value.items():
            key = self.text(key)
            taken, rest = self.walk(item, f"{path}.{key}" if path else key)
            if not taken:
                kept[key] = rest
        return False, kept


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _decode_into(out: np.ndarray, text: Any) -> int:
    """Decode b64 ``text`` (validated) into ``out``, :data:`DECODE_STEP` characters at a
    time; the number of bytes written."""
    if not isinstance(text, str | memoryview):
        raise ValueError(f"b64 must be a string, got {type(text).__name__}")
    at = 0
    for start in range(0, len(text), DECODE_STEP):
        part = pybase64.b64decode(text[start:start + DECODE_STEP], validate=True)
        if len(part) < DECODE_STEP // 4 * 3 and start + DECODE_STEP < len(text):
            raise ValueError("b64 has padding before its end")  # valid piece by piece, not whole
        out[at:at + len(part)] = np.frombuffer(part, np.uint8)
        at += len(part)
    return at
