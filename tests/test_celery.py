"""``cdp_logging.celery.setup``: a real worker (prefork) on a real broker (redis-server).

One worker start for the whole file: tasks sent from this process with context bound
reach the worker with it, each task's events arrive though the worker's interval is
60 s (the flush at task end sent them), and a task sent with nothing bound, run next by
the same worker process, carries nothing of the one before.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import cdp_logging
import cdp_logging.celery
from cdp_logging.collector import Collector

from .conftest import RedisServer
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

    def test_without_celery_the_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delitem(sys.modules, "cdp_logging.celery")
        monkeypatch.setitem(sys.modules, "celery", None)  # as if not installed
        with pytest.raises(ImportError, match=r"pip install 'cdp_logging\[celery\]'"):
            import cdp_logging.celery  # noqa: F401
