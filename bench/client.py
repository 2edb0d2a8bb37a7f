"""The thin client's side of a Dense call (bench.transport's Dense job, every term):

    .venv/bin/python -m bench.client [--repeats 30]

1. **Transports**, interleaved medians against one live service: the thin client over
   safetensors on its own transport (``service.client.transport``) as ``Client(base)`` uses
   it (POSTs past ``httpx.Client``'s per-request machinery), the same transport under an
   ``httpx.Client`` (``http=http_client(base)``), httpx's own transport
   (``httpx.HTTPTransport``), and a raw-socket client sending the same request bytes and
   reading the answer into one buffer (no parsing: the floor for a client).
2. **Each client alone** in a fresh interpreter (``getrusage`` around each call, medians):
   fresh pages (``ru_minflt``), ms and CPU time (user and system) per call, for
   ``Client(base)`` over safetensors and JSON+b64, with glibc's malloc defaults and with
   ``service.runtime.keep_freed_memory`` in the client's process, for the same client on an
   ``httpx.Client`` (``http=http_client(base)``), and for the raw socket client.
3. **b64 decoding** of the Dense answer's gradients in process: pybase64's validating
   decoder against its default one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from typing import Any

import httpx
import numpy as np
import orjson
import pybase64

from bench.common import ROOT, live_service, medians_ms
from bench.transport import REGS, dense_job
from service.client import _NAMES, Client, _little, http_client, jsonbody
from service.wire import safetensors


def dense_body(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    return {"inputs": x, "kernel": k, "bias": b, "activation": "relu", **REGS, "activity_normalization": "batch"}


def dense_request(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> bytes:
    """The Dense job's request (every term) as safetensors bytes, as the thin client sends it."""
    tensors, rest = safetensors.flatten({**dense_body(x, k, b), "return_gradients": True})
    return b"".join(bytes(p) for p in safetensors.parts(tensors, {"json": orjson.dumps(rest).decode()}))


def raw_client(base: str, body: bytes) -> Any:
    """One keep-alive socket: send the head and the body, read the answer into one buffer."""
    host, port = base.rsplit("/", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = (f"POST /v1/dense HTTP/1.1\r\nHost: {host}\r\nContent-Type: {safetensors.MEDIA_TYPE}\r\n"
            f"Accept: {safetensors.MEDIA_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n").encode()

    def call() -> None:
        sock.sendall(head)
        sock.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        answer_head, _, rest = data.partition(b"\r\n\r\n")
        length = int(answer_head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        buffer = bytearray(length)
        view, got = memoryview(buffer), len(rest)
        view[:got] = rest
        while got < length:
            got += sock.recv_into(view[got:])

    return call


CHILD = r"""
import resource, statistics, sys, time
from service import runtime
from service.client import Client, http_client
from bench.client import dense_request, raw_client
from bench.transport import REGS, dense_job
base, form, keep, client = sys.argv[1], sys.argv[2], sys.argv[3] == "keep", sys.argv[5]
if keep:
    runtime.keep_freed_memory(64 << 20)
x, k, b = dense_job()
if client == "raw socket":
    call = raw_client(base, dense_request(x, k, b))
else:
    c = Client(base, format=form) if client == "Client(base)" else Client(format=form, http=http_client(base))
    call = lambda: c.dense(x, k, b, activation="relu", **REGS)
faults, ms, cpu = [], [], []
for _ in range(int(sys.argv[4])):
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    r = call()
    ms.append((time.perf_counter() - start) * 1e3)
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults.append(after.ru_minflt - before.ru_minflt)
    cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3)
    del r
print(statistics.median(faults[3:]), statistics.median(ms[3:]), statistics.median(cpu[3:]))
"""

#: Section 2's rows: (format, client's malloc, client).
ALONE = [("safetensors", "default", "Client(base)"), ("safetensors", "keep", "Client(base)"),
         ("safetensors", "default", "Client(http=http_client(base))"), ("safetensors", "default", "raw socket"),
         ("json", "default", "Client(base)"), ("json", "keep", "Client(base)")]


def alone(base: str, form: str, keep: str, client: str, calls: int) -> tuple[float, float, float]:
    """(median minor faults, ms and CPU ms per call) of one client in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHILD, base, form, keep, str(calls), client], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    x, k, b = dense_job()
    body = dense_body(x, k, b)
    request = dense_request(x, k, b)

    with live_service({"PENALTY_BLAS_THREADS": "1"}) as base:
        own = Client(base)
        through_httpx = Client(format="safetensors", http=http_client(base))
        httpx_transport = Client(format="safetensors", http=httpx.Client(base_url=base, timeout=120))
        contenders = {
            "thin client, safetensors, its own transport (direct)": lambda: own.dense(x, k, b, activation="relu", **REGS),
            "thin client, safetensors, its own transport under httpx.Client": lambda: through_httpx.dense(
                x, k, b, activation="relu", **REGS),
            "thin client, safetensors, httpx's transport": lambda: httpx_transport.dense(x, k, b, activation="relu",
                                                                                          **REGS),
            "raw socket, same request bytes, answer into one buffer": raw_client(base, request),
        }
        transports = medians_ms(contenders, args.repeats)
        with Client(base, format="json") as c:
            request = bytes(jsonbody.encode({**_little(body), "encoding": "b64"}, _NAMES, jsonbody.Buffers()))
            answer = c.http.post("/v1/dense", content=request, headers={"Content-Type": "application/json"}).content
        pages = {row: alone(base, *row, args.repeats) for row in ALONE}

    strings = []
    def collect(value: Any) -> None:
        if isinstance(value, dict):
            if "b64" in value:
                strings.append(value["b64"])
            for item in value.values():
                collect(item)
    collect(json.loads(answer))
    decoding = medians_ms({
        "pybase64.b64decode(s, validate=True)": lambda: [pybase64.b64decode(s, validate=True) for s in strings],
        "pybase64.b64decode(s)": lambda: [pybase64.b64decode(s) for s in strings],
    }, args.repeats)

    load = os.getloadavg()[0]
    print(f"bench.client: the Dense job (every term), medians of {args.repeats} interleaved calls; "
          f"load average at the end {load:.1f} on {os.cpu_count()} cores\n")
    print("1. Transports\n\n| client | median ms |\n|---|---:|")
    for name, ms in transports.items():
        print(f"| {name} | {ms:.2f} |")
    print("\n2. Each client alone in a fresh interpreter: fresh pages, time and CPU per call\n")
    print("| format | client | client's malloc | minor faults per call | median ms | CPU ms per call |\n"
          "|---|---|---|---:|---:|---:|")
    for (form, keep, client), (faults, ms, cpu) in pages.items():
        print(f"| {form} | {client} | {'keep_freed_memory(64 MiB)' if keep == 'keep' else 'glibc defaults'} | "
              f"{faults:,.0f} | {ms:.2f} | {cpu:.2f} |")
    total = sum(len(s) for s in strings)
    print(f"\n3. Decoding the answer's {len(strings)} b64 tensors ({total:,} characters)\n")
    print("| decoder | median ms |\n|---|---:|")
    for name, ms in decoding.items():
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
