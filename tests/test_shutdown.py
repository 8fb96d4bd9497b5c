"""Python 3.12.0-3.12.2 refuse to start a thread at interpreter shutdown
(python/cpython#113964). An app whose first event is logged in an atexit hook has no
sender thread then; the exit drain must deliver it from the calling thread."""

from __future__ import annotations

import glob
import os
import subprocess
import sysconfig
import threading
from concurrent.futures import Future
from typing import Any

import pytest

import cdp_logging
from cdp_logging._delivery import sender as _sender
from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, run_python

FIRST_EVENT_AT_EXIT = """
import atexit, logging, logging.config
logging.config.dictConfig({"version": 1, "handlers": {"cdp": {
    "class": "cdp_logging.AnalyticsHandler", "write_key": KEY, "host": URL}},
    "root": {"handlers": ["cdp"], "level": "INFO"}})
def goodbye():
    for i in range(5):
        logging.getLogger("app").info("track", extra={"user_id": str(i), "event": "at exit"})
atexit.register(goodbye)
"""


def shutdown_refusing_pythons() -> list[str]:
    """Interpreters of the affected versions present on this machine (pyenv's layout)."""
    found = []
    for pattern in (
        "/root/.pyenv/versions/3.12.[012]/bin/python3.12",
        "/usr/local/bin/python3.12",
        "/usr/bin/python3.12",
    ):
        for path in sorted(glob.glob(pattern)):
            version = subprocess.run(
                [path, "-c", "import sys; print(sys.version_info[:3] < (3, 12, 3))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
            if version == "True":
                found.append(path)
    return found


class TestThreadStartAtShutdown:
    def test_simulated_refusal_still_delivers(self, collector: Collector) -> None:
        """With Thread.start refusing as 3.12.0-3.12.2 do, events first logged at exit arrive."""
        done = run_python(
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            + FIRST_EVENT_AT_EXIT
            + """
import threading
real_start = threading.Thread.start
def refuse(self):
    raise RuntimeError("can't create new thread at interpreter shutdown")
atexit.register(lambda: setattr(threading.Thread, "start", refuse))  # runs first (LIFO)
"""
        )

        assert (0, "") == (done.returncode, done.stderr)
        assert 5 == len(collector.messages())

    def test_real_python_3_12_1(self, collector: Collector) -> None:
        """On a real 3.12.0-3.12.2, events first logged in an atexit hook are delivered."""
        pythons = shutdown_refusing_pythons()
        if not pythons:
            pytest.skip("no Python 3.12.0-3.12.2 on this machine; the simulation covers the logic")
        site = sysconfig.get_paths()["purelib"]  # requests, structlog: pure Python
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
        code = (
            f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\n"
            + FIRST_EVENT_AT_EXIT
            + """
import threading
def probe():
    try:
        threading.Thread(target=lambda: None).start()
    except RuntimeError as error:
        print("refused:", error)
atexit.register(probe)  # runs first: shows this interpreter really refuses
"""
        )
        done = subprocess.run(
            [pythons[0], "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=ROOT,
            check=False,
        )

        assert 0 == done.returncode, done.stderr
        assert "refused: can't create new thread at interpreter shutdown" in done.stdout
        assert "" == done.stderr
        assert 5 == len(collector.messages())


class TestThreadStartRefusedOnce:
    def test_a_later_call_starts_the_thread(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A process briefly out of threads: the first start fails, a later call starts
        the sender, and messages flow again without anyone calling flush()."""
        monkeypatch.setattr(_sender, "THREAD_RETRY_SECONDS", 0.0)
        real_start = threading.Thread.start
        refused: list[str] = []

        def start_once_refused(thread: threading.Thread) -> None:
            if thread.name.startswith("cdp_logging-sender") and not refused:
                refused.append(thread.name)
                raise RuntimeError("can't start new thread")
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", start_once_refused)
        client = cdp_logging.Analytics(WRITE_KEY, host=collector.url)
        try:
            first = client.track("u", "while refused")
            second = client.track("u", "after")

            assert first.exception(timeout=5) is None
            assert second.exception(timeout=5) is None
            assert 1 == len(refused)
            assert ["after", "while refused"] == sorted(m["event"] for m in collector.messages())
        finally:
            client.close(2)

    def test_close_from_a_callback_with_no_thread_sends_the_rest(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no sender thread, flush() sends from the calling thread; a callback there
        that closes the client still gets what is queued sent, not left to the exit hook."""
        monkeypatch.setattr(_sender, "THREAD_RETRY_SECONDS", 3600.0)
        real_start = threading.Thread.start

        def refuse_senders(thread: threading.Thread) -> None:
            if thread.name.startswith("cdp_logging-sender"):
                raise RuntimeError("can't start new thread")
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", refuse_senders)
        late: list[Future[dict[str, Any]]] = []
        clients: list[cdp_logging.Analytics] = []

        def on_flush(messages: list[dict[str, Any]]) -> None:
            if not late:
                late.append(clients[0].track("u", "late"))  # after flush()'s target
                clients[0].close(5)

        client = cdp_logging.Analytics(WRITE_KEY, host=collector.url, on_flush=on_flush)
        clients.append(client)
        try:
            client.track("u", "first")
            client.flush(5)

            assert late[0].exception(timeout=0) is None  # already settled: delivered
            assert ["first", "late"] == sorted(m["event"] for m in collector.messages())
        finally:
            client.close(2)
