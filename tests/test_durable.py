"""The SQLite buffer (#12) in real processes: SIGKILL, outages, shared files, bad files."""

from __future__ import annotations

import gc
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

import cdp_logging
from cdp_logging._buffers.sqlite import ADOPT_INTERVAL, LEASE_SECONDS, SQLiteQueue
from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, free_port, line_reader, start_gunicorn

MakeClient = Callable[..., cdp_logging.Analytics]

# A burst that says, after every 20 calls returned, how many it made and when.
BURST = """
import sys, time, cdp_logging
url, path, tag = sys.argv[1:4]
client = cdp_logging.Analytics(sys.argv[4], host=url, buffer="sqlite:" + path,
                               flush_interval=0.2, max_retries=1000)
i = 0
while True:
    for _ in range(20):
        client.track("u", "Burst", {"tag": tag, "i": i})
        i += 1
    print(i, time.monotonic(), flush=True)
    time.sleep(0.001)  # pace the burst: a few thousand calls a second, as a busy app
"""


def queue_of(client: cdp_logging.Analytics) -> SQLiteQueue:
    queue = client.buffer
    assert isinstance(queue, SQLiteQueue)
    return queue


def unwritten(queue: SQLiteQueue) -> int:
    """Accepted messages only in memory (memory also keeps copies of written ones)."""
    with queue._lock:
        return queue._pending_start + len(queue._pending) - queue._written


def rows(path: Path) -> int:
    with sqlite3.connect(path) as reader:
        count: int = reader.execute("SELECT count(*) FROM messages").fetchone()[0]
    return count


def drain(path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdp_logging", "drain", str(path), "--host", url, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "CDP_WRITE_KEY": WRITE_KEY},
        check=False,
    )


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll *condition* (the file, the collector) until true; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def buffer(tmp_path: Path) -> str:
    return f"sqlite:{tmp_path / 'buffer.db'}"


class TestSigkill:
    def test_killed_at_random_moments_loses_nothing_older_than_half_a_second(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """Three bursts into one file, each SIGKILLed at a random moment (one while every
        request is held 0.3 s): every message accepted 0.5 s before its kill is
        delivered by the next process, or the drain; repeats only as the same messageId."""
        path = tmp_path / "buffer.db"
        must: dict[str, int] = {}
        for round_ in range(3):
            collector.faults.clear()
            if round_ == 1:
                collector.faults.latency(0.3)
            tag = f"r{round_}"
            progress = tmp_path / f"{tag}.txt"
            with progress.open("w") as out:
                child = subprocess.Popen(
                    [sys.executable, "-c", BURST, collector.url, str(path), tag, WRITE_KEY],
                    stdout=out,
                    cwd=ROOT,
                )
            try:
                started = progress.stat
                assert wait_until(lambda: started().st_size > 0, 30)  # noqa: B023 - used here
                time.sleep(random.uniform(0.6, 1.4))
                killed_at = time.monotonic()
                child.send_signal(signal.SIGKILL)
            finally:
                child.kill()
                child.wait(timeout=10)
            # Every line the child wrote before the kill is in the file (no buffer:
            # it flushed each one); only the last may be cut.
            accepted = [line.split() for line in progress.read_text().splitlines()]
            accepted = [fields for fields in accepted if len(fields) == 2]
            old = [int(n) for n, at in accepted if float(at) < killed_at - 0.5]
            must[tag] = max(old, default=0)
        collector.faults.clear()

        done = drain(path, collector.url)

        assert 0 == done.returncode, done.stderr
        assert 0 == rows(path)
        messages = collector.messages()
        got = {(m["properties"]["tag"], m["properties"]["i"]) for m in messages}
        for tag, count in must.items():
            assert count > 0
            assert [] == [i for i in range(count) if (tag, i) not in got], tag
        by_id: dict[str, set[tuple[str, int]]] = {}
        for m in messages:
            by_id.setdefault(m["messageId"], set()).add(
                (m["properties"]["tag"], m["properties"]["i"])
            )
        assert all(1 == len(same) for same in by_id.values())  # a repeat is the same message
        assert len(by_id) == len(got)


class TestExit:
    def test_script_that_just_ends_delivers_and_empties_the_file(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        """dictConfig, a burst, the end of the script: the exit hook delivers everything
        through the file, which is left empty, and nothing is written to stderr."""
        path = tmp_path / "buffer.db"
        code = f"""
import logging, logging.config
logging.config.dictConfig({{"version": 1, "handlers": {{"cdp": {{
    "class": "cdp_logging.AnalyticsHandler", "write_key": {WRITE_KEY!r},
    "host": {collector.url!r}, "buffer": "sqlite:{path}", "flush_interval": 60}}}},
    "root": {{"handlers": ["cdp"], "level": "INFO"}}}})
for i in range(300):
    logging.getLogger("app").info("track", extra={{"user_id": str(i), "event": "Ended"}})
"""
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert 300 == len({m["messageId"] for m in collector.messages()})
        assert 0 == rows(path)


@pytest.mark.usefixtures("fast_retries")
class TestOutage:
    def test_file_absorbs_up_to_its_bound_then_queue_full(
        self,
        collector: Collector,
        make_client: MakeClient,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With the collector down, the file takes messages up to
        max_buffer_bytes (its real size, WAL included, never past it), memory stays
        flat, the rest is queue_full on one stderr line; once the server is back every
        accepted message is delivered, once."""
        # Down, not answering 503: the collector (in this process) would keep a record
        # of every refused request, and tracemalloc would count it.
        collector.stop()
        path = tmp_path / "buffer.db"
        bound = 1024 * 1024
        client = make_client(buffer=f"sqlite:{path}", max_buffer_bytes=bound, max_retries=10**6)
        blob = {"blob": "x" * 1000}
        # Futures the app keeps resolve through the file; the dropped ones cost nothing.
        kept = [client.track(f"kept{i}", "E", blob) for i in range(20)]
        tracemalloc.start()
        sizes = []
        for round_ in range(4):
            for i in range(2500):
                client.track(f"u{round_}-{i}", "E", blob)
            # Let the writer catch up before the next round (memory waits for it).
            assert wait_until(lambda: unwritten(queue_of(client)) == 0, 10)
            # Failed requests leave their body in exception reference cycles until the
            # collector runs: live memory is what counts.
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
            files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
            assert sum(p.stat().st_size for p in files) <= bound
        tracemalloc.stop()

        stats = client.stats()
        accepted = stats["queued"]
        assert 300 < accepted < 1000  # ~1 KB each in 0.9 x 3/4 of 1 MiB
        assert 10_020 - accepted == stats["errors"]["queue_full"]
        # 7.5 MB offered after round 1, the file full since then: what grows is at most
        # the one request body (500 KB at most), rebuilt at each retry.
        assert sizes[-1] - sizes[1] < 700_000
        lines = [line for line in capsys.readouterr().err.splitlines() if "queue_full" in line]
        # Rate-limited to one line per 10 s: a run slowed down by a busy machine may
        # take long enough for a second one, never for one per dropped message.
        assert 1 <= len(lines) <= 3, lines
        assert str(path) in lines[0]
        assert "max_buffer_bytes" in lines[0]
        collector.start()
        assert client.flush(20)
        assert [None] * 20 == [future.exception(timeout=5) for future in kept]
        assert accepted == len({m["messageId"] for m in collector.messages()})
        assert 0 == rows(path)


class TestRefusedConfiguration:
    def test_a_refused_write_key_keeps_the_rows_for_a_fixed_process(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """A 401 says our key is wrong, not the messages: they are reported and kept in
        the file, and the next process (with the right key) sends them, same ids."""
        path = tmp_path / "buffer.db"
        errors: list[cdp_logging.DeliveryError] = []
        wrong = make_client(buffer=f"sqlite:{path}", write_key="wrong", on_error=errors.append)
        futures = [wrong.track(f"u{i}", "E") for i in range(10)]
        assert wrong.flush(10)
        wrong.close(5)
        assert {401} == {e.status for e in errors}
        assert all("kept in" in e.reason for e in errors)
        assert 10 == sum(len(e.messages) for e in errors)
        assert (10, []) == (rows(path), collector.messages())

        right = make_client(buffer=f"sqlite:{path}")
        right.track("u", "fresh")
        assert wait_until(lambda: len(collector.messages()) == 11, 20)
        ids = {f.exception(timeout=0).messages[0]["messageId"] for f in futures}  # type: ignore[union-attr]
        assert ids <= {m["messageId"] for m in collector.messages()}


class TestWaiters:
    def test_futures_of_rows_this_process_cannot_send_end_as_kept(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """Rows in a file that breaks under this process stay there for a later one; the
        application's Futures and callbacks for them end (code "kept"), rather than
        leaving a result() with no timeout waiting forever."""
        collector.stop()
        path = tmp_path / "buffer.db"
        # The first message goes at once (and stays in flight, retried); the rest wait in
        # the file for a flush that this test never asks for.
        client = make_client(
            buffer=f"sqlite:{path}",
            max_retries=10**6,
            flush_interval=3600,
            max_events_in_batch=1000,
        )
        queue = queue_of(client)
        client.track("u", "first")  # taken at once, and retried while the host is down
        assert wait_until(lambda: queue.rows() == 1 and len(queue) == 0, 10)
        heard: list[str] = []
        futures = [
            client.track(f"u{i}", "E", callback=lambda e, m: heard.append(getattr(e, "code", "")))
            for i in range(4)
        ]
        assert wait_until(lambda: queue.rows() == 5, 10)
        with queue._db_lock:  # as the writer or sender would, on finding the file corrupt
            queue._break()

        for future in futures:
            error = future.exception(timeout=5)
            assert isinstance(error, cdp_logging.DeliveryError), error
            assert ("kept", True) == (error.code, str(path) in error.reason)
        assert ["kept"] * 4 == heard
        assert 5 == rows(path)


class TestWalBound:
    def test_delivering_a_full_file_keeps_file_and_wal_within_the_bound(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """Once an outage ends, the rows delivered are deleted: in WAL mode a delete
        appends every page it touches, so deleting a whole full batch at once pushed
        file + WAL to 1.19 MB for a 1 MiB bound. Deleted in slices, with checkpoints
        between them, the files stay within it while the backlog drains."""
        path = tmp_path / "buffer.db"
        bound = 1024 * 1024
        client = make_client(
            buffer=f"sqlite:{path}", max_buffer_bytes=bound, max_retries=10**6, flush_interval=0
        )
        queue = queue_of(client)
        blob = {"blob": "x" * 1000}

        def on_disk() -> int:
            files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
            return sum(p.stat().st_size for p in files)

        collector.stop()
        for i in range(3000):  # past the bound: the file fills, the rest is queue_full
            client.track(f"u{i}", "E", blob)
        assert wait_until(lambda: unwritten(queue) == 0, 10)
        assert client.stats()["errors"]["queue_full"] > 0
        assert on_disk() <= bound, on_disk()
        collector.start()
        peak = 0
        for _ in range(2000):  # bounded: a sample every 10 ms until the backlog is gone
            peak = max(peak, on_disk())
            if queue.rows() == 0:
                break
            time.sleep(0.01)
        assert 0 == queue.rows()
        assert peak <= bound, peak


class TestSharedFile:
    def test_stopped_owner_is_taken_over_within_10s_and_live_ones_never_share(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """A process that stops (SIGSTOP) with rows in the file: a live process sharing the
        file takes them over once the lease runs out, within the contract's 10 s; its
        own rows are sent by it alone (no duplicate messageIds)."""
        path = tmp_path / "buffer.db"
        collector.faults.status(503)
        code = (
            "import sys, cdp_logging\n"
            "client = cdp_logging.Analytics(sys.argv[1], host=sys.argv[2],"
            " buffer='sqlite:' + sys.argv[3], max_retries=10**6)\n"
            "for i in range(100): client.track(f'a{i}', 'A')\n"
            "client.flush(0.5)\n"  # the 100 rows are in the file (take writes them first)
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        other = subprocess.Popen(
            [sys.executable, "-c", code, WRITE_KEY, collector.url, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert other.stdout is not None
        try:
            assert "ready" in line_reader(other.stdout).get(timeout=30)
            client = make_client(buffer=f"sqlite:{path}", flush_interval=0.2)
            for i in range(50):
                client.track(f"b{i}", "B")
            other.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            collector.faults.clear()

            assert collector.wait_for_messages(150, timeout=12)
            taken_over = time.monotonic() - stopped
        finally:
            other.kill()
            other.wait(timeout=10)

        assert LEASE_SECONDS - 1 < taken_over < 10
        assert LEASE_SECONDS + ADOPT_INTERVAL < 10
        assert client.flush(5)
        assert 150 == len(collector.messages())
        assert 0 == collector.counts()["duplicate_message_ids"]
        assert 0 == rows(path)

    def test_gunicorn_workers_share_one_file(self, collector: Collector, tmp_path: Path) -> None:
        """gunicorn, 3 workers, one file, the collector down: N requests, one worker
        SIGKILLed with rows in the file; once the collector is back (and requests go on)
        its rows are taken over and all N arrive, none twice (two live workers never
        send one row)."""
        path = tmp_path / "buffer.db"
        collector.faults.status(503)
        port = free_port()
        env = {
            **os.environ,
            "CDP_WRITE_KEY": WRITE_KEY,
            "CDP_HOST": collector.url,
            "CDP_TEST_BUFFER": f"sqlite:{path}",
            "CDP_TEST_FLUSH_INTERVAL": "0.5",
        }
        server, lines = start_gunicorn("-w", "3", "-b", f"127.0.0.1:{port}", env=env)
        workers: list[int] = []
        n = 150
        try:
            while len(workers) < 3:  # bounded: each get() waits at most 30 s
                line = lines.get(timeout=30)
                if "Booting worker with pid:" in line:
                    workers.append(int(line.rsplit(":", 1)[1]))
            with requests.Session() as session:
                for i in range(n):
                    answer = session.get(f"http://127.0.0.1:{port}/?r{i}", timeout=10)
                    assert 200 == answer.status_code
            assert wait_until(lambda: rows(path) == n, 10)
            with sqlite3.connect(path) as reader:
                owners = dict(reader.execute("SELECT token, pid FROM owners").fetchall())
                per_owner = Counter(
                    owners.get(owner) for (owner,) in reader.execute("SELECT owner FROM messages")
                )
            victim = max(per_owner, key=lambda pid: per_owner[pid])
            assert victim in workers
            os.kill(victim, signal.SIGKILL)
            collector.faults.clear()
            # Traffic goes on, as in production: a worker takes over rows once it has
            # logged (one that never logs has no writer thread), and the kernel may have
            # given every request so far to the victim.
            served = {m["userId"] for m in collector.messages()}
            deadline = time.monotonic() + 12
            with requests.Session() as session:
                k = 0
                while not {f"r{i}" for i in range(n)} <= served and time.monotonic() < deadline:
                    session.get(f"http://127.0.0.1:{port}/?x{k}", timeout=10)
                    k += 1
                    collector.wait_for_messages(n + k, timeout=0.1)
                    served = {m["userId"] for m in collector.messages()}
            server.send_signal(signal.SIGTERM)
            assert 0 == server.wait(timeout=60)
        finally:
            server.kill()
            server.wait(timeout=10)

        users = [m["userId"] for m in collector.messages() if m["userId"].startswith("r")]
        assert {f"r{i}" for i in range(n)} == set(users)
        assert n == len(users)
        assert 0 == collector.counts()["duplicate_message_ids"]
        assert 0 == rows(path)


class TestFork:
    def test_child_opens_its_own_connection(self, collector: Collector, tmp_path: Path) -> None:
        """No connection crosses os.fork: the parent's is closed just before it, the child
        opens its own, the parent a new one, and each delivers its own messages, once."""
        path = tmp_path / "buffer.db"
        code = f"""
import os, cdp_logging
client = cdp_logging.Analytics({WRITE_KEY!r}, host={collector.url!r}, buffer="sqlite:{path}")
for i in range(50): client.track(f"p{{i}}", "parent")
assert client.flush(5)
parent_conn = client.buffer._conn
assert parent_conn is not None
pid = os.fork()
if pid == 0:
    import sqlite3
    try:
        parent_conn.execute("SELECT 1")
        os._exit(4)  # the parent's connection came through the fork open
    except sqlite3.ProgrammingError:
        pass  # closed before the fork
    for i in range(50): client.track(f"c{{i}}", "child")
    ok = client.flush(5) and client.buffer._conn not in (None, parent_conn)
    os._exit(0 if ok else 3)
for i in range(50): client.track(f"q{{i}}", "parent")
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
assert client.flush(5)
"""
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"parent": 100, "child": 50} == Counter(m["event"] for m in collector.messages())
        assert 0 == collector.counts()["duplicate_message_ids"]
        assert 0 == rows(path)


class TestBadStates:
    """Each bad file: one stderr line naming it and the fix, delivery from memory."""

    def deliver(self, client: cdp_logging.Analytics, collector: Collector, n: int = 20) -> None:
        before = len(collector.messages())
        for i in range(n):
            client.track(f"u{i}", "E")
        assert client.flush(10)
        assert before + n == len(collector.messages())

    def one_line(self, capsys: pytest.CaptureFixture[str], path: Path, advice: str) -> str:
        lines = [line for line in capsys.readouterr().err.splitlines() if str(path) in line]
        assert 1 == len(lines), lines
        assert advice in lines[0]
        return lines[0]

    def test_corrupt_file(
        self,
        collector: Collector,
        make_client: MakeClient,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = tmp_path / "buffer.db"
        path.write_bytes(os.urandom(8192))
        client = make_client(buffer=f"sqlite:{path}")

        self.deliver(client, collector)
        self.deliver(client, collector)

        self.one_line(capsys, path, "move it aside")

    def test_path_that_cannot_be_created(
        self,
        collector: Collector,
        make_client: MakeClient,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        path = tmp_path / "no such directory" / "buffer.db"
        client = make_client(buffer=f"sqlite:{path}")

        self.deliver(client, collector)

        self.one_line(capsys, path, "check that its directory exists")

    def test_full_disk(
        self,
        collector: Collector,
        make_client: MakeClient,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A real full disk (a 256 KiB tmpfs, when this user may mount one), else the
        same SQLITE_FULL from max_page_count on the client's own connection."""
        mount = tmp_path / "disk"
        mount.mkdir()
        mounted = (
            0
            == subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                capture_output=True,
                check=False,
            ).returncode
        )
        path = mount / "buffer.db"
        try:
            client = make_client(buffer=f"sqlite:{path}", max_buffer_bytes=4 * 1024 * 1024)
            self.deliver(client, collector)
            if not mounted:
                queue = queue_of(client)
                with queue._db_lock:
                    assert queue._conn is not None
                    pages = queue._conn.execute("PRAGMA page_count").fetchone()[0]
                    queue._conn.execute(f"PRAGMA max_page_count={pages}")
            before = len(collector.messages())
            blob = {"blob": "y" * 2000}
            # Slow answers: what the server has not taken within 0.2 s is written (a
            # batch it takes at once never touches the file).
            collector.faults.latency(0.4)
            for i in range(300):  # 600 KB: more than the disk holds
                client.track(f"big{i}", "E", blob)
            assert client.flush(20)
            collector.faults.clear()
            assert before + 300 == len(collector.messages())
            self.one_line(capsys, path, "is full")
            self.deliver(client, collector)
            client.close()
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(mount)], check=False)

    def test_file_locked_by_another_program(
        self,
        collector: Collector,
        make_client: MakeClient,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Another process holds an EXCLUSIVE transaction: delivery goes on from memory;
        once the lock is gone the file is used again."""
        path = tmp_path / "buffer.db"
        code = (
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
        )
        locker = subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert locker.stdout is not None
        assert locker.stdin is not None
        try:
            assert "locked" in locker.stdout.readline()
            client = make_client(buffer=f"sqlite:{path}")
            self.deliver(client, collector)
            self.one_line(capsys, path, "another program holds a lock")
        finally:
            locker.stdin.close()
            locker.wait(timeout=10)
        queue = queue_of(client)
        client.track("after", "E")
        assert wait_until(lambda: queue.rows() >= 0 and queue._conn is not None, 10)
        assert client.flush(10)
        assert "after" in {m["userId"] for m in collector.messages()}


class TestDrain:
    def test_exit_status_1_when_the_host_is_down_and_2_for_usage(
        self, collector: Collector, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """Host down: the drain gives up at --timeout, keeps the rows, exits 1; a missing
        file exits 2."""
        path = tmp_path / "buffer.db"
        collector.faults.status(503)
        client = make_client(buffer=f"sqlite:{path}", max_retries=10**6, shutdown_timeout=0.2)
        for i in range(30):
            client.track(f"u{i}", "E")
        client.close()  # the 30 are kept for the next process
        assert 30 == rows(path)

        down = drain(path, collector.url, "--timeout", "1")
        missing = drain(tmp_path / "nothing.db", collector.url)
        collector.faults.clear()
        done = drain(path, collector.url)

        assert 1 == down.returncode
        assert "30 left" in down.stderr
        assert 2 == missing.returncode
        assert (0, 0) == (done.returncode, rows(path))
        assert 30 == len({m["messageId"] for m in collector.messages()})
        assert WRITE_KEY not in down.stdout + down.stderr + done.stdout + done.stderr


def test_bad_buffer_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="buffer must be"):
        cdp_logging.Analytics(WRITE_KEY, buffer="redis:x")
    with pytest.raises(ValueError, match="max_buffer_bytes"):
        cdp_logging.Analytics(WRITE_KEY, buffer="sqlite:x.db", max_buffer_bytes=10)
