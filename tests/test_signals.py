"""A logging call made from a signal handler returns promptly in every state of the
library (issue 24, item 6; contract 20).

A Python signal handler runs in the main thread between two bytecodes, possibly while
that thread holds one of our locks. Each test makes the main thread send itself a real
SIGUSR1 from a hook inside one of the regions a logging call takes a lock in; the
handler logs an analytics record. Before the fix each of these hung forever (the child
would end by faulthandler's timer, with a traceback).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, run_python

PRELUDE = """
import faulthandler, json, logging, os, signal, sys, threading, time
faulthandler.dump_traceback_later(20, exit=True)  # a hang ends the child, with a traceback
import cdp_logging
errors = []
handler = cdp_logging.AnalyticsHandler(
    KEY, URL, on_error=errors.append, stderr_warnings=False, **OPTIONS
)
log = logging.getLogger("app")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
handled = []
def on_signal(signum, frame):
    log.info("track", extra=SIGNAL_EXTRA)
    handled.append(signum)
signal.signal(signal.SIGUSR1, on_signal)
rung = []
def ring():
    # The handler runs as soon as os.kill returns: still inside the caller's region.
    if not rung:
        rung.append(True)
        os.kill(os.getpid(), signal.SIGUSR1)
"""

EPILOGUE = """
assert handled, "the signal handler did not run"
handler.client.flush(5)
stats = handler.client.stats()
print(json.dumps({"errors": stats["errors"], "on_error": sorted(e.code for e in errors)}))
handler.close()
"""


def run(collector: Collector, options: str, signal_extra: str, body: str) -> dict[str, object]:
    code = (
        f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
        f"OPTIONS = {options}\nSIGNAL_EXTRA = {signal_extra}\n" + PRELUDE + body + EPILOGUE
    )
    done = run_python(code, timeout=60)
    assert (0, "") == (done.returncode, done.stderr), done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


VALID = '{"user_id": "from-signal", "event": "signalled"}'
INVALID = '{"cdp": {"user_id": "from-signal"}}'  # a track without event: refused


def events(collector: Collector) -> list[str]:
    return sorted(message["userId"] for message in collector.messages())


class TestSignalHandlerCalls:
    @pytest.mark.parametrize("signal_extra", [INVALID, VALID], ids=["refused", "queue_full"])
    def test_while_the_main_thread_reports_a_refusal(
        self, collector: Collector, signal_extra: str
    ) -> None:
        """The main thread is counting a refusal (the reporter's lock held) when the signal
        arrives; the handler's own call, refused too, is counted and returns."""
        if signal_extra == INVALID:
            options, setup, code = "{}", "", "invalid_message"
            main = 'log.info("track", extra={"cdp": {"user_id": "main"}})'
        else:
            # One message in flight (held by the collector), one queued: the next is refused.
            collector.faults.latency(2.0, count=1)
            options, code = '{"max_queue_size": 1}', "queue_full"
            setup = """
log.info("track", extra={"user_id": "in-flight", "event": "E"})
for _ in range(2000):  # bounded: until the sender has taken it
    if handler.client.stats()["in_flight"]:
        break
    time.sleep(0.001)
log.info("track", extra={"user_id": "queued", "event": "E"})
"""
            main = 'log.info("track", extra={"user_id": "main", "event": "E"})'
        body = (
            setup
            + """
from cdp_logging._core.report import Reporter
line = Reporter._line
def ringing_line(self, error, total):
    ring()  # inside the reporter's locked region
    return line(self, error, total)
Reporter._line = ringing_line
"""
            + main
        )
        result = run(collector, options, signal_extra, body)

        assert {code: 2} == result["errors"]
        assert [code, code] == result["on_error"]

    def test_while_the_main_thread_starts_the_sender(self, collector: Collector) -> None:
        """The main thread's first message is starting the sender thread (its start lock
        held) when the signal arrives; the handler's message is queued and both go."""
        body = """
start = threading.Thread.start
def ringing_start(self):
    if self.name.startswith("cdp_logging-sender"):
        ring()  # inside the sender's start lock
    return start(self)
threading.Thread.start = ringing_start
log.info("track", extra={"user_id": "main", "event": "E"})
"""
        result = run(collector, "{}", VALID, body)

        assert {} == result["errors"]
        assert ["from-signal", "main"] == events(collector)

    def test_a_handler_that_closes_while_the_sender_starts(self, collector: Collector) -> None:
        """Found by review: a handler that *closes* the client (a SIGTERM handler's usual
        last act) while the first message starts the sender thread waited for the start
        lock its own thread held. It closes now, and the first message is delivered."""
        body = """
start = threading.Thread.start
def ringing_start(self):
    if self.name.startswith("cdp_logging-sender"):
        ring()
    return start(self)
threading.Thread.start = ringing_start
def on_signal(signum, frame):
    handler.client.close(5)
    handled.append(signum)
signal.signal(signal.SIGUSR1, on_signal)
log.info("track", extra={"user_id": "main", "event": "E"})
"""
        code = (
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            f"OPTIONS = {{}}\nSIGNAL_EXTRA = {VALID}\n"
            + PRELUDE
            + body
            + "assert handled\nprint(json.dumps(handler.client.stats()['errors']))\n"
        )
        done = run_python(code, timeout=60)
        assert (0, "") == (done.returncode, done.stderr), done.stderr[-3000:]
        assert "{}" == done.stdout.strip().splitlines()[-1]
        assert ["main"] == events(collector)

    @pytest.mark.parametrize("buffer", ["memory", "sqlite"])
    def test_while_the_main_thread_is_queuing(
        self, collector: Collector, tmp_path: Path, buffer: str
    ) -> None:
        """The main thread is appending to the queue (its lock held) when the signal
        arrives; the handler's message is queued too, and both are delivered. With
        ``buffer="sqlite:PATH"`` the put holds the buffer's memory lock, which was a
        plain Lock that the handler's put waited for in its own thread."""
        # Where each buffer's put appends, inside its locked region.
        pending, options = (
            ("_items", "{}")
            if buffer == "memory"
            else ("_pending", repr({"buffer": f"sqlite:{tmp_path / 'b.db'}"}))
        )
        body = f"""
class RingingList(list):
    def append(self, item):
        ring()  # inside the queue's locked region
        super().append(item)
queue = handler.client.buffer
queue.{pending} = RingingList(queue.{pending})
log.info("track", extra={{"user_id": "main", "event": "E"}})
"""
        result = run(collector, options, VALID, body)

        assert {} == result["errors"]
        assert ["from-signal", "main"] == events(collector)

    def test_while_the_main_thread_reopens_a_closed_handler(self, collector: Collector) -> None:
        """The main thread's record is reopening a closed handler's client (its reopen
        lock held) when the signal arrives; the handler's call returns, reported as
        closed, and the main thread's record is delivered."""
        body = """
handler.close()  # as dictConfig does to a handler it replaces: the next record reopens
new_sender = cdp_logging.Analytics._new_sender
def ringing_new_sender(self, *args, **kwargs):
    ring()  # inside the client's reopen lock
    return new_sender(self, *args, **kwargs)
cdp_logging.Analytics._new_sender = ringing_new_sender
log.info("track", extra={"user_id": "main", "event": "E"})
"""
        result = run(collector, "{}", VALID, body)

        assert {"closed": 1} == result["errors"]
        assert ["closed"] == result["on_error"]
        assert ["main"] == events(collector)

    def test_a_handler_that_closes_while_a_flush_runs_out_of_time(
        self, collector: Collector
    ) -> None:
        """A flush() sending from the main thread (here: no sender thread could start)
        runs out of time before a retry and hands the batch on, under the sender's
        lock, when a handler closes the client: close() waited for that lock, held by
        its own thread, forever. Now the batch is reported once, as shutdown_timeout."""
        collector.faults.status(503, count=100)
        body = """
start = threading.Thread.start
def no_sender_thread(self):
    if self.name.startswith("cdp_logging-sender"):
        raise RuntimeError("can't start new thread")
    return start(self)
threading.Thread.start = no_sender_thread
from collections import deque
class RingingDeque(deque):
    def append(self, item):
        ring()  # inside _out_of_time's locked region
        super().append(item)
sender = handler.client._sender
sender._handoff = RingingDeque(sender._handoff)
def on_signal(signum, frame):
    handler.client.close(1)
    handled.append(signum)
signal.signal(signal.SIGUSR1, on_signal)
log.info("track", extra={"user_id": "main", "event": "E"})
print(handler.client.flush(0.5))  # one attempt, then the backoff outlasts the deadline
assert handled, "the signal handler did not run"
print(json.dumps({"errors": handler.client.stats()["errors"],
                  "on_error": sorted(e.code for e in errors)}))
"""
        code = (
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            f"OPTIONS = {{}}\nSIGNAL_EXTRA = {VALID}\n" + PRELUDE + body
        )
        done = run_python(code, timeout=60)
        told = (
            "cdp_logging: cannot start the sender thread (can't start new thread); "
            "sending at flush/close"
        )
        assert (0, [told]) == (done.returncode, done.stderr.splitlines()), done.stderr[-3000:]
        flushed, result = done.stdout.strip().splitlines()[-2:]
        assert "True" == flushed  # settled: reported, not delivered
        assert {
            "errors": {"shutdown_timeout": 1},
            "on_error": ["shutdown_timeout"],
        } == json.loads(result)
