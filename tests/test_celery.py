"""``cdp_logging.celery.setup``: a real worker (prefork) on a real broker (redis-server).

One worker start for the whole file: tasks sent from this process with context bound
reach the worker with it, each task's events arrive though the worker's interval is
60 s (the flush at task end sent them), and a task sent with nothing bound, run next by
the same worker process, carries nothing of the one before.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals

import cdp_logging
import cdp_logging.celery
from cdp_logging.collector import Collector

from .conftest import RedisServer, free_port
from .test_frameworks import server

WORKER = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "celery_app",
    "worker",
    "--pool=prefork",
    "-c",
    "1",  # one process: the task after the invoices runs where they ran
    "--loglevel=INFO",
    "--without-heartbeat",
    "--without-gossip",
    "--without-mingle",
]


@pytest.fixture
def sender_app(redis_server: RedisServer) -> Iterator[Celery]:
    app = Celery("sender", broker=f"redis://127.0.0.1:{redis_server.port}/5")
    cdp_logging.celery.setup(app)
    yield app
    app.close()


class TestWorker:
    def test_context_travels_and_every_task_delivers_at_its_end(
        self, collector: Collector, redis_server: RedisServer, sender_app: Celery
    ) -> None:
        env = {"CELERY_BROKER_URL": sender_app.conf.broker_url}
        sent_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)  # not JSON as is
        n = 3
        with server(WORKER, "ready.", collector, extra_env=env):
            for i in range(n):
                with cdp_logging.bound_context(
                    user_id=f"c{i}", context={"ip": "203.0.113.7", "sent_at": sent_at}
                ):
                    sender_app.send_task("celery_app.send_invoice", args=[f"inv-{i}"])
            # flush_interval is 60 s in the worker: arriving now means each task's end sent it.
            assert collector.wait_for_messages(n, timeout=30)
            sender_app.send_task("celery_app.nightly_report")
            assert collector.wait_for_messages(n + 1, timeout=30)

        invoices = [m for m in collector.messages() if m["event"] == "Invoice Sent"]
        assert {f"c{i}": f"inv-{i}" for i in range(n)} == {
            m["userId"]: m["properties"]["invoice"] for m in invoices
        }
        assert [("203.0.113.7", "2026-01-02T03:04:05+00:00")] * n == [
            (m["context"]["ip"], m["context"]["sent_at"]) for m in invoices
        ]
        (report,) = [m for m in collector.messages() if m["event"] == "Report Built"]
        assert "userId" not in report
        assert {"library"} == set(report["context"])


class TestInProcess:
    def test_an_eager_task_keeps_the_callers_context(self) -> None:
        """Run in the caller's thread: the caller's context, untouched after, no flush."""
        app = Celery("eager", broker="memory://")
        app.conf.task_always_eager = True
        cdp_logging.celery.setup(app)
        seen: list[dict[str, Any]] = []

        @app.task  # type: ignore[untyped-decorator]
        def look() -> None:
            seen.append(cdp_logging.get_context())

        with cdp_logging.bound_context(user_id="u1"):
            look.delay()
            assert {"user_id": "u1"} == cdp_logging.get_context()
        assert [{"user_id": "u1"}] == seen

    def test_a_task_is_run_with_its_header_and_what_it_bound_goes_with_it(self) -> None:
        """Celery's own signals, sent as a worker sends them around a task's run."""
        app = Celery("signals", broker="memory://")
        cdp_logging.celery.setup(app)

        @app.task  # type: ignore[untyped-decorator]
        def work() -> None:
            pass

        seen: list[dict[str, Any]] = []
        work.push_request(id="t1", cdp_context='{"user_id": "u1"}')
        try:
            with cdp_logging.bound_context(user_id="worker-main"):
                signals.task_prerun.send(sender=work, task_id="t1", task=work)
                seen.append(cdp_logging.get_context())
                cdp_logging.bind_context(anonymous_id="bound-by-the-task")
                signals.task_postrun.send(sender=work, task_id="t1", task=work)
                seen.append(cdp_logging.get_context())
        finally:
            work.pop_request()

        assert [{"user_id": "u1"}, {"user_id": "worker-main"}] == seen

    def test_while_the_cdp_is_down_only_one_task_waits_for_the_flush(self) -> None:
        app = Celery("down", broker="memory://")
        cdp_logging.celery.setup(app, timeout=0.5)

        @app.task  # type: ignore[untyped-decorator]
        def work() -> None:
            pass

        client = cdp_logging.Analytics(
            "k", f"http://127.0.0.1:{free_port()}", shutdown_timeout=0.2, stderr_warnings=False
        )
        took = []
        try:
            for i in range(3):
                work.push_request(id=f"t{i}")
                try:
                    signals.task_prerun.send(sender=work, task_id=f"t{i}", task=work)
                    client.track("u1", "Worked")
                    started = time.monotonic()
                    signals.task_postrun.send(sender=work, task_id=f"t{i}", task=work)
                    took.append(time.monotonic() - started)
                finally:
                    work.pop_request()
        finally:
            client.close(0.2)
            cdp_logging.celery.setup(app)  # the default timeout again, for other tests

        assert took[0] >= 0.5
        assert max(took[1:]) < 0.25

    def test_without_celery_the_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delitem(sys.modules, "cdp_logging.celery")
        monkeypatch.setitem(sys.modules, "celery", None)  # as if not installed
        with pytest.raises(ImportError, match=r"pip install 'cdp_logging\[celery\]'"):
            import cdp_logging.celery  # noqa: F401
