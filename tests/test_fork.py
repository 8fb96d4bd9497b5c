"""Fork: os.fork, multiprocessing and gunicorn --preload, each child delivering its own."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import requests

from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, free_port, run_python, start_gunicorn

SETUP = """
import logging, logging.config, os, sys
logging.config.dictConfig({"version": 1, "handlers": {"cdp": {
    "class": "cdp_logging.AnalyticsHandler", "write_key": KEY, "host": URL,
    "flush_interval": 60, "max_events_in_batch": 1000}},
    "root": {"handlers": ["cdp"], "level": "INFO"}})
log = logging.getLogger("app")
def burst(tag, n):
    for i in range(n):
        log.info("track", extra={"user_id": f"{tag}-{i}", "event": tag})
"""


def run(collector: Collector, body: str) -> subprocess.CompletedProcess[str]:
    code = f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n" + SETUP + body
    return run_python(code, timeout=60)


def events(collector: Collector) -> Counter[str]:
    return Counter(m["event"] for m in collector.messages())


class TestOsFork:
    def test_parent_and_child_both_deliver_once(self, collector: Collector) -> None:
        """After os.fork both processes deliver their own events; the parent's queue is
        sent once, by the parent."""
        done = run(
            collector,
            """
burst("parent-before", 50)
pid = os.fork()
if pid == 0:
    burst("child", 50)
    sys.exit(0)
burst("parent-after", 50)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"parent-before": 50, "child": 50, "parent-after": 50} == events(collector)
        assert 0 == collector.counts()["duplicate_message_ids"]

    def test_fork_while_sender_is_busy(self, collector: Collector) -> None:
        """Forking while the parent's sender is mid-request leaves the child working."""
        collector.faults.latency(0.3, count=1)
        done = run(
            collector,
            """
import time
log.info("track", extra={"user_id": "p", "event": "in-flight"})
client = logging.getLogger().handlers[0].client
for _ in range(2000):  # bounded: until the sender thread has the batch in flight
    if client.stats()["in_flight"]:
        break
    time.sleep(0.001)
assert client.stats()["in_flight"] == 1
pid = os.fork()
if pid == 0:
    burst("child", 20)
    sys.exit(0)
os.waitpid(pid, 0)
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"in-flight": 1, "child": 20} == events(collector)


class TestMultiprocessing:
    def test_fork_children_deliver_despite_os_exit(self, collector: Collector) -> None:
        """multiprocessing fork children, which end with os._exit, deliver their events."""
        done = run(
            collector,
            """
import multiprocessing
ctx = multiprocessing.get_context("fork")
burst("parent", 10)
workers = [ctx.Process(target=burst, args=(f"child{n}", 30)) for n in range(3)]
for w in workers: w.start()
for w in workers: w.join(30)
assert [w.exitcode for w in workers] == [0, 0, 0]
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"parent": 10, "child0": 30, "child1": 30, "child2": 30} == events(collector)

    def test_pool_workers_deliver(self, collector: Collector) -> None:
        """A fork Pool's workers deliver what they logged once the pool is closed and joined."""
        done = run(
            collector,
            """
import multiprocessing
def task(i):
    log.info("track", extra={"user_id": f"task-{i}", "event": "pooled"})
    return i
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert sorted(pool.map(task, range(40))) == list(range(40))
    pool.close()
    pool.join()
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"pooled": 40} == events(collector)

    def test_pool_ended_by_its_with_block_delivers(self, collector: Collector) -> None:
        """Issue 24 (5): leaving `with Pool() as p:` terminates the workers (SIGTERM); each
        delivers what its tasks logged before it ends, within shutdown_timeout (before:
        1 to 18 of 20 arrived, silently)."""
        done = run(
            collector,
            """
import multiprocessing, time
def task(i):
    log.info("track", extra={"user_id": f"task-{i}", "event": "pooled"})
    return i
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert sorted(pool.map(task, range(40))) == list(range(40))
    started = time.monotonic()
assert time.monotonic() - started < 5, "the default shutdown_timeout is 5 s"
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"pooled": 40} == events(collector)

    def test_terminated_process_delivers_and_still_ends_by_sigterm(
        self, collector: Collector
    ) -> None:
        """Process.terminate(): the child delivers, then ends by SIGTERM as before (exit
        code -15), not by an exit of ours."""
        done = run(
            collector,
            """
import faulthandler, multiprocessing, signal, time
ctx = multiprocessing.get_context("fork")
ready = ctx.Event()
def work():
    # A hang shows where each thread waits (on stderr, which the test reads), not as
    # the run's timeout. Armed after the fork: a watchdog inherited from the parent
    # would not be there to cancel.
    faulthandler.dump_traceback_later(30, exit=True)
    burst("terminated", 25)
    ready.set()
    time.sleep(60)
child = ctx.Process(target=work)
child.start()
faulthandler.dump_traceback_later(45, exit=True)
assert ready.wait(20)
child.terminate()
child.join(20)
assert child.exitcode == -signal.SIGTERM, child.exitcode
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"terminated": 25} == events(collector)

    def test_a_workers_own_sigterm_handler_is_left_in_place(self, collector: Collector) -> None:
        """A SIGTERM handler the application installed in its workers is not replaced:
        it runs (here it exits, so multiprocessing's finalizers deliver)."""
        # Pool.terminate sends each worker its stop sentinel first and SIGTERM only to
        # those still alive: slow answers keep both delivering (their exit finalizer
        # holding the signal back) when it comes, so both handlers run, every time. A
        # barrier makes both workers take tasks: a fast worker could take all 20, and
        # the other, with nothing to deliver, end on its sentinel unsignalled.
        collector.faults.latency(1.0, count=2)
        done = run(
            collector,
            """
import multiprocessing, signal
ctx = multiprocessing.get_context("fork")
both = ctx.Barrier(2)
def handle(signum, frame):
    print("app handler ran", flush=True)
    sys.exit(0)
def init():
    signal.signal(signal.SIGTERM, handle)
def task(i):
    if i < 2:
        both.wait(20)  # the first two tasks side by side: each worker logs, and sends
    log.info("track", extra={"user_id": f"task-{i}", "event": "pooled"})
    return i
with ctx.Pool(2, initializer=init) as pool:
    assert sorted(pool.map(task, range(20), chunksize=1)) == list(range(20))
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert 2 == done.stdout.count("app handler ran")
        assert {"pooled": 20} == events(collector)

    def test_sigterm_between_the_workers_end_and_its_finalizers(self, collector: Collector) -> None:
        """Pool.terminate sends SIGTERM while a worker that got its stop sentinel is
        already ending. Landing after run() returned and before our finalizer held the
        signal back, the application's sys.exit handler stopped multiprocessing's
        finalizers before ours ran: 18 of 20 arrived now and then, silently. Widened here
        to the whole window, deterministically: the child says when it is in it."""
        done = run(
            collector,
            """
import multiprocessing, signal, time
import multiprocessing.util as util
def handle(signum, frame):
    print("app handler ran", flush=True)
    sys.exit(0)
def target(ready):
    signal.signal(signal.SIGTERM, handle)
    exit_function = util._exit_function
    def late_exit_function():
        ready.set()  # run() has returned; the finalizers have not started
        time.sleep(30)  # bounded: the SIGTERM comes now
        exit_function()
    util._exit_function = late_exit_function
    for i in range(20):
        log.info("track", extra={"user_id": f"task-{i}", "event": "ending"})
ready = multiprocessing.get_context("fork").Event()
process = multiprocessing.get_context("fork").Process(target=target, args=(ready,))
process.start()
assert ready.wait(30)
process.terminate()
process.join(30)
print("exit code", process.exitcode, flush=True)
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert ["app handler ran", "exit code 0"] == done.stdout.splitlines()
        assert {"ending": 20} == events(collector)


class TestGunicorn:
    def test_preload_workers_deliver_exactly_n(self, collector: Collector) -> None:
        """gunicorn --preload with 2 workers: N requests each log one event; after a graceful
        stop exactly N are delivered, none twice."""
        port = free_port()
        env = {**os.environ, "CDP_WRITE_KEY": WRITE_KEY, "CDP_HOST": collector.url}
        server, lines = start_gunicorn("--preload", "-w", "2", "-b", f"127.0.0.1:{port}", env=env)
        seen: list[str] = []
        try:
            booted = 0
            while booted < 2:  # bounded: each get() waits at most 30 s
                line = lines.get(timeout=30)
                seen.append(line)
                booted += "Booting worker" in line
            n = 200
            with requests.Session() as session:
                for i in range(n):
                    answer = session.get(f"http://127.0.0.1:{port}/?r{i}", timeout=10)
                    assert 200 == answer.status_code
            server.send_signal(signal.SIGTERM)
            assert 0 == server.wait(timeout=60)
        finally:
            server.kill()
            server.wait(timeout=10)

        users = [m["userId"] for m in collector.messages()]
        assert n == len(users), "".join(seen)
        assert {f"r{i}" for i in range(n)} == set(users)
        assert 0 == collector.counts()["duplicate_message_ids"]
        pids = {m["properties"]["pid"] for m in collector.messages()}
        assert 1 <= len(pids) <= 2


class TestForkWithoutHooks:
    def test_uwsgi_style_fork_many_threads_first_call(self, collector: Collector) -> None:
        """A fork that skips Python's fork hooks (as uWSGI without
        --py-call-uwsgi-fork-hooks does): many threads' first calls at once all arrive,
        with messageIds of the child's own."""
        done = run(
            collector,
            """
import ctypes, threading
log.info("track", extra={"user_id": "parent", "event": "parent"})
assert logging.getLogger().handlers[0].client.flush(5)
pid = ctypes.PyDLL(None).fork()  # libc fork: no os.register_at_fork hooks run
if pid == 0:
    code = 1
    try:
        barrier = threading.Barrier(16, timeout=5)
        def work(i):
            barrier.wait()
            log.info("track", extra={"user_id": f"child-{i}", "event": "child"})
        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads: t.start()
        for t in threads: t.join(5)
        code = 0 if logging.getLogger().handlers[0].client.flush(5) else 2
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
""",
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert {"parent": 1, "child": 16} == events(collector)
        assert 0 == collector.counts()["duplicate_message_ids"]

    def test_closed_client_stays_closed_in_the_child(self, collector: Collector) -> None:
        """A client the parent closed refuses calls in a forked child too (code closed)."""
        done = run(
            collector,
            """
import cdp_logging
client = cdp_logging.Analytics(KEY, host=URL)
client.close()
pid = os.fork()
if pid == 0:
    error = client.track("child", "after close").exception(timeout=5)
    os._exit(0 if error is not None and error.code == "closed" else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
""",
        )

        assert 0 == done.returncode, done.stderr
        assert [] == collector.messages()
