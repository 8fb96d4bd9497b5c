"""The fleet buffer: the caller's cost with the Redis buffer beside the memory buffer, and
a relay's delivered events/s, against the counting sink and a local redis-server.

Usage: .venv/bin/python benchmarks/fleet.py [--quick] [--repeat N]
       (needs redis-server on the PATH and the redis extra, which the dev venv has)

Each measurement runs in a fresh process, as in ``run.py``, with the memory and the Redis
buffer interleaved in each repeat so that the machine's drift hits both alike:

* ``caller``: the same ``log.info("track", extra={"cdp": ...})`` call as ``run.py``'s
  caller scenario, each call timed alone (median and p99), with the sender running. With
  the Redis buffer the sender adds batches to the stream (no relay runs meanwhile); with
  the memory buffer it POSTs them to the sink.
* ``relay``: the stream is filled with N messages first (by an app process, untimed);
  then one ``cdp-logging relay`` process delivers them to the sink, timed from its start
  line to the sink's count reaching N. Events/s = N / that time.

It prints a table; it writes no result file (figures go in benchmarks/README.md by hand).
Every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import Sink  # noqa: E402
from scenarios import WRITE_KEY, buffer_caller, make_cdp, track_by_logging  # noqa: E402

STREAM = "bench"
BOUND = 10_000_000  # far above any run: the bound is not what is measured
RELAY_TIMEOUT = 300.0


def caller(buffer: str, sink: str, calls: int) -> dict[str, Any]:
    return buffer_caller(buffer, sink, calls)


def fill(buffer: str, sink: str, count: int) -> dict[str, Any]:
    log, handler = make_cdp(sink, buffer=buffer, max_queue_size=count + 1)
    for _ in range(count):
        track_by_logging(log)
    return {"flushed": handler.client.flush(timeout=120), **handler.client.stats()}


def child(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *arguments],
        capture_output=True,
        text=True,
        timeout=RELAY_TIMEOUT,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


class Redis:
    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on the PATH (apt-get install redis-server)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self._process = subprocess.Popen(
            [*command, "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        import redis

        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:  # bounded: until it answers
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)


def relay_rate(sink: Sink, buffer: str, count: int) -> dict[str, Any]:
    filled = child("fill", buffer, sink.url, str(count))
    sink.reset()
    relay = subprocess.Popen(
        [sys.executable, "-m", "cdp_logging", "relay", "--buffer", buffer, "--host", sink.url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CDP_WRITE_KEY": WRITE_KEY},
    )
    try:
        assert relay.stdout is not None
        relay.stdout.readline()  # its start line
        started = time.perf_counter()
        deadline = time.monotonic() + RELAY_TIMEOUT
        while sink.count()["count"] < count:  # bounded by the deadline
            if time.monotonic() > deadline:
                raise SystemExit("the relay did not deliver in time")
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    finally:
        relay.terminate()
        relay.wait(30)
    return {"events_per_s": count / seconds, "seconds": seconds, "filled": filled["delivered"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None)
    args, rest = parser.parse_known_args()
    if rest:
        mode = rest[0]
        if mode == "caller":
            print(json.dumps(caller(rest[1], rest[2], int(rest[3]))))
        elif mode == "fill":
            print(json.dumps(fill(rest[1], rest[2], int(rest[3]))))
        return
    repeats = args.repeat or (1 if args.quick else 5)
    calls = 2_000 if args.quick else 20_000
    relayed = 10_000 if args.quick else 100_000
    sink = Sink(None)
    with tempfile.TemporaryDirectory() as directory:
        server = Redis(directory)
        buffer = f"redis://127.0.0.1:{server.port}/0?stream={STREAM}&max_len={BOUND}"
        results: dict[str, list[dict[str, Any]]] = {"memory": [], "redis": [], "relay": []}
        try:
            for _ in range(repeats):
                for name, value in (("memory", "memory"), ("redis", buffer)):
                    server.client.delete(STREAM)
                    results[name].append(child("caller", value, sink.url, str(calls)))
                server.client.delete(STREAM)
                results["relay"].append(relay_rate(sink, buffer, relayed))
        finally:
            server.stop()
            sink.stop()

    def median(name: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in results[name])

    print(f"{repeats} repeat(s), {calls:,} timed calls each, {relayed:,} messages relayed")
    print("| buffer | caller median | caller p99 | dropped |")
    print("|---|---:|---:|---:|")
    for name in ("memory", "redis"):
        dropped = sum(int(r["dropped"]) for r in results[name])
        print(
            f"| {name} | {median(name, 'median_us'):.2f} µs | {median(name, 'p99_us'):.2f} µs "
            f"| {dropped} |"
        )
    each = ", ".join(f"{r['events_per_s']:,.0f}" for r in results["relay"])
    print(f"relay to the sink: {median('relay', 'events_per_s'):,.0f} events/s (each: {each})")


if __name__ == "__main__":
    main()
