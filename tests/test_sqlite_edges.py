"""The SQLite buffer at its edges (#24): a tight loop, the bound and SIGKILL, a process
that only opens the file, reconfiguration, a clock step, retries that run out."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import cdp_logging
from cdp_logging._buffers.sqlite import SQLiteQueue
from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, line_reader

MakeClient = Callable[..., cdp_logging.Analytics]


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(timeout=10)


def rows(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as reader:
        return [data for (data,) in reader.execute("SELECT data FROM messages")]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# A logging loop as fast as the caller can go for SECONDS, then what was delivered by
# the time it ended (before any flush).
TIGHT = """
import logging, sys, time, os, cdp_logging
url, buffer, key, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
handler = cdp_logging.AnalyticsHandler(write_key=key, host=url, buffer=buffer)
log = logging.getLogger("tight")
log.propagate = False
log.addHandler(handler)
log.setLevel(logging.INFO)
payload = {"cdp": {"user_id": "u", "event": "Tight", "properties": {"n": 1}}}
calls = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    for _ in range(100):
        log.info("track", extra=payload)
    calls += 100
stats = handler.client.stats()
print(calls, stats["delivered"], stats["requests"], flush=True)
os._exit(0)
"""


@pytest.fixture
def sink() -> Iterator[str]:
    """The benchmarks' counting sink, in a process of its own: it answers as fast as
    a healthy CDP, where the in-process collector (which validates every message) would
    be the bottleneck of both buffers alike."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "sink.py"), "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = line_reader(process.stdout).get(timeout=30).strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the sink exits at end of file
        process.wait(timeout=10)


class TestTightLoop:
    def test_the_sender_keeps_sending_while_a_tight_loop_runs(
        self, sink: str, tmp_path: Path
    ) -> None:
        """Contract 15. The SQLite buffer wrote, read back and deleted every message on
        the threads that share the interpreter lock with the loop, and the sender did
        the writer's work in take(): in 2 s loops, 16-31 requests against the memory
        buffer's 158-162 for as many calls (0.39-0.63x its deliveries); 0 requests in
        20 s on a slower machine. Then a batch the server took at once never touched
        the file, but a sender lagging by SPOOL_COUNT still read back and deleted what
        the writer committed, under the writer's file lock: 0.11-1.00x beside another
        test process. Now what was written stays in memory until taken, and deletes
        never wait for the file: 1.00-1.01x in five runs under the same load."""
        seen = {}
        for kind in ("memory", "sqlite"):
            buffer = "memory" if kind == "memory" else f"sqlite:{tmp_path / 'b.db'}"
            done = subprocess.run(
                [sys.executable, "-c", TIGHT, sink, buffer, WRITE_KEY, "2"],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=ROOT,
                check=False,
            )
            assert 0 == done.returncode, done.stderr
            calls, delivered, requests = map(int, done.stdout.split())
            seen[kind] = (calls, delivered, requests)
        # Per call made: the loop's own speed varies with the machine's load (other
        # test files run beside this one); what share of its calls the sender delivered
        # while it ran is the point, and the measure: at least half the memory
        # buffer's. Before: 0.18-0.39x. Requests are not compared: a loop that makes the
        # writer lag hands it the interpreter lock (``SQLiteQueue.put``), and the sender
        # then takes fuller batches, so fewer requests carry as many messages (on an idle
        # machine 49 requests against the memory buffer's 288, for 0.82x its deliveries).
        # The sender must still send all along: 16-31 requests in the old code's loops.
        (calls, delivered, _) = seen["memory"]
        (sqlite_calls, sqlite_delivered, sqlite_requests) = seen["sqlite"]
        assert sqlite_delivered / sqlite_calls >= 0.5 * delivered / calls, seen
        assert sqlite_requests >= 10, seen


# A burst past the bound with the host down. Each line: the time, then the numbers of
# the calls accepted since the last line; "full" once a call was refused.
AT_BOUND = """
import sys, time, cdp_logging
url, path, key = sys.argv[1:4]
client = cdp_logging.Analytics(key, host=url, buffer="sqlite:" + path,
                               max_buffer_bytes=8 << 20, max_retries=10**6)
i = 0
said_full = False
while True:
    accepted = []
    for _ in range(50):
        future = client.track("u", "Bound", {"i": i, "pad": "x" * 3000})
        if future.done() and future.exception(timeout=0) is not None:
            if not said_full:
                print("full", flush=True)
                said_full = True
        else:
            accepted.append(i)
        i += 1
    print(time.monotonic(), *accepted, flush=True)
"""


class TestAtTheBound:
    def test_nothing_accepted_at_the_bound_is_lost_to_sigkill(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """Contract 16: at its bound the buffer refuses at the call, and every message it
        accepted more than 0.5 s before a SIGKILL is in the file. A chunk being written
        was counted nowhere (out of memory, not yet measured), so puts accepted a chunk
        too many, which then could not be written and lived only in memory: 55-95 of
        ~1,526 such messages lost per run."""
        collector.stop()  # down: everything accepted stays in the file
        path = tmp_path / "bound.db"
        process = child(AT_BOUND, collector.url, str(path), WRITE_KEY)
        assert process.stdout is not None
        lines = line_reader(process.stdout)
        seen: list[str] = []
        try:
            while "full" not in seen:  # bounded: each get waits at most 30 s
                seen.append(lines.get(timeout=30).strip())
            time.sleep(1.5)  # the loop runs on at the bound
            killed_at = time.monotonic()
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            stop(process)
        while not lines.empty():
            seen.append(lines.get().strip())
        old: set[int] = set()
        for line in seen:
            fields = line.split()
            if len(fields) > 1 and float(fields[0]) < killed_at - 0.5:
                old.update(int(n) for n in fields[1:])
        kept = {json.loads(data)["properties"]["i"] for data in rows(path)}
        assert old, seen[:3]
        assert [] == sorted(old - kept)[:20], f"{len(old - kept)} of {len(old)} lost"


# Opens the buffer and logs nothing. "wait": until stdin closes; "flush": flush once.
OPEN_ONLY = """
import sys, cdp_logging
url, path, key, mode = sys.argv[1:5]
client = cdp_logging.Analytics(key, host=url, buffer="sqlite:" + path)
if mode == "flush":
    print(client.flush(10), flush=True)
else:
    print("open", flush=True)
    sys.stdin.read()
"""

LEAVE_ROWS = """
import sys, time, cdp_logging
url, path, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = cdp_logging.Analytics(key, host=url, buffer="sqlite:" + path, max_retries=10**6)
for i in range(n):
    client.track(f"left{i}", "Left")
client.flush(0.5)  # the host refuses: the rows stay
print("ready", flush=True)
sys.stdin.read()
"""


class TestBacklog:
    def leave_rows(self, collector: Collector, path: Path, n: int) -> None:
        """A process that wrote *n* rows, SIGKILLed while the host was down.

        Down, not answering 503: a batch the killed process had sent could still sit
        in the collector's socket, and be taken (and stored) once the fault was
        cleared: every message then arrived twice, on a loaded machine."""
        collector.stop()
        process = child(LEAVE_ROWS, collector.url, str(path), WRITE_KEY, str(n))
        try:
            assert process.stdout is not None
            assert "ready" in line_reader(process.stdout).get(timeout=30)
            assert wait_until(lambda: len(rows(path)) == n, 10)
        finally:
            stop(process)
        collector.start()

    def test_a_process_that_only_opens_the_file_delivers_the_backlog(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """Contract 17: it sent none of them until it logged something itself."""
        path = tmp_path / "left.db"
        self.leave_rows(collector, path, 2000)
        process = child(OPEN_ONLY, collector.url, str(path), WRITE_KEY, "wait")
        try:
            assert process.stdout is not None
            assert "open" in line_reader(process.stdout).get(timeout=30)
            assert collector.wait_for_messages(2000, timeout=10)
        finally:
            stop(process)
        assert 2000 == len({m["messageId"] for m in collector.messages()})

    def test_flush_in_that_process_waits_for_the_backlog(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """Its flush() returned True at once, with the rows still in the file."""
        path = tmp_path / "left.db"
        self.leave_rows(collector, path, 2000)
        process = child(OPEN_ONLY, collector.url, str(path), WRITE_KEY, "flush")
        try:
            out, _ = process.communicate(timeout=30)
        finally:
            stop(process)
        assert "True" == out.strip()
        assert 2000 == len(collector.messages())
        assert [] == rows(path)


# dictConfig re-run N times with an SQLite buffer; then the descriptors of the file
# still open, and the buffer threads still running.
RECONFIGURE = """
import logging, logging.config, os, sys, threading, time
url, path, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = {"version": 1, "handlers": {"cdp": {
    "class": "cdp_logging.AnalyticsHandler", "write_key": key, "host": url,
    "buffer": "sqlite:" + path}}, "root": {"handlers": ["cdp"], "level": "INFO"},
    "disable_existing_loggers": False}

def ours():
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += os.readlink(f"/proc/self/fd/{fd}").startswith(path)
        except OSError:
            pass
    writers = sum(t.name.startswith("cdp_logging-buffer") for t in threading.enumerate())
    return fds, writers

for i in range(n):
    logging.config.dictConfig(config)
    logging.getLogger("app").info("track", extra={"cdp": {"user_id": str(i), "event": "E"}})
    logging.getLogger().handlers[0].flush()
deadline = time.monotonic() + 5
while (ours()[1] > 1 or ours()[0] > 4) and time.monotonic() < deadline:
    time.sleep(0.05)  # closed buffers' writers close their connection at their last tick
print(*ours(), flush=True)
os._exit(0)
"""


class TestReconfiguration:
    def test_thirty_dictconfigs_leave_one_connection_and_one_writer(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """Contract 18: every re-run leaked the file's descriptors (its connection was
        closed only on fork): 30 runs, 60 more descriptors."""
        path = tmp_path / "re.db"
        done = subprocess.run(
            [sys.executable, "-c", RECONFIGURE, collector.url, str(path), WRITE_KEY, "30"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert 0 == done.returncode, done.stderr
        fds, writers = map(int, done.stdout.split())
        # The handler of the last config: its database, WAL and shared-memory files;
        # plus a descriptor for each connection closed after that handler's opened:
        # SQLite keeps it while another connection of the process holds a lock on the
        # same file (in WAL mode an open connection always does) and reuses it at the
        # next open (https://www.sqlite.org/howtocorrupt.html#_posix_advisory_locks_canceled_by_a_separate_thread_doing_close_).
        # Earlier handlers' writers end on their own time: one or two (on a loaded
        # machine) close after the last open. The defect was two more per run: 63.
        assert fds <= 6, fds
        assert 1 == writers
        assert 30 == len(collector.messages())


class TestLease:
    def test_a_clock_step_does_not_make_a_live_owner_look_dead(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The lease was a wall-clock deadline: a clock stepped an hour forward made a
        live owner's rows another's (sent twice). Now an owner is dead when its beat
        stops changing, on the observer's monotonic clock."""
        path = str(tmp_path / "lease.db")
        owner = SQLiteQueue(path, 1 << 20, 1000)
        other = SQLiteQueue(path, 1 << 20, 1000)
        owner.start()
        try:
            for i in range(10):
                owner.put(b'{"i":%d}' % i)
            assert wait_until(lambda: owner.rows() == 10, 10)  # its writer wrote them
            real = time.time
            monkeypatch.setattr(time, "time", lambda: real() + 3600)

            assert other.adopt_now()

            assert 0 == other.accepted  # took nothing of a live owner
            assert (0, 10) == other.remaining()
        finally:
            for queue in (owner, other):
                queue.close()


class TestRetriesRunOut:
    @pytest.mark.usefixtures("fast_retries")
    def test_a_batch_whose_retries_ran_out_stays_in_the_file(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """One policy for both durable buffers: the relay leaves such a message in its
        stream; the SQLite buffer deleted it. Now it is reported and kept for the next
        process, which sends it (same messageId)."""
        path = tmp_path / "retries.db"
        errors: list[cdp_logging.DeliveryError] = []
        collector.faults.status(503)
        client = make_client(buffer=f"sqlite:{path}", max_retries=1, on_error=errors.append)
        for i in range(5):
            client.track(f"u{i}", "E")
        assert client.flush(10)
        client.close(2)
        assert 5 == sum(len(e.messages) for e in errors)
        assert all("kept in" in e.reason for e in errors), errors[0].reason
        assert 5 == len(rows(path))

        collector.faults.clear()
        again = make_client(buffer=f"sqlite:{path}")
        assert again.flush(10)
        assert {f"u{i}" for i in range(5)} == {m["userId"] for m in collector.messages()}
        assert [] == rows(path)


class TestWaitersReadBack:
    def test_every_callback_of_a_backlog_larger_than_one_request_is_called(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """Rows read back from the file were cut to a request's 500 KB after their
        waiters were taken off: the callbacks and Futures of the rows left behind never
        ended (72 of 1,716 callbacks called in a run of 12,000 direct calls)."""
        client = make_client(
            buffer=f"sqlite:{tmp_path / 'w.db'}", flush_interval=3600, max_events_in_batch=2500
        )
        queue = client.buffer
        assert isinstance(queue, SQLiteQueue)
        heard: list[str] = []
        blob = {"blob": "z" * 1000}
        for i in range(1000):  # ~1 MB: two requests' worth, in the file before any is sent
            client.track(f"u{i}", "E", blob, callback=lambda e, m: heard.append(m["userId"]))
        # The first goes at once (and may never be written); the rest wait for a flush.
        assert wait_until(lambda: queue.rows() + len(collector.messages()) == 1000, 10)

        assert client.flush(20)

        assert 1000 == len(collector.messages())
        assert sorted(f"u{i}" for i in range(1000)) == sorted(heard)
