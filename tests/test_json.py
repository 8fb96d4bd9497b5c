"""The total JSON rule: every value becomes valid JSON, nothing raises."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pytest

from cdp_logging._core.serialise import dumps, to_jsonable


def roundtrip(value: Any) -> Any:
    # json.loads with a parse_constant that refuses NaN proves the output is strict JSON.
    def refuse(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(dumps({"v": value}), parse_constant=refuse)["v"]


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Mode(str, enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class NoStr:
    def __str__(self) -> str:
        raise RuntimeError("broken")


class TestValues:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (float("nan"), None),
            (float("inf"), None),
            (float("-inf"), None),
            (Decimal("39.95"), 39.95),
            (Decimal("0.10000000000000000001"), "0.10000000000000000001"),
            (Decimal("12345678901234567890.5"), "12345678901234567890.5"),
            (Decimal("NaN"), None),
            (
                uuid.UUID("12345678-1234-5678-1234-567812345678"),
                "12345678-1234-5678-1234-567812345678",
            ),
            (Colour.RED, "red"),
            (Level.HIGH, 3),
            (Mode.FAST, "fast"),
            ({3, 1, 2}, [1, 2, 3]),
            (frozenset({"b", "a"}), ["a", "b"]),
            ((1, "a"), [1, "a"]),
            (b"caf\xc3\xa9", "café"),
            (b"\xff\x00", "\\xff\x00"),
            (bytearray(b"ab"), "ab"),
            (dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc), "2024-05-01T12:30:00+00:00"),
            (dt.date(2024, 5, 1), "2024-05-01T00:00:00+00:00"),
            (dt.time(9, 15), "09:15:00"),
            (dt.timedelta(minutes=2), 120.0),
            (PurePosixPath("/tmp/x"), "/tmp/x"),
            (Point(1, 2), {"x": 1, "y": 2}),
        ],
    )
    def test_value_rule(self, value: Any, expected: Any) -> None:
        """Each documented value type converts by its rule, to strict JSON."""
        assert expected == roundtrip(value)

    def test_naive_datetime_is_local_time_with_offset(self) -> None:
        """A naive datetime is read as local time and written with that offset."""
        naive = dt.datetime(2024, 5, 1, 12, 0)

        text = roundtrip(naive)

        assert dt.datetime.fromisoformat(text) == naive.astimezone()
        assert dt.datetime.fromisoformat(text).tzinfo is not None

    def test_object_without_json_form_uses_str(self) -> None:
        """Anything else becomes str(value), or a marker when str itself fails."""
        assert "<unserializable NoStr>" == roundtrip(NoStr())
        assert roundtrip(object()).startswith("<object object at")

    def test_non_string_keys(self) -> None:
        """Keys that JSON cannot hold become strings."""
        assert {"1": "a", "(1, 2)": "b", "red": "c"} == roundtrip(
            {1: "a", (1, 2): "b", Colour.RED: "c"}
        )

    def test_self_containing_dict(self) -> None:
        """A container inside itself becomes the string "[Circular]"."""
        loop: dict[str, Any] = {"a": 1}
        loop["self"] = loop

        assert {"a": 1, "self": "[Circular]"} == roundtrip(loop)

    def test_deep_nesting_is_cut(self) -> None:
        """Nesting past 64 levels ends in "[Too deep]" instead of a RecursionError."""
        deep: list[Any] = []
        cursor = deep
        for _ in range(5000):
            cursor.append([])
            cursor = cursor[0]

        out = roundtrip(deep)
        depth = 0
        while isinstance(out, list):
            out = out[0]
            depth += 1
        assert "[Too deep]" == out
        assert 60 < depth < 70

    def test_lone_surrogate_is_escaped(self) -> None:
        """Text that cannot be UTF-8 is written with \\u escapes, still valid JSON."""
        assert "\ud800" == roundtrip("\ud800")

    def test_nan_inside_structures_does_not_spoil_siblings(self) -> None:
        """NaN deep inside becomes null and everything around it is kept."""
        assert {"a": [1, None], "b": "x"} == roundtrip({"a": [1, float("nan")], "b": "x"})

    def test_to_jsonable_returns_only_json_types(self) -> None:
        """to_jsonable gives plain dict/list/str/int/float/bool/None."""
        assert {"a": [1, "red", None]} == to_jsonable({"a": (1, Colour.RED, float("nan"))})
