"""``cdp_logging.loguru.AnalyticsSink`` with real loguru, against the collector."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator

import pytest
from loguru import logger

import cdp_logging
from cdp_logging.collector import Collector
from cdp_logging.loguru import AnalyticsSink

from .conftest import WRITE_KEY, run_python
from .test_examples import run_example


@pytest.fixture
def sink(collector: Collector) -> Iterator[AnalyticsSink]:
    """A sink whose records are delivered only by a flush or close: a 60 s interval."""
    made = AnalyticsSink(WRITE_KEY, collector.url, flush_interval=60, shutdown_timeout=5)
    yield made
    made.client.close(2)


class TestSink:
    def test_both_forms_are_sent_other_records_are_not_and_remove_delivers(
        self, sink: AnalyticsSink, collector: Collector
    ) -> None:
        handler = logger.add(sink, level="INFO")
        try:
            before = time.time()
            logger.bind(cdp={"user_id": "u1", "traits": {"plan": "pro"}}).info("identify")
            logger.info("track", user_id="u1", event="Signed Up", properties={"n": 1})
            logger.bind(cdp={"type": "page", "user_id": "u1", "name": "Home"}).info("viewed")
            logger.info("track")  # a call type with no payload: an ordinary line
            logger.info("ordinary", user_id="u1", event="not analytics")
            logger.debug("track", user_id="u1", event="Below The Sink's Level")
            after = time.time()
        finally:
            logger.remove(handler)  # stop(): closes the client, which delivers

        assert sink.client.closed
        assert sink.client.flush(5)  # waits for the close stop() began
        messages = collector.messages()
        assert ["identify", "track", "page"] == [m["type"] for m in messages]
        assert {"plan": "pro"} == messages[0]["traits"]
        assert ("Signed Up", {"n": 1}) == (messages[1]["event"], messages[1]["properties"])
        assert "Home" == messages[2]["name"]
        # The record's own time, in milliseconds.
        stamps = [dt.datetime.fromisoformat(m["timestamp"]).timestamp() for m in messages]
        assert all(before - 0.001 <= stamp <= after for stamp in stamps), (before, stamps)

    def test_a_refused_record_is_reported_and_logging_goes_on(
        self, sink: AnalyticsSink, collector: Collector
    ) -> None:
        handler = logger.add(sink, level="INFO", catch=False)  # an exception would show
        try:
            logger.info("track", user_id="u1")  # no event: invalid
            logger.bind(cdp={"user_id": "u2", "event": "Kept"}).info("track")
        finally:
            logger.remove(handler)

        assert sink.client.flush(5)
        assert 1 == sink.client.stats()["errors"]["invalid_message"]
        assert ["u2"] == [m["userId"] for m in collector.messages()]

    def test_the_bound_context_and_a_shared_client(
        self, sink: AnalyticsSink, collector: Collector
    ) -> None:
        shared = AnalyticsSink(client=sink.client)
        handler = logger.add(shared, level="INFO")
        try:
            with cdp_logging.bound_context(user_id="u7", context={"ip": "203.0.113.7"}):
                logger.info("track", event="Exported")
        finally:
            logger.remove(handler)  # a shared client is flushed, not closed

        assert sink.client.flush(5)
        assert not sink.client.closed
        (message,) = collector.messages()
        assert ("u7", "203.0.113.7") == (message["userId"], message["context"]["ip"])

    def test_client_and_options_together_are_refused(self, sink: AnalyticsSink) -> None:
        with pytest.raises(ValueError, match="not both"):
            AnalyticsSink(host="http://127.0.0.1:1", client=sink.client)

    def test_the_example_delivers_at_exit_without_remove(self, collector: Collector) -> None:
        """A real process that logs and exits: what is queued is delivered at exit."""
        done = run_example("loguru_app.py", collector)

        assert 0 == done.returncode, done.stderr
        assert {"identify": 1, "track": 1} == collector.counts()["by_type"]
        assert "an ordinary log line" in done.stderr  # the app's own sink still has it

    def test_remove_does_not_hold_up_a_sender_whose_records_reach_loguru(
        self, collector: Collector
    ) -> None:
        """The usual InterceptHandler routes urllib3's records (the sender's connection)
        into loguru, through the sink's lock, which loguru holds while it calls stop():
        remove() must return at once, and the sender then deliver."""
        done = run_python(
            """
            import logging, os, sys, time
            from loguru import logger
            from cdp_logging.loguru import AnalyticsSink

            class InterceptHandler(logging.Handler):
                def emit(self, record):
                    logger.opt(depth=6).log(record.levelname, record.getMessage())

            logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
            logger.remove()
            sink = AnalyticsSink(flush_interval=60, shutdown_timeout=5)
            handler = logger.add(sink)  # loguru's default level: DEBUG, urllib3's too
            logger.info("track", user_id="u1", event="Intercepted")
            started = time.monotonic()
            logger.remove(handler)
            took = time.monotonic() - started
            delivered = sink.client.flush(5)
            print(f"{took:.3f} {delivered}")
            os._exit(0)  # no exit hook: what was delivered, was delivered by then
            """,
            env={"CDP_WRITE_KEY": WRITE_KEY, "CDP_HOST": collector.url},
        )

        assert 0 == done.returncode, done.stderr
        took, delivered = done.stdout.split()
        assert float(took) < 1.0
        assert "True" == delivered
        assert ["Intercepted"] == [m["event"] for m in collector.messages()]

    def test_without_loguru_the_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delitem(sys.modules, "cdp_logging.loguru")
        monkeypatch.setitem(sys.modules, "loguru", None)  # as if not installed
        with pytest.raises(ImportError, match=r"pip install 'cdp_logging\[loguru\]'"):
            import cdp_logging.loguru  # noqa: F401
