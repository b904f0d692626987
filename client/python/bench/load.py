"""The Python load client of scripts/bench-langs.sh (client/python/run-bench.sh runs it).

Unary ``Calculate(ADD, i, 1)`` calls (i cycling through 0-99, as calc-bench's) over one raw TCP
connection (calc_client's asyncio ``TcpChannel`` to one address) or one gRPC channel
(``GrpcClient``, grpc.aio: one HTTP/2 connection), with N asyncio tasks each keeping one call
outstanding, every answer checked. It warms up, measures, and prints one line of JSON on stdout::

    {"lang": "python", "transport": "tcp", "concurrency": 8, "calls": 51234, "errors": 0,
     "seconds": 5.0, "calls_per_sec": 10246.8, "p50_us": 702.1, "p99_us": 1630.2}

Exit status 0 when calls were made and none failed, 1 otherwise (the JSON line is printed either
way), 2 for a usage error. Not part of the calc_client package.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time

from calc_client import CalcError, GrpcClient, TcpChannel
from calc_client.pb import OPERATOR_ADD, CalculateRequest

GRACE = 5.0  # seconds outstanding calls are waited for after the measured window
MAX_SAMPLES = 2_000_000  # latency samples kept (a uniform reservoir past it)


class Load:
    """The shared counters of one run (one event loop: no locks)."""

    def __init__(self, measure_start: float, measure_end: float) -> None:
        self.measure_start = measure_start
        self.measure_end = measure_end
        self.calls = 0
        self.errors = 0
        self.first_error: str | None = None
        self.samples: list[float] = []
        self.offered = 0

    def error(self, why: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = why

    def record(self, seconds: float) -> None:
        self.offered += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(seconds)
            return
        j = random.randrange(self.offered)
        if j < MAX_SAMPLES:
            self.samples[j] = seconds


async def caller(load: Load, call) -> None:
    """One caller: one call outstanding at a time until the measured window ends."""
    seq = 0
    now = time.perf_counter()
    while now < load.measure_end:
        lhs = seq % 100  # as calc-bench: 0-99, so every request has the same size
        seq += 1
        sent = now
        try:
            resp = await call(CalculateRequest(operator=OPERATOR_ADD, lhs=lhs, rhs=1))
        except CalcError as e:
            now = time.perf_counter()
            load.error(f"{e.code.name}: {e.message}")
            continue
        now = time.perf_counter()
        if resp.result != lhs + 1:
            load.error(f"wrong answer to {lhs} + 1: {resp.result}")
            continue
        if load.measure_start <= now <= load.measure_end:
            load.calls += 1
            load.record(now - sent)


def percentile(sorted_samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) in microseconds; 0 without samples."""
    if not sorted_samples:
        return 0.0
    i = math.ceil(p / 100 * len(sorted_samples)) - 1
    return sorted_samples[max(0, min(len(sorted_samples) - 1, i))] * 1e6


async def run(transport: str, addr: str, concurrency: int, duration: float, warmup: float) -> dict:
    if transport == "tcp":
        client = TcpChannel(addr)  # one address: one connection
    else:
        client = GrpcClient(addr)  # one grpc.aio channel: one HTTP/2 connection
    try:
        # As calc-bench does, the connection is opened and used once before the warm-up starts.
        try:
            r = await client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=1, rhs=1), timeout=30)
            first_error = None if r.result == 2 else f"wrong answer to 1 + 1: {r.result}"
        except CalcError as e:
            first_error = f"first call: {e.code.name}: {e.message}"
        if first_error is not None:
            return {"lang": "python", "transport": transport, "concurrency": concurrency, "calls": 0, "errors": 1,
                    "seconds": 0, "calls_per_sec": 0, "p50_us": 0, "p99_us": 0, "first_error": first_error}
        start = time.perf_counter()
        load = Load(start + warmup, start + warmup + duration)
        tasks = [asyncio.create_task(caller(load, client.calculate)) for _ in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, load.measure_end + GRACE - time.perf_counter()))
        for t in pending:
            t.cancel()
            load.error(f"{len(pending)} calls unanswered {GRACE:.0f} s after the measured window")
        for t in done:
            if t.exception() is not None:  # not a CalcError: a bug here or in the client
                load.error(f"{type(t.exception()).__name__}: {t.exception()}")
        if pending:
            await asyncio.wait(pending, timeout=1)
    finally:
        await client.close()
    load.samples.sort()
    out = {
        "lang": "python",
        "transport": transport,
        "concurrency": concurrency,
        "calls": load.calls,
        "errors": load.errors,
        "seconds": round(duration, 3),
        "calls_per_sec": round(load.calls / duration, 1),
        "p50_us": round(percentile(load.samples, 50), 1),
        "p99_us": round(percentile(load.samples, 99), 1),
    }
    if load.first_error is not None:
        out["first_error"] = load.first_error
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="calc's Python load client (scripts/bench-langs.sh)")
    ap.add_argument("--transport", choices=["tcp", "grpc"], required=True)
    ap.add_argument("--addr", required=True, help="HOST:PORT")
    ap.add_argument("--concurrency", type=int, required=True, help="calls outstanding at all times")
    ap.add_argument("--duration", type=float, required=True, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    a = ap.parse_args()
    if a.concurrency < 1 or not a.duration > 0 or not a.warmup >= 0:
        ap.error("--concurrency must be >= 1, --duration > 0 and --warmup >= 0")
    out = asyncio.run(run(a.transport, a.addr, a.concurrency, a.duration, a.warmup))
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0 if out["errors"] == 0 and out["calls"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
