"""What a new user reaches in the first hour: no key with send=False, the handler's own
flush(timeout) and stats()."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers

import pytest

import cdp_logging
from cdp_logging.collector import Collector
from cdp_logging.testing import capture_messages

from .conftest import WRITE_KEY, run_python


class TestNoKeyWithoutSending:
    def test_send_false_needs_no_write_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing is sent, so nothing is refused for a missing key; messages still build."""
        monkeypatch.delenv("CDP_WRITE_KEY", raising=False)
        client = cdp_logging.Analytics(send=False)
        try:
            future = client.track("u1", "Signed Up")
            assert "Signed Up" == future.result(timeout=5)["event"]
            assert repr(client).startswith("<Analytics")
        finally:
            client.close()

    def test_sending_still_needs_one_and_says_which_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("CDP_WRITE_KEY", raising=False)
        with pytest.raises(ValueError, match="CDP_WRITE_KEY"):
            cdp_logging.Analytics()

    def test_an_app_configured_at_import_runs_its_tests_without_a_key(self) -> None:
        """dictConfig with send=False and no key, then capture_messages: the test sees it."""
        done = run_python(
            """
            import logging, logging.config
            from cdp_logging.testing import capture_messages
            logging.config.dictConfig({"version": 1, "handlers": {"cdp": {
                "class": "cdp_logging.AnalyticsHandler", "send": False}},
                "root": {"handlers": ["cdp"], "level": "INFO"}})
            with capture_messages() as seen:
                logging.getLogger("app").info("track", extra={"user_id": "u", "event": "E"})
            print([m["event"] for m in seen])
            """
        )
        assert 0 == done.returncode, done.stderr
        assert "['E']" == done.stdout.strip()
        assert "" == done.stderr

    def test_a_capture_without_a_key_sees_what_would_be_sent(
        self, monkeypatch: pytest.MonkeyPatch, app_logger: logging.Logger
    ) -> None:
        monkeypatch.delenv("CDP_WRITE_KEY", raising=False)
        app_logger.addHandler(cdp_logging.AnalyticsHandler(send=False))
        with capture_messages() as seen:
            app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "Paid"}})
        assert ["Paid"] == [message["event"] for message in seen]


class TestHandlerApi:
    def test_flush_takes_a_timeout_and_says_whether_all_was_settled(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        handler = cdp_logging.AnalyticsHandler(WRITE_KEY, collector.url, flush_interval=60)
        app_logger.addHandler(handler)
        for n in range(5):
            app_logger.info("track", extra={"user_id": "u", "event": f"E{n}"})
        assert handler.flush(5) is True
        assert 5 == len(collector.messages())
        stats = handler.stats()
        assert 5 == stats["delivered"]
        assert stats == handler.client.stats()

    def test_logging_still_calls_flush_with_no_argument(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """logging.shutdown and MemoryHandler call flush(): it still works, bounded."""
        handler = cdp_logging.AnalyticsHandler(
            WRITE_KEY, collector.url, flush_interval=60, shutdown_timeout=5
        )
        target = logging.handlers.MemoryHandler(capacity=100, target=handler)
        app_logger.addHandler(target)
        app_logger.info("track", extra={"user_id": "u", "event": "Buffered"})
        target.flush()  # hands the buffered record to our handler
        handler.flush()  # as logging.shutdown() calls it: no argument, bounded
        assert ["Buffered"] == [m["event"] for m in collector.messages()]
        target.close()
        handler.close()


class TestNearMisses:
    def test_a_message_that_is_almost_a_call_type_is_told_once(
        self, app_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """ "Track" and "track " with flat keys: not sent, one stderr line each, naming track."""
        handler = cdp_logging.AnalyticsHandler(send=False)
        app_logger.addHandler(handler)
        with capture_messages() as seen:
            for _ in range(3):
                app_logger.info("Track", extra={"user_id": "u", "event": "E"})
                app_logger.info("track ", extra={"user_id": "u", "event": "E"})
                app_logger.info("Tracking started")  # an ordinary record: nothing said
        err = capsys.readouterr().err
        assert [] == seen
        lines = [line for line in err.splitlines() if "carries analytics keys" in line]
        assert 2 == len(lines), err
        assert all("must be exactly 'track'" in line for line in lines)

    def test_the_cdp_form_names_the_call_type_it_resembles(self) -> None:
        errors: list[cdp_logging.DeliveryError] = []
        handler = cdp_logging.AnalyticsHandler(send=False, on_error=errors.append)
        logger = logging.getLogger("test.near.cdp")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            logger.warning("Page", extra={"cdp": {"user_id": "u", "name": "Home"}})
        finally:
            logger.removeHandler(handler)
            handler.close()
        assert ["invalid_message"] == [error.code for error in errors]
        assert "(did you mean 'page'?)" in errors[0].reason

    def test_a_structlog_event_that_is_almost_a_call_type_is_told(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        processor = cdp_logging.AnalyticsProcessor(send=False)
        try:
            processor(None, "info", {"event": "Identify", "user_id": "u"})
        finally:
            processor.client.close()
        assert "must be exactly 'identify'" in capsys.readouterr().err


class TestDistinctReasons:
    def test_each_distinct_reason_is_told_and_repeats_are_folded(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Four mistakes in a row: four lines. The same mistake with other values: folded."""
        client = cdp_logging.Analytics(send=False)
        try:
            client.track("u", "")  # track needs an event
            client.identify()  # identify needs an id
            client.group("u", "")  # group needs a group id
            client.alias("", "u")  # alias needs a previous id
            # The same mistake with other values: one reason, folded into a count.
            client.track("u", "E", properties=["not", "a", "mapping"])  # type: ignore[arg-type]
            client.track("v", "F", properties=[1])  # type: ignore[arg-type]
        finally:
            client.close()
        lines = [line for line in capsys.readouterr().err.splitlines() if "not delivered" in line]
        told = [line for line in lines if "more" not in line]
        assert 5 == len(told), lines
        assert any("1 more message not delivered (invalid_message)" in line for line in lines)
