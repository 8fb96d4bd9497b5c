"""The pipeline a user configures: before_send, redact and context, through every door."""

from __future__ import annotations

import datetime as dt
import logging
import logging.config
from collections.abc import Callable
from typing import Any

import pytest
import structlog

import cdp_logging
from cdp_logging import DeliveryError, errors
from cdp_logging._core import calls
from cdp_logging.collector import Collector
from cdp_logging.testing import capture_messages

from .conftest import WRITE_KEY

Make = Callable[..., cdp_logging.Analytics]


def only_paid(message: dict[str, Any]) -> dict[str, Any] | None:
    """A before_send for dictConfig (ext://): drops tracks that are not "Paid"."""
    if message["type"] == "track" and message.get("event") != "Paid":
        return None
    message.setdefault("properties", {})["checked"] = True
    return message


def stamp(message: dict[str, Any]) -> dict[str, Any]:
    """A second hook for dictConfig: runs after only_paid."""
    message["properties"]["stamped"] = message["properties"]["checked"]
    return message


def sent(collector: Collector, client: cdp_logging.Analytics) -> list[dict[str, Any]]:
    assert client.flush(5)
    return collector.messages()


class TestBeforeSend:
    def test_hooks_run_in_order_and_their_changes_are_sent(
        self, make_client: Make, collector: Collector
    ) -> None:
        seen: list[str] = []

        def first(message: dict[str, Any]) -> dict[str, Any]:
            seen.append("first")
            message["properties"]["plan"] = "pro"
            return message

        def second(message: dict[str, Any]) -> dict[str, Any]:
            seen.append(f"second saw {message['properties']['plan']}")
            return {**message, "event": message["event"].upper()}

        client = make_client(before_send=[first, second])
        properties = {"revenue": 1}
        client.track("u1", "paid", properties)

        [message] = sent(collector, client)
        assert ["first", "second saw pro"] == seen
        assert ("PAID", {"revenue": 1, "plan": "pro"}) == (message["event"], message["properties"])
        assert {"revenue": 1} == properties  # the caller's dict is not the message's

    def test_none_drops_the_message_counted_as_filtered_and_quietly(
        self, make_client: Make, collector: Collector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        reported: list[DeliveryError] = []
        told: list[tuple[Any, Any]] = []
        client = make_client(before_send=only_paid, on_error=reported.append)

        dropped = client.track("u1", "Viewed")
        kept = client.track("u1", "Paid", callback=lambda error, message: told.append((error, 1)))
        client.track("u1", "Browsed", callback=lambda error, message: told.append((error, message)))

        assert dropped.result(5) is None
        assert "Paid" == kept.result(5)["event"]
        assert [m["event"] for m in sent(collector, client)] == ["Paid"]
        stats = client.stats()
        assert (2, 0, 0, {}) == (
            stats["filtered"],
            stats["dropped"],
            stats["failed"],
            stats["errors"],
        )
        assert [] == reported
        assert sorted([(None, 1), (None, None)], key=repr) == sorted(told, key=repr)
        assert "" == capsys.readouterr().err

    def test_a_hook_that_raises_means_not_sent_and_reported(
        self, make_client: Make, collector: Collector, capsys: pytest.CaptureFixture[str]
    ) -> None:
        reported: list[DeliveryError] = []

        def broken(message: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError(f"lookup failed for key {WRITE_KEY}")

        client = make_client(before_send=[broken], on_error=reported.append)
        future = client.track("u1", "Paid", {"email": "a@example.com"})

        with pytest.raises(DeliveryError) as raised:
            future.result(5)
        assert [] == sent(collector, client)
        [error] = reported
        assert errors.BEFORE_SEND == error.code == raised.value.code
        assert "hook 1 (" in error.reason
        assert "RuntimeError" in error.reason
        assert WRITE_KEY not in error.reason + capsys.readouterr().err
        assert "Paid" == error.messages[0]["event"]  # the message as the hook got it
        assert (1, 0, {"before_send": 1}) == (
            client.stats()["dropped"],
            client.stats()["filtered"],
            client.stats()["errors"],
        )

    def test_a_hook_that_returns_something_else_is_an_error_too(self, make_client: Make) -> None:
        client = make_client(before_send=lambda message: [message])
        with pytest.raises(DeliveryError, match="returned list") as raised:
            client.track("u1", "Paid").result(5)
        assert errors.BEFORE_SEND == raised.value.code

    def test_hooks_run_before_validation(self, make_client: Make, collector: Collector) -> None:
        """A hook can complete a message (here: the user id); what it returns is checked."""

        def add_user(message: dict[str, Any]) -> dict[str, Any]:
            message.setdefault("userId", "from-hook")
            return message

        def break_it(message: dict[str, Any]) -> dict[str, Any]:
            return {**message, "timestamp": "yesterday"}

        client = make_client(before_send=add_user)
        client.track(event="Paid")
        assert ["from-hook"] == [m["userId"] for m in sent(collector, client)]

        broken = make_client(before_send=break_it)
        with pytest.raises(DeliveryError, match="not an ISO 8601") as raised:
            broken.track("u1", "Paid").result(5)
        assert errors.INVALID_MESSAGE == raised.value.code

    def test_changes_in_place_however_deep_stay_in_the_message(
        self, make_client: Make, collector: Collector
    ) -> None:
        """Not in the caller's dicts, the request's bound context or the option's context."""

        def scribble(message: dict[str, Any]) -> dict[str, Any]:
            if message["event"] != "A":
                return message
            message["context"]["app"]["name"] = "scribbled"
            message["context"]["page"]["url"] = "scribbled"
            message["properties"]["cart"]["items"].append("scribbled")
            message["context"]["library"]["name"] = "scribbled"
            return message

        client = make_client(before_send=scribble, context={"app": {"name": "shop"}})
        properties = {"cart": {"items": ["book"]}}
        with cdp_logging.bound_context(context={"page": {"url": "https://shop.example/"}}):
            client.track("u1", "A", properties)
            bound = cdp_logging.get_context()
        client.track("u1", "B", {"cart": {"items": []}}, context={"page": {"url": "/b"}})

        assert {"cart": {"items": ["book"]}} == properties
        assert "https://shop.example/" == bound["context"]["page"]["url"]
        first, second = sorted(sent(collector, client), key=lambda m: m["event"])
        assert ("scribbled", "shop") == (
            first["context"]["app"]["name"],
            second["context"]["app"]["name"],
        )
        assert "cdp_logging" == second["context"]["library"]["name"] == calls._LIBRARY["name"]

    def test_hooks_see_wire_values_exactly(self, make_client: Make, collector: Collector) -> None:
        """JSON values, as they will be sent: a datetime as its text, a 70-bit integer
        exact (the fast JSON reader would make it a float)."""
        seen: list[dict[str, Any]] = []

        def keep(message: dict[str, Any]) -> dict[str, Any]:
            seen.append(message)
            return message

        client = make_client(before_send=keep)
        when = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc)
        client.track("u1", "Paid", {"at": when, "big": 2**70, "id": 2**63 - 1, "f": 0.1})
        [message] = sent(collector, client)
        expected = {"at": "2024-05-01T08:00:00+00:00", "big": 2**70, "id": 2**63 - 1, "f": 0.1}
        assert expected == seen[0]["properties"] == message["properties"]
        assert int is type(seen[0]["properties"]["big"])

    @pytest.mark.parametrize("options", [{}, {"redact": ["properties.nothing"]}])
    def test_a_hook_that_changes_nothing_sends_what_no_hook_sends(
        self, make_client: Make, collector: Collector, options: dict[str, Any]
    ) -> None:
        """Both routes (build's text with hooks alone, the dict with redact) make the
        same message as the plain path, bound ids and context included."""
        plain = make_client()
        hooked = make_client(before_send=lambda message: message, **options)
        with cdp_logging.bound_context(anonymous_id="a-1", context={"locale": "de"}):
            for client in (plain, hooked):
                client.page(
                    "u1",
                    "Cart",
                    {"n": 1},
                    category="Shop",
                    context={"page": {"path": "/cart"}},
                    integrations={"All": True},
                    timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc),
                    message_id=f"m-{id(client)}",
                )
                assert client.flush(5)
        first, second = collector.messages()
        for message in (first, second):
            message.pop("messageId")
        assert first == second

    def test_a_hook_that_logs_an_analytics_record_does_not_loop(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        calls_made: list[int] = []

        def chatty(message: dict[str, Any]) -> dict[str, Any]:
            calls_made.append(1)
            app_logger.info("track", extra={"cdp": {"user_id": "u2", "event": "Hooked"}})
            return message

        handler = cdp_logging.AnalyticsHandler(WRITE_KEY, collector.url, before_send=chatty)
        app_logger.addHandler(handler)
        app_logger.info("track", extra={"cdp": {"user_id": "u1", "event": "Paid"}})

        assert handler.client.flush(5)
        assert ["Paid"] == [m["event"] for m in collector.messages()]
        assert [1] == calls_made
        assert {"reentrant": 1} == handler.client.stats()["errors"]


class TestRedact:
    def test_paths_and_wildcards_remove_keys_before_the_hooks_see_them(
        self, make_client: Make, collector: Collector
    ) -> None:
        hook_saw: list[dict[str, Any]] = []

        def watch(message: dict[str, Any]) -> dict[str, Any]:
            hook_saw.append(message)
            return message

        client = make_client(
            redact=["traits.email", "properties.*token*", "context.ip", "properties.card.*"],
            before_send=watch,
        )
        traits = {"email": "a@example.com", "plan": "pro"}
        properties = {
            "api_token": "t1",
            "tokenizer": "t2",
            "Token": "kept: case matters",
            "card": {"number": "4111", "brand": "visa"},
            "total": 3,
        }
        with cdp_logging.bound_context(context={"ip": "203.0.113.7", "locale": "de-DE"}):
            client.identify("u1", traits=traits)
            client.track("u1", "Paid", properties)

        identify, track = sorted(sent(collector, client), key=lambda m: m["type"])
        assert {"plan": "pro"} == identify["traits"]
        assert {"Token": "kept: case matters", "card": {}, "total": 3} == track["properties"]
        for message in (identify, track, *hook_saw):
            assert "ip" not in message["context"]
            assert "de-DE" == message["context"]["locale"]
        assert "email" not in hook_saw[0]["traits"]
        # The application's own dicts are untouched.
        assert "a@example.com" == traits["email"]
        assert {"number": "4111", "brand": "visa"} == properties["card"]

    def test_a_refused_message_is_reported_redacted(
        self, make_client: Make, capsys: pytest.CaptureFixture[str]
    ) -> None:
        reported: list[DeliveryError] = []
        client = make_client(redact=["traits.email", "userId"], on_error=reported.append)
        future = client.identify("u1", traits={"email": "a@example.com"})
        with pytest.raises(DeliveryError, match="needs a userId or an anonymousId"):
            future.result(5)
        assert "a@example.com" not in repr(reported[0].messages) + capsys.readouterr().err
        assert {} == reported[0].messages[0]["traits"]

    def test_a_top_level_wildcard_and_a_missing_path_are_harmless(
        self, make_client: Make, collector: Collector
    ) -> None:
        client = make_client(redact=["integrations", "properties.nope.deeper", "*Id.x"])
        client.track("u1", "Paid", {"a": 1}, integrations={"All": False})
        [message] = sent(collector, client)
        assert ("u1", {"a": 1}) == (message["userId"], message["properties"])
        assert "integrations" not in message


class TestContext:
    def test_merged_under_bound_and_call_context_key_by_key(
        self, make_client: Make, collector: Collector
    ) -> None:
        given = {"app": {"name": "shop", "version": "1.4.2"}, "environment": "prod", "os": "x"}
        client = make_client(context=given)
        given["environment"] = "changed later"  # frozen at construction

        client.track("u1", "A")
        with cdp_logging.bound_context(context={"os": "bound", "locale": "fr"}):
            client.track("u1", "B", context={"locale": "call", "library": {"name": "mine"}})

        first, second = sorted(sent(collector, client), key=lambda m: m["event"])
        assert {"app", "environment", "os", "library"} == set(first["context"])
        assert "prod" == first["context"]["environment"]
        context = second["context"]
        assert ("bound", "call", "prod") == (
            context["os"],
            context["locale"],
            context["environment"],
        )
        for message in (first, second):
            assert "cdp_logging" == message["context"]["library"]["name"]

    def test_context_with_hooks_and_redact_too(
        self, make_client: Make, collector: Collector
    ) -> None:
        client = make_client(
            context={"app": {"name": "shop"}, "ip": "10.0.0.1"},
            redact=["context.ip"],
            before_send=lambda m: {**m, "properties": {"env": m["context"]["app"]["name"]}},
        )
        client.track("u1", "A")
        [message] = sent(collector, client)
        assert ({"env": "shop"}, False) == (message["properties"], "ip" in message["context"])


class TestFrontDoors:
    def test_dict_config_with_ext_callables(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cdp": {
                        "class": "cdp_logging.AnalyticsHandler",
                        "write_key": WRITE_KEY,
                        "host": collector.url,
                        "before_send": [
                            "ext://tests.test_pipeline.only_paid",
                            "ext://tests.test_pipeline.stamp",
                        ],
                        "redact": ["properties.card"],
                        "context": {"app": {"name": "shop"}},
                    }
                },
                "loggers": {app_logger.name: {"handlers": ["cdp"], "propagate": False}},
            }
        )
        handler = app_logger.handlers[0]
        assert isinstance(handler, cdp_logging.AnalyticsHandler)
        app_logger.info("track", extra={"user_id": "u1", "event": "Viewed"})
        app_logger.info(
            "track", extra={"user_id": "u1", "event": "Paid", "properties": {"card": "4111"}}
        )
        assert handler.client.flush(5)
        [message] = collector.messages()
        assert ({"checked": True, "stamped": True}, {"name": "shop"}) == (
            message["properties"],
            message["context"]["app"],
        )
        assert 1 == handler.client.stats()["filtered"]

    def test_structlog_processor(self, collector: Collector) -> None:
        processor = cdp_logging.AnalyticsProcessor(
            WRITE_KEY,
            collector.url,
            before_send=only_paid,
            redact="traits.email, properties.secret",
            context={"service": "api"},
        )
        log = structlog.wrap_logger(
            structlog.ReturnLogger(), processors=[processor, structlog.processors.JSONRenderer()]
        )
        log.info("track", user_id="u1", event_name="Viewed")
        log.info("track", user_id="u1", event_name="Paid", properties={"secret": 1, "n": 2})
        assert processor.client.flush(5)
        [message] = collector.messages()
        assert ({"n": 2, "checked": True}, "api") == (
            message["properties"],
            message["context"]["service"],
        )
        processor.client.close()


class TestOptions:
    @pytest.mark.parametrize(
        ("option", "value", "match"),
        [
            ("before_send", "not callable", "before_send"),
            ("before_send", [only_paid, 3], "only callables"),
            ("redact", ["traits..email"], "redact"),
            ("redact", [""], "redact"),
            ("redact", 5, "redact"),
            ("context", ["app"], "context must be a mapping"),
            ("context", {"library": {"name": "x"}}, "library"),
            ("context", {}, "non-empty"),
        ],
    )
    def test_bad_values_fail_at_construction(self, option: str, value: Any, match: str) -> None:
        for door in (cdp_logging.Analytics, cdp_logging.AnalyticsHandler):
            with pytest.raises(ValueError, match=match):
                door(WRITE_KEY, "http://127.0.0.1:9", send=False, **{option: value})

    def test_nothing_configured_means_the_plain_build(self) -> None:
        """Decided at construction: without the three options the call goes straight to
        calls.build, with no wrapper and no per-call check."""
        with cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", send=False) as client:
            assert client._build is calls.build
        with cdp_logging.Analytics(
            WRITE_KEY, "http://127.0.0.1:9", send=False, redact=["traits.email"]
        ) as client:
            assert client._build is not calls.build


class TestTheOptionsChangeNoRefusal:
    """Found by review: with a before_send hook, values the rules refuse were turned into
    text by the hooks' JSON copy and delivered; the plan was checked on the fields given,
    not on what the hooks and redact made of them."""

    @pytest.mark.parametrize(
        "fields",
        [
            {"user_id": b"u-1", "event": "E"},
            {"user_id": "u", "event": b"Signed Up"},
            {"user_id": "u", "event": "E", "message_id": object()},
        ],
        ids=["bytes-user", "bytes-event", "object-id"],
    )
    def test_a_hook_that_changes_nothing_refuses_what_no_hook_refuses(
        self, fields: dict[str, Any]
    ) -> None:
        outcomes = []
        identity: list[dict[str, Any]] = [{}, {"before_send": [lambda message: message]}]
        for options in identity:
            errors: list[cdp_logging.DeliveryError] = []
            client = cdp_logging.Analytics(send=False, on_error=errors.append, **options)
            try:
                with capture_messages() as sent:
                    client.submit("track", fields, 1.0, strict=True)
            finally:
                client.close()
            outcomes.append(([e.code for e in errors], len(sent)))
        assert outcomes[0] == outcomes[1] == (["invalid_message"], 0)

    def test_the_unknown_call_type_reason_is_the_same_with_options(self) -> None:
        reasons = []
        variants: list[dict[str, Any]] = [
            {},
            {"redact": ["traits.email"]},
            {"before_send": [lambda m: m]},
        ]
        for options in variants:
            errors: list[cdp_logging.DeliveryError] = []
            client = cdp_logging.Analytics(send=False, on_error=errors.append, **options)
            try:
                client.submit("Track", {"user_id": "u", "event": "E"}, 1.0, strict=True)
                client.submit(10**5000, {"user_id": "u", "event": "E"}, 1.0, strict=True)
            finally:
                client.close()
            reasons.append([e.reason for e in errors])
        assert reasons[0] == reasons[1] == reasons[2]
        assert "(did you mean 'track'?)" in reasons[0][0]

    @pytest.mark.parametrize(
        "options",
        [
            {"before_send": [lambda m: {**m, "properties": {**m["properties"], "region": "eu"}}]},
            {"before_send": [lambda m: {**m, "event": "Renamed"}]},
            {"redact": ["properties.total"]},
        ],
        ids=["hook-adds-a-property", "hook-renames", "redact-removes-a-required-one"],
    )
    def test_the_plan_checks_what_is_sent(self, options: dict[str, Any]) -> None:
        plan = {
            "events": {
                "Paid": {
                    "properties": {
                        "type": "object",
                        "properties": {"total": {"type": "number"}},
                        "required": ["total"],
                        "additionalProperties": False,
                    }
                }
            }
        }
        errors: list[cdp_logging.DeliveryError] = []
        client = cdp_logging.Analytics(
            send=False, tracking_plan=plan, plan_mode="drop", on_error=errors.append, **options
        )
        try:
            with capture_messages() as sent:
                client.track("u", "Paid", {"total": 3})
        finally:
            client.close()
        assert ["plan_violation"] == [error.code for error in errors]
        assert [] == sent
