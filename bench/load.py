"""Load and fault run against ``python -m service`` on loopback: bounded, stops by itself.

    python -m bench.load                     # defaults: 3000 small requests, 32 large bodies
    python -m bench.load --small 500 --large 8

Starts one server (default settings, one worker, ``127.0.0.1`` and a free port), then:

1. **small** — the seed request (``L1(0.1)`` on ``ones((2,2,4))*3``) ``--small`` times
   over 32 connections: requests/s and latency p50/p99;
2. **large** — ``--large`` concurrent requests with a maximum-size body (just under
   ``PENALTY_MAX_BODY_BYTES`` of JSON numbers, L1 with its gradient), each sent once:
   how many were answered 200, 503 (admission control), or anything else (must be 0);
   the peak RSS (``VmHWM``) of the worker and of each pool process, their sum against
   the documented bound (``service.budget.worker_memory_bound``); ``/healthz`` latency
   p50/p99, probed every 20 ms by a separate process on its own connection meanwhile.

Traffic goes to 127.0.0.1 only; every phase has a deadline (``--seconds``), after which
the run stops and reports what it has.  Prints one JSON object (and a table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from service.budget import worker_memory_bound
from service.config import Settings
from tests.deploy.server import clean_env, free_port

ROOT = Path(__file__).resolve().parents[1]
SEED = json.dumps({"tensor": [[[3, 3, 3, 3], [3, 3, 3, 3]], [[3, 3, 3, 3], [3, 3, 3, 3]]],
                   "regularizer": {"type": "l1", "l1": 0.1}}).encode()
HEADERS = {"Content-Type": "application/json"}
#: Variables passed to the server besides PENALTY_* (PYTHONASYNCIODEBUG logs slow callbacks).
PASSED = ("OPENBLAS_NUM_THREADS", "PYTHONASYNCIODEBUG")


def rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def children(pid: int) -> list[int]:
    """The server's child processes (the offload pool)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def max_body(limit: int) -> bytes:
    """A penalty request of JSON numbers, as close under ``limit`` bytes as 10-byte numbers allow."""
    head, tail = b'{"tensor": [', b'], "regularizer": {"type": "l1", "l1": 0.01}}'
    number = b"0.1234567,"
    count = (limit - len(head) - len(tail)) // len(number)
    body = head + number * count
    return body[:-1] + tail


async def small_phase(base: str, count: int, connections: int, deadline: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(count))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for _ in queue:
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                response = await client.post("/v1/penalty", content=SEED, headers=HEADERS)
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return {"requests": len(latencies), "connections": connections, "req_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 0.5) * 1e3, 2), "p99_ms": round(percentile(latencies, 0.99) * 1e3, 2),
            "statuses": statuses}


def probe(base: str, stop: Any, results: Any, deadline: float) -> None:
    """GET /healthz every 20 ms on one keep-alive connection until ``stop``; the latencies."""
    latencies: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            start = time.perf_counter()
            client.get("/healthz")
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    results.put(latencies)


def probe_at_rest(base: str, seconds: float) -> dict[str, Any]:
    """/healthz p50/p99 with nothing else running: what the machine itself adds."""
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    prober = context.Process(target=probe, args=(base, stop, results, time.monotonic() + seconds))
    prober.start()
    latencies = results.get(timeout=seconds + 60)
    prober.join(timeout=30)
    return {"probes": len(latencies), "p50_ms": round(percentile(latencies, 0.5) * 1e3, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1e3, 2)}


async def large_phase(base: str, pid: int, count: int, body_limit: int, deadline: float) -> dict[str, Any]:
    body = max_body(body_limit)
    statuses: dict[int | str, int] = {}
    probes: list[float] = []
    rss_samples: list[int] = []
    done = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> None:
        try:
            response = await client.post("/v1/penalty", content=body, headers=HEADERS)
            code: int | str = response.status_code
        except httpx.HTTPError as exc:
            code = type(exc).__name__  # a transport error counts as a failure
        statuses[code] = statuses.get(code, 0) + 1


    async def sample() -> None:
        while not done.is_set():
            rss_samples.append(rss(pid, "VmRSS"))
            await asyncio.sleep(0.01)

    limits = httpx.Limits(max_connections=count + 1)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(300)) as client:
        # The prober is its own process: this one is busy sending the bodies, and its own
        # delays must not be counted as the server's.
        stop = multiprocessing.get_context("spawn").Event()
        results = multiprocessing.get_context("spawn").Queue()
        prober = multiprocessing.get_context("spawn").Process(target=probe, args=(base, stop, results, deadline))
        prober.start()
        watchers = [asyncio.create_task(sample())]
        start = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(one(client) for _ in range(count))),
                                   max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            statuses[0] = count - sum(statuses.values())  # unanswered by the deadline
        elapsed = time.perf_counter() - start
        done.set()
        stop.set()
        probes.extend(results.get(timeout=60))
        prober.join(timeout=30)
        await asyncio.gather(*watchers)
    return {"bodies": count, "body_bytes": len(body), "elapsed_s": round(elapsed, 2), "statuses": statuses,
            "ok_200": statuses.get(200, 0), "overloaded_503": statuses.get(503, 0),
            "other_non_2xx": sum(n for code, n in statuses.items() if code not in (200, 503)),
            "healthz_probes": len(probes), "healthz_p50_ms": round(percentile(probes, 0.5) * 1e3, 2),
            "healthz_p99_ms": round(percentile(probes, 0.99) * 1e3, 2),
            "healthz_max_ms": round(max(probes, default=float("nan")) * 1e3, 2),
            "peak_sampled_rss_mib": round(max(rss_samples, default=0) / 2**20, 1)}


def start_server(env: dict[str, str], logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    out = (logs / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--log-level",
                             env.get("PENALTY_LOG_LEVEL", "warning")],
                            cwd=logs, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env=clean_env({"PYTHONPATH": str(ROOT), **env}))
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError((logs / "server.log").read_text())
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).close()
            return proc, base
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=3000, help="small requests (default 3000)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--large", type=int, default=32, help="concurrent maximum-size bodies (default 32)")
    parser.add_argument("--seconds", type=float, default=240, help="deadline of each phase (default 240)")
    args = parser.parse_args()

    settings = Settings()  # the environment's, as the server reads them
    env = {k: v for k, v in os.environ.items() if k.startswith("PENALTY_") or k in PASSED}
    with tempfile.TemporaryDirectory() as logs:
        proc, base = start_server(env, Path(logs))
        log_copy = os.environ.get("BENCH_SERVER_LOG")
        try:
            asyncio.run(small_phase(base, 200, args.connections, time.monotonic() + 30))  # warm-up
            at_rest = rss(proc.pid, "VmRSS")
            resting = probe_at_rest(base, 5.0)
            small = asyncio.run(small_phase(base, args.small, args.connections, time.monotonic() + args.seconds))
            large = asyncio.run(large_phase(base, proc.pid, args.large, settings.max_body_bytes,
                                            time.monotonic() + args.seconds))
            peak = rss(proc.pid, "VmHWM")
            pool_peaks = [rss(child, "VmHWM") for child in children(proc.pid)]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if log_copy:  # BENCH_SERVER_LOG=path keeps the server's log
                Path(log_copy).write_text((Path(logs) / "server.log").read_text())
    bound = worker_memory_bound(settings, at_rest)
    total = peak + sum(pool_peaks)  # each its own peak: more than they ever held at once
    report = {
        "healthz_at_rest": resting, "small": small, "large": large,
        "memory": {"rss_at_rest_mib": round(at_rest / 2**20, 1), "worker_peak_rss_mib": round(peak / 2**20, 1),
                   "pool_peak_rss_mib": [round(p / 2**20, 1) for p in pool_peaks],
                   "total_peak_rss_mib": round(total / 2**20, 1),
                   "documented_bound_mib": round(bound / 2**20, 1), "within_bound": total <= bound},
    }
    print(json.dumps(report, indent=2))
    print(f"\n/healthz at rest: p50 {resting['p50_ms']} ms, p99 {resting['p99_ms']} ms ({resting['probes']} probes)")
    print(f"small: {small['req_per_s']} req/s, p50 {small['p50_ms']} ms, p99 {small['p99_ms']} ms "
          f"({small['requests']} requests, {small['connections']} connections, statuses {small['statuses']})")
    print(f"large: {large['bodies']} × {large['body_bytes']} B: {large['ok_200']} × 200, "
          f"{large['overloaded_503']} × 503, {large['other_non_2xx']} other; /healthz p99 "
          f"{large['healthz_p99_ms']} ms (max {large['healthz_max_ms']} ms, {large['healthz_probes']} probes)")
    memory = report["memory"]
    print(f"memory: at rest {memory['rss_at_rest_mib']} MiB; peaks: worker {memory['worker_peak_rss_mib']} MiB, "
          f"pool {memory['pool_peak_rss_mib']} MiB, sum {memory['total_peak_rss_mib']} MiB; bound "
          f"{memory['documented_bound_mib']} MiB -> {'within' if memory['within_bound'] else 'OVER'}")


if __name__ == "__main__":
    main()
