"""The SQLite buffer beside the memory buffer, in one run: caller cost, delivery, disk.

Usage: .venv/bin/python benchmarks/buffer.py [--quick] [--repeat N]

It starts the counting sink (``sink.py``) and runs, for each repeat, every scenario
once with ``buffer="memory"`` and once with ``buffer="sqlite:PATH"`` (a fresh file in a
temporary directory), alternating which goes first, each in a fresh process so that no
run inherits another's threads or files. It prints the medians over repeats, the ratios
sqlite/memory, and the bytes on disk per small event; it judges nothing and writes no
results file.

Scenarios (same call as ``scenarios.py``: ``track_by_logging`` through the handler):

* ``caller``: 1,000 warm-up calls, then 20,000 (2,000 quick) timed one by one; the
  sender (and with sqlite the writer) thread runs meanwhile, as in production.
* ``loop``: 100,000 calls (10,000 quick) as fast as possible, then ``flush``; delivered
  events/s = delivered / (first call to everything delivered), and while the calls run
  = delivered by the last call / the calls' time (a sender starved by the loop shows
  here first).
* ``disk`` (sqlite only): 10,000 events with the host unreachable, so all stay in the
  file; bytes of the database and WAL files per event, and SQLite's used pages per
  event, beside the payload's own size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
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
from scenarios import (  # noqa: E402
    FLUSH_TIMEOUT_CDP,
    buffer_caller,
    closed_port_url,
    make_cdp,
    sink_count,
    track_by_logging,
)

CHILD_TIMEOUT = 300.0
DISK_EVENTS = 10_000


def caller(buffer: str, sink: str, quick: bool) -> dict[str, Any]:
    return buffer_caller(buffer, sink, 2_000 if quick else 20_000)


def loop(buffer: str, sink: str, quick: bool) -> dict[str, Any]:
    log, handler = make_cdp(sink, buffer=buffer)
    calls = 10_000 if quick else 100_000
    before = sink_count(sink)
    started = time.perf_counter()
    for _ in range(calls):
        track_by_logging(log)
    called = time.perf_counter()
    during = handler.client.stats()["delivered"]
    flushed = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
    done = time.perf_counter()
    delivered = sink_count(sink) - before
    return {
        "delivered": delivered,
        "dropped": handler.client.stats()["dropped"],
        "flushed": flushed,
        "calls_per_s": calls / (called - started),
        "delivered_per_s": delivered / (done - started),
        "delivered_during_per_s": during / (called - started),
    }


def disk(buffer: str) -> dict[str, Any]:
    path = buffer[len("sqlite:") :]
    log, handler = make_cdp(
        closed_port_url(), buffer=buffer, max_retries=1_000_000, shutdown_timeout=0.1
    )
    queue = handler.client.buffer
    for _ in range(DISK_EVENTS):
        track_by_logging(log)
    deadline = time.monotonic() + 30
    while queue.rows() < DISK_EVENTS and time.monotonic() < deadline:
        time.sleep(0.05)  # a measurement, not a test: poll the file until it holds all
    queue._measure()
    with contextlib.closing(sqlite3.connect(path)) as reader:
        payload = reader.execute("SELECT avg(length(data)) FROM messages").fetchone()[0]
    files = sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    return {
        "events": queue.rows(),
        "file_bytes_per_event": os.path.getsize(path) / DISK_EVENTS,
        "files_with_wal_bytes_per_event": files / DISK_EVENTS,
        "used_page_bytes_per_event": queue._bound.used / DISK_EVENTS,
        "payload_bytes_per_event": payload,
    }


def child(scenario: str, buffer: str, sink: str, quick: bool) -> None:
    if scenario == "caller":
        result = caller(buffer, sink, quick)
    elif scenario == "loop":
        result = loop(buffer, sink, quick)
    else:
        result = disk(buffer)
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # the disk scenario's host is unreachable: skip exit delivery


def run_child(scenario: str, buffer: str, sink: str, quick: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", scenario, buffer, sink]
    if quick:
        command.append("--quick")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{scenario} {buffer} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "BUFFER", "SINK"))
    args = parser.parse_args()
    if args.child:
        scenario, buffer, url = args.child
        child(scenario, buffer, url, args.quick)
        return
    sink = Sink(cpu=None)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeat):
                kinds = ["memory", "sqlite"] if repeat % 2 == 0 else ["sqlite", "memory"]
                for scenario in ("caller", "loop"):
                    for kind in kinds:
                        buffer = (
                            "memory" if kind == "memory" else f"sqlite:{tmp}/{scenario}{repeat}.db"
                        )
                        result = run_child(scenario, buffer, sink.url, args.quick)
                        results.setdefault(scenario, {}).setdefault(kind, []).append(result)
                result = run_child("disk", f"sqlite:{tmp}/disk{repeat}.db", sink.url, args.quick)
                results.setdefault("disk", {}).setdefault("sqlite", []).append(result)
                print(f"repeat {repeat + 1} of {args.repeat} done", file=sys.stderr)
    finally:
        sink.stop()
    report(results)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs)


def report(results: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    caller, loop, disk = results["caller"], results["loop"], results["disk"]["sqlite"]
    rows = [
        ("caller median (us)", "caller", "median_us", "{:.2f}"),
        ("caller p99 (us)", "caller", "p99_us", "{:.2f}"),
        ("loop: delivered events/s", "loop", "delivered_per_s", "{:,.0f}"),
        ("loop: delivered events/s while calling", "loop", "delivered_during_per_s", "{:,.0f}"),
        ("loop: calls/s while calling", "loop", "calls_per_s", "{:,.0f}"),
        ("loop: dropped", "loop", "dropped", "{:,.0f}"),
    ]
    print("| metric | memory | sqlite | sqlite/memory |")
    print("|---|---:|---:|---:|")
    for label, scenario, key, form in rows:
        memory = _median(results[scenario]["memory"], key)
        sqlite = _median(results[scenario]["sqlite"], key)
        ratio = f"{sqlite / memory:.2f}x" if memory else "-"
        print(f"| {label} | {form.format(memory)} | {form.format(sqlite)} | {ratio} |")
    for key in (
        "file_bytes_per_event",
        "files_with_wal_bytes_per_event",
        "used_page_bytes_per_event",
    ):
        print(f"| disk: {key.replace('_', ' ')} | - | {_median(disk, key):,.0f} | - |")
    payload = [run["payload_bytes_per_event"] for run in disk if run["payload_bytes_per_event"]]
    if payload:
        print(f"| disk: payload bytes per event | - | {statistics.median(payload):,.0f} | - |")
    per_repeat = [
        (s["median_us"] / m["median_us"], s2["delivered_per_s"] / m2["delivered_per_s"])
        for s, m, s2, m2 in zip(
            caller["sqlite"], caller["memory"], loop["sqlite"], loop["memory"], strict=True
        )
    ]
    cost = _median(caller["sqlite"], "median_us") / _median(caller["memory"], "median_us")
    rate = _median(loop["sqlite"], "delivered_per_s") / _median(loop["memory"], "delivered_per_s")
    print()
    print(f"caller median sqlite/memory: {cost:.3f}")
    print(f"delivered events/s sqlite/memory: {rate:.2f}")
    during = _median(loop["sqlite"], "delivered_during_per_s") / _median(
        loop["memory"], "delivered_during_per_s"
    )
    print(f"delivered events/s while calling sqlite/memory: {during:.2f}")
    print(
        "per repeat (caller ratio, delivery ratio):",
        [(round(a, 3), round(b, 2)) for a, b in per_repeat],
    )


if __name__ == "__main__":
    main()
