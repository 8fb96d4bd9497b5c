"""One benchmark scenario for one library, in a process of its own.

Usage: python benchmarks/scenarios.py SCENARIO LIBRARY SINK_URL [--quick] [--cpu N] [--calls N]
       [--fill K]  (K: cdp's instructions_delivery*, events per request)

Prints exactly one JSON line with the results on stdout (diagnostics from the libraries
go to stderr). ``run.py`` starts a fresh process per scenario and library so that one
library's threads, queues and retries cannot disturb the next measurement, and so that
exit delivery can be timed by watching the process end.

Libraries:

* ``cdp``: ``cdp_logging.AnalyticsHandler`` on a logger, fed by ``log.info("track",
  extra={"cdp": {...}})``, the way the library is meant to be used.
* ``segment``: segment-analytics-python's ``Client.track(...)`` called directly, default
  settings except ``host``.
* ``floor``: the same ``log.info`` call with only a ``logging.NullHandler``: what any
  logging call costs before an analytics library does anything.

Each timed call sits in one small function (``track_by_logging`` for cdp and the floor,
``track_direct`` for segment), so every library pays the same one extra frame and the
ratios are not skewed by it. The payload dicts are literals inside the call, so every
call builds fresh ones, as application code does; a library that keeps a reference to
them (segment queues the caller's dict) is charged for keeping them.

``instructions_caller``, ``instructions_caller_bound`` (cdp with a request's context
bound) and ``instructions_delivery`` are not measurements on their own:
``run.py`` runs each of them under callgrind twice, with ``--calls N`` and ``--calls 2N``,
and takes the difference of the two processes' instruction totals (see ``run.py``'s
``instructions`` scenario). They time nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import socket
import statistics
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

# run.py --json stdlib: measure cdp as it runs without the `fast` extra, orjson installed
# or not (cdp_logging/_core/serialise.py falls back when the import fails; None makes it fail).
if os.environ.get("CDP_BENCH_STDLIB_JSON"):
    sys.modules["orjson"] = None  # type: ignore[assignment]

SCENARIOS = ("caller", "loop", "exit", "exit_held", "exit_flush", "memory")
# The handler's path cut short at each step, cumulative: run.py's breakdown of where an
# event's instructions go is the difference between neighbours (see instructions_stage).
STAGES = ("found", "rules", "built", "queued")
# Run only under callgrind by run.py's opt-in ``instructions`` scenario.
INSTRUCTION_SCENARIOS = (
    "instructions_caller",
    "instructions_caller_bound",
    "instructions_delivery",
    "instructions_caller_direct",
    "instructions_delivery_direct",
    *(f"instructions_stage_{stage}" for stage in STAGES),
    "instructions_stage_queued_plan",
)
# cdp only: the caller with and without a request's context bound (issue #10), run beside
# ``caller`` in the same repeat.
CONTEXT_SCENARIOS = ("caller_context",)
# cdp only: the caller with each of issue #27's message options configured, against a
# handler without them, in alternating rounds of one process.
PIPELINE_SCENARIOS = ("caller_pipeline",)
LIBRARIES = ("cdp", "segment", "floor")

WRITE_KEY = "bench"
# Where the stage scenarios point their client: it never sends (send=False).
UNUSED_STAGE_HOST = "http://127.0.0.1:9"
# Every wait is bounded; these are far above what a healthy run needs.
FLUSH_TIMEOUT_CDP = 60.0
FLUSH_TIMEOUT_SEGMENT = 120.0
HTTP_TIMEOUT = 10.0


# -- helpers -------------------------------------------------------------------------


def track_by_logging(log: logging.Logger) -> None:
    """The call every logging variant is timed on (cdp_logging's handler, the floor).

    A function of its own, like ``track_direct``: each library's measurement pays the
    same extra frame, so the ratios are unaffected, and the payload is written once.
    """
    log.info(
        "track",
        extra={
            "cdp": {
                "user_id": "019mr8mf4r",
                "event": "Purchased an Item",
                "properties": {"revenue": 39.95, "sku": "B-17"},
            }
        },
    )


def track_direct(client: Any) -> Any:
    """The reference SDK's direct call, with the same payload."""
    return client.track(
        user_id="019mr8mf4r",
        event="Purchased an Item",
        properties={"revenue": 39.95, "sku": "B-17"},
    )


def sink_count(sink: str) -> int:
    """Messages the sink has counted so far (bounded HTTP call)."""
    with urllib.request.urlopen(f"{sink}/count", timeout=HTTP_TIMEOUT) as answer:
        data: dict[str, int] = json.loads(answer.read())
    return data["count"]


def sink_post(sink: str, path: str) -> None:
    """POST to one of the sink's control paths (``/hold``, ``/release``)."""
    request = urllib.request.Request(f"{sink}{path}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
        answer.read()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens, so every send fails fast (refused).

    Binds a free port and releases it; another process could take it in between, which
    on a benchmark machine is unlikely enough to accept.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def bounded(work: Callable[[], object], timeout: float) -> tuple[bool, float]:
    """Run *work* in a daemon thread; return (finished in time, seconds waited).

    segment's ``flush()`` is ``queue.join()`` with no timeout, so it can only be bounded
    from outside. A daemon thread left behind cannot keep the process alive.
    """
    started = time.perf_counter()
    thread = threading.Thread(target=work, name="bench-bounded", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), time.perf_counter() - started


def percentile(sorted_values: list[int], percent: int) -> int:
    """Nearest-rank percentile of an already sorted list (integer maths: no float drift)."""
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[rank - 1]


def quiet_logger(name: str) -> logging.Logger:
    """A logger that passes INFO records to its own handlers only.

    The level must be INFO for every library alike: at the default WARNING the floor
    would return from ``isEnabledFor`` before building a record and measure nothing.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    return logger


def import_library(library: str) -> None:
    """Import the library under test now, outside any measured region."""
    if library == "cdp":
        import cdp_logging  # noqa: F401
    elif library == "segment":
        import segment.analytics  # noqa: F401


def make_cdp(host: str, **options: Any) -> tuple[logging.Logger, Any]:
    """A logger with an ``AnalyticsHandler`` pointed at *host*."""
    import cdp_logging

    handler = cdp_logging.AnalyticsHandler(write_key=WRITE_KEY, host=host, **options)
    logger = quiet_logger("bench.cdp")
    logger.addHandler(handler)
    return logger, handler


def make_cdp_client(host: str, **options: Any) -> Any:
    """cdp_logging's ``Analytics`` client pointed at *host*, for the direct calls."""
    import cdp_logging

    return cdp_logging.Analytics(write_key=WRITE_KEY, host=host, **options)


def make_floor() -> logging.Logger:
    logger = quiet_logger("bench.floor")
    logger.addHandler(logging.NullHandler())
    return logger


def make_segment(host: str, **options: Any) -> Any:
    """segment-analytics-python's client with its defaults, only ``host`` changed
    (and *options*, which only the instruction counts pass: ``send=False``)."""
    import segment.analytics as analytics

    return analytics.Client(WRITE_KEY, host=host, **options)


def segment_pending(client: Any) -> int:
    """Messages segment still holds: its queue's unfinished tasks (queued + in flight)."""
    return int(client.queue.unfinished_tasks)


def cdp_stats(handler: Any) -> dict[str, Any]:
    stats: dict[str, Any] = handler.client.stats()
    return stats


# -- (a) caller-side cost -------------------------------------------------------------


def timed_calls(call: Callable[[], object], warmup: int, calls: int) -> list[int]:
    """*calls* calls after *warmup* untimed ones, each timed alone (ns), sorted."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        started = clock()
        call()
        samples[i] = clock() - started
    samples.sort()
    return samples


def buffer_caller(buffer: str, sink: str, calls: int) -> dict[str, Any]:
    """The caller scenario for cdp with *buffer*: what benchmarks/buffer.py and
    benchmarks/fleet.py run beside the memory buffer."""
    log, handler = make_cdp(sink, buffer=buffer)
    samples = timed_calls(lambda: track_by_logging(log), 1_000, calls)
    flushed = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
    stats = cdp_stats(handler)
    return {
        "median_us": statistics.median(samples) / 1000,
        "p99_us": percentile(samples, 99) / 1000,
        "flushed": flushed,
        "dropped": stats["dropped"],
        "failed": stats["failed"],
    }


def caller(library: str, sink: str, quick: bool) -> dict[str, Any]:
    """Time each call alone: median and p99 of the caller's cost, sender running."""
    warmup = 1_000
    calls = 2_000 if quick else 20_000
    samples = [0] * calls
    clock = time.perf_counter_ns
    rejected = 0
    extra: dict[str, Any] = {}
    if library == "cdp":
        log, handler = make_cdp(sink)
        samples = timed_calls(lambda: track_by_logging(log), warmup, calls)
        finished = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
        stats = cdp_stats(handler)
        rejected = int(stats["dropped"])
        extra = {"flushed": finished, "library_stats": stats}
    elif library == "segment":
        client = make_segment(sink)
        for _ in range(warmup):
            track_direct(client)
        for i in range(calls):
            started = clock()
            result = track_direct(client)
            samples[i] = clock() - started
            if not result[0]:
                rejected += 1
        finished, _ = bounded(client.flush, FLUSH_TIMEOUT_SEGMENT)
        extra = {"flushed": finished}
    elif library == "floor":
        floor = make_floor()
        samples = timed_calls(lambda: track_by_logging(floor), warmup, calls)
    else:
        raise SystemExit(f"unknown library {library!r}")
    # What the two clock reads cost with nothing between them; not subtracted.
    empty = [0] * 1_000
    for i in range(len(empty)):
        started = clock()
        empty[i] = clock() - started
    samples.sort()
    delivered = sink_count(sink) if library != "floor" else None
    return {
        "calls": calls,
        "warmup": warmup,
        "median_us": statistics.median(samples) / 1000,
        "p90_us": percentile(samples, 90) / 1000,
        "p99_us": percentile(samples, 99) / 1000,
        "max_us": samples[-1] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
        "timer_overhead_us": statistics.median(empty) / 1000,
        "rejected_by_library": rejected,
        "delivered_after_flush": delivered,
        "sent": warmup + calls,
        **extra,
    }


# What the middleware binds for a typical request (plus a user id), for caller_context
# and instructions_caller_bound.
REQUEST_CONTEXT: dict[str, Any] = {
    "user_id": "019mr8mf4r",
    "anonymous_id": "4f1e2d3c-5b6a-4789-8123-456789abcdef",
    "context": {
        "ip": "203.0.113.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
        "locale": "de-DE",
        "page": {
            "path": "/cart",
            "url": "https://shop.example/cart?ref=mail",
            "search": "?ref=mail",
            "referrer": "https://mail.example/",
        },
    },
}


def caller_context(sink: str, quick: bool) -> dict[str, Any]:
    """The caller's median with nothing bound and with what the middleware binds.

    The two are measured in alternating rounds in one process, so the machine's
    drifting speed affects both alike; the difference is the cost of the merge.
    """
    import cdp_logging

    log, handler = make_cdp(sink)
    calls = 2_000 if quick else 20_000
    clock = time.perf_counter_ns
    request = REQUEST_CONTEXT
    samples: dict[str, list[int]] = {"unbound": [], "bound": []}
    for _ in range(1_000):
        track_by_logging(log)
    for round_ in range(10):
        for name in ("unbound", "bound") if round_ % 2 == 0 else ("bound", "unbound"):
            with cdp_logging.bound_context(**request) if name == "bound" else nullcontext():
                for _ in range(calls // 10):
                    started = clock()
                    track_by_logging(log)
                    samples[name].append(clock() - started)
    finished = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
    result: dict[str, Any] = {"flushed": finished, "library_stats": cdp_stats(handler)}
    for name, values in samples.items():
        values.sort()
        result[f"{name}_median_us"] = statistics.median(values) / 1000
        result[f"{name}_p99_us"] = percentile(values, 99) / 1000
    result["bound_extra_us"] = result["bound_median_us"] - result["unbound_median_us"]
    return result


def stamp_region(message: dict[str, Any]) -> dict[str, Any]:
    """A typical before_send: enrich every message with one property."""
    message.setdefault("properties", {})["region"] = "eu-1"
    return message


# Each of #27's options that sits on the logging call's path, as a user would set it.
PIPELINE_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {},
    "context": {"context": {"app": {"name": "shop", "version": "1.4.2"}, "environment": "prod"}},
    "redact": {"redact": ["traits.email", "properties.*token*", "context.ip"]},
    "before_send": {"before_send": stamp_region},
}


def caller_pipeline(sink: str, quick: bool) -> dict[str, Any]:
    """The caller's median through a handler with each option, and with none.

    One handler per variant on loggers of their own, timed in alternating rounds (the
    order rotating), so drift in the machine's speed falls on every variant alike; the
    difference from ``none`` is what configuring the option costs per call.
    """
    import cdp_logging

    made = {}
    for name, options in PIPELINE_VARIANTS.items():
        handler = cdp_logging.AnalyticsHandler(write_key=WRITE_KEY, host=sink, **options)
        logger = quiet_logger(f"bench.cdp.{name}")
        logger.addHandler(handler)
        made[name] = (logger, handler)
    calls = 2_000 if quick else 20_000
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {name: [] for name in made}
    names = list(made)
    for logger, _ in made.values():
        for _ in range(500):
            track_by_logging(logger)
    for round_ in range(10):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            logger = made[name][0]
            for _ in range(calls // 10):
                started = clock()
                track_by_logging(logger)
                samples[name].append(clock() - started)
    finished = all(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP) for _, handler in made.values())
    result: dict[str, Any] = {
        "flushed": finished,
        "library_stats": cdp_stats(made["before_send"][1]),
    }
    for name, values in samples.items():
        values.sort()
        result[f"{name}_median_us"] = statistics.median(values) / 1000
        result[f"{name}_p99_us"] = percentile(values, 99) / 1000
    for name in names[1:]:
        result[f"{name}_extra_us"] = result[f"{name}_median_us"] - result["none_median_us"]
    return result


# -- (b) tight loop -------------------------------------------------------------------


def loop(library: str, sink: str, quick: bool) -> dict[str, Any]:
    """As many calls as fast as possible, then wait until delivery completes."""
    calls = 10_000 if quick else 100_000
    rejected = 0
    extra: dict[str, Any] = {}
    if library == "cdp":
        log, handler = make_cdp(sink)
        started = time.perf_counter()
        for _ in range(calls):
            track_by_logging(log)
        calls_done = time.perf_counter()
        flushed = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
        done = time.perf_counter()
        stats = cdp_stats(handler)
        rejected = int(stats["dropped"])
        extra = {"library_stats": stats}
    elif library == "segment":
        client = make_segment(sink)
        started = time.perf_counter()
        for _ in range(calls):
            if not track_direct(client)[0]:
                rejected += 1
        calls_done = time.perf_counter()
        flushed, _ = bounded(client.flush, FLUSH_TIMEOUT_SEGMENT)
        done = time.perf_counter()
        extra = {"pending_after_flush": segment_pending(client)}
    else:
        raise SystemExit(f"scenario loop does not apply to {library!r}")
    delivered = sink_count(sink)
    elapsed = done - started
    return {
        "sent": calls,
        "delivered": delivered,
        "dropped": calls - delivered,
        "rejected_by_library": rejected,
        "flushed": flushed,
        "calls_seconds": calls_done - started,
        "calls_per_s": calls / (calls_done - started),
        "elapsed_s": elapsed,
        "delivered_per_s": delivered / elapsed,
        **extra,
    }


# -- (c) delivery at exit ---------------------------------------------------------------


def exit_delivery(library: str, sink: str, mode: str) -> dict[str, Any]:
    """Enqueue 10,000 events, then end; the parent times the rest until process end.

    *mode*:

    * ``exit``: the script just ends, nothing called. cdp is given a long flush interval
      and the largest batch (2,500) so that as little as possible leaves early, but its
      sender still sends while the events are logged; ``pending_at_end`` says how many
      were actually left for exit delivery. segment keeps its defaults.
    * ``exit_held``: both SDKs at their defaults; the sink holds batch requests while
      the events are enqueued (each SDK's first request stays in flight), so ~10,000
      are queued when the sink is released and the script ends. This is the case the
      "10,000 queued events delivered at exit" target describes.
    * ``exit_flush``: as ``exit_held``, then an explicit flush (cdp ``handler.flush()``,
      segment ``client.shutdown()``, which is flush + join), timed here, then the end.
    """
    calls = 10_000
    held = mode in ("exit_held", "exit_flush")
    result: dict[str, Any] = {"sent": calls, "mode": mode, "held": held}
    if held:
        sink_post(sink, "/hold")
    if library == "cdp":
        options: dict[str, Any] = {}
        if mode == "exit":
            options = {"flush_interval": 3600.0, "max_events_in_batch": 2500}
        log, handler = make_cdp(sink, **options)
        for _ in range(calls):
            track_by_logging(log)
        result["options"] = options
        result["rejected_by_library"] = int(cdp_stats(handler)["dropped"])
        result["delivered_before_end"] = sink_count(sink)
        if held:
            sink_post(sink, "/release")
        result["pending_at_end"] = int(cdp_stats(handler)["pending"])
        result["t_end"] = time.monotonic()
        if mode == "exit_flush":
            handler.flush()  # waits at most shutdown_timeout (5 s by default)
            result["t_flushed"] = time.monotonic()
            result["flush_finished"] = int(cdp_stats(handler)["pending"]) == 0
            result["delivered_after_flush"] = sink_count(sink)
    elif library == "segment":
        client = make_segment(sink)
        rejected = 0
        for _ in range(calls):
            if not track_direct(client)[0]:
                rejected += 1
        result["rejected_by_library"] = rejected
        result["delivered_before_end"] = sink_count(sink)
        if held:
            sink_post(sink, "/release")
        result["pending_at_end"] = segment_pending(client)
        result["t_end"] = time.monotonic()
        if mode == "exit_flush":
            finished, _ = bounded(client.shutdown, FLUSH_TIMEOUT_SEGMENT)
            result["t_flushed"] = time.monotonic()
            result["flush_finished"] = finished
            result["delivered_after_flush"] = sink_count(sink)
    elif library == "floor":
        log = make_floor()
        for _ in range(calls):
            track_by_logging(log)
        if held:
            sink_post(sink, "/release")
        result["rejected_by_library"] = 0
        result["delivered_before_end"] = 0
        result["pending_at_end"] = 0
        result["t_end"] = time.monotonic()
    else:
        raise SystemExit(f"unknown library {library!r}")
    return result


# -- (d) memory per queued event ---------------------------------------------------------


def memory(library: str, quick: bool) -> dict[str, Any]:
    """Traced memory growth per event while the host is unreachable, so events stay queued.

    100 warm-up events first (same for both libraries) so that the sender thread, the
    HTTP session and the first failed request are not charged to the measured events;
    the growth including them is reported too, as ``bytes_per_event_cold``.
    """
    warmup = 100
    calls = 1_000 if quick else 5_000
    host = closed_port_url()
    pending: Callable[[], int]
    import_library(library)  # module imports are not per-event memory
    gc.collect()
    tracemalloc.start()
    cold_base = tracemalloc.get_traced_memory()[0]
    if library == "cdp":
        log, handler = make_cdp(host)
        for _ in range(warmup):
            track_by_logging(log)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            track_by_logging(log)

        def pending() -> int:
            return int(cdp_stats(handler)["pending"])

    elif library == "segment":
        client = make_segment(host)
        for _ in range(warmup):
            track_direct(client)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            track_direct(client)

        def pending() -> int:
            return segment_pending(client)

    else:
        raise SystemExit(f"scenario memory does not apply to {library!r}")
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "warmup": warmup,
        "calls": calls,
        "host": host,
        "bytes_growth": after - base,
        "bytes_per_event": (after - base) / calls,
        "bytes_per_event_cold": (after - cold_base) / (calls + warmup),
        "peak_bytes": peak - cold_base,
        "pending": pending(),
    }


# -- (e) instructions, counted by run.py under callgrind ------------------------------------


def instructions_caller(library: str, host: str, calls: int) -> dict[str, Any]:
    """*calls* of the ``caller`` scenario's call, untimed, each library in "don't send" mode.

    run.py counts this whole process's instructions under callgrind for N and 2N calls;
    the difference over N is the instructions per call. Nothing here is timed, and there
    is no warm-up: whatever happens once (imports, start-up, the first call's lazy set-up,
    exit) happens in both processes and cancels out.

    * cdp: ``send=False``. Its sender thread still runs and settles every batch as
      ``not_sent`` (it only skips the HTTP request); the flush at the end waits until
      all of them are settled, so that work is inside the count, as it would be in a
      real process.
    * segment: ``send=False``. ``track()`` then does all its work (validation, ids,
      timestamp, ``clean()``, the size check's ``json.dumps``) and returns ``(True, msg)``
      just before ``queue.put``: nothing is queued and its consumer thread is never
      started. So it can never refuse a call, and the loop does not check the result.
    * floor: the ``NullHandler`` logger, as in ``caller``.
    """
    extra: dict[str, Any] = {}
    if library == "cdp":
        log, handler = make_cdp(host, send=False)
        for _ in range(calls):
            track_by_logging(log)
        flushed = bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP))
        stats = cdp_stats(handler)
        extra = {
            "flushed": flushed,
            "library_stats": stats,
            "rejected_by_library": int(stats["dropped"]),
        }
    elif library == "segment":
        client = make_segment(host, send=False)
        for _ in range(calls):
            track_direct(client)
        extra = {
            "consumer_threads_alive": sum(1 for c in client.consumers if c.is_alive()),
            "pending": segment_pending(client),
        }
    elif library == "floor":
        log = make_floor()
        for _ in range(calls):
            track_by_logging(log)
    else:
        raise SystemExit(f"unknown library {library!r}")
    return {"calls": calls, "send": False, **extra}


def instructions_caller_bound(library: str, host: str, calls: int) -> dict[str, Any]:
    """``instructions_caller`` for cdp with ``REQUEST_CONTEXT`` bound around every call.

    Bound once, before the calls, as a middleware binds once per request: the difference
    from ``instructions_caller`` per call is what a bound context adds to each call.
    """
    if library != "cdp":
        raise SystemExit(f"scenario instructions_caller_bound does not apply to {library!r}")
    import cdp_logging

    with cdp_logging.bound_context(**REQUEST_CONTEXT):
        result = instructions_caller(library, host, calls)
    return {**result, "bound": True}


def plan_of_20_events() -> dict[str, Any]:
    """A tracking plan of 20 events, the measured call's among them, each with a typical
    schema: typed properties, two required, no others allowed."""
    events: dict[str, Any] = {}
    for number in range(20):
        name = "Purchased an Item" if number == 7 else f"Planned Event {number}"
        events[name] = {
            "description": "Tracked when the thing happens.",
            "properties": {
                "type": "object",
                "properties": {
                    "revenue": {"type": "number", "minimum": 0},
                    "sku": {"type": "string", "maxLength": 64},
                    "currency": {"enum": ["EUR", "USD", "GBP"]},
                    "quantity": {"type": "integer", "minimum": 1},
                    "coupon": {"type": ["string", "null"]},
                },
                "required": ["revenue", "sku"],
                "additionalProperties": False,
            },
        }
    return {"events": events}


def paced_calls(
    call: Callable[[], object], flush: Callable[[], bool], calls: int, fill: int
) -> bool:
    """One warm-up call and its flush, then *calls* calls with a flush after every *fill*.

    Why: cdp's sender takes everything queued when it wakes (up to 2,500 messages; its
    ``max_events_in_batch`` is when to wake, not how many to take), so with a caller
    that runs on, a request's fill is however many calls the GIL let in before the
    sender ran, which under valgrind changes from run to run. Stopping after every
    *fill* calls until they are delivered makes every request carry exactly *fill*.
    The client's ``max_events_in_batch`` is *fill* too, so the sender wakes for that
    same batch on its own, and its ``flush_interval`` is long, so nothing else sends.

    The warm-up call takes the sender's first message (it goes out at once: the first
    interval is due from the start) and opens the connection, so no measured request
    is odd in size. Nested loops, not a modulo per call: the inner loop is the same
    loop as the unpaced measures', so the per-event figures compare. Returns whether
    every flush finished in time.
    """
    call()
    flushed = flush()
    for _ in range(calls // fill):
        for _ in range(fill):
            call()
        flushed = flush() and flushed
    return flushed


def calls_then_flush(
    call: Callable[[], object], flush: Callable[[], bool], calls: int, fill: int | None
) -> tuple[bool, dict[str, Any]]:
    """*calls* calls then a flush, paced at *fill* per request (``paced_calls``) when
    given; whether the flushes finished, and what the result line records of the fill."""
    if fill is not None:
        return paced_calls(call, flush, calls, fill), {"fill": fill, "warmup_events": 1}
    for _ in range(calls):
        call()
    return flush(), {}


# A fixed fill's interval: far past any run, so only a full batch or a flush sends.
FILL_FLUSH_INTERVAL = 3_600.0


def fill_options(calls: int, fill: int) -> dict[str, Any]:
    """cdp's options for a run of *calls* at *fill* events per request (see paced_calls)."""
    if fill < 1 or calls % fill:
        raise SystemExit(f"--fill {fill} must divide --calls {calls}")
    return {"max_events_in_batch": fill, "flush_interval": FILL_FLUSH_INTERVAL}


def instructions_delivery(
    library: str, sink: str, calls: int, fill: int | None = None
) -> dict[str, Any]:
    """*calls* events against the sink, then wait until delivered.

    The ``loop`` scenario's work, untimed: run.py counts the whole process (the caller,
    the SDK's background thread, the HTTP requests, exit) under callgrind for N and 2N
    events and divides the difference by the difference in delivered events.

    cdp with *fill* (run.py always gives one): exactly *fill* events per request, plus
    one warm-up event in a request of its own (``paced_calls``), so that the 2N run
    makes exactly N / *fill* requests more than the N run. segment keeps its defaults
    (batches of up to 100, sent as its consumer finds them): run.py states its fill
    from the sink's counts.
    """
    rejected = 0
    extra: dict[str, Any] = {}
    if library == "cdp":
        options = fill_options(calls, fill) if fill is not None else {}
        log, handler = make_cdp(sink, **options)
        flushed, extra = calls_then_flush(
            lambda: track_by_logging(log),
            lambda: bool(handler.client.flush(timeout=FLUSH_TIMEOUT_CDP)),
            calls,
            fill,
        )
        stats = cdp_stats(handler)
        rejected = int(stats["dropped"])
        extra["library_stats"] = stats
    elif library == "segment":
        client = make_segment(sink)
        for _ in range(calls):
            if not track_direct(client)[0]:
                rejected += 1
        # client.flush() is queue.join(), unbounded; run.py bounds the whole process.
        client.flush()
        flushed = segment_pending(client) == 0
    else:
        raise SystemExit(f"scenario instructions_delivery does not apply to {library!r}")
    return {"sent": calls, "rejected_by_library": rejected, "flushed": flushed, **extra}


def instructions_caller_direct(library: str, host: str, calls: int) -> dict[str, Any]:
    """``instructions_caller`` for cdp's direct ``Analytics.track()``, with ``send=False``.

    The same call as segment's in ``instructions_caller`` (``track_direct``), so the two
    per-call figures compare like for like. Each returned Future is dropped, as an
    application that does not wait on it drops it.
    """
    if library != "cdp":
        raise SystemExit(f"scenario instructions_caller_direct does not apply to {library!r}")
    client = make_cdp_client(host, send=False)
    for _ in range(calls):
        track_direct(client)
    flushed = bool(client.flush(timeout=FLUSH_TIMEOUT_CDP))
    stats = client.stats()
    return {"calls": calls, "send": False, "flushed": flushed, "library_stats": stats}


def instructions_delivery_direct(
    library: str, sink: str, calls: int, fill: int | None = None
) -> dict[str, Any]:
    """``instructions_delivery`` for cdp's direct ``Analytics.track()``, Futures dropped."""
    if library != "cdp":
        raise SystemExit(f"scenario instructions_delivery_direct does not apply to {library!r}")
    client = make_cdp_client(sink, **(fill_options(calls, fill) if fill is not None else {}))
    flushed, extra = calls_then_flush(
        lambda: track_direct(client),
        lambda: bool(client.flush(timeout=FLUSH_TIMEOUT_CDP)),
        calls,
        fill,
    )
    stats = client.stats()
    return {
        "sent": calls,
        "rejected_by_library": int(stats["dropped"]),
        "flushed": flushed,
        "library_stats": stats,
        **extra,
    }


def instructions_stage(stage: str, calls: int) -> dict[str, Any]:
    """The handler's ``track_by_logging`` with the path cut short after *stage*.

    An ablation, for the breakdown only: each stage does everything the one before does,
    plus one step, so the difference between neighbours is that step's cost per event.

    * found: the handler finds the payload (``handle``, ``emit``, ``fields_from_record``);
      ``Analytics.submit`` does nothing.
    * rules: ``submit`` only runs ``build`` with its JSON encoder replaced by a constant:
      the checks, the timestamp, the messageId and the bound context, nothing encoded.
    * built: ``submit`` only runs ``build``, encoder and all.
    * queued: the whole ``submit`` with ``send=False``, the sender taking full batches
      (2,500) and settling them unsent: everything but the HTTP request.
    * queued_plan: queued, with a tracking plan of 20 events that every call keeps. Not
      a step of the breakdown: queued_plan minus queued is what the plan adds to a call,
      measured where the sender thread's share is smallest and steadiest (the caller
      measure's sender settles small batches, whose number moves with the machine).

    The ``delivery`` measure is the next stage: everything, sent to the sink.
    """
    from cdp_logging._core import calls as _calls
    from cdp_logging._core import serialise as _json

    if stage not in (*STAGES, "queued_plan"):
        raise SystemExit(f"unknown stage {stage!r}")
    options: dict[str, Any] = {"send": False, "max_queue_size": 4 * calls}
    if stage in ("queued", "queued_plan"):
        options.update(max_events_in_batch=2_500, flush_interval=3_600)
    if stage == "queued_plan":
        options.update(tracking_plan=plan_of_20_events())
    log, handler = make_cdp(UNUSED_STAGE_HOST, **options)
    client = handler.client
    if stage == "rules":
        # Not an assignment: the name is Final for every other reader.
        vars(_json)["dumps_members"] = lambda members, tail: b"{}"
    reached = [0]  # calls that got as far as the stage (built: and were built)
    build = _calls.build

    def built_only(call_type: Any, fields: Any, created: float, strict: bool) -> bool:
        made = isinstance(build(call_type, fields, created, strict), bytes)
        reached[0] += made
        return made

    def found_only(*args: Any, **kwargs: Any) -> bool:
        reached[0] += 1
        return True

    if stage in ("rules", "built"):
        client.submit = built_only
    elif stage == "found":
        client.submit = found_only
    for _ in range(calls):
        track_by_logging(log)
    flushed = bool(client.flush(timeout=FLUSH_TIMEOUT_CDP))
    stats = client.stats()
    if stage in ("queued", "queued_plan"):
        reached[0] = int(stats["queued"])
    return {
        "calls": calls,
        "stage": stage,
        "reached": reached[0],
        "flushed": flushed,
        "library_stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario",
        choices=SCENARIOS + INSTRUCTION_SCENARIOS + CONTEXT_SCENARIOS + PIPELINE_SCENARIOS,
    )
    parser.add_argument("library", choices=LIBRARIES)
    parser.add_argument("sink", help="the sink's base URL, e.g. http://127.0.0.1:8765")
    parser.add_argument("--quick", action="store_true", help="fewer calls (smoke run)")
    parser.add_argument("--cpu", type=int, default=None, help="run on this CPU only")
    parser.add_argument(
        "--calls", type=int, default=None, help="calls, for the instructions_* scenarios only"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval() first: run.py lengthens the GIL's 5 ms under valgrind, "
        "which slows threads ~50x, so that batches fill closer to a real run's",
    )
    parser.add_argument(
        "--fill",
        type=int,
        default=None,
        help="cdp's instructions_delivery*: exactly this many events per request (it must "
        "divide --calls), plus one warm-up event sent alone first",
    )
    args = parser.parse_args()
    if args.fill is not None and (
        args.library != "cdp"
        or args.scenario not in ("instructions_delivery", "instructions_delivery_direct")
    ):
        # segment batches as it batches: a fill it would ignore must not look applied.
        parser.error("--fill is for cdp's instructions_delivery* scenarios only")
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if (args.calls is None) != (args.scenario not in INSTRUCTION_SCENARIOS):
        parser.error("--calls is required by the instructions_* scenarios, and only by them")
    if args.cpu is not None:
        # Before any thread starts: the sender threads inherit it.
        os.sched_setaffinity(0, {args.cpu})
    sink = args.sink.rstrip("/")
    if args.scenario == "caller":
        result = caller(args.library, sink, args.quick)
    elif args.scenario == "loop":
        result = loop(args.library, sink, args.quick)
    elif args.scenario in ("exit", "exit_held", "exit_flush"):
        result = exit_delivery(args.library, sink, args.scenario)
    elif args.scenario == "caller_context":
        result = caller_context(sink, args.quick)
    elif args.scenario == "caller_pipeline":
        result = caller_pipeline(sink, args.quick)
    elif args.scenario == "instructions_caller":
        result = instructions_caller(args.library, sink, args.calls)
    elif args.scenario == "instructions_caller_bound":
        result = instructions_caller_bound(args.library, sink, args.calls)
    elif args.scenario == "instructions_delivery":
        result = instructions_delivery(args.library, sink, args.calls, args.fill)
    elif args.scenario == "instructions_caller_direct":
        result = instructions_caller_direct(args.library, sink, args.calls)
    elif args.scenario == "instructions_delivery_direct":
        result = instructions_delivery_direct(args.library, sink, args.calls, args.fill)
    elif args.scenario.startswith("instructions_stage_"):
        if args.library != "cdp":
            parser.error("the instructions_stage_* scenarios measure cdp only")
        result = instructions_stage(args.scenario.removeprefix("instructions_stage_"), args.calls)
    else:
        result = memory(args.library, args.quick)
    result.update(scenario=args.scenario, library=args.library, pid=os.getpid())
    print(json.dumps(result), flush=True)
    if args.scenario == "memory":
        # The host is unreachable on purpose: skip exit delivery, which would only
        # retry against a closed port until shutdown_timeout and report the loss.
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
