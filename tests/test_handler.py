"""AnalyticsHandler: recognition, dictConfig, never raising, bounded flush/close."""

from __future__ import annotations

import logging
import logging.config
import threading
import time
import weakref
from typing import Any

import pytest

import cdp_logging
from cdp_logging import AnalyticsHandler, DeliveryError
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


def handler_for(collector: Collector, **options: Any) -> AnalyticsHandler:
    return AnalyticsHandler(write_key=WRITE_KEY, host=collector.url, **options)


class TestRecognition:
    def test_both_record_forms_delivered(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """The cdp form and the flat form both become messages; ordinary lines do not."""
        handler = handler_for(collector)
        app_logger.addHandler(handler)

        app_logger.info(
            "track",
            extra={
                "cdp": {
                    "user_id": "019mr8mf4r",
                    "event": "Purchased an Item",
                    "properties": {"revenue": 39.95},
                }
            },
        )
        app_logger.info(
            "page", extra={"cdp": {"anonymous_id": "a-1", "name": "Docs", "category": "Help"}}
        )
        app_logger.info("track", extra={"user_id": "019mr8mf4r", "event": "Played Song"})
        app_logger.info("an ordinary line %s", "with args")
        app_logger.warning("track")  # a call type but no payload: ordinary
        assert handler.client.flush(5)

        # Requests may arrive in either order (the first message goes at once, from the
        # sender thread, while flush() sends the rest); timestamps carry the order.
        sent = collector.messages()
        assert sorted(
            [("page", None), ("track", "Played Song"), ("track", "Purchased an Item")]
        ) == sorted((m["type"], m.get("event")) for m in sent)
        page = next(m for m in sent if m["type"] == "page")
        assert ("Docs", "Help", "a-1") == (page["name"], page["category"], page["anonymousId"])
        assert 3 == handler.client.stats()["queued"]

    def test_timestamp_is_record_creation_time(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """The message timestamp is when the record was made, not when it was sent."""
        handler = handler_for(collector)
        app_logger.addHandler(handler)
        made: list[logging.LogRecord] = []
        app_logger.addFilter(lambda r: made.append(r) or True)  # type: ignore[func-returns-value]

        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "E"}})
        assert handler.client.flush(5)

        expected = cdp_logging._core.calls.iso_timestamp(made[0].created)
        assert expected == collector.messages()[0]["timestamp"]

    def test_analytics_records_still_reach_other_handlers(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """An analytics record is also an ordinary log line for the app's other handlers."""
        lines: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        app_logger.addHandler(handler_for(collector))
        app_logger.addHandler(Collect())
        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "E"}})

        assert ["track"] == lines


class TestHandleAndEmit:
    """``handle`` does emit's work itself (a call less per record); logging's promises about
    the two stay: filters in handle only, and a subclass's own emit sees every record."""

    def test_a_subclass_emit_sees_every_record_and_can_call_ours(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """An emit() override runs for each record, and its super().emit() delivers."""
        seen: list[str] = []

        class Tagging(AnalyticsHandler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())
                if hasattr(record, "cdp"):
                    record.cdp["properties"] = {"tagged": True}
                super().emit(record)

        handler = Tagging(write_key=WRITE_KEY, host=collector.url)
        handler.addFilter(lambda r: r.getMessage() != "identify")
        app_logger.addHandler(handler)
        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "E"}})
        app_logger.info("identify", extra={"cdp": {"user_id": "u"}})  # filtered out
        app_logger.info("an ordinary line")
        assert handler.flush(5)

        assert ["track", "an ordinary line"] == seen
        assert [("track", {"tagged": True})] == [
            (m["type"], m.get("properties")) for m in collector.messages()
        ]

    def test_filters_apply_in_handle_not_in_a_direct_emit(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """A handler's filter stops a logged record; emit() called directly sends it, as
        ``Handler.emit`` applies no filter."""
        handler = handler_for(collector)
        handler.addFilter(lambda r: False)
        app_logger.addHandler(handler)
        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "Logged"}})
        record = app_logger.makeRecord(
            app_logger.name,
            logging.INFO,
            __file__,
            1,
            "track",
            (),
            None,
            extra={"cdp": {"user_id": "u", "event": "Emitted"}},
        )
        handler.emit(record)
        assert handler.flush(5)

        assert ["Emitted"] == [m["event"] for m in collector.messages()]

    def test_a_subclass_with_its_own_handle_is_left_alone(self) -> None:
        """A subclass that writes handle itself keeps it."""

        class Own(AnalyticsHandler):
            def handle(self, record: logging.LogRecord, _from_emit: bool = False) -> bool:
                return False

            def emit(self, record: logging.LogRecord) -> None:
                raise AssertionError("never called")

        assert Own.handle is not AnalyticsHandler.handle
        assert "Own.handle" in Own.handle.__qualname__


class TestNeverRaises:
    @pytest.mark.parametrize(
        "extra",
        [
            {"cdp": {"user_id": "u"}},  # no event
            {"cdp": {"user_id": "u", "event": "E", "properties": "not a mapping"}},
            {
                "cdp": {
                    "user_id": "u",
                    "event": "E",
                    "properties": {"x": float("nan"), "o": object()},
                }
            },
            {"cdp": {"type": 5}},
            {"cdp": {"user_id": "u", "event": "E", "properties": {"b": "x" * 100_000}}},
            {"cdp": {"user_id": "u", "event": "E", "bogus": 1}},
        ],
    )
    def test_bad_payloads_are_reported_not_raised(
        self,
        collector: Collector,
        app_logger: logging.Logger,
        extra: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Whatever the payload, the logging call returns normally; refusals are reported."""
        monkeypatch.setattr(logging, "raiseExceptions", True)
        errors: list[DeliveryError] = []
        handler = handler_for(collector, on_error=errors.append)
        app_logger.addHandler(handler)

        app_logger.info("track", extra=extra)
        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "fine"}})
        assert handler.client.flush(5)

        delivered = [m["event"] for m in collector.messages()]
        if errors:
            assert errors[0].code in {"invalid_message", "message_too_large"}
            assert errors[0].reason
            assert ["fine"] == delivered
        else:  # the NaN/object case is delivered, converted
            assert 2 == len(delivered)

    def test_closed_client_does_not_raise(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """Logging to a handler whose shared client was closed reports `closed`."""
        errors: list[DeliveryError] = []
        client = cdp_logging.Analytics(WRITE_KEY, host=collector.url, on_error=errors.append)
        app_logger.addHandler(AnalyticsHandler(client=client))
        client.close()

        app_logger.info("track", extra={"cdp": {"user_id": "u", "event": "E"}})

        assert ["closed"] == [e.code for e in errors]


class TestDictConfig:
    def test_class_form_with_plain_keywords(self, collector: Collector) -> None:
        """dictConfig builds the handler from `class:` and plain keyword options."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cdp": {
                        "class": "cdp_logging.AnalyticsHandler",
                        "write_key": WRITE_KEY,
                        "host": collector.url,
                        "max_events_in_batch": 7,
                        "flush_interval": "2.5",
                        "level": "INFO",
                    }
                },
                "loggers": {"dc.app": {"handlers": ["cdp"], "level": "INFO", "propagate": False}},
            }
        )
        try:
            logger = logging.getLogger("dc.app")
            handler = logger.handlers[0]
            assert isinstance(handler, AnalyticsHandler)
            assert (
                handler.client.options.max_events_in_batch,
                handler.client.options.flush_interval,
                handler.level,
            ) == (7, 2.5, logging.INFO)
            logger.info("track", extra={"user_id": "u", "event": "via dictConfig"})
            assert handler.client.flush(5)
            assert ["via dictConfig"] == [m["event"] for m in collector.messages()]
        finally:
            logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})

    def test_environment_fallback(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch, app_logger: logging.Logger
    ) -> None:
        """With no write_key/host given, CDP_WRITE_KEY and CDP_HOST are used."""
        monkeypatch.setenv("CDP_WRITE_KEY", WRITE_KEY)
        monkeypatch.setenv("CDP_HOST", collector.url)
        handler = AnalyticsHandler()
        app_logger.addHandler(handler)

        app_logger.info("track", extra={"user_id": "u", "event": "env"})
        assert handler.client.flush(5)

        assert collector.batches()[0].write_key_ok
        assert ["env"] == [m["event"] for m in collector.messages()]

    def test_missing_key_fails_dictconfig(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A config without any write key fails at configuration, naming CDP_WRITE_KEY."""
        monkeypatch.delenv("CDP_WRITE_KEY", raising=False)

        with pytest.raises(ValueError, match="cdp") as info:
            logging.config.dictConfig(
                {
                    "version": 1,
                    "disable_existing_loggers": False,
                    "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler"}},
                }
            )
        assert "CDP_WRITE_KEY" in str(info.value.__cause__)


class TestLifecycle:
    def test_flush_and_close_are_bounded(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """With the server hanging, handler.flush() and close() return by shutdown_timeout."""
        collector.faults.latency(5.0)
        handler = handler_for(collector, shutdown_timeout=0.3, timeout=10)
        app_logger.addHandler(handler)
        app_logger.info("track", extra={"user_id": "u", "event": "E"})
        started = time.monotonic()

        handler.flush()
        handler.close()

        assert time.monotonic() - started < 2.0
        collector.faults.clear()

    def test_reopens_after_close(self, collector: Collector, app_logger: logging.Logger) -> None:
        """A closed handler that still gets analytics records reopens its client for them."""
        handler = handler_for(collector)
        app_logger.addHandler(handler)
        app_logger.info("track", extra={"user_id": "u", "event": "before"})
        handler.close()
        assert handler.client.closed

        app_logger.info("track", extra={"user_id": "u", "event": "after"})
        assert not handler.client.closed
        handler.close()

        assert ["after", "before"] == sorted(m["event"] for m in collector.messages())

    def test_close_while_another_thread_logs(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """Closing the handler (as dictConfig does) while another thread is logging
        loses nothing and reports nothing: a record that meets the closed client on
        its way in goes to the reopened one."""
        errors: list[cdp_logging.DeliveryError] = []
        handler = handler_for(collector, on_error=errors.append, shutdown_timeout=5)
        app_logger.addHandler(handler)
        started, stop = threading.Event(), threading.Event()
        logged: list[int] = []

        def log_until_stopped() -> None:
            for i in range(200_000):  # bounded; stopped long before
                app_logger.info("track", extra={"user_id": "u", "event": f"e{i}"})
                logged.append(i)
                if i == 10:
                    started.set()
                if stop.is_set():
                    return

        thread = threading.Thread(target=log_until_stopped)
        thread.start()
        assert started.wait(5)
        for _ in range(10):
            handler.close()
        stop.set()
        thread.join(30)
        handler.close()

        assert not thread.is_alive()
        assert [] == [error.code for error in errors]
        assert len(logged) == len({m["event"] for m in collector.messages()})
        assert len(logged) < 200_000  # the closes happened while it was logging

    def test_logging_call_does_not_wait_while_shutdown_flushes(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """logging.shutdown() holds the handler's lock while our flush() and close() wait
        for a slow request; a record that meets the closed client meanwhile reopens it
        without waiting for that lock, so the logging call stays fast."""
        handler = handler_for(collector, shutdown_timeout=2)
        app_logger.addHandler(handler)
        collector.faults.latency(5.0)
        app_logger.info("track", extra={"user_id": "u", "event": "slow"})  # sent at once
        first = handler.client
        closing = threading.Thread(target=logging.shutdown, args=([weakref.ref(handler)],))
        closing.start()
        deadline = time.monotonic() + 10
        while not first.closed and time.monotonic() < deadline:  # flush() takes ~2 s first
            time.sleep(0.01)
        assert first.closed
        collector.faults.clear()  # for the reopened client; "slow" stays slow
        durations: list[float] = []
        for _ in range(200):
            started = time.monotonic()
            app_logger.info("track", extra={"user_id": "u", "event": "during"})
            durations.append(time.monotonic() - started)
        closing.join(10)
        handler.close()

        assert not closing.is_alive()
        assert max(durations) < 1.0, max(durations)  # not close()'s ~2 s wait
        assert 200 == sum(m["event"] == "during" for m in collector.messages())

    def test_shared_client_is_flushed_not_closed(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """With client=, closing the handler flushes the client but leaves it open."""
        client = cdp_logging.Analytics(
            WRITE_KEY, host=collector.url, flush_interval=60, max_events_in_batch=100
        )
        handler = AnalyticsHandler(client=client)
        app_logger.addHandler(handler)
        client.track("u", "first").result(timeout=5)
        app_logger.info("track", extra={"user_id": "u", "event": "E"})
        handler.close()

        assert not client.closed
        assert 2 == len(collector.messages())
        client.close()

    def test_library_and_http_records_do_not_reenter(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """urllib3's debug records, with the handler on root at DEBUG, are not sent or looped."""
        root = logging.getLogger()
        handler = handler_for(collector)
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            logging.getLogger("app").info("track", extra={"user_id": "u", "event": "E"})
            assert handler.client.flush(5)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            handler.close()

        assert ["E"] == [m["event"] for m in collector.messages()]
        assert 1 == handler.client.stats()["queued"]


class TestRecursionGuard:
    def test_http_stack_records_are_ignored_even_if_they_look_like_analytics(
        self, collector: Collector
    ) -> None:
        """A record logged while sending (urllib3's) is never sent, even one carrying `cdp`."""
        old_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = old_factory(*args, **kwargs)
            if record.name.startswith("urllib3"):
                record.cdp = {"type": "track", "user_id": "loop", "event": "recursed"}
            return record

        root = logging.getLogger()
        handler = handler_for(collector)
        old_level = root.level
        logging.setLogRecordFactory(factory)
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            logging.getLogger("app").info("track", extra={"user_id": "u", "event": "E"})
            assert handler.client.flush(5)
            logging.getLogger("urllib3.test").debug("outside a send: not guarded")
            assert handler.client.flush(5)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            logging.setLogRecordFactory(old_factory)
            handler.close()

        events = sorted(m["event"] for m in collector.messages())
        assert ["E", "recursed"] == events  # only the record logged outside a send
