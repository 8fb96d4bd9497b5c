"""structlog: AnalyticsProcessor natively, and structlog routed into stdlib logging."""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from mypy import api as mypy_api

import cdp_logging
from cdp_logging import AnalyticsHandler, AnalyticsProcessor
from cdp_logging.collector import Collector
from cdp_logging.payloads import (
    alias_payload,
    as_extra,
    group_payload,
    identify_payload,
    page_payload,
    screen_payload,
    track_payload,
)
from cdp_logging.typing import Payload

from .conftest import ROOT, WRITE_KEY, run_python


@pytest.fixture
def processor(collector: Collector) -> Iterator[AnalyticsProcessor]:
    made = AnalyticsProcessor(write_key=WRITE_KEY, host=collector.url)
    yield made
    made.client.close(timeout=2)


def native(*processors: Any) -> Any:
    """A structlog logger of its own whose output is returned by each call."""
    return structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[*processors, structlog.processors.KeyValueRenderer(sort_keys=True)],
    )


class TestNative:
    def test_flat_and_cdp_forms(self, collector: Collector, processor: AnalyticsProcessor) -> None:
        """Both forms become messages, with event_name as the track name."""
        log = native(processor)
        log.info("track", user_id="u1", event_name="Played Song", properties={"plays": 3})
        log.info("page", cdp={"user_id": "u1", "name": "Docs"})
        log.info("page", user_id="u1", name="Flat Docs")
        log.info("something else", user_id="u1")
        assert processor.client.flush(5)

        sent = collector.messages()
        assert [("page", "Docs"), ("page", "Flat Docs"), ("track", "Played Song")] == sorted(
            (m["type"], m.get("event") or m.get("name")) for m in sent
        )
        assert {"plays": 3} == next(m for m in sent if m["type"] == "track")["properties"]

    def test_timestamper_key_is_not_the_message_timestamp(
        self, collector: Collector, processor: AnalyticsProcessor
    ) -> None:
        """structlog's TimeStamper owns `timestamp` in the flat form; any format is fine."""
        log = native(structlog.processors.TimeStamper(fmt="%H:%M"), processor)
        log.info("track", user_id="u1", event_name="E")
        assert processor.client.flush(5)

        assert collector.messages()[0]["timestamp"].endswith("+00:00")

    def test_same_validation_as_handler(self, collector: Collector) -> None:
        """A track without a name is refused with the handler's code and reason."""
        errors: list[cdp_logging.DeliveryError] = []
        processor = AnalyticsProcessor(
            write_key=WRITE_KEY, host=collector.url, on_error=errors.append
        )
        native(processor).info("track", user_id="u1")

        assert ["invalid_message"] == [e.code for e in errors]
        assert "track needs an event name" in errors[0].reason
        processor.client.close()

    def test_shared_client_and_handler(self, collector: Collector) -> None:
        """client= and handler= share one sender instead of building another."""
        handler = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url)
        via_handler = AnalyticsProcessor(handler=handler)
        via_client = AnalyticsProcessor(client=handler.client)

        native(via_handler).info("track", user_id="u", event_name="one")
        native(via_client).info("track", user_id="u", event_name="two")
        assert handler.client.flush(5)

        assert via_handler.client is via_client.client is handler.client
        assert 2 == handler.client.stats()["queued"]
        handler.close()


class TestAfter:
    def test_keep_passes_event_on(self, processor: AnalyticsProcessor) -> None:
        """after='keep' (the default) leaves the event dict as it was."""
        line = native(processor).info("track", user_id="u1", event_name="E")

        assert "event='track'" in line
        assert "user_id='u1'" in line

    def test_strip_removes_payload(self, collector: Collector) -> None:
        """after='strip' logs the line without the payload keys."""
        processor = AnalyticsProcessor(write_key=WRITE_KEY, host=collector.url, after="strip")
        line = native(processor).info(
            "identify", user_id="u1", traits={"email": "a@b.c"}, request_id=7
        )

        assert "event='identify' request_id=7" == line
        assert processor.client.flush(5)
        assert 1 == len(collector.messages())
        processor.client.close()

    def test_drop_drops_the_line(self, collector: Collector) -> None:
        """after='drop' sends the message and raises DropEvent, so nothing is logged."""
        processor = AnalyticsProcessor(write_key=WRITE_KEY, host=collector.url, after="drop")
        log = native(processor)

        assert log.info("track", user_id="u1", event_name="E") is None
        assert "event='ordinary'" == log.info("ordinary")
        assert processor.client.flush(5)
        assert 1 == len(collector.messages())
        processor.client.close()

    def test_drop_inside_processor_formatter_strips_instead(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """Inside a ProcessorFormatter chain 'drop' strips, because DropEvent would escape."""
        processor = AnalyticsProcessor(write_key=WRITE_KEY, host=collector.url, after="drop")
        lines: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(self.format(record))

        sink = Collect()
        sink.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    processor,
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.KeyValueRenderer(sort_keys=True),
                ],
                foreign_pre_chain=[structlog.stdlib.ExtraAdder()],
            )
        )
        app_logger.addHandler(sink)
        app_logger.info("track", extra={"user_id": "u1", "event_name": "From stdlib"})

        assert 1 == len(lines)
        assert "event='track'" in lines[0]
        assert "user_id" not in lines[0]
        assert "event_name" not in lines[0]
        assert processor.client.flush(5)
        assert ["From stdlib"] == [m["event"] for m in collector.messages()]
        processor.client.close()

    def test_bad_after_is_refused(self) -> None:
        """An unknown `after` is a ValueError at construction."""
        with pytest.raises(ValueError, match="after"):
            AnalyticsProcessor(write_key="k", after="sometimes")  # type: ignore[arg-type]


class TestRoutedIntoStdlib:
    def test_processor_formatter_route(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """With wrap_for_formatter, the stdlib AnalyticsHandler alone delivers cdp= events."""
        handler = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url)
        app_logger.addHandler(handler)
        log = structlog.wrap_logger(
            app_logger,
            processors=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        log.info("track", cdp={"user_id": "u1", "event": "Routed"})
        log.info("page", user_id="u1", name="Flat via formatter")
        log.info("not analytics", user_id="u1")
        assert handler.client.flush(5)

        assert ["Flat via formatter", "Routed"] == sorted(
            str(m.get("event") or m.get("name")) for m in collector.messages()
        )

    def test_render_to_log_kwargs_route(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """With render_to_log_kwargs, the payload travels in extra and the handler sends it."""
        handler = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url)
        app_logger.addHandler(handler)
        log = structlog.wrap_logger(
            app_logger,
            processors=[structlog.stdlib.render_to_log_kwargs],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        log.info("track", cdp={"user_id": "u1", "event": "Routed kwargs"})
        log.info("track", user_id="u1", event_name="Flat kwargs")
        assert handler.client.flush(5)

        assert ["Flat kwargs", "Routed kwargs"] == sorted(m["event"] for m in collector.messages())


class TestExit:
    def test_structlog_only_script_delivers_at_exit(self, collector: Collector) -> None:
        """A script using only structlog, whose processor owns its sender, delivers at exit."""
        done = run_python(f"""
            import structlog, cdp_logging
            structlog.configure(processors=[
                cdp_logging.AnalyticsProcessor(write_key={WRITE_KEY!r}, host={collector.url!r},
                                               flush_interval=60, max_events_in_batch=1000),
                structlog.processors.KeyValueRenderer(),
            ], logger_factory=structlog.ReturnLoggerFactory())
            log = structlog.get_logger()
            for i in range(200):
                log.info("track", user_id=str(i), event_name="structlog exit")
        """)

        assert (0, "") == (done.returncode, done.stderr)
        assert 200 == len(collector.messages())


class TestPayloadHelpers:
    def test_helpers_build_what_the_handler_sends(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """Each helper's payload, logged in either world, becomes the right message."""
        handler = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url)
        app_logger.addHandler(handler)
        payloads: list[Payload] = [
            identify_payload(user_id="u1", traits={"plan": "pro"}),
            track_payload(user_id="u1", event="Played", properties={"n": 1}),
            page_payload(anonymous_id="a1", name="Docs", category="Help"),
            screen_payload(user_id="u1", name="Home"),
            group_payload(user_id="u1", group_id="g1"),
            alias_payload(previous_id="a1", user_id="u1"),
        ]
        for payload in payloads:
            app_logger.info("any message", extra=as_extra(payload))
        log = structlog.wrap_logger(
            app_logger,
            processors=[structlog.stdlib.render_to_log_kwargs],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        log.info("anything", cdp=track_payload(user_id="u1", event="From structlog"))
        assert handler.client.flush(5)

        sent = collector.messages()
        assert sorted(["identify", "track", "page", "screen", "group", "alias", "track"]) == sorted(
            m["type"] for m in sent
        )
        assert {"Played", "From structlog"} == {m["event"] for m in sent if m["type"] == "track"}
        identify = next(m for m in sent if m["type"] == "identify")
        assert "absent" == identify.get("anonymousId", "absent")

    def test_mypy_flags_wrong_payloads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """mypy rejects a track payload without event and a page name that is not a string."""
        code = textwrap.dedent("""
            from cdp_logging.payloads import page_payload, track_payload
            from cdp_logging.typing import TrackPayload
            track_payload(user_id="u1")
            page_payload(user_id="u1", name=42)
            bad: TrackPayload = {"type": "track", "user_id": "u1"}
            good = track_payload(user_id="u1", event="fine")
        """)
        # An editable install hides the package behind an import hook mypy cannot follow.
        monkeypatch.setenv("MYPYPATH", str(ROOT))
        stdout, _, status = mypy_api.run(
            ["--config-file=", "--strict", "--no-incremental", "-c", code]
        )

        assert 1 == status
        assert 'Missing named argument "event" for "track_payload"' in stdout
        assert 'Argument "name" to "page_payload" has incompatible type "int"' in stdout
        assert 'Missing key "event" for TypedDict "TrackPayload"' in stdout
        assert "Found 3 errors" in stdout


class TestCallbacksDoNotLoop:
    def test_an_event_logged_from_on_flush_is_counted_not_sent(self, collector: Collector) -> None:
        """The loop users hit: on_flush logs one event through structlog, batch size 1.

        Before the guard sat in the path every front door shares, one event became
        thousands (2,891 in 3 s). Now the callback's event is refused as reentrant.
        """
        flushed = threading.Event()
        log: list[Any] = []

        def on_flush(messages: list[dict[str, Any]]) -> None:
            log[0].info("track", user_id="u1", event_name="Batch Delivered")
            flushed.set()

        processor = AnalyticsProcessor(
            WRITE_KEY, collector.url, on_flush=on_flush, max_events_in_batch=1
        )
        log.append(native(processor))
        try:
            log[0].info("track", user_id="u1", event_name="Played")
            assert flushed.wait(5)
            assert processor.client.flush(5)
            stats = processor.client.stats()
        finally:
            processor.client.close(timeout=2)

        assert ["Played"] == [m["event"] for m in collector.messages()]
        assert (1, 1, 1) == (stats["delivered"], stats["dropped"], stats["errors"]["reentrant"])
