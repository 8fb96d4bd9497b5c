"""Bad input, end to end: whatever the application logs, no exception reaches it, each
call is delivered as valid JSON or refused with a code and reason, and no other message
is affected."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from cdp_logging import AnalyticsHandler, AnalyticsProcessor, DeliveryError
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


class Plan(enum.Enum):
    PRO = "pro"


@dataclasses.dataclass
class Cart:
    items: int


class Opaque:
    __slots__ = ()


def loop() -> dict[str, Any]:
    inner: dict[str, Any] = {"a": 1}
    inner["me"] = inner
    return inner


UTC = dt.timezone.utc

# (property value, what the collector must receive for it)
DELIVERED: list[tuple[str, Any, Any]] = [
    ("nan", float("nan"), None),
    ("inf", float("inf"), None),
    ("-inf", float("-inf"), None),
    ("decimal exact", Decimal("39.95"), 39.95),
    ("decimal precise", Decimal("1.000000000000000000001"), "1.000000000000000000001"),
    ("uuid", uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ("aware datetime", dt.datetime(2024, 5, 1, 8, tzinfo=UTC), "2024-05-01T08:00:00+00:00"),
    (
        "naive datetime",
        dt.datetime(2024, 5, 1, 8),
        dt.datetime(2024, 5, 1, 8).astimezone().isoformat(),
    ),
    ("date", dt.date(2024, 5, 1), "2024-05-01T00:00:00+00:00"),
    ("time", dt.time(8, 30), "08:30:00"),
    ("enum", Plan.PRO, "pro"),
    ("set", {3, 2, 1}, [1, 2, 3]),
    ("tuple", (1, "a"), [1, "a"]),
    ("bytes", b"hi\xff", "hi\\xff"),
    ("numpy int", np.int64(7), 7),
    ("numpy float nan", np.float64("nan"), None),
    ("numpy bool", np.bool_(True), True),
    ("numpy array", np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    ("dataclass", Cart(2), {"items": 2}),
    ("no JSON form", Opaque(), None),  # str(obj): checked below by prefix
    ("self-containing dict", loop(), {"a": 1, "me": "[Circular]"}),
    ("long string", "x" * 20_000, "x" * 20_000),
    ("naive datetime.min", dt.datetime.min, "0001-01-01T00:00:00+00:00"),
    ("set holding Decimal NaN", {Decimal("NaN")}, [None]),
    ("int past the text limit", 10**5000, "<int of 16610 bits>"),
]

REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "properties not a mapping",
        {"user_id": "u", "event": "E", "properties": [1]},
        "invalid_message",
        "properties must be a mapping",
    ),
    (
        "traits not a mapping",
        {"user_id": "u", "traits": "pro"},
        "invalid_message",
        "traits must be a mapping",
    ),
    (
        "too long a string",
        {"user_id": "u", "event": "E", "properties": {"s": "x" * 40_000}},
        "message_too_large",
        "32,000",
    ),
    ("track without user", {"event": "E"}, "invalid_message", "needs a userId or an anonymousId"),
    ("track without event", {"user_id": "u"}, "invalid_message", "track needs an event name"),
]


@pytest.fixture
def handler(collector: Collector, app_logger: logging.Logger) -> AnalyticsHandler:
    made = AnalyticsHandler(write_key=WRITE_KEY, host=collector.url, max_events_in_batch=500)
    app_logger.addHandler(made)
    return made


class TestBadInput:
    def test_every_value_is_delivered_as_valid_json(
        self, collector: Collector, app_logger: logging.Logger, handler: AnalyticsHandler
    ) -> None:
        """Each awkward value arrives in its own message, converted by the documented rule."""
        for label, value, _ in DELIVERED:
            app_logger.info(
                "track", extra={"cdp": {"user_id": label, "event": "E", "properties": {"v": value}}}
            )
        assert handler.client.flush(10)

        got = {m["userId"]: m["properties"]["v"] for m in collector.messages()}
        for label, _, expected in DELIVERED:
            if label == "no JSON form":
                assert got[label].startswith("<tests.test_bad_input.Opaque object")
            else:
                assert expected == got[label], label
        assert {"delivered": len(DELIVERED), "dropped": 0} == {
            k: handler.client.stats()[k] for k in ("delivered", "dropped")
        }

    def test_int_ids_become_strings(
        self, collector: Collector, app_logger: logging.Logger, handler: AnalyticsHandler
    ) -> None:
        """Integer ids of every kind arrive as strings."""
        app_logger.info("group", extra={"cdp": {"user_id": 1, "group_id": 2}})
        app_logger.info("alias", extra={"cdp": {"previous_id": 3, "user_id": np.int64(4)}})
        assert handler.client.flush(5)

        sent = {m["type"]: m for m in collector.messages()}
        assert ("1", "2") == (sent["group"]["userId"], sent["group"]["groupId"])
        assert "3" == sent["alias"]["previousId"]
        assert sent["alias"]["userId"] == "4"

    def test_refusals_have_code_and_reason_and_spare_the_rest(
        self,
        collector: Collector,
        app_logger: logging.Logger,
        collector_errors: list[DeliveryError],
    ) -> None:
        """Each unusable call is refused with a code and reason; the good ones around it arrive."""
        for label, fields, _, _ in REFUSED:
            app_logger.info(
                "before %s",
                label,
                extra={"cdp": {"type": "track", "user_id": "ok", "event": "before " + label}},
            )
            app_logger.info(
                "track" if "traits" not in fields else "identify", extra={"cdp": fields}
            )
        handler = app_logger.handlers[0]
        assert isinstance(handler, AnalyticsHandler)
        assert handler.client.flush(5)

        assert [(code, True) for _, _, code, _ in REFUSED] == [
            (e.code, needle in e.reason)
            for e, (_, _, _, needle) in zip(collector_errors, REFUSED, strict=True)
        ]
        assert len(REFUSED) == len(collector.messages())

    @pytest.mark.parametrize(
        ("call_type", "fields"),
        [
            ("identify", {}),
            ("track", {"user_id": "u"}),
            ("page", {"name": "x"}),
            ("screen", {"category": "x"}),
            ("group", {"user_id": "u"}),
            ("alias", {"user_id": "u"}),
            ("alias", {"previous_id": "p"}),
        ],
    )
    def test_every_missing_required_field(
        self,
        app_logger: logging.Logger,
        collector_errors: list[DeliveryError],
        call_type: str,
        fields: dict[str, Any],
    ) -> None:
        """Every required field, when missing, is named in an invalid_message reason."""
        app_logger.info(call_type, extra={"cdp": fields})

        assert ["invalid_message"] == [e.code for e in collector_errors]
        assert "needs" in collector_errors[0].reason


@pytest.fixture
def collector_errors(collector: Collector, app_logger: logging.Logger) -> list[DeliveryError]:
    errors: list[DeliveryError] = []
    app_logger.addHandler(
        AnalyticsHandler(write_key=WRITE_KEY, host=collector.url, on_error=errors.append)
    )
    return errors


# -- hostile records: whatever reading them does, each is delivered or reported ----------


class Boom(Exception):
    pass


class Unshowable:
    """Raises from everything a library might call to name or test it."""

    def __str__(self) -> str:
        raise Boom("str")

    def __repr__(self) -> str:
        raise Boom("repr")

    def __bool__(self) -> bool:
        raise Boom("bool")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")


class ShyText(str):
    """Text equal to a call type whose own methods all raise."""

    def __str__(self) -> str:
        raise Boom("str")

    def __repr__(self) -> str:
        raise Boom("repr")

    def __hash__(self) -> int:
        raise Boom("hash")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")


class HostileMapping(Mapping[str, Any]):
    """A mapping holding *data* whose chosen methods raise."""

    def __init__(self, data: dict[str, Any], raising: frozenset[str]) -> None:
        self._data = data
        self._raising = raising

    def _check(self, name: str) -> None:
        if name in self._raising:
            raise Boom(name)

    def __getitem__(self, key: str) -> Any:
        self._check("__getitem__")
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._check("get")
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        self._check("__iter__")
        return iter(self._data)

    def __len__(self) -> int:
        self._check("__len__")
        return len(self._data)

    def items(self) -> Any:
        self._check("items")
        return super().items()


HOSTILE_VALUES: list[Callable[[], Any]] = [
    Unshowable,
    lambda: ShyText("track"),
    lambda: 10**5000,
    lambda: float("nan"),
    lambda: HostileMapping({"a": 1}, frozenset({"__getitem__"})),
    lambda: HostileMapping({"a": 1}, frozenset({"items", "__iter__"})),
    lambda: {"nested": Unshowable()},
    lambda: "plain",
]
METHODS = ("get", "__getitem__", "__iter__", "__len__", "items")


def hostile_payload(rng: random.Random) -> dict[str, Any]:
    """A track's fields, one to three of them (or its type) replaced by hostile values."""
    fields: dict[str, Any] = {"user_id": "u", "event": "E", "properties": {"ok": 1}}
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(["type", "user_id", "event", "properties", "context", "anonymous_id"])
        fields[key] = rng.choice(HOSTILE_VALUES)()
    return fields


def hostile_mapping(rng: random.Random, fields: dict[str, Any]) -> Mapping[str, Any]:
    if rng.random() < 0.5:
        return fields
    raising = frozenset(rng.sample(METHODS, rng.randint(1, 2)))
    return HostileMapping(fields, raising)


class TestHostileRecords:
    """Issue 24 (7), contract 21: every analytics record is delivered or reported."""

    def test_fuzzed_hostile_records_are_each_delivered_or_counted(
        self,
        collector: Collector,
        app_logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """1,500 analytics records (stdlib cdp and flat forms, and structlog) whose type,
        message, values or payload mapping raise when read: with logging.raiseExceptions
        False, each is delivered or counted in stats() and told to on_error, and nothing
        reaches handleError."""
        monkeypatch.setattr(logging, "raiseExceptions", False)
        errors: list[DeliveryError] = []
        handler = AnalyticsHandler(
            WRITE_KEY,
            collector.url,
            on_error=errors.append,
            stderr_warnings=False,
            max_events_in_batch=500,
        )
        escaped: list[logging.LogRecord] = []
        monkeypatch.setattr(handler, "handleError", escaped.append)
        app_logger.addHandler(handler)
        processor = AnalyticsProcessor(client=handler.client)
        rng = random.Random(24)
        total = 1_500
        for _ in range(total):
            form = rng.choice(
                ["cdp", "cdp-message-type", "flat", "structlog-cdp", "structlog-flat"]
            )
            fields = hostile_payload(rng)
            if form == "cdp":
                app_logger.info("track", extra={"cdp": hostile_mapping(rng, fields)})
            elif form == "cdp-message-type":  # the type is the message, and it is hostile
                fields.pop("type", None)
                message = rng.choice([Unshowable(), ShyText("track"), 10**5000])
                app_logger.info(message, extra={"cdp": hostile_mapping(rng, fields)})
            elif form == "flat":
                fields.pop("type", None)
                message = rng.choice(["track", ShyText("track")])
                app_logger.info(message, extra=fields)
            elif form == "structlog-cdp":
                processor(None, "info", {"event": "track", "cdp": hostile_mapping(rng, fields)})
            else:
                fields.pop("type", None)
                fields["event_name"] = fields.pop("event")
                processor(
                    None, "info", {"event": rng.choice(["track", ShyText("track")]), **fields}
                )
        assert handler.client.flush(10)
        stats = handler.client.stats()

        assert [] == escaped
        assert total == stats["delivered"] + stats["dropped"] + stats["failed"], stats
        assert stats["delivered"] == len(collector.messages())
        assert stats["dropped"] + stats["failed"] == sum(len(e.messages) or 1 for e in errors)
        assert 0 < stats["delivered"] < total  # both outcomes were exercised
        handler.close()

    def test_each_kind_of_hostile_record_is_reported(
        self, app_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The cases issue 24 found, one by one: each is one invalid_message, with a reason."""
        monkeypatch.setattr(logging, "raiseExceptions", False)
        errors: list[DeliveryError] = []
        handler = AnalyticsHandler(WRITE_KEY, send=False, on_error=errors.append)
        app_logger.addHandler(handler)
        processor = AnalyticsProcessor(client=handler.client)

        app_logger.info(Unshowable(), extra={"cdp": {"user_id": "u", "event": "E"}})
        app_logger.info(ShyText("track"), extra={"user_id": "u", "event": "E"})  # delivered
        fields = {"user_id": "u", "event": "E"}
        app_logger.info("track", extra={"cdp": HostileMapping(fields, frozenset({"get"}))})
        app_logger.info("track", extra={"cdp": HostileMapping(fields, frozenset({"__getitem__"}))})
        processor(
            None, "info", {"event": "track", "cdp": HostileMapping(fields, frozenset({"get"}))}
        )
        app_logger.info("track", extra={"cdp": {"type": 10**5000, "user_id": "u", "event": "E"}})
        assert handler.client.flush(5)

        assert ["invalid_message"] * 5 == [e.code for e in errors]
        assert all(e.reason for e in errors)
        assert {"invalid_message": 5} == handler.client.stats()["errors"]
        assert 1 == handler.client.stats()["not_sent"]
        handler.close()
