"""Keras in-process vs the service over HTTP: JSON+b64 and safetensors, side by side.

    .venv/bin/python -m bench.transport [--repeats 15] [--big-repeats 7] [--seconds 4] [--only small]

One run, everything interleaved (each round runs every contender once; medians per
contender; ratios within the run):

1. **Dense job** — ``Dense(512, relu)`` on a (256, 512) float32 batch, kernel L1L2(0.01,
   0.01), bias L2(0.01), activity L1(0.01):
   (a) Keras eager in-process with a persistent ``GradientTape`` — every term's gradient
   wrt kernel, bias and inputs and their totals — and with only the totals (the gradient
   of ``sum(layer.losses)``); run by a worker in the Keras interpreter (``--keras-python``,
   Keras is no dependency of the service) that times each call itself, skipped if absent;
   (b) the core in-process, likewise in a worker interpreter of its own (this one's, with
   the service's BLAS threads and runtime settings, ``service.runtime``) that times each
   call itself, and (b') the same with glibc's malloc defaults (a plain interpreter); (c) the
   service through the thin client (``service.client``) over JSON+b64; (d) over
   safetensors, every term and ``"totals"``.  The clients run in this process, which runs
   nothing else: each in-process contender has a process to itself, as a caller of the
   service would.
2. **4M-element L1 penalty with its gradient**, the same four ways.
3. **Bytes on the wire** and the **loopback floor**: the same request/response sizes
   sent and received over a plain TCP socket to a process that only reads and writes
   (both sides into and out of buffers allocated once).
4. **Small requests**: ``/v1/penalty`` on a 2×2 tensor, requests/s with a raw-socket
   keep-alive HTTP/1.1 client against the service (small bodies inline, the default),
   the service with every request in the threadpool (``PENALTY_INLINE_BODY_BYTES=0``)
   and a bare Starlette echo of the same body on plain uvicorn (the reference: its default
   protocol, httptools, which the service's own protocol subclasses).
5. **BLAS threads**: the core's Dense job with 1 and with 2 BLAS threads (threadpoolctl).
6. **Issue 9's goals**: each goal's ratio in this run, and whether it is met (with Keras).

``--only small`` runs section 4 alone (about 15 s).

The services run as ``python -m service`` with their default BLAS threads (1) unless
``--blas-threads`` is given; the in-process core uses the same number.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import ROOT, Seconds, live_service, medians_ms
from service.client import Client, http_client
from service.config import Settings
from service.core.dense import dense
from tests.deploy.server import clean_env, free_port, serve

BATCH, FEATURES, UNITS = 256, 512, 512
ELEMENTS = 4 * 1024 * 1024
REGS: dict[str, Any] = {
    "kernel_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.01},
    "bias_regularizer": {"type": "l2", "l2": 0.01},
    "activity_regularizer": {"type": "l1", "l1": 0.01},
}
L1 = {"type": "l1", "l1": 0.01}

#: The checkout's root: the Keras interpreter imports bench.keras_dense from it.
REPO = Path(__file__).resolve().parents[1]

def dense_job() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Dense job's inputs, kernel and bias (seed 0), as every contender builds them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
    k = (rng.normal(size=(FEATURES, UNITS)) * 0.05).astype(np.float32)
    b = (rng.normal(size=UNITS) * 0.05).astype(np.float32)
    return x, k, b


#: The inputs every contender uses, for the worker interpreters (the Keras one cannot import
#: this module): the same seeds as :func:`dense_job`.
DATA = r"""
import json, sys, time
import numpy as np
a = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.normal(size=(a["batch"], a["features"])).astype(np.float32)
k = (rng.normal(size=(a["features"], a["units"])) * 0.05).astype(np.float32)
b = (rng.normal(size=a["units"]) * 0.05).astype(np.float32)
big = np.random.default_rng(1).normal(size=a["elements"]).astype(np.float32)
"""

#: Each worker defines ``jobs`` and then runs ``SERVE``.
SERVE = r"""
print(json.dumps({"version": version}), flush=True)
for line in sys.stdin:
    t0 = time.perf_counter(); jobs[line.strip()](); print(time.perf_counter() - t0, flush=True)
"""

KERAS_WORKER = DATA + r"""
import keras, tensorflow as tf
from bench.keras_dense import every_term
version = keras.__version__
R = keras.regularizers
layer = keras.layers.Dense(a["units"], activation="relu", kernel_regularizer=R.L1L2(0.01, 0.01),
                           bias_regularizer=R.L2(0.01), activity_regularizer=R.L1(0.01))
layer.build((None, a["features"])); layer.set_weights([k, b])
l1 = R.L1(0.01)
def dense_terms():
    return every_term(layer, tf.constant(x))  # bench/keras_dense.py
def dense_totals():
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt); total = tf.add_n(layer.losses)
    grads = tape.gradient(total, [layer.kernel, layer.bias, xt])
    return y.numpy(), float(total), [g.numpy() for g in grads]
def penalty():
    v = tf.constant(big)
    with tf.GradientTape() as tape:
        tape.watch(v)
        p = l1(v)
    return float(p), tape.gradient(p, v).numpy()
jobs = {"dense_terms": dense_terms, "dense_totals": dense_totals, "penalty": penalty}
""" + SERVE

CORE_WORKER = DATA + r"""
import os
from threadpoolctl import threadpool_limits
from service import runtime
from service.config import Settings
from service.core import regularizers
from service.core.dense import dense
from bench.transport import REGS, L1
settings = Settings()
threadpool_limits(limits=settings.blas_threads, user_api="blas")
if os.environ.get("BENCH_GLIBC_DEFAULTS") != "1":
    runtime.keep_freed_memory(settings.malloc_keep_bytes)
l1 = regularizers.get(L1)
version = "core"
jobs = {
    "dense_terms": lambda: dense(x, k, b, "relu", **REGS),
    "dense_totals": lambda: dense(x, k, b, "relu", **REGS, return_gradients="totals"),
    "penalty": lambda: (l1.penalty(big), l1.gradient(big)),
}
""" + SERVE

FLOOR_SERVER = r"""
import socket, struct, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept(); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buffers = {}  # one buffer per size, reused: the floor pays no page faults for fresh memory
def buffer(n):
    if n not in buffers: buffers[n] = bytearray(n)
    return buffers[n]
def recv_exactly(n):
    view = memoryview(buffer(n)); got = 0
    while got < n:
        k = conn.recv_into(view[got:])
        if not k: sys.exit(0)
        got += k
    return view
while True:
    n_in, n_out = struct.unpack("<QQ", recv_exactly(16))
    recv_exactly(n_in); conn.sendall(buffer(n_out))
"""


class Worker:
    """An in-process contender's interpreter, kept running; each call times one job inside
    that process (``KERAS_WORKER`` in the Keras interpreter, ``CORE_WORKER`` in this one)."""

    def __init__(self, python: str, script: str, env: Mapping[str, str]) -> None:
        shape = {"batch": BATCH, "features": FEATURES, "units": UNITS, "elements": ELEMENTS}
        self.proc = subprocess.Popen(
            [python, "-c", script, json.dumps(shape)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})
        assert self.proc.stdout is not None
        self.version = json.loads(self.proc.stdout.readline())["version"]

    def run(self, job: str) -> Seconds:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(job + "\n")
        self.proc.stdin.flush()
        return Seconds(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Floor:
    """Send n bytes and receive m bytes over loopback TCP to a process that does nothing else."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffers: dict[int, bytearray] = {}

    def round_trip(self, payload: bytes, n_out: int) -> None:
        self.sock.sendall(len(payload).to_bytes(8, "little") + n_out.to_bytes(8, "little"))
        self.sock.sendall(payload)
        if n_out not in self.buffers:  # reused, as on the other side
            self.buffers[n_out] = bytearray(n_out)
        view, got = memoryview(self.buffers[n_out]), 0
        while got < n_out:
            got += self.sock.recv_into(view[got:])

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=10)


class Sizes:
    """Records the bytes of every request and answer of an httpx client."""

    def __init__(self) -> None:
        self.sent = self.received = 0

    def hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        def request(r: Any) -> None:
            self.sent = int(r.headers["content-length"])

        def response(r: Any) -> None:  # from the header: reading the body here would copy it
            self.received = int(r.headers["content-length"])

        return {"request": [request], "response": [response]}


def clients(base: str) -> tuple[dict[str, Client], dict[str, Client], dict[str, Sizes]]:
    """``(timed, sized, sizes)``: per format, the client the benchmark times, ``Client(base)``
    as a user makes it, and one on an ``httpx.Client`` whose hooks record each request's
    and answer's bytes in ``sizes`` (hooks take httpx's per-request path, not the direct one)."""
    timed, sized, sizes = {}, {}, {}
    for form in ("json", "safetensors"):
        timed[form] = Client(base, format=form)  # type: ignore[arg-type]
        sizes[form] = Sizes()
        sized[form] = Client(format=form, http=http_client(base, event_hooks=sizes[form].hooks()))  # type: ignore[arg-type]
    return timed, sized, sizes


# --------------------------------------------------------------------------- small requests


def http_request(path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def requests_per_second(port: int, request: bytes, seconds: float) -> float:
    """Sequential keep-alive requests over one raw socket for ``seconds``."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count, start = 0, time.perf_counter()
        buffer = b""
        while time.perf_counter() - start < seconds:
            sock.sendall(request)
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:100]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                buffer += sock.recv(65536)
            buffer = buffer[length:]
            count += 1
        return count / (time.perf_counter() - start)


@contextmanager
def echo_service() -> Iterator[int]:
    """The bare echo on plain uvicorn with its default HTTP protocol (httptools)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "bench.echo_app:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with tempfile.TemporaryDirectory() as logs, serve(argv, clean_env({"PYTHONPATH": str(ROOT)}), Path(logs), port):
        yield port


# --------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×"


def small_requests(env: dict[str, str], seconds: float) -> dict[str, float]:
    """Section 4: req/s of each small-request target, medians of interleaved 0.5 s slices."""
    small = json.dumps({"tensor": [[1.0, -2.0], [3.0, 4.0]], "regularizer": L1}).encode()
    with ExitStack() as stack:
        inline = stack.enter_context(live_service(env))
        pooled = stack.enter_context(live_service({**env, "PENALTY_INLINE_BODY_BYTES": "0"}))
        echo_port = stack.enter_context(echo_service())
        targets = {
            "service /v1/penalty (small bodies inline)": (int(inline.rsplit(":", 1)[1]), http_request("/v1/penalty", small)),
            "service /v1/penalty (all in the threadpool)": (int(pooled.rsplit(":", 1)[1]), http_request("/v1/penalty", small)),
            "bare Starlette echo": (echo_port, http_request("/echo", small)),
        }
        slices: dict[str, list[float]] = {name: [] for name in targets}
        for port, request in targets.values():
            requests_per_second(port, request, 0.3)
        for _ in range(max(1, round(seconds / 0.5))):
            for name, (port, request) in targets.items():
                slices[name].append(requests_per_second(port, request, 0.5))
        rps = {name: statistics.median(v) for name, v in slices.items()}
    return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--big-repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=4.0, help="per small-request target")
    parser.add_argument("--blas-threads", type=int, default=None)
    parser.add_argument("--keras-python", default="/work/kerasenv/bin/python")
    parser.add_argument("--only", choices=["small"], help="run only section 4 (small requests)")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    blas = args.blas_threads or Settings().blas_threads
    env = {"PENALTY_BLAS_THREADS": str(blas)}
    if args.only == "small":
        rps = small_requests(env, args.seconds)
        echo = rps["bare Starlette echo"]
        print(SMALL_TITLE.format(slices=max(1, round(args.seconds / 0.5))))
        print("| target | req/s | vs echo |\n|---|---:|---:|")
        for name, value in rps.items():
            print(f"| {name} | {value:,.0f} | {value / echo:.0%} |")
        return
    threadpool_limits(limits=blas, user_api="blas")
    x, k, b = dense_job()
    big = np.random.default_rng(1).normal(size=ELEMENTS).astype(np.float32)

    with ExitStack() as stack:
        keras = None
        if Path(args.keras_python).exists():
            keras = Worker(args.keras_python, KERAS_WORKER, {"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"})
            stack.callback(keras.close)
        else:
            print(f"(Keras skipped: {args.keras_python} not found)")
        core = Worker(sys.executable, CORE_WORKER, env)
        stack.callback(core.close)
        plain = Worker(sys.executable, CORE_WORKER, {**env, "BENCH_GLIBC_DEFAULTS": "1"})
        stack.callback(plain.close)
        base = stack.enter_context(live_service(env))
        via, sized, sizes = clients(base)
        floor = Floor()
        stack.callback(floor.close)

        def service(form: str, selection: Any = True, clients: dict[str, Client] = via) -> Callable[[], None]:
            return lambda: clients[form].dense(x, k, b, activation="relu", **REGS, return_gradients=selection) and None

        dense_runs: dict[str, Callable[[], Any]] = {}
        if keras:
            dense_runs["(a) Keras eager, every term"] = lambda: keras.run("dense_terms")
            dense_runs["(a) Keras eager, totals"] = lambda: keras.run("dense_totals")
        dense_runs |= {
            "(b) core in-process, every term": lambda: core.run("dense_terms"),
            "(b) core in-process, totals": lambda: core.run("dense_totals"),
            "(b') core in-process, glibc's malloc defaults, every term": lambda: plain.run("dense_terms"),
            "(c) service JSON+b64, every term": service("json"),
            "(d) service safetensors, every term": service("safetensors"),
            "(d) service safetensors, totals": service("safetensors", "totals"),
        }
        wire: dict[str, tuple[int, int]] = {}
        for label, form, sel in (("JSON+b64, every term", "json", True), ("safetensors, every term", "safetensors", True),
                                 ("safetensors, totals", "safetensors", "totals")):
            service(form, sel, sized)()
            wire[f"Dense {label}"] = (sizes[form].sent, sizes[form].received)
        floors = {f"floor {name}": (lambda p=bytes(s), n=r: floor.round_trip(p, n)) for name, (s, r) in wire.items()
                  if "safetensors" in name}
        dense_ms = medians_ms({**dense_runs, **floors}, args.repeats)

        big_runs: dict[str, Callable[[], Any]] = {}
        if keras:
            big_runs["(a) Keras eager"] = lambda: keras.run("penalty")
        big_runs |= {
            "(b) core in-process": lambda: core.run("penalty"),
            "(b') core in-process, glibc's malloc defaults": lambda: plain.run("penalty"),
            "(c) service JSON+b64": lambda: via["json"].penalty(big, L1) and None,
            "(d) service safetensors": lambda: via["safetensors"].penalty(big, L1) and None,
        }
        for form, label in (("json", "L1 4M JSON+b64"), ("safetensors", "L1 4M safetensors")):
            sized[form].penalty(big, L1)
            wire[label] = (sizes[form].sent, sizes[form].received)
        s, r = wire["L1 4M safetensors"]
        payload = bytes(s)
        big_runs["floor L1 4M safetensors"] = lambda: floor.round_trip(payload, r)
        big_ms = medians_ms(big_runs, args.big_repeats)

    rps = small_requests(env, args.seconds)

    blas_runs: dict[str, Callable[[], Any]] = {}
    for n in sorted({1, cores}):
        def run(n: int = n) -> None:
            with threadpool_limits(limits=n, user_api="blas"):
                dense(x, k, b, "relu", **REGS)
        blas_runs[f"core Dense job, {n} BLAS thread{'s' if n > 1 else ''}"] = run
    blas_ms = medians_ms(blas_runs, args.repeats)

    report(args, blas, keras.version if keras else None, dense_ms, big_ms, wire, rps, blas_ms)


def report(args: Any, blas: int, keras: str | None, dense_ms: dict[str, float], big_ms: dict[str, float],
           wire: dict[str, tuple[int, int]], rps: dict[str, float], blas_ms: dict[str, float]) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench.transport: {BLAS_NOTE.format(blas=blas)}; load average at the end {load:.1f} "
          f"on {os.cpu_count()} cores; medians of {args.repeats} (Dense) / {args.big_repeats} (4M L1) "
          "interleaved rounds\n")
    print(f"1. Dense({UNITS}, relu) on ({BATCH}, {FEATURES}) float32, kernel L1L2, bias L2, activity L1\n")
    table(dense_ms, "(a) Keras eager, every term" if keras else None)
    if keras:
        print(f"\n   totals: service safetensors / Keras (every term) = "
              f"{ratio(dense_ms['(d) service safetensors, totals'], dense_ms['(a) Keras eager, every term'])}"
              f", / Keras (totals) = "
              f"{ratio(dense_ms['(d) service safetensors, totals'], dense_ms['(a) Keras eager, totals'])}")
    print(f"\n2. L1(0.01) penalty and gradient of {ELEMENTS} float32 elements\n")
    table(big_ms, "(b) core in-process")
    plain = big_ms["(b') core in-process, glibc's malloc defaults"]
    print(f"\n   vs (b'): service safetensors {ratio(big_ms['(d) service safetensors'], plain)}, "
          f"floor {ratio(big_ms['floor L1 4M safetensors'], plain)}")
    print("\n3. Bytes on the wire (request / answer)\n")
    print("| job | request bytes | answer bytes |\n|---|---:|---:|")
    for name, (sent, received) in wire.items():
        print(f"| {name} | {sent:,} | {received:,} |")
    print("\n" + SMALL_TITLE.format(slices=max(1, round(args.seconds / 0.5))))
    echo = rps["bare Starlette echo"]
    print("| target | req/s | vs echo |\n|---|---:|---:|")
    for name, value in rps.items():
        print(f"| {name} | {value:,.0f} | {value / echo:.0%} |")
    print("\n5. BLAS threads (in process)\n")
    table(blas_ms, None)
    if keras:
        print("\n6. Issue 9's goals in this run\n")
        print("| goal | this run | met |\n|---|---:|---|")
        for goal, value, limit, fmt in goals(dense_ms, big_ms, rps):
            met = value >= limit if fmt == "%" else value <= limit
            shown = f"{value:.0%}" if fmt == "%" else f"{value:.2f}×"
            print(f"| {goal} | {shown} | {'yes' if met else 'no'} |")


def goals(dense_ms: dict[str, float], big_ms: dict[str, float],
          rps: dict[str, float]) -> list[tuple[str, float, float, str]]:
    """(goal, this run's ratio, limit, "×" for at most / "%" for at least)."""
    keras = dense_ms["(a) Keras eager, every term"]
    return [
        ("Dense over safetensors ≤ 0.8× Keras (every term)", dense_ms["(d) service safetensors, every term"] / keras,
         0.8, "×"),
        ('the same with "totals" ≤ 0.6×', dense_ms["(d) service safetensors, totals"] / keras, 0.6, "×"),
        ("JSON+b64 through the thin client ≤ 1.5×", dense_ms["(c) service JSON+b64, every term"] / keras, 1.5, "×"),
        ("4M L1 over safetensors ≤ 5× the core in process",
         big_ms["(d) service safetensors"] / big_ms["(b) core in-process"], 5.0, "×"),
        ("small /v1/penalty ≥ 40% of the bare echo",
         rps["service /v1/penalty (small bodies inline)"] / rps["bare Starlette echo"], 0.4, "%"),
    ]


SMALL_TITLE = ("4. Small requests: /v1/penalty on a 2×2 tensor, raw-socket keep-alive client, "
               "median of {slices} interleaved 0.5 s slices\n")
BLAS_NOTE = "services and the in-process core with {blas} BLAS thread(s)"


def table(ms: dict[str, float], reference: str | None) -> None:
    print("| contender | median ms |" + (f" vs {reference} |" if reference else "") + "\n|---|---:|"
          + ("---:|" if reference else ""))
    for name, value in ms.items():
        extra = f" {ratio(value, ms[reference])} |" if reference else ""
        print(f"| {name} | {value:.2f} |{extra}")


if __name__ == "__main__":
    main()
