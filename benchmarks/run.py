"""Run the benchmark: cdp_logging beside segment-analytics-python and the logging floor.

Usage: python3 scripts/bench.py [--quick] [--repeat N] [--pin both|auto|none]
                                [--scenarios caller,loop] [--detail] [--output FILE]
       python3 scripts/bench.py --instructions [--quick] [--jobs N] [--fill K]
                                [--measures delivery,delivery_direct,caller]

It starts the counting sink (``sink.py``) as a separate process on 127.0.0.1, then runs
every scenario for every library in a fresh process (``scenarios.py``), so that no
scenario inherits another's threads, queues or retries. The whole plan is repeated
(5 times by default, interleaved) because single processes on a small VM differ by tens
of percent. It prints one table: the median of each metric for each library and the
ratios cdp/segment and cdp/floor, then anything odd it saw. A full run does that twice,
pinned to CPUs and unpinned, because the placement changes how each SDK's sender thread
and the caller share the GIL (see ``placement``). Raw numbers go to a file only with
``--output``.

``--instructions`` counts instructions under valgrind's callgrind instead of timing
anything: deterministic where times on a small VM are not. It runs once, after the timed
placements if any, with its valgrind children in parallel (``--jobs``). cdp's delivery
measures send exactly ``--fill`` events per request, so that their whole-process figure
does not move with how the GIL switched in each run.

This is a measurement, not a test: it judges nothing (the figures are for people to
read), CI does not run it, and every wait in it is bounded so that it cannot hang.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
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
    # Right after the plain caller, so both see the machine in the same state (#10).
    ("caller_context", ("cdp",)),
    ("caller_pipeline", ("cdp",)),
    ("loop", ("cdp", "segment")),
    ("exit", ("cdp", "segment", "floor")),
    ("exit_held", ("cdp", "segment", "floor")),
    ("exit_flush", ("cdp", "segment")),
    ("memory", ("cdp", "segment")),
)
# Opt-in, never in the default set: instructions under callgrind, run once (see below).
INSTRUCTIONS = "instructions"
SCENARIO_TIMEOUT = 300.0  # one child process, start to end
HTTP_TIMEOUT = 10.0
SINK_START_TIMEOUT = 15.0
# Set by --json stdlib for every child: scenarios.py then hides orjson from cdp_logging.
STDLIB_JSON_ENV = "CDP_BENCH_STDLIB_JSON"

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

    def _call(self, method: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/count", method=method)
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            data: dict[str, Any] = json.loads(answer.read())
        return data

    def count(self) -> dict[str, Any]:
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


def run_child(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run one scenario child, whose last stdout line is its JSON result.

    Returns the result, with ``returncode``, ``process_s`` and a ``stderr`` summary
    added (or an ``error`` saying why there is none), and ``time.monotonic()`` when the
    child had ended.
    """
    started = time.monotonic()
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else ""
        failed = {"error": f"timed out after {timeout:g} s", "stderr": _stderr_summary(stderr)}
        return failed, time.monotonic()
    ended = time.monotonic()
    lines = [line for line in finished.stdout.splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        failed = {
            "error": f"exit status {finished.returncode}, no JSON result",
            "stderr": _stderr_summary(finished.stderr),
        }
        return failed, ended
    result["returncode"] = finished.returncode
    result["process_s"] = ended - started
    result["stderr"] = _stderr_summary(finished.stderr)
    return result, ended


def add_sink_counts(result: dict[str, Any], sink: Sink) -> None:
    """What the sink received, read once the child has ended."""
    counts = sink.count()
    result["delivered_after_exit"] = counts["count"]
    result["sink_requests"] = counts["requests"]
    result["sink_bad_requests"] = counts["bad"]
    # messages per request -> requests: what the fixed fill of --instructions is checked on
    result["sink_sizes"] = {int(size): n for size, n in counts.get("sizes", {}).items()}


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
    result, ended = run_child(command, SCENARIO_TIMEOUT)
    if "error" in result:
        return result
    add_sink_counts(result, sink)
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


def table(results: Results, rows: tuple[Row, ...] = ROWS) -> str:
    """Medians over repeats, with the ratios the issue asks for."""
    head = "| metric | cdp_logging | segment 2.4.0 | floor | cdp/segment | cdp/floor |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        cdp = value(results, row.scenario, "cdp", row.key)
        seg = value(results, row.scenario, "segment", row.key)
        floor = value(results, row.scenario, "floor", row.key)
        if cdp is None and seg is None and floor is None:
            continue  # a scenario left out with --scenarios
        cells = [row.label, fmt(cdp), fmt(seg), fmt(floor), ratio(cdp, seg), ratio(cdp, floor)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The main metrics, shown run by run (with --detail) so the spread is visible.
SPREAD: tuple[tuple[str, str, str], ...] = (
    ("caller", "median_us", "(a) caller median (us)"),
    ("caller_context", "bound_extra_us", "(f) bound - nothing bound, median (us)"),
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


# (f) Request context (#10): the caller with a request's context bound and without, in
# alternating rounds of one process (``caller_context``), right after the plain caller.
CONTEXT_ROWS: tuple[Row, ...] = (
    Row("(f) nothing bound, median (us)", "caller_context", "unbound_median_us"),
    Row("(f) request context bound, median (us)", "caller_context", "bound_median_us"),
    Row("(f) bound - nothing bound, median (us)", "caller_context", "bound_extra_us"),
)
# (g) The message options (#27), cost when configured: a handler with each against one
# without, in alternating rounds of one process (``caller_pipeline``).
PIPELINE_ROWS: tuple[Row, ...] = (
    Row("(g) no option configured, median (us)", "caller_pipeline", "none_median_us"),
    Row("(g) context configured - none, median (us)", "caller_pipeline", "context_extra_us"),
    Row("(g) redact configured - none, median (us)", "caller_pipeline", "redact_extra_us"),
    Row(
        "(g) before_send configured - none, median (us)",
        "caller_pipeline",
        "before_send_extra_us",
    ),
)


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


# -- (e) instructions under callgrind ---------------------------------------------------------

# N for each measure; every library runs N and 2N in two processes (and cdp's handler
# delivery a third, see instruction_plan). Chosen so that the valgrind processes (24
# then, 27 now) took ~4 minutes on the 2-vCPU VM with 2 jobs (210-254 s; python
# under callgrind is ~50-80x slower, and its start-up and imports alone take ~5-10 s);
# the noise between two identical runs is ~1M instructions, i.e. ~0.2% of a per-call
# figure at N = 5,000 (more for the measures with a sender: see measure_instructions).
INSTRUCTION_CALLS = 5_000
INSTRUCTION_CALLS_QUICK = 500
INSTRUCTION_MEASURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("caller", ("cdp", "segment", "floor")),
    ("caller_bound", ("cdp",)),
    ("delivery", ("cdp", "segment")),
    ("caller_direct", ("cdp",)),
    ("delivery_direct", ("cdp",)),
    # scenarios.py's STAGES: the handler's path cut short, for the breakdown table.
    *((f"stage_{stage}", ("cdp",)) for stage in ("found", "rules", "built", "queued")),
    # queued again, with a tracking plan of 20 events: what the plan adds to a call.
    ("stage_queued_plan", ("cdp",)),
)
# The measures that send to a sink (each run gets one of its own); the rest send nothing.
DELIVERY_MEASURES = ("delivery", "delivery_direct")
# cdp's delivery measures send exactly this many events per request (--fill; scenarios.py
# paces its calls for it). A request costs ~0.7 M instructions (requests, urllib3), so
# the fill decides most of the HTTP share per event, and left to the GIL under valgrind
# it moved from run to run (the 2N run sometimes made fewer requests than the N run, and
# then the difference counted no HTTP at all). 500: the timed loop on the 2-vCPU VM
# sends 590-950 events per request, so 500 does not flatter cdp.
INSTRUCTION_FILL = 500
# The fills the whole-process figure is also shown at, from the cost of one request.
SHOWN_FILLS = (100, 500, 2_500)
# The measures whose cost of one request is measured (a third run: 2N events at half
# the fill). The handler's only: the direct client's Futures stay alive until their
# batch is settled, so its garbage collections depend on the fill (2N events at 500:
# one full collection and 8 of the middle generation; at 250: none and 6, measured with
# gc.callbacks), and a pair of fills there counted ~0 instructions per request, 2N at
# fill 250 costing what 2N at 500 did. Its rows at other fills use the handler's cost.
REQUEST_COST_MEASURES = ("delivery",)
# The most a cdp request can carry (the protocol's batch limit): the sender never takes
# more, so a larger --fill could never be met. Its 500 KB limit may split sooner: the
# sink's sizes show it, and the figure is then flagged invalid.
MAX_FILL = 2_500
INSTRUCTIONS_TIMEOUT = 900.0  # one valgrind process, start to end
# Every valgrind child's sys.setswitchinterval (see measure_instructions): 10x Python's
# 5 ms. Measured, cdp's delivery run, events per request the 2N run added to the N run's:
# 45 at 5 ms, 122-385 at 50 ms; at 250 ms both runs made 8 requests, so the difference
# counted no HTTP at all. cdp's delivery measures no longer depend on it (their fill is
# fixed); segment's delivery and cdp's caller measures still do.
INSTRUCTION_SWITCH_INTERVAL = 0.05
# The host of the caller measure: every library runs with send=False there, so nothing
# ever connects to it (port 9 is "discard"; nothing listens on it here either).
UNUSED_HOST = "http://127.0.0.1:9"
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)
_EVENTS = re.compile(r"^==\d+== Events\s*: (.+?)\s*$", re.MULTILINE)

INSTRUCTION_ROWS: tuple[Row, ...] = (
    Row("(e) caller instructions per call", INSTRUCTIONS, "caller_per_call"),
    Row("(e) same, a request's context bound", INSTRUCTIONS, "caller_bound_per_call"),
    Row("(e) bound minus nothing bound, per call", INSTRUCTIONS, "bound_extra_per_call"),
    Row(
        "(e) a tracking plan of 20 events adds, per call (queued stage)",
        INSTRUCTIONS,
        "plan_extra_per_call",
    ),
    Row(
        "(e) delivery: events per added request (cdp: the fixed fill; segment: its own)",
        INSTRUCTIONS,
        "delivery_events_per_request",
    ),
    Row(
        "(e) instructions per delivered event, whole process, at that fill",
        INSTRUCTIONS,
        "delivery_per_event",
    ),
    Row(
        "(e) one request: 2N events at fill K/2 minus at K, per added request",
        INSTRUCTIONS,
        "delivery_per_request",
    ),
    Row(
        "(e) same, whole process minus the queued stage, per added request",
        INSTRUCTIONS,
        "delivery_beyond_queued_per_request",
    ),
    *(
        Row(f"(e) per delivered event at fill {fill:,}", INSTRUCTIONS, f"delivery_at_{fill}")
        for fill in SHOWN_FILLS
    ),
    Row(
        "(e) caller, direct track() (segment: its track())", INSTRUCTIONS, "caller_direct_per_call"
    ),
    Row("(e) per delivered event, direct track()", INSTRUCTIONS, "delivery_direct_per_event"),
    *(
        Row(
            f"(e) direct track(), per delivered event at fill {fill:,} (the handler's request)",
            INSTRUCTIONS,
            f"delivery_direct_at_{fill}",
        )
        for fill in SHOWN_FILLS
    ),
)


@dataclass(frozen=True)
class Counted:
    """One valgrind process: *measure* for *library* with *calls* calls."""

    measure: str
    library: str
    calls: int
    switch_interval: float  # the child's sys.setswitchinterval
    fill: int | None = None  # cdp's delivery: events per request (scenarios.py --fill)


# (measure, library, calls, fill): one valgrind process's result, by what it ran.
RunKey = tuple[str, str, int, int | None]


def fill_of(measure: str, library: str, fill: int) -> int | None:
    """The fixed fill of *measure* for *library*: cdp's delivery only (segment's is its own)."""
    return fill if measure in DELIVERY_MEASURES and library == "cdp" else None


def instruction_plan(
    calls: int, fill: int, switch_interval: float, measures: set[str] | None = None
) -> list[Counted]:
    """Every valgrind process of the section: N and 2N of each measure (all of them, or
    those in *measures*), and for cdp's handler delivery a third, 2N events at half the
    fill: the same events in twice the requests, whose difference is the cost of a
    request alone (see fixed_fill_metrics)."""
    plan: list[Counted] = []
    for measure, libraries in INSTRUCTION_MEASURES:
        if measures and measure not in measures:
            continue
        for library in libraries:
            fixed = fill_of(measure, library, fill)
            plan.extend(
                Counted(measure, library, n, switch_interval, fixed) for n in (calls, 2 * calls)
            )
            if fixed is not None and measure in REQUEST_COST_MEASURES:
                plan.append(Counted(measure, library, 2 * calls, switch_interval, fixed // 2))
    return plan


def check_fill_arguments(calls: int, fill: int) -> str | None:
    """Why *fill* cannot be measured with N = *calls* (None: it can).

    N and 2N must be multiples of the fill, so that the 2N run makes exactly N / fill
    requests more; the fill must be even, because the per-request pair runs at half of it.
    """
    if fill < 2 or fill > MAX_FILL:
        return f"--fill must be from 2 to {MAX_FILL:,} events per request"
    if fill % 2:
        return "--fill must be even (the per-request measure also runs at half the fill)"
    if calls % fill:
        return f"--fill {fill:,} must divide N = {calls:,} (the calls of each N run)"
    return None


def expected_sizes(calls: int, fill: int) -> dict[int, int]:
    """The sink's requests by messages per request for a paced run of *calls* at *fill*:
    the warm-up event alone, then calls / fill requests of exactly *fill*."""
    sizes = {1: 1}
    sizes[fill] = sizes.get(fill, 0) + calls // fill
    return sizes


def _sizes_text(sizes: dict[int, int]) -> str:
    """Requests by size as "how many of what size": "1 of 1, 20 of 500"."""
    return ", ".join(f"{n:,} of {size:,}" for size, n in sorted(sizes.items())) or "none"


def fill_problems(result: dict[str, Any], calls: int, fill: int) -> list[str]:
    """Why a paced run's requests were not the planned ones (empty: they were exactly)."""
    if "error" in result:
        return [f"the run failed: {result['error']}"]
    sizes = result.get("sink_sizes")
    if not isinstance(sizes, dict):
        return ["the sink gave no request sizes"]
    wanted = expected_sizes(calls, fill)
    if sizes != wanted:
        return [
            f"{calls:,} events at fill {fill:,}: requests by events carried "
            f"{_sizes_text(sizes)}, not {_sizes_text(wanted)}"
        ]
    return []


def added_requests_problem(
    small: dict[str, Any], large: dict[str, Any], added: int, what: str
) -> str | None:
    """Why the *large* run did not make exactly *added* requests more than *small*."""
    requests_small, requests_large = small.get("sink_requests"), large.get("sink_requests")
    if not isinstance(requests_small, int) or not isinstance(requests_large, int):
        return f"{what}: no request counts from the sink"
    if requests_large - requests_small != added:
        return (
            f"{what}: {requests_large:,} - {requests_small:,} = "
            f"{requests_large - requests_small:,} added requests, not {added:,}"
        )
    return None


def at_fill(per_event: float, per_request: float, measured_fill: int, fill: int) -> float:
    """The whole-process figure per event at *fill*, from the one measured at *measured_fill*.

    Only the requests' share changes with the fill: a request's fixed cost spread over
    *fill* events instead of *measured_fill*. What each event costs to send (its bytes
    through the socket, its settling) is in *per_event* already and does not change.
    """
    return per_event - per_request / measured_fill + per_request / fill


def count_instructions(valgrind: str, job: Counted) -> dict[str, Any]:
    """Run one scenario child under callgrind; return its JSON line plus the total.

    The delivery measure gets a sink of its own, so that children running in parallel
    never count each other's messages. Valgrind's own output goes to a log file (read
    for the "Collected" line), the child's stderr stays the child's. The callgrind
    profile itself is not wanted: only the total, which the summary line carries.
    """
    sink = Sink(None) if job.measure in DELIVERY_MEASURES else None
    try:
        url = sink.url if sink is not None else UNUSED_HOST
        with tempfile.TemporaryDirectory(prefix="cdp-bench-") as tmp:
            log = Path(tmp) / "valgrind.log"
            command = [
                valgrind,
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                f"--log-file={log}",
                sys.executable,
                str(SCENARIOS),
                f"instructions_{job.measure}",
                job.library,
                url,
                "--calls",
                str(job.calls),
                "--switch-interval",
                str(job.switch_interval),
            ]
            if job.fill is not None:
                command += ["--fill", str(job.fill)]
            # A fixed hash seed: str hashes (so dict and set layouts) are the same in the
            # N and the 2N process, which keeps the difference free of that jitter.
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            result, _ = run_child(command, INSTRUCTIONS_TIMEOUT, env)
            valgrind_log = log.read_text(errors="replace") if log.exists() else ""
        if "error" in result:
            result["valgrind"] = _stderr_summary(valgrind_log)
            return result
        collected = _COLLECTED.search(valgrind_log)
        events = _EVENTS.search(valgrind_log)
        if collected is None or events is None or events.group(1) != "Ir":
            result["error"] = "no 'Collected' line for Ir in valgrind's output"
            result["valgrind"] = _stderr_summary(valgrind_log)
        else:
            result["instructions"] = int(collected.group(1))
        if sink is not None:
            add_sink_counts(result, sink)
        return result
    finally:
        if sink is not None:
            sink.stop()


def _per_unit(small: dict[str, Any], large: dict[str, Any], key: str) -> float | None:
    """(total of the 2N run - total of the N run) / (2N's *key* - N's *key*)."""
    numbers = [run.get(name) for run in (large, small) for name in ("instructions", key)]
    top, units, bottom, units_small = (n if isinstance(n, int) else None for n in numbers)
    if top is None or units is None or bottom is None or units_small is None:
        return None
    if units <= units_small:
        return None
    return (top - bottom) / (units - units_small)


def _events_per_request(small: dict[str, Any], large: dict[str, Any]) -> float | None:
    """Delivered events per request the large run added to the small run's: the fill
    a difference of the two carries (its HTTP is that of the added requests)."""
    numbers = [
        run.get(key) for key in ("delivered_after_exit", "sink_requests") for run in (small, large)
    ]
    counts = [n for n in numbers if isinstance(n, int)]
    if len(counts) != len(numbers):
        return None
    events_small, events_large, requests_small, requests_large = counts
    if requests_large <= requests_small:
        return None
    return (events_large - events_small) / (requests_large - requests_small)


def fixed_fill_metrics(
    measure: str,
    runs: dict[RunKey, dict[str, Any]],
    calls: int,
    fill: int,
    request_cost: float | None = None,
) -> dict[str, Any]:
    """cdp's delivery *measure* at a fixed *fill*: per event, per request, at other fills.

    Per event: the N and 2N runs' difference over the N added events, valid only if
    every request carried exactly *fill* (the sink's sizes) and the 2N run made exactly
    N / fill requests more; otherwise ``{measure}_invalid`` says why and no figure is
    given. Per request: 2N events at fill / 2 minus 2N events at *fill*, the same
    events and callers, over the 2N / fill requests the half fill adds: what one
    request costs beyond its events (the POST through requests and urllib3, the
    sender's wake-up and settling, the caller's flush that paces it). Only the measure
    in ``REQUEST_COST_MEASURES`` has that third run; the others are shown at other
    fills with *request_cost*, its figure (the same sender and HTTP path).
    """
    metrics: dict[str, Any] = {f"{measure}_fill": fill}
    small = runs.get((measure, "cdp", calls, fill))
    large = runs.get((measure, "cdp", 2 * calls, fill))
    half = runs.get((measure, "cdp", 2 * calls, fill // 2))
    if small is None or large is None:
        return metrics
    metrics[f"{measure}_instructions_n"] = small.get("instructions")
    metrics[f"{measure}_instructions_2n"] = large.get("instructions")
    metrics[f"{measure}_requests_n"] = small.get("sink_requests")
    metrics[f"{measure}_requests_2n"] = large.get("sink_requests")
    invalid = fill_problems(small, calls, fill) + fill_problems(large, 2 * calls, fill)
    added = added_requests_problem(small, large, calls // fill, "2N run - N run")
    if added is not None:
        invalid.append(added)
    per_event = _per_unit(small, large, "delivered_after_exit")
    metrics[f"{measure}_events_per_request"] = _events_per_request(small, large)
    if invalid or per_event is None:
        metrics[f"{measure}_invalid"] = invalid or ["no instruction totals"]
        metrics[f"{measure}_per_event_unchecked"] = per_event
        return metrics
    metrics[f"{measure}_per_event"] = per_event
    if half is None:
        if request_cost is not None:
            for shown in SHOWN_FILLS:
                metrics[f"{measure}_at_{shown}"] = at_fill(per_event, request_cost, fill, shown)
        return metrics
    metrics[f"{measure}_requests_2n_half_fill"] = half.get("sink_requests")
    half_invalid = fill_problems(half, 2 * calls, fill // 2)
    added = added_requests_problem(large, half, 2 * calls // fill, "half fill - fill, 2N")
    if added is not None:
        half_invalid.append(added)
    per_request = _per_unit(large, half, "sink_requests")
    if half_invalid or per_request is None:
        metrics[f"{measure}_per_request_invalid"] = half_invalid or ["no instruction totals"]
        return metrics
    metrics[f"{measure}_per_request"] = per_request
    for shown in SHOWN_FILLS:
        metrics[f"{measure}_at_{shown}"] = at_fill(per_event, per_request, fill, shown)
    return metrics


def instruction_metrics(
    runs: dict[RunKey, dict[str, Any]], calls: int, fill: int = INSTRUCTION_FILL
) -> Results:
    """One "repeat" per library, shaped like the timed results, so ``table`` can show it."""
    results: Results = {}
    for library in ("cdp", "segment", "floor"):
        metrics: dict[str, Any] = {"calls_n": calls, "calls_2n": 2 * calls}
        found = False
        for measure, libraries in INSTRUCTION_MEASURES:
            if library not in libraries:
                continue
            fixed = fill_of(measure, library, fill)
            if fixed is not None:
                if (measure, library, calls, fixed) in runs:
                    found = True
                    request_cost = metrics.get("delivery_per_request")
                    metrics.update(fixed_fill_metrics(measure, runs, calls, fixed, request_cost))
                continue
            small = runs.get((measure, library, calls, None))
            large = runs.get((measure, library, 2 * calls, None))
            if small is None or large is None:
                continue
            found = True
            metrics[f"{measure}_instructions_n"] = small.get("instructions")
            metrics[f"{measure}_instructions_2n"] = large.get("instructions")
            if measure not in DELIVERY_MEASURES:
                metrics[f"{measure}_per_call"] = _per_unit(small, large, "calls")
            else:  # segment's delivery, batched as segment batches
                metrics[f"{measure}_per_event"] = _per_unit(small, large, "delivered_after_exit")
                metrics[f"{measure}_events_per_request"] = _events_per_request(small, large)
                metrics[f"{measure}_requests_n"] = small.get("sink_requests")
                metrics[f"{measure}_requests_2n"] = large.get("sink_requests")
                metrics[f"{measure}_sizes_n"] = small.get("sink_sizes")
                metrics[f"{measure}_sizes_2n"] = large.get("sink_sizes")
        bound, unbound = metrics.get("caller_bound_per_call"), metrics.get("caller_per_call")
        if isinstance(bound, float) and isinstance(unbound, float):
            metrics["bound_extra_per_call"] = bound - unbound
        planned = metrics.get("stage_queued_plan_per_call")
        queued = metrics.get("stage_queued_per_call")
        if isinstance(planned, float) and isinstance(queued, float):
            metrics["plan_extra_per_call"] = planned - queued
            if isinstance(unbound, float):
                metrics["plan_extra_share"] = (planned - queued) / unbound
        whole = metrics.get("delivery_per_event")
        if library == "cdp" and isinstance(whole, float) and isinstance(queued, float):
            # A cross-check of the per-request pair: what the N added events cost beyond
            # the queued stage (which settles them unsent), put on the N / K requests.
            # Larger than the pair's figure by each event's share of the sending.
            metrics["delivery_beyond_queued_per_request"] = (whole - queued) * fill
        if library == "segment":
            # segment has one front door, its direct track(): the same figures stand in
            # the direct rows, so cdp's direct call shows its ratio to them.
            metrics["caller_direct_per_call"] = metrics.get("caller_per_call")
            metrics["delivery_direct_per_event"] = metrics.get("delivery_per_event")
        if library == "floor":
            # The floor delivers nothing: its whole cost per event is the logging call,
            # so the delivery rows' cdp/floor is the whole process against that floor.
            for key in ("delivery_per_event", "delivery_direct_per_event"):
                metrics[key] = metrics.get("caller_per_call")
            for shown in SHOWN_FILLS:
                metrics[f"delivery_at_{shown}"] = metrics.get("caller_per_call")
                metrics[f"delivery_direct_at_{shown}"] = metrics.get("caller_per_call")
        if found:
            results.setdefault(INSTRUCTIONS, {})[library] = [metrics]
    return results


def fill_report(results: Results) -> str:
    """How each delivery figure's fill was made and checked, and any figure refused."""
    cdp = (results.get(INSTRUCTIONS, {}).get("cdp") or [{}])[0]
    segment = (results.get(INSTRUCTIONS, {}).get("segment") or [{}])[0]
    lines: list[str] = []
    for measure, name in (("delivery", "handler"), ("delivery_direct", "direct track()")):
        fill = cdp.get(f"{measure}_fill")
        if fill is None or f"{measure}_instructions_n" not in cdp:
            continue
        requests = (cdp.get(f"{measure}_requests_n"), cdp.get(f"{measure}_requests_2n"))
        invalid = cdp.get(f"{measure}_invalid")
        if invalid:
            lines.append(
                f"INVALID: cdp {name} per delivered event (fill {fill:,}): "
                + "; ".join(invalid)
                + f" (unchecked figure: {fmt(cdp.get(f'{measure}_per_event_unchecked'))})"
            )
            continue
        lines.append(
            f"cdp {name}: every request carried {fill:,} events (one warm-up request of 1); "
            f"requests N / 2N: {requests[0]} / {requests[1]}, the N / K = "
            f"{cdp['calls_n'] // fill} expected more"
        )
        half_invalid = cdp.get(f"{measure}_per_request_invalid")
        if half_invalid:
            lines.append(
                f"INVALID: cdp {name} per request (2N at fill {fill // 2:,}): "
                + "; ".join(half_invalid)
            )
        elif f"{measure}_per_request" in cdp:
            lines.append(
                f"cdp {name}: one request {fmt(cdp[f'{measure}_per_request'])} instructions "
                f"(2N at fill {fill // 2:,}: {cdp.get(f'{measure}_requests_2n_half_fill')} "
                "requests, every one checked)"
            )
    if "delivery_instructions_n" in segment:
        sizes_n = _sizes_text(_int_sizes(segment.get("delivery_sizes_n")))
        sizes_2n = _sizes_text(_int_sizes(segment.get("delivery_sizes_2n")))
        added = fmt(segment.get("delivery_events_per_request"))
        lines.append(
            f"segment, its own batching: requests N / 2N: {segment.get('delivery_requests_n')} "
            f"({sizes_n} events) / {segment.get('delivery_requests_2n')} ({sizes_2n}); "
            f"the 2N run added one request per {added} events"
        )
    return "\n".join(lines)


def _int_sizes(sizes: object) -> dict[int, int]:
    if not isinstance(sizes, dict):
        return {}
    return {int(size): int(n) for size, n in sizes.items()}


# The handler's path, step by step: (label, the measure that ends with the step). Each
# step's cost is its measure minus the one before (the first: the floor's logging call).
BREAKDOWN: tuple[tuple[str, str], ...] = (
    ("logging's own record, as with a NullHandler (the floor)", "floor"),
    ("finding the payload: handle, emit, fields_from_record", "stage_found_per_call"),
    ("build's rules: checks, timestamp, messageId, bound context", "stage_rules_per_call"),
    ("build's JSON encoding of the caller's values", "stage_built_per_call"),
    ("queue, and the sender settling 2,500-message batches unsent", "stage_queued_per_call"),
    ("the sender sending: requests, HTTP, settling (at the fixed fill)", "delivery_per_event"),
)


def breakdown(results: Results) -> str:
    """Where one logged event's instructions go, whole process, by ablation."""
    floor = value(results, INSTRUCTIONS, "floor", "caller_per_call")
    lines = [
        "| step of a logged event (cdp, by ablation) | instructions | share | cumulative / floor |",
        "|---|---:|---:|---:|",
    ]
    total = value(results, INSTRUCTIONS, "cdp", "delivery_per_event")
    before: float | None = 0.0
    for label, key in BREAKDOWN:
        reached = floor if key == "floor" else value(results, INSTRUCTIONS, "cdp", key)
        step = None if reached is None or before is None else reached - before
        share = "-" if step is None or not total else f"{step / total:.0%}"
        lines.append(f"| {label} | {fmt(step)} | {share} | {ratio(reached, floor)} |")
        before = reached
    fill = value(results, INSTRUCTIONS, "cdp", "delivery_fill")
    request = value(results, INSTRUCTIONS, "cdp", "delivery_per_request")
    if fill is not None and total is not None:
        lines.append(
            f"\n(a request per {fill:,.0f} events"
            + (f", each {fmt(request)} instructions)" if request is not None else ")")
        )
    return "\n".join(lines)


def _instruction_problems(runs: dict[RunKey, dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for (measure, library, calls, fill), result in runs.items():
        where = f"instructions {measure}/{library} N={calls:,}" + (
            f" fill={fill:,}" if fill is not None else ""
        )
        found.extend(_run_problems(where, result))
        if measure.startswith("stage_") and result.get("reached") != calls:
            found.append(f"{where}: {result.get('reached')} of {calls} reached the stage")
        expected = calls + int(result.get("warmup_events", 0))
        if measure in DELIVERY_MEASURES and result.get("delivered_after_exit") != expected:
            found.append(
                f"{where}: sink counted {result.get('delivered_after_exit')} of {expected}"
            )
        if fill is not None:
            found.extend(f"{where}: {problem}" for problem in fill_problems(result, calls, fill))
        twice = runs.get((measure, library, 2 * calls, fill))  # None: this is the 2N run
        if measure in DELIVERY_MEASURES and fill is None and twice is not None:
            requests, requests_2n = result.get("sink_requests"), twice.get("sink_requests")
            if (
                isinstance(requests, int)
                and isinstance(requests_2n, int)
                and requests_2n <= requests
            ):
                found.append(
                    f"{where}: the 2N run made no more requests than the N run, so the "
                    "per-event figure counts no HTTP (a shorter --switch-interval helps)"
                )
        violations = result.get("library_stats", {}).get("plan_violations", 0)
        if violations:
            found.append(f"{where}: {violations} calls broke the tracking plan")
        if result.get("consumer_threads_alive"):
            found.append(f"{where}: segment's consumer thread runs with send=False")
    return found


def measure_instructions(
    quick: bool,
    jobs: int,
    switch_interval: float = INSTRUCTION_SWITCH_INTERVAL,
    fill: int = INSTRUCTION_FILL,
    measures: set[str] | None = None,
) -> dict[str, Any]:
    """Section (e): count, print and return the instruction numbers, or why they are absent.

    *switch_interval* is every child's ``sys.setswitchinterval``. The GIL changes
    hands by the wall clock (5 ms), and under valgrind a thread does ~50x less work in
    5 ms, so at Python's own interval the sender wakes far more often per event and
    sends small batches (~50 events per request, against 590-950 in the timed loop).
    It applies to every measure: cdp's caller measure counts its sender thread settling
    unsent batches too, which also wakes less often with a longer interval. cdp's
    delivery measures do not depend on it: they send exactly *fill* events per request
    (``scenarios.paced_calls``), checked against the sink's counts. *measures*: only
    these of ``INSTRUCTION_MEASURES`` (default all; the ratios to the floor need
    ``caller``).
    """
    print(f"\n## {INSTRUCTIONS}: callgrind instruction counts (placement-independent, run once)\n")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        reason = "valgrind is not installed (e.g. apt-get install valgrind); skipped"
        print(f"{INSTRUCTIONS}: {reason}", flush=True)
        return {"skipped": reason}
    version = subprocess.run(
        [valgrind, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    calls = INSTRUCTION_CALLS_QUICK if quick else INSTRUCTION_CALLS
    plan = instruction_plan(calls, fill, switch_interval, measures)
    # Longest first (segment, then the 2N runs, the most requests first), so the last
    # job to start is a short one.
    weight = {"segment": 2, "cdp": 1, "floor": 0}
    plan.sort(
        key=lambda job: (
            weight[job.library],
            job.calls,
            job.calls // job.fill if job.fill else 0,
            job.measure,
        ),
        reverse=True,
    )
    print(
        f"{version}; N = {calls:,} and 2N = {2 * calls:,}; {len(plan)} processes, {jobs} at a "
        f"time; GIL switch interval {switch_interval} s; cdp's delivery at a fixed fill of "
        f"{fill:,} events per request (and 2N at {fill // 2:,}, for the cost of a request)",
        flush=True,
    )
    printing = threading.Lock()
    started = time.monotonic()

    def run(job: Counted) -> dict[str, Any]:
        result = count_instructions(valgrind, job)
        note = result.get("error") or (
            f"{result.get('instructions', 0):,} instructions, {result.get('process_s', 0.0):.1f} s"
        )
        if "sink_requests" in result:
            note += f", {result['sink_requests']} requests"
        fill_note = f"K={job.fill:<6,}" if job.fill is not None else " " * 8
        with printing:
            print(
                f"  {job.measure:<17} {job.library:<8} N={job.calls:<7,} {fill_note} {note}",
                flush=True,
            )
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(run, plan))
    elapsed = time.monotonic() - started
    pairs = list(zip(plan, done, strict=True))
    runs = {(job.measure, job.library, job.calls, job.fill): result for job, result in pairs}
    results = instruction_metrics(runs, calls, fill)
    table_text = table(results, INSTRUCTION_ROWS)
    fills_text = fill_report(results)
    parts_text = breakdown(results)
    found = _instruction_problems(runs)
    print()
    print(table_text)
    if fills_text:
        print()
        print(fills_text)
    share = value(results, INSTRUCTIONS, "cdp", "plan_extra_share")
    if share is not None:
        print(
            f"\n(a tracking plan of 20 events: {share:+.1%} of the caller's instructions "
            "per logged call)"
        )
    print()
    print(parts_text)
    print(f"\n{len(plan)} valgrind processes in {elapsed:.0f} s, {jobs} at a time")
    print_observations(found)
    return {
        "valgrind": version,
        "calls_n": calls,
        "fill": fill,
        "measures": sorted(measures) if measures else None,
        "jobs": jobs,
        "switch_interval": switch_interval,
        "elapsed_s": elapsed,
        "metrics": {lib: by_lib[0] for lib, by_lib in results.get(INSTRUCTIONS, {}).items()},
        "runs": [
            {
                "measure": job.measure,
                "library": job.library,
                "calls": job.calls,
                "fill": job.fill,
                **result,
            }
            for job, result in pairs
        ],
        "observations": found,
        "table": table_text,
        "fills": fills_text,
        "breakdown": parts_text,
    }


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


def _usable_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is not available)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


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


def report(title: str, results: Results, repeats: int, detail: bool) -> dict[str, Any]:
    """Print one placement's table (and with *detail* the per-repeat spread); return them."""
    table_text = table(results, ROWS + CONTEXT_ROWS + PIPELINE_ROWS)
    spread_text = spread(results, repeats)
    found = problems(results)
    print(f"\n## {title}\n")
    print(table_text)
    if detail and repeats > 1:
        print()
        print(spread_text)
    print_observations(found)
    return {
        "results": results,
        "observations": found,
        "table": table_text,
        "spread_table": spread_text,
    }


def print_observations(found: list[str]) -> None:
    """Anything odd a run saw (errors, stderr output, refused calls), after its table."""
    if found:
        print()
        print("Observed while measuring:")
        for line in found:
            print(f"- {line}")


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
        help="comma-separated subset of: "
        + ", ".join(name for name, _ in PLAN)
        + f" (default: all of them); {INSTRUCTIONS} is the same as --instructions",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"valgrind processes at a time for {INSTRUCTIONS} (default: the CPUs this "
        "process may use); instruction counts do not depend on load",
    )
    parser.add_argument(
        "--pin",
        choices=("both", "auto", "none"),
        default=None,
        help="auto: with 2+ CPUs, the sink on the first CPU and every measured process on "
        "the last; none: the scheduler places them; both: one run of each "
        "(default both, or auto with --quick)",
    )
    parser.add_argument(
        "--json",
        choices=("fast", "stdlib"),
        default="fast",
        help="cdp's encoder: fast, orjson where installed (requirements/bench.txt installs it, "
        "as cdp_logging[fast] does); stdlib, as without the extra (same bytes, see "
        "cdp_logging/_core/serialise.py)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of timing (deterministic "
        "where times on a small VM are not); alone, nothing is timed",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=INSTRUCTION_SWITCH_INTERVAL,
        metavar="SECONDS",
        help=f"with {INSTRUCTIONS}: every valgrind child's sys.setswitchinterval (default "
        f"{INSTRUCTION_SWITCH_INTERVAL}, 10x Python's, so that batches fill closer to how "
        "they fill outside valgrind; 0.005 is Python's own). See benchmarks/README.md",
    )
    parser.add_argument(
        "--fill",
        type=int,
        default=None,
        metavar="K",
        help=f"with {INSTRUCTIONS}: cdp's delivery measures send exactly K events per request "
        f"(default {INSTRUCTION_FILL}; even, dividing N = {INSTRUCTION_CALLS:,}, or "
        f"{INSTRUCTION_CALLS_QUICK} with --quick); the table also shows the figure at fills "
        + ", ".join(f"{fill:,}" for fill in SHOWN_FILLS),
    )
    parser.add_argument(
        "--measures",
        default="",
        help=f"with {INSTRUCTIONS} (implies it): comma-separated subset of "
        + ", ".join(name for name, _ in INSTRUCTION_MEASURES)
        + " (default: all); the ratios to the floor need caller",
    )
    parser.add_argument(
        "--detail", action="store_true", help="also print each repeat's value of the main metrics"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="write every raw number, per repeat, to this JSON file (default: none)",
    )
    args = parser.parse_args()
    if args.json == "stdlib":
        os.environ[STDLIB_JSON_ENV] = "1"  # every child inherits it (scenarios.py reads it)
    wanted = {name for name in args.scenarios.split(",") if name}
    measures = {name for name in args.measures.split(",") if name}
    unknown_measures = measures - {name for name, _ in INSTRUCTION_MEASURES}
    if unknown_measures:
        parser.error(f"unknown measure(s): {', '.join(sorted(unknown_measures))}")
    if args.instructions or measures:
        wanted.add(INSTRUCTIONS)
    unknown = wanted - {name for name, _ in PLAN} - {INSTRUCTIONS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    instructions = INSTRUCTIONS in wanted
    wanted.discard(INSTRUCTIONS)
    # Nothing timed to run when instructions was the only scenario asked for.
    timed = not (instructions and not wanted)
    jobs = args.jobs if args.jobs is not None else len(_usable_cpus())
    if jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.switch_interval > 0:
        parser.error("--switch-interval must be a positive number of seconds")
    if args.fill is not None and not instructions:
        parser.error(f"--fill is for {INSTRUCTIONS} (--instructions or --measures) only")
    fill = args.fill if args.fill is not None else INSTRUCTION_FILL
    bad_fill = check_fill_arguments(
        INSTRUCTION_CALLS_QUICK if args.quick else INSTRUCTION_CALLS, fill
    )
    if instructions and bad_fill is not None:
        parser.error(bad_fill)
    repeats = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeat must be at least 1")
    pin = args.pin or ("auto" if args.quick else "both")
    placements = {"both": [True, False], "auto": [True], "none": [False]}[pin]
    output = args.output.resolve() if args.output is not None else None

    info = meta(args.quick)
    info["repeats"] = repeats
    info["json"] = args.json
    if not timed:
        placements = []
    info["scenarios"] = (
        [name for name, _ in PLAN if not wanted or name in wanted] if timed else []
    ) + ([INSTRUCTIONS] if instructions else [])
    print(
        f"python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs; "
        f"cdp_logging {info['cdp_logging']}, segment-analytics-python "
        f"{info['segment_analytics_python']}; "
        + f"encoder {args.json}; "
        + (f"{repeats} repeat(s) per placement" if timed else f"{INSTRUCTIONS} only")
        + (" (quick)" if args.quick else ""),
        flush=True,
    )
    measured: list[tuple[str, Results, int | None, int | None]] = []
    for pinned in placements:
        results, sink_cpu, bench_cpu = measure(pinned, repeats, args.quick, wanted)
        name = "pinned" if bench_cpu is not None else "unpinned"
        measured.append((name, results, sink_cpu, bench_cpu))

    placements_out: dict[str, Any] = {}
    for name, results, sink_cpu, bench_cpu in measured:
        title = (
            f"{name}: sink on CPU {sink_cpu}, measured processes on CPU {bench_cpu}"
            if bench_cpu is not None
            else f"{name}: the scheduler places every process"
        )
        section = report(title, results, repeats, args.detail)
        section.update(sink_cpu=sink_cpu, bench_cpu=bench_cpu)
        placements_out[name] = section
    # After the timed runs, never beside them: its valgrind processes load every CPU.
    instructions_out = (
        measure_instructions(args.quick, jobs, args.switch_interval, fill, measures)
        if instructions
        else None
    )
    info["cdp_logging_source_sha256_at_end"] = _source_digest()
    changed = info["cdp_logging_source_sha256_at_end"] != info["cdp_logging_source_sha256"]
    if changed:
        print(
            "\nNOTE: cdp_logging's sources changed during the run: repeats measured different code"
        )
    everything: dict[str, Any] = {
        "meta": info,
        "sources_changed_during_run": changed,
        "placements": placements_out,
    }
    if instructions_out is not None:
        everything[INSTRUCTIONS] = instructions_out
    if output is not None:
        output.write_text(json.dumps(everything, indent=2) + "\n")
        print(f"\nraw numbers: {output}")


if __name__ == "__main__":
    main()
