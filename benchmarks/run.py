"""Run the benchmark: cdp_logging beside segment-analytics-python and the logging floor.

Usage: python3 scripts/bench.py [--quick]   (creates .venv-bench, then runs this file)
   or: .venv-bench/bin/python benchmarks/run.py [--quick] [--repeat N] [--pin both|auto|none]
                                                [--scenarios caller,loop]

It starts the counting sink (``sink.py``) as a separate process on 127.0.0.1, then runs
every scenario for every library in a fresh process (``scenarios.py``), so that no
scenario inherits another's threads, queues or retries. The whole plan is repeated
(5 times by default, interleaved) because single processes on a small VM differ by tens
of percent. It prints one table with the median of each metric for each library, the
ratios cdp/segment and cdp/floor, whether each target is met (on the medians, and in how
many repeats), the per-repeat values the targets rest on, and anything odd it saw. A full
run does all of that twice, with the processes pinned to CPUs and unpinned, because the
placement changes how each SDK's sender thread and the caller share the GIL (see
``placement``). It writes every raw number to ``benchmarks/results.json``
(``results-quick.json`` for ``--quick``, so a smoke run never overwrites a full run's).

This is a measurement, not a test: it never fails on a missed target (CI does not run
it), and every wait in it is bounded so that it cannot hang.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SINK = HERE / "sink.py"
SCENARIOS = HERE / "scenarios.py"

# Which libraries each scenario applies to, in the order they run.
PLAN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("caller", ("cdp", "segment", "floor")),
    ("loop", ("cdp", "segment")),
    ("exit", ("cdp", "segment", "floor")),
    ("exit_held", ("cdp", "segment", "floor")),
    ("exit_flush", ("cdp", "segment")),
    ("memory", ("cdp", "segment")),
)
SCENARIO_TIMEOUT = 300.0  # one child process, start to end
HTTP_TIMEOUT = 10.0
SINK_START_TIMEOUT = 15.0

# scenario -> library -> one result per repeat.
Results = dict[str, dict[str, list[dict[str, Any]]]]


# -- the sink --------------------------------------------------------------------------


class Sink:
    """The sink subprocess: started here, stopped (by closing its stdin) at the end."""

    def __init__(self, cpu: int | None) -> None:
        command = [sys.executable, str(SINK), "--port", "0"]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], SINK_START_TIMEOUT)
        if not ready:
            self.stop()
            raise SystemExit(f"the sink did not start within {SINK_START_TIMEOUT:g} s")
        self.url = self._process.stdout.readline().decode("ascii").strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise SystemExit(f"the sink printed {self.url!r} instead of its URL")

    def _call(self, method: str) -> dict[str, int]:
        request = urllib.request.Request(f"{self.url}/count", method=method)
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            data: dict[str, int] = json.loads(answer.read())
        return data

    def count(self) -> dict[str, int]:
        return self._call("GET")

    def reset(self) -> None:
        self._call("DELETE")

    def stop(self) -> None:
        process = self._process
        if process.stdin is not None:
            process.stdin.close()  # the sink exits when its stdin closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# -- one scenario, one library -------------------------------------------------------------


def _stderr_summary(text: str) -> dict[str, Any]:
    """How much a child wrote to stderr, and its first few distinct lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    distinct: list[str] = []
    for line in lines:
        short = line[:200]
        if short not in distinct:
            distinct.append(short)
        if len(distinct) >= 5:
            break
    return {"lines": len(lines), "first_distinct": distinct}


def run_one(
    sink: Sink, scenario: str, library: str, quick: bool, cpu: int | None
) -> dict[str, Any]:
    """Run one child process and add what only the parent can see.

    The parent sees when the process ended (for exit delivery: from the timestamp the
    child printed when its script ended; both use ``time.monotonic``, the same
    system-wide clock on Linux) and how many messages the sink had once it had ended.
    """
    sink.reset()
    command = [sys.executable, str(SCENARIOS), scenario, library, sink.url]
    if quick:
        command.append("--quick")
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    started = time.monotonic()
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else ""
        return {
            "error": f"timed out after {SCENARIO_TIMEOUT:g} s",
            "stderr": _stderr_summary(stderr),
        }
    ended = time.monotonic()
    lines = [line for line in finished.stdout.splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {
            "error": f"exit status {finished.returncode}, no JSON result",
            "stderr": _stderr_summary(finished.stderr),
        }
    result["returncode"] = finished.returncode
    result["process_s"] = ended - started
    result["stderr"] = _stderr_summary(finished.stderr)
    sink_after = sink.count()
    result["delivered_after_exit"] = sink_after["count"]
    result["sink_requests"] = sink_after["requests"]
    result["sink_bad_requests"] = sink_after["bad"]
    if "t_end" in result:
        result["exit_s"] = ended - result["t_end"]
    if "t_flushed" in result:
        result["flush_s"] = result["t_flushed"] - result["t_end"]
        result["after_flush_exit_s"] = ended - result["t_flushed"]
    return result


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    scenario: str
    key: str


ROWS: tuple[Row, ...] = (
    Row("(a) caller cost per call, median (us)", "caller", "median_us"),
    Row("(a) caller cost per call, p99 (us)", "caller", "p99_us"),
    Row("(b) loop: delivered", "loop", "delivered"),
    Row("(b) loop: dropped (sent - delivered)", "loop", "dropped"),
    Row("(b) loop: delivered events/s", "loop", "delivered_per_s"),
    Row("(b) loop: seconds, first call to all delivered", "loop", "elapsed_s"),
    Row("(b) loop: calls/s while calling", "loop", "calls_per_s"),
    Row("(c) exit, no call: still queued when the script ended", "exit", "pending_at_end"),
    Row("(c) exit, no call: s from script end to process end", "exit", "exit_s"),
    Row("(c) exit, no call: delivered of 10,000", "exit", "delivered_after_exit"),
    Row("(c) exit held, no call: queued when the script ended", "exit_held", "pending_at_end"),
    Row("(c) exit held, no call: s from script end to process end", "exit_held", "exit_s"),
    Row("(c) exit held, no call: delivered of 10,000", "exit_held", "delivered_after_exit"),
    Row("(c) explicit flush: s in flush()/shutdown()", "exit_flush", "flush_s"),
    Row("(c) explicit flush: s from script end to process end", "exit_flush", "exit_s"),
    Row("(c) explicit flush: delivered of 10,000", "exit_flush", "delivered_after_exit"),
    Row("(d) memory per queued event (bytes)", "memory", "bytes_per_event"),
    Row("(d) same, incl. client start and warm-up (bytes)", "memory", "bytes_per_event_cold"),
)


def values(results: Results, scenario: str, library: str, key: str) -> list[float]:
    """The numeric values of *key* in every repeat that has one."""
    found: list[float] = []
    for run in results.get(scenario, {}).get(library, []):
        number = run.get(key)
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            found.append(float(number))
    return found


def value(results: Results, scenario: str, library: str, key: str) -> float | None:
    """The median over repeats: one slow or lucky run does not decide a verdict."""
    found = values(results, scenario, library, key)
    return statistics.median(found) if found else None


def one_run(results: Results, index: int) -> Results:
    """The same shape holding only repeat *index*, to judge each repeat on its own."""
    return {
        scenario: {lib: runs[index : index + 1] for lib, runs in by_lib.items()}
        for scenario, by_lib in results.items()
    }


def fmt(number: float | None) -> str:
    if number is None:
        return "-"
    size = abs(number)
    if size >= 1000 or number.is_integer():
        return f"{number:,.0f}"
    if size >= 100:
        return f"{number:.0f}"
    if size >= 10:
        return f"{number:.1f}"
    if size >= 1:
        return f"{number:.2f}"
    return f"{number:.3f}"


def ratio(top: float | None, bottom: float | None) -> str:
    if top is None or bottom is None or bottom == 0:
        return "-"
    return f"{top / bottom:.2f}x"


def table(results: Results) -> str:
    """Medians over repeats, with the ratios the issue asks for."""
    head = "| metric | cdp_logging | segment 2.4.0 | floor | cdp/segment | cdp/floor |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for row in ROWS:
        cdp = value(results, row.scenario, "cdp", row.key)
        seg = value(results, row.scenario, "segment", row.key)
        floor = value(results, row.scenario, "floor", row.key)
        if cdp is None and seg is None and floor is None:
            continue  # a scenario left out with --scenarios
        cells = [row.label, fmt(cdp), fmt(seg), fmt(floor), ratio(cdp, seg), ratio(cdp, floor)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    label: str
    check: Callable[[Results], tuple[str, bool | None]]


def _v(results: Results, scenario: str, library: str, key: str) -> float | None:
    return value(results, scenario, library, key)


def _caller_vs_segment(results: Results) -> tuple[str, bool | None]:
    cdp = _v(results, "caller", "cdp", "median_us")
    seg = _v(results, "caller", "segment", "median_us")
    if cdp is None or seg is None:
        return "missing", None
    return f"{cdp:.2f} us vs {seg:.2f} us = {cdp / seg:.2f}x", cdp <= seg / 3


def _caller_vs_floor(results: Results) -> tuple[str, bool | None]:
    cdp = _v(results, "caller", "cdp", "median_us")
    floor = _v(results, "caller", "floor", "median_us")
    if cdp is None or floor is None:
        return "missing", None
    return f"{cdp:.2f} us vs {floor:.2f} us = {cdp / floor:.2f}x", cdp <= 3 * floor


def _loop_dropped(results: Results) -> tuple[str, bool | None]:
    dropped = _v(results, "loop", "cdp", "dropped")
    sent = _v(results, "loop", "cdp", "sent")
    if dropped is None or sent is None:
        return "missing", None
    return f"{dropped:,.0f} of {sent:,.0f} dropped", dropped == 0


def _loop_rate(results: Results) -> tuple[str, bool | None]:
    cdp = _v(results, "loop", "cdp", "delivered_per_s")
    seg = _v(results, "loop", "segment", "delivered_per_s")
    if cdp is None or seg is None:
        return "missing", None
    return f"{cdp:,.0f}/s vs {seg:,.0f}/s = {cdp / seg:.2f}x", cdp >= 4 * seg


def _exit_target(scenario: str) -> Callable[[Results], tuple[str, bool | None]]:
    def check(results: Results) -> tuple[str, bool | None]:
        seconds = _v(results, scenario, "cdp", "exit_s")
        delivered = _v(results, scenario, "cdp", "delivered_after_exit")
        pending = _v(results, scenario, "cdp", "pending_at_end")
        if seconds is None or delivered is None or pending is None:
            return "missing", None
        text = (
            f"{delivered:,.0f}/10,000 delivered, {pending:,.0f} of them queued at the end, "
            f"{seconds:.3f} s to process end"
        )
        return text, delivered == 10_000 and seconds <= 0.5

    return check


def _memory(results: Results) -> tuple[str, bool | None]:
    per_event = _v(results, "memory", "cdp", "bytes_per_event")
    if per_event is None:
        return "missing", None
    return f"{per_event:.0f} bytes/event", per_event <= 600


TARGETS: tuple[Target, ...] = (
    Target("caller median <= 1/3 of segment's track() median", _caller_vs_segment),
    Target("caller median <= 3x the NullHandler floor", _caller_vs_floor),
    Target("100,000 loop: zero dropped", _loop_dropped),
    Target("100,000 loop: >= 4x segment's delivered events/s", _loop_rate),
    Target("10,000 queued delivered at exit in <= 0.5 s (held)", _exit_target("exit_held")),
    Target("same, natural exit (fewer queued at end)", _exit_target("exit")),
    Target("<= 600 bytes per queued small event", _memory),
)


def targets(results: Results, repeats: int) -> tuple[str, list[dict[str, Any]]]:
    """Each target judged on the medians, and separately in each repeat."""
    lines = [
        "| target | measured (median of repeats) | met | repeats meeting it |",
        "|---|---|---|---|",
    ]
    raw: list[dict[str, Any]] = []
    for target in TARGETS:
        text, met = target.check(results)
        per_run = [target.check(one_run(results, index))[1] for index in range(repeats)]
        verdict = "n/a" if met is None else ("yes" if met else "NO")
        meeting = "n/a" if met is None else f"{sum(1 for ok in per_run if ok)} of {repeats}"
        lines.append(f"| {target.label} | {text} | {verdict} | {meeting} |")
        raw.append({"target": target.label, "measured": text, "met": met, "per_run": per_run})
    return "\n".join(lines), raw


# The metrics the targets rest on, shown run by run so the spread is visible.
SPREAD: tuple[tuple[str, str, str], ...] = (
    ("caller", "median_us", "(a) caller median (us)"),
    ("loop", "delivered_per_s", "(b) delivered events/s"),
    ("loop", "dropped", "(b) dropped"),
    ("exit_held", "exit_s", "(c) exit held: s to process end"),
    ("memory", "bytes_per_event", "(d) bytes per queued event"),
)


def spread(results: Results, repeats: int) -> str:
    head = "| metric | library | " + " | ".join(f"run {i + 1}" for i in range(repeats)) + " |"
    lines = [head, "|---|---|" + "---:|" * repeats]
    for scenario, key, label in SPREAD:
        for library in ("cdp", "segment", "floor"):
            runs = results.get(scenario, {}).get(library)
            if not runs:
                continue
            cells = []
            for run in runs:
                number = run.get(key)
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    cells.append(fmt(float(number)))
                else:
                    cells.append("-")
            lines.append(f"| {label} | {library} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def problems(results: Results) -> list[str]:
    """Anything that looks wrong in a child's run: errors, stderr output, losses."""
    found: list[str] = []
    for scenario, by_library in results.items():
        for library, runs in by_library.items():
            for index, result in enumerate(runs):
                found.extend(_run_problems(f"{scenario}/{library} run {index + 1}", result))
    return found


def _run_problems(where: str, result: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if "error" in result:
        found.append(f"{where}: {result['error']}")
    if result.get("returncode"):
        found.append(f"{where}: exit status {result['returncode']}")
    stderr = result.get("stderr", {})
    if stderr.get("lines"):
        sample = " | ".join(stderr.get("first_distinct", [])[:2])
        found.append(f"{where}: {stderr['lines']} stderr line(s), e.g. {sample}")
    if result.get("rejected_by_library"):
        found.append(f"{where}: library refused {result['rejected_by_library']} call(s)")
    if result.get("sink_bad_requests"):
        found.append(f"{where}: sink saw {result['sink_bad_requests']} bad request(s)")
    if result.get("flushed") is False or result.get("flush_finished") is False:
        found.append(f"{where}: flush did not finish within its bound")
    return found


# -- provenance ---------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.rstrip()  # keep porcelain's leading status column


def _version(module: str) -> str:
    code = f"import {module} as m; print(getattr(m, '__version__', '?'))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return done.stdout.strip() or "?"


def meta(quick: bool) -> dict[str, Any]:
    """Where and on what the numbers were taken; the library is edited concurrently, so
    the commit alone does not say which code ran: the dirty files are listed too."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cdp_logging": _version("cdp_logging"),
        "segment_analytics_python": _version("segment.analytics"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": _git("status", "--porcelain", "--", "cdp_logging").splitlines(),
        "cdp_logging_source_sha256": _source_digest(),
    }


def _source_digest() -> str:
    """A digest of the library's sources as measured (the tree changes under us).

    The top-level modules only: ``collector/`` is a separate server that the measured
    path never imports, and edits to it do not change what was measured.
    """
    digest = hashlib.sha256()
    for path in sorted((ROOT / "cdp_logging").glob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def placement(pinned: bool) -> tuple[int | None, int | None]:
    """(sink CPU, measured CPU), or (None, None) to leave placement to the scheduler.

    Neither placement is neutral, which is why a full run measures both:

    * pinned (sink on the first CPU, every measured process on the last): no run depends
      on where the scheduler put it (on the 2-vCPU VM these numbers were first taken on,
      the same loop ran ~1.7x slower on one CPU than on the other), and the sink's work
      stays off the measured CPU. But the caller and its SDK's sender thread then share
      one CPU, which changes how they fight over the GIL.
    * unpinned: what a service on a multi-core machine sees, sender thread and caller on
      different CPUs handing the GIL across them; noisier.
    """
    if not pinned or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[-1]


def measure(
    pinned: bool, repeats: int, quick: bool, wanted: set[str]
) -> tuple[Results, int | None, int | None]:
    """Run the plan *repeats* times with one placement; the sink lives for all of them."""
    sink_cpu, bench_cpu = placement(pinned)
    where = (
        f"sink on CPU {sink_cpu}, measured on CPU {bench_cpu}"
        if bench_cpu is not None
        else "unpinned"
    )
    results: Results = {}
    sink = Sink(sink_cpu)
    try:
        print(f"{where}; sink at {sink.url}", flush=True)
        # Repeats are the outer loop, so a slow spell of the machine hits every
        # library rather than all the runs of one.
        for repeat in range(repeats):
            for scenario, libraries in PLAN:
                if wanted and scenario not in wanted:
                    continue
                for library in libraries:
                    print(f"  run {repeat + 1} {scenario:<10} {library:<8}", end=" ", flush=True)
                    result = run_one(sink, scenario, library, quick, bench_cpu)
                    results.setdefault(scenario, {}).setdefault(library, []).append(result)
                    note = result.get("error") or f"{result.get('process_s', 0.0):.1f} s"
                    print(note, flush=True)
    finally:
        sink.stop()
    return results, sink_cpu, bench_cpu


def report(title: str, results: Results, repeats: int) -> dict[str, Any]:
    """Print one placement's tables; return them with the raw numbers for the JSON."""
    table_text = table(results)
    targets_text, targets_raw = targets(results, repeats)
    spread_text = spread(results, repeats)
    found = problems(results)
    print(f"\n## {title}\n")
    print(table_text)
    print()
    print(targets_text)
    if repeats > 1:
        print()
        print(spread_text)
    if found:
        print()
        print("Observed while measuring:")
        for line in found:
            print(f"- {line}")
    return {
        "results": results,
        "targets": targets_raw,
        "observations": found,
        "table": table_text,
        "targets_table": targets_text,
        "spread_table": spread_text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, one repeat: a smoke run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repeats of the whole plan, interleaved; the table shows medians "
        "(default 5, or 1 with --quick)",
    )
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated subset of: " + ", ".join(name for name, _ in PLAN),
    )
    parser.add_argument(
        "--pin",
        choices=("both", "auto", "none"),
        default=None,
        help="auto: with 2+ CPUs, the sink on the first CPU and every measured process on "
        "the last; none: the scheduler places them; both: one run of each "
        "(default both, or auto with --quick)",
    )
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args()
    wanted = {name for name in args.scenarios.split(",") if name}
    unknown = wanted - {name for name, _ in PLAN}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    repeats = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeat must be at least 1")
    pin = args.pin or ("auto" if args.quick else "both")
    placements = {"both": [True, False], "auto": [True], "none": [False]}[pin]
    default_name = "results-quick.json" if args.quick else "results.json"
    output = (args.output or HERE / default_name).resolve()

    info = meta(args.quick)
    info["repeats"] = repeats
    print(
        f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
        f"cdp_logging {info['cdp_logging']}, segment-analytics-python "
        f"{info['segment_analytics_python']}; {repeats} repeat(s) per placement"
        + (" (quick)" if args.quick else ""),
        flush=True,
    )
    measured: list[tuple[str, Results, int | None, int | None]] = []
    for pinned in placements:
        results, sink_cpu, bench_cpu = measure(pinned, repeats, args.quick, wanted)
        name = "pinned" if bench_cpu is not None else "unpinned"
        measured.append((name, results, sink_cpu, bench_cpu))

    info["cdp_logging_source_sha256_at_end"] = _source_digest()
    changed = info["cdp_logging_source_sha256_at_end"] != info["cdp_logging_source_sha256"]
    placements_out: dict[str, Any] = {}
    for name, results, sink_cpu, bench_cpu in measured:
        title = (
            f"{name}: sink on CPU {sink_cpu}, measured processes on CPU {bench_cpu}"
            if bench_cpu is not None
            else f"{name}: the scheduler places every process"
        )
        section = report(title, results, repeats)
        section.update(sink_cpu=sink_cpu, bench_cpu=bench_cpu)
        placements_out[name] = section
    if changed:
        print(
            "\nNOTE: cdp_logging's sources changed during the run: repeats measured different code"
        )
    output.write_text(
        json.dumps(
            {"meta": info, "sources_changed_during_run": changed, "placements": placements_out},
            indent=2,
        )
        + "\n"
    )
    shown = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
    print(f"\nraw numbers: {shown}")


if __name__ == "__main__":
    main()
