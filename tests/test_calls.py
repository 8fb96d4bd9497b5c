"""Record (or fields) to wire message: recognition, mapping, validation, size."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import fractions
import json
import logging
import time
from collections import UserString
from typing import Any

import pytest

import cdp_logging
from cdp_logging import AnalyticsHandler, DeliveryError, __version__, bound_context
from cdp_logging._core.calls import build, fields_from_record
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


class Colour(str, enum.Enum):
    EMPTY = ""


def record(msg: Any, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("test.calls")
    return logger.makeRecord("test.calls", logging.INFO, __file__, 1, msg, (), None, extra=extra)


def message(call_type: object, fields: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    built = build(call_type, fields, 1_700_000_000.25, strict=strict)
    assert isinstance(built, bytes), built
    decoded: dict[str, Any] = json.loads(built)
    return decoded


def refusal(call_type: object, fields: dict[str, Any]) -> DeliveryError:
    built = build(call_type, fields, time.time())
    assert isinstance(built, DeliveryError)
    return built


class TestRecognition:
    def test_cdp_mapping_with_type_from_message(self) -> None:
        """A mapping under `cdp` makes an analytics record; the type is the message."""
        found = fields_from_record(record("track", cdp={"user_id": "u", "event": "E"}))

        assert ("track", {"user_id": "u", "event": "E"}, True) == found

    def test_cdp_type_key_wins(self) -> None:
        """cdp['type'] names the call when given, whatever the message says."""
        found = fields_from_record(record("User paid", cdp={"type": "track", "event": "E"}))

        assert found is not None
        assert "track" == found[0]

    def test_flat_form(self) -> None:
        """A message that is exactly a call type, with flat payload keys, is recognised."""
        found = fields_from_record(record("track", user_id="u", event="Played Song", other=1))

        assert ("track", {"user_id": "u", "event": "Played Song"}, False) == found

    @pytest.mark.parametrize(
        ("msg", "extra"),
        [
            ("track", {}),  # a call type but no payload keys
            ("tracking", {"user_id": "u"}),  # not exactly a call type
            ("hello %s", {"event": "x"}),
            ({"event": "track"}, {}),  # a dict message without cdp
        ],
    )
    def test_ordinary_records_are_ignored(self, msg: Any, extra: dict[str, Any]) -> None:
        """Records without an analytics payload are not analytics records."""
        assert fields_from_record(record(msg, **extra)) is None

    def test_flat_form_never_reads_logger_name(self) -> None:
        """`name` cannot travel flat: the record's name is the logger's, not a page name."""
        found = fields_from_record(record("page", anonymous_id="a"))

        assert found is not None
        assert "name" not in found[1]


class TestMapping:
    def test_snake_and_camel_keys(self) -> None:
        """Both spellings of every key map to the wire's camelCase."""
        snake = message(
            "track",
            {
                "user_id": "u",
                "anonymous_id": "a",
                "event_name": "E",
                "message_id": "m1",
                "properties": {"p": 1},
                "integrations": {"All": False},
            },
        )
        camel = message(
            "track",
            {
                "userId": "u",
                "anonymousId": "a",
                "event": "E",
                "messageId": "m1",
                "properties": {"p": 1},
                "integrations": {"All": False},
            },
        )

        assert snake == camel
        assert {
            "userId",
            "anonymousId",
            "event",
            "messageId",
            "properties",
            "integrations",
            "type",
            "context",
            "timestamp",
        } == set(snake)

    def test_ids_become_strings(self) -> None:
        """Integer ids are sent as strings."""
        sent = message("alias", {"previous_id": 7, "user_id": 8})

        assert ("7", "8") == (sent["previousId"], sent["userId"])

    def test_library_context_added_and_app_context_kept(self) -> None:
        """context.library names cdp_logging; the app's own context keys stay."""
        sent = message("identify", {"user_id": "u", "context": {"ip": "1.2.3.4"}})

        assert {"ip": "1.2.3.4", "library": {"name": "cdp_logging", "version": __version__}} == (
            sent["context"]
        )

    def test_timestamp_defaults_to_creation_time(self) -> None:
        """Without a timestamp, the message carries the record's creation time in UTC."""
        sent = message("track", {"user_id": "u", "event": "E"})

        assert "2023-11-14T22:13:20.250+00:00" == sent["timestamp"]

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2024-01-02T03:04:05+00:00"),
            ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
            (1_700_000_000, "2023-11-14T22:13:20.000+00:00"),
            (1_700_000_000.999, "2023-11-14T22:13:20.999+00:00"),
            # Before 1970 by less than a second: the second before, not 1970's first.
            (-0.5, "1969-12-31T23:59:59.500+00:00"),
        ],
    )
    def test_given_timestamp(self, given: object, expected: str) -> None:
        """A given timestamp (datetime, ISO text, epoch seconds) is kept as ISO 8601."""
        assert (
            expected
            == message("track", {"user_id": "u", "event": "E", "timestamp": given})["timestamp"]
        )

    @pytest.mark.parametrize(
        ("created", "expected"),
        [
            (decimal.Decimal("1700000000.5"), "2023-11-14T22:13:20.500+00:00"),
            (fractions.Fraction(1_700_000_000_123, 1000), "2023-11-14T22:13:20.123+00:00"),
            (fractions.Fraction(1_700_000_000_999_999_999, 10**9), "2023-11-14T22:13:20.999+00:00"),
            (1_700_000_001, "2023-11-14T22:13:21.000+00:00"),
        ],
    )
    @pytest.mark.parametrize("message_id", [None, "given-id"])
    def test_a_creation_time_that_is_not_a_float(
        self, created: object, expected: str, message_id: str | None
    ) -> None:
        """A record's ``created`` a filter or ``makeLogRecord`` made a Decimal (JSON read
        with parse_float=Decimal), a Fraction or an int is the time it says, to the
        millisecond, not an error or a millisecond off by float rounding; with or
        without a messageId of the call's own (the usual way and the general one)."""
        fields = {"user_id": "u", "event": "E", "message_id": message_id}
        built = build("track", fields, created, True)  # type: ignore[arg-type]

        assert isinstance(built, bytes), built
        assert expected == json.loads(built)["timestamp"]

    def test_message_ids_unique_and_short(self) -> None:
        """Every message gets its own messageId of at most 100 characters."""
        ids = {message("track", {"user_id": "u", "event": "E"})["messageId"] for _ in range(1000)}

        assert 1000 == len(ids)
        assert all(len(i) <= 100 for i in ids)

    def test_none_values_are_absent(self) -> None:
        """A None field is left out of the message, not sent as null."""
        sent = message("page", {"anonymous_id": "a", "name": None, "category": "Docs"})

        assert "name" not in sent

    def test_app_dict_changed_after_the_call_changes_nothing(self) -> None:
        """The message is serialised at the call: later mutation is not seen."""
        properties = {"plan": "free"}
        built = build("track", {"user_id": "u", "event": "E", "properties": properties}, 0.0)
        properties["plan"] = "pro"

        assert isinstance(built, bytes)
        assert {"plan": "free"} == json.loads(built)["properties"]


class TestValidation:
    @pytest.mark.parametrize(
        ("call_type", "fields", "needle"),
        [
            ("identify", {}, "identify needs a userId or an anonymousId"),
            ("track", {"user_id": "u"}, "track needs an event name"),
            ("page", {"name": "Docs"}, "page needs a userId or an anonymousId"),
            ("screen", {"name": "Home"}, "screen needs a userId or an anonymousId"),
            ("group", {"user_id": "u"}, "group needs a groupId"),
            ("alias", {"user_id": "u"}, "alias needs a previousId"),
            ("alias", {"previous_id": "p"}, "alias needs a userId"),
            ("track", {"user_id": "u", "event": 5}, "event must be a string"),
            ("page", {"user_id": "u", "name": ["x"]}, "name must be a string"),
            (
                "track",
                {"user_id": "u", "event": "E", "properties": [1, 2]},
                "properties must be a mapping",
            ),
            (
                "track",
                {"user_id": "u", "event": "E", "timestamp": "yesterday"},
                "not an ISO 8601 date-time",
            ),
            (
                "track",
                {"user_id": "u", "event": "E", "timestamp": "2024-01-01T00:00:00"},
                "no time zone",
            ),
            ("track", {"user_id": "u", "event": "E", "message_id": "x" * 101}, "longer than 100"),
            (
                "track",
                {"user_id": "u", "event": "E", "message_id": 1.5},
                "messageId must be a string",
            ),
            ("track", {"user_id": "u", "event": "E", "message_id": ""}, "messageId is required"),
            ("purchase", {"user_id": "u"}, "unknown call type 'purchase'"),
            (
                "track",
                {"user_id": "u", "event": "E", "propertes": {}},
                "unknown payload key(s) 'propertes' (did you mean 'properties'?)",
            ),
        ],
    )
    def test_invalid_message_is_refused_with_reason(
        self, call_type: str, fields: dict[str, Any], needle: str
    ) -> None:
        """Each missing or wrong field is refused as invalid_message, saying what is wrong."""
        error = refusal(call_type, fields)

        assert "invalid_message" == error.code
        assert needle in error.reason
        assert 1 == len(error.messages)

    @pytest.mark.parametrize(
        ("call_type", "fields", "needle"),
        [
            ("track", {"user_id": "", "event": "E"}, "track needs a userId or an anonymousId"),
            ("track", {"user_id": "u", "event": ""}, "track needs an event name"),
            ("track", {"user_id": "u", "event": Colour.EMPTY}, "track needs an event name"),
            ("group", {"user_id": "u", "group_id": ""}, "group needs a groupId"),
            ("alias", {"previous_id": "", "user_id": "u"}, "alias needs a previousId"),
            ("alias", {"previous_id": "p", "user_id": ""}, "alias needs a userId"),
        ],
    )
    def test_empty_text_is_not_a_value_given(
        self, call_type: str, fields: dict[str, Any], needle: str
    ) -> None:
        """A required key given as empty text (or an Enum whose value is) is missing."""
        error = refusal(call_type, fields)

        assert ("invalid_message", True) == (error.code, needle in error.reason)

    def test_empty_text_beside_a_given_alternative_is_sent(self) -> None:
        """An empty userId beside an anonymousId, or beside a bound one, still goes."""
        sent = message("track", {"user_id": "", "anonymous_id": "a", "event": "E"})
        with bound_context(anonymous_id="b"):
            bound = message("identify", {"user_id": ""})

        assert ("", "a") == (sent["userId"], sent["anonymousId"])
        assert ("", "b") == (bound["userId"], bound["anonymousId"])

    @pytest.mark.parametrize("options", [{}, {"redact": ["traits.secret"]}])
    def test_empty_text_over_the_same_bound_key_is_refused_with_any_options(
        self, options: dict[str, Any]
    ) -> None:
        """The call's own empty userId wins over the bound one, and no message may carry
        it: refused, as the redact/before_send path refuses it (it was sent as ``""``)."""
        client = cdp_logging.Analytics("key", send=False, stderr_warnings=False, **options)
        with bound_context(user_id="bound"):
            future = client.identify(user_id="", traits={"plan": "pro"})
        with pytest.raises(DeliveryError) as raised:
            future.result(5)
        client.close()

        assert ("invalid_message", "identify: identify needs a userId or an anonymousId") == (
            raised.value.code,
            raised.value.reason,
        )

    def test_a_message_id_that_is_not_text_is_named_once(self) -> None:
        """A messageId of the wrong type is refused saying so, not also as missing."""
        error = refusal("track", {"user_id": "u", "event": "E", "message_id": 1.5})

        assert "track: messageId must be a string, got float" == error.reason

    def test_oversized_message_is_refused(self) -> None:
        """A message over 32,000 bytes serialised is refused as message_too_large."""
        error = refusal("track", {"user_id": "u", "event": "E", "properties": {"b": "x" * 32_000}})

        assert "message_too_large" == error.code
        assert "32,000" in error.reason

    def test_message_just_under_the_limit_is_accepted(self) -> None:
        """The limit is on the serialised bytes: 32,000 bytes passes."""
        base = build("track", {"user_id": "u", "event": "E", "properties": {"b": ""}}, 0.0)
        assert isinstance(base, bytes)
        filler = "x" * (32_000 - len(base))

        built = build("track", {"user_id": "u", "event": "E", "properties": {"b": filler}}, 0.0)

        assert isinstance(built, bytes)
        assert 32_000 == len(built)

    def test_flat_form_ignores_unknown_keys(self) -> None:
        """In the flat form, the app's other extra keys are expected and not an error."""
        assert isinstance(
            build("track", {"user_id": "u", "event": "E", "request_id": 1}, 0.0, strict=False),
            bytes,
        )


class EqualToTrack:
    """Not text, but equal to "track" and hashed as it is (as UserString("track") is)."""

    def __eq__(self, other: object) -> bool:
        return other == "track"

    def __hash__(self) -> int:
        return hash("track")

    def __repr__(self) -> str:
        return "EqualToTrack()"


class TestUnknownKeys:
    def test_a_misspelt_key_is_named_with_the_key_it_resembles_with_or_without_options(
        self,
    ) -> None:
        """The refusal names each unknown key, the payload key it resembles, and every key
        the mapping takes (type included), in the same words whatever the options."""
        reasons: list[list[str]] = []
        option_sets: list[dict[str, Any]] = [{}, {"redact": ["traits.email"]}]
        for options in option_sets:
            errors: list[DeliveryError] = []
            client = cdp_logging.Analytics(send=False, on_error=errors.append, **options)
            try:
                client.track(user_id="u", event="E")  # a good one first: refusals only below
                client.submit(
                    "track", {"user_id": "u", "event": "E", "usrid": "x", "zz": 1}, 0.0, True
                )
                assert client.flush(5)
            finally:
                client.close()
            reasons.append([error.reason for error in errors])

        assert reasons[0] == reasons[1]
        (reason,) = reasons[0]
        assert "unknown payload key(s) 'usrid' (did you mean 'user_id'?), 'zz';" in reason
        assert "known keys are anonymousId, anonymous_id" in reason
        assert ", type, userId, user_id" in reason


class TestCallTypeIsText:
    @pytest.mark.parametrize("call_type", [UserString("track"), EqualToTrack()])
    def test_a_call_type_that_is_not_text_is_refused_though_equal_to_one(
        self, call_type: object
    ) -> None:
        """Only text names a call type: an object equal to "track" (UserString, which
        plain_call_type leaves as it is) is refused by build, as by the pipeline's."""
        error = refusal(call_type, {"user_id": "u", "event": "E"})

        assert "invalid_message" == error.code
        assert "unknown call type" in error.reason

    def test_the_options_do_not_change_what_is_refused(
        self, collector: Collector, app_logger: logging.Logger
    ) -> None:
        """A UserString log message is refused with and without a pipeline (redact=)."""
        option_sets: list[dict[str, Any]] = [{}, {"redact": ("email",)}]
        for options in option_sets:
            errors: list[DeliveryError] = []
            handler = AnalyticsHandler(
                write_key=WRITE_KEY, host=collector.url, on_error=errors.append, **options
            )
            app_logger.addHandler(handler)
            try:
                app_logger.info(UserString("track"), extra={"cdp": {"user_id": "u", "event": "E"}})
                assert handler.client.flush(5)
            finally:
                app_logger.removeHandler(handler)
                handler.close()
            assert ["invalid_message"] == [e.code for e in errors], options
        assert [] == collector.messages()
