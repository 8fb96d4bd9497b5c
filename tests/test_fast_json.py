"""The fast encoder (the `fast` extra, orjson) writes the standard-library rule's bytes.

A differential test: the same values through ``dumps``/``dumps_members`` (orjson here,
requirements/dev.txt installs it) and through ``dumps_stdlib``/``dumps_members_stdlib``, byte
for byte, over a seeded stream of random values and over the bad-input matrix that
tests/test_json.py and tests/test_bad_input.py check end to end.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import math
import random
import struct
import subprocess
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from cdp_logging._core import calls as _calls
from cdp_logging._core import serialise as _json

from .test_bad_input import DELIVERED, REFUSED
from .test_json import Colour, Level, Mode, NoStr, Point

SEED = 15
RANDOM_VALUES = 100_000
TAIL = '"type":"track","context":{"library":{"name":"cdp_logging","version":"0"}}'


class Plain(enum.Enum):
    A = "a"
    NAN = float("nan")
    PAIR = (1, "b")
    WHEN = dt.datetime(2024, 5, 1, 8)
    NESTED = Colour.RED


class Count(enum.IntEnum):
    ONE = 1


class Perm(enum.IntFlag):
    R = 4
    W = 2


class Shade(str, enum.Enum):
    DARK = "dark"


class Text(str):
    """The C encoder writes the characters, never the subclass's __str__."""

    def __str__(self) -> str:
        return "not this"


class Number(int):
    """The C encoder writes int.__repr__ of the value; the cleaning walk calls int()."""

    def __int__(self) -> int:
        return -1

    def __repr__(self) -> str:
        return "not this"


class Real(float):
    def __float__(self) -> float:
        return -1.0

    def __repr__(self) -> str:
        return "not this"


class Items(dict[Any, Any]):
    """The C encoder writes a dict subclass from items(), as the cleaning walk does."""

    def items(self) -> Any:
        return [("from items", 1)]


class TwiceItems(dict[Any, Any]):
    def items(self) -> Any:
        return [("k", 1), ("k", 2)]


class Iterated(list[Any]):
    def __iter__(self) -> Iterator[Any]:
        return iter(["from iter"])


class OtherUUID(uuid.UUID):
    def __str__(self) -> str:
        return "own text"


Pair = collections.namedtuple("Pair", "left right")


@dataclasses.dataclass
class Line:
    start: Any
    end: Any


ALPHABET = 'abcé中😀"\\\n\t\x00\x1f\x7f\u2028 0123456789.e-null'
FLOAT_EDGES = (
    1e16,
    1e15,
    1e-07,
    1e-05,
    1.5e-05,
    0.0001,
    -0.0,
    0.0,
    5e-324,
    1.7976931348623157e308,
    1e22,
    39.95,
    float("nan"),
    float("inf"),
    float("-inf"),
)
INT_EDGES = (
    0,
    -1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    -(2**64),
    2**200,
)


class Values:
    """A seeded stream of random values, cheap enough for 100,000 in a few seconds."""

    def __init__(self, seed: int, *, portable: bool = False) -> None:
        self.rng = random.Random(seed)
        # portable: nothing whose text depends on the process (default reprs hold ids).
        self.portable = portable
        self.leaves: list[Callable[[], Any]] = [
            self.text,
            self.text,
            self.integer,
            self.real,
            self.real,
            lambda: self.rng.choice((True, False, None)),
            self.decimal,
            self.when,
            self.odd,
        ]

    def text(self) -> str:
        rng = self.rng
        chars = rng.choices(ALPHABET, k=rng.randrange(8))
        if rng.random() < 0.02:
            chars.append(rng.choice(("\ud800", "\udfff")))  # a lone surrogate
        return "".join(chars)

    def integer(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.randrange(-1000, 1000)
        if roll < 0.8:
            return rng.choice(INT_EDGES) + rng.randrange(-1, 2)
        if roll < 0.999:
            return rng.getrandbits(rng.randrange(1, 130)) * rng.choice((1, -1))
        return 1 << rng.randrange(13_990, 14_300)  # around both big-int limits

    def real(self) -> float:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return float(rng.choice(FLOAT_EDGES))
        if roll < 0.6:
            return round(rng.uniform(-1000, 1000), rng.randrange(4))
        if roll < 0.8:
            return rng.uniform(-1, 1) * 10.0 ** rng.randrange(-12, 22)
        value: float = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        return value  # any bit pattern: NaNs, subnormals, every exponent

    def decimal(self) -> Decimal:
        rng = self.rng
        return rng.choice(
            (
                Decimal(rng.randrange(-(10**6), 10**6)).scaleb(-rng.randrange(4)),
                Decimal("0.10000000000000000001"),
                Decimal("NaN"),
                Decimal("-Infinity"),
                Decimal("1E+400"),
            )
        )

    def when(self) -> Any:
        rng = self.rng
        stamp = rng.uniform(-1e9, 4e9)
        aware = dt.datetime.fromtimestamp(stamp, dt.timezone(dt.timedelta(minutes=330)))
        return rng.choice(
            (
                aware,
                aware.replace(tzinfo=None),  # naive: local time
                aware.date(),
                aware.timetz(),
                dt.timedelta(seconds=stamp),
                dt.datetime.min,
                dt.datetime.max,
            )
        )

    def odd(self) -> Any:
        rng = self.rng
        kinds: list[Callable[[], Any]] = [
            lambda: uuid.UUID(int=rng.getrandbits(128)),
            lambda: OtherUUID(int=rng.getrandbits(128)),
            lambda: rng.choice(list(Plain)),
            lambda: rng.choice((Count.ONE, Perm.R | Perm.W, Shade.DARK, Colour.RED)),
            lambda: rng.choice((Level.HIGH, Mode.FAST)),
            lambda: {rng.randrange(5) for _ in range(3)},
            lambda: frozenset((self.text(), self.text())),
            lambda: bytes(rng.getrandbits(8) for _ in range(4)),
            lambda: bytearray(b"caf\xc3\xa9"),
            lambda: memoryview(b"\xff\x00"),
            lambda: PurePosixPath("/tmp", self.text().replace("\x00", "")),
            lambda: Text(self.text()),
            lambda: Number(rng.randrange(-(2**70), 2**70)),
            lambda: Real(self.real()),
            lambda: np.int64(rng.randrange(-1000, 1000)),
            lambda: np.float64(self.real()),
            lambda: np.bool_(rng.random() < 0.5),
            lambda: np.array([[1.5, 2.0], [self.real(), 4.0]]),
            lambda: Point(self.integer(), rng.randrange(3)),
            lambda: Line(self.leaf(), Plain.WHEN),
            lambda: Pair(self.leaf(), self.leaf()),
        ]
        if not self.portable:
            # Unsortable sets keep their iteration order, which follows string hashes.
            kinds += [lambda: {1, "a", None}, NoStr, object, lambda: lambda: None]
        return rng.choice(kinds)()

    def leaf(self) -> Any:
        return self.rng.choice(self.leaves)()

    def key(self) -> Any:
        rng = self.rng
        if rng.random() < 0.9:
            return self.text()
        return rng.choice(
            (
                1,
                "1",
                2.5,
                float("nan"),
                True,
                None,
                (1, 2),
                Colour.RED,
                Count.ONE,
                Text("t"),
                uuid.UUID(int=7),
                dt.date(2024, 5, 1),
                Decimal("1.5"),
            )
        )

    def container(self, depth: int) -> Any:
        rng = self.rng
        size = rng.randrange(5)
        roll = rng.random()
        if roll < 0.45:
            return {self.key(): self.value(depth + 1) for _ in range(size)}
        if roll < 0.75:
            return [self.value(depth + 1) for _ in range(size)]
        if roll < 0.85:
            return tuple(self.value(depth + 1) for _ in range(size))
        return rng.choice(
            (
                lambda: collections.OrderedDict(a=self.value(depth + 1)),
                lambda: collections.defaultdict(int, {"n": self.value(depth + 1)}),
                lambda: collections.Counter(a=rng.randrange(9)),
                lambda: types.MappingProxyType({"m": self.value(depth + 1)}),
                lambda: Items(a=1),
                lambda: TwiceItems(a=1),
                lambda: Iterated([1, 2]),
                lambda: Line([self.value(depth + 1)], {"x": self.value(depth + 1)}),
            )
        )()

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        if depth < 4 and rng.random() < 0.35:
            return self.container(depth)
        return self.leaf()

    def members(self) -> dict[str, Any]:
        """A top-level dict of str keys, the shape ``dumps_members`` is given."""
        rng = self.rng
        members: dict[str, Any] = {self.text(): self.value(1)}
        roll = rng.random()
        if roll < 0.005:
            members["loop"] = members  # a container inside itself
        elif roll < 0.01:
            members["deep"] = nested(rng.randrange(60, 300), rng.choice((1, float("nan"))))
        return members


def nested(depth: int, leaf: Any) -> list[Any]:
    top: list[Any] = []
    cursor = top
    for _ in range(depth):
        cursor.append([])
        cursor = cursor[0]
    cursor.append(leaf)
    return top


def outcome(function: Callable[..., bytes | None], *args: Any) -> bytes | str | None:
    """The bytes, or the exception's type: a value the stdlib rule raises on must raise too."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - compared, not hidden
        return f"raised {type(error).__name__}"


def orjson_writes(value: Any) -> bool:
    """Whether the fast path keeps orjson's bytes for *value* (else the stdlib rule runs)."""
    import orjson  # here: the child below imports this module with orjson blocked

    try:
        data = orjson.dumps(value, default=_json._fast_default, option=_json._OPTIONS)
    except orjson.JSONEncodeError:
        return False
    return not _json._suspect(data)


def assert_same(value: Any) -> None:
    assert outcome(_json.dumps_stdlib, value) == outcome(_json.dumps, value), repr(value)[:300]
    if isinstance(value, dict):
        assert outcome(_json.dumps_members_stdlib, value, TAIL) == outcome(
            _json.dumps_members, value, TAIL
        ), repr(value)[:300]


def matrix() -> list[Any]:
    """The values the other JSON tests and the bad-input matrix check, and their edges."""
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    values: list[Any] = [value for _, value, _ in DELIVERED]
    values += [fields for _, fields, _, _ in REFUSED]
    values += [
        Decimal("12345678901234567890.5"),
        Colour.RED,
        Level.HIGH,
        Mode.FAST,
        Point(1, 2),
        NoStr(),
        object(),
        {1: "a", (1, 2): "b", Colour.RED: "c"},
        {1: "a", "1": "b"},  # keys equal once converted
        {1: "a", "1": "b", "n": float("nan")},
        loop,
        nested(5000, 1),
        nested(100, 1),
        nested(100, float("nan")),
        nested(253, None),
        nested(254, 1),
        "\ud800",
        {"\udfff": 1},
        {"a": [1, float("nan")], "b": "x"},
        {"a": (1, Colour.RED, float("nan"))},
        {"text": "null 1e-5 0.00001 1e-07"},  # looks like what the fast path checks
        *FLOAT_EDGES,
        *INT_EDGES,
        10**4300,
        10**4299,
    ]
    return values


class TestSameBytes:
    def test_orjson_is_the_encoder_here(self) -> None:
        """requirements/dev.txt installs orjson, so these tests compare two different encoders."""
        assert "orjson" == _json.ENCODER
        assert _json.dumps is not _json.dumps_stdlib

    def test_random_values(self) -> None:
        """100,000 seeded random values: the fast path's bytes are the stdlib rule's."""
        values = Values(SEED)
        written = 0
        for count in range(RANDOM_VALUES):
            members = values.members()
            expected = outcome(_json.dumps_members_stdlib, members, TAIL)
            assert expected == outcome(_json.dumps_members, members, TAIL), repr(members)[:300]
            written += orjson_writes(members)
            if count % 5 == 0:  # dumps shares the fast path's checks: a sample is enough
                value = next(iter(members.values()))
                assert outcome(_json.dumps_stdlib, value) == outcome(_json.dumps, value)
        # The stream reaches both sides: values orjson writes, and values it hands back.
        assert 0.5 < written / RANDOM_VALUES < 0.95

    def test_every_float_spelling(self) -> None:
        """Every exponent, both signs, and random bit patterns spell as repr() does."""
        rng = random.Random(SEED)
        floats = [
            float(f"{sign}{mantissa}e{exponent}")
            for exponent in range(-330, 310)
            for mantissa in ("1", "1.5", "9.999999999999998")
            for sign in ("", "-")
        ]
        floats += [
            struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)
        ]
        for number in floats:
            assert repr(number).encode() == _json.dumps(number) or not math.isfinite(number)
            assert _json.dumps_stdlib([number]) == _json.dumps([number])

    @pytest.mark.parametrize("value", matrix(), ids=lambda value: type(value).__name__)
    def test_bad_input_matrix(self, value: Any) -> None:
        """Each value of the bad-input matrix, alone and inside a message's properties."""
        assert_same(value)
        assert_same({"properties": {"v": value}})

    @pytest.mark.parametrize("value", matrix(), ids=lambda value: type(value).__name__)
    def test_build_writes_the_same_message(
        self, monkeypatch: pytest.MonkeyPatch, value: Any
    ) -> None:
        """Through ``_calls.build``, the hot path: the same wire bytes or the same refusal."""
        fields = {
            "user_id": "u",
            "event": "E",
            "properties": {"v": value},
            "timestamp": "2024-05-01T08:00:00.000+00:00",
            "message_id": "m-1",
        }

        def wire() -> Any:
            built = _calls.build("track", fields, 0.0)
            return built if isinstance(built, bytes) else (built.code, built.reason)

        fast = wire()
        monkeypatch.setattr(_json, "dumps", _json.dumps_stdlib)
        monkeypatch.setattr(_json, "dumps_members", _json.dumps_members_stdlib)
        assert wire() == fast


def digest_of_stream(count: int) -> str:
    """One line per value of a portable stream: run in this process and in a child."""
    values = Values(SEED, portable=True)
    lines = []
    for _ in range(count):
        members = values.members()
        lines.append(
            repr((outcome(_json.dumps, members), outcome(_json.dumps_members, members, TAIL)))
        )
    return "\n".join(lines)


def test_without_orjson_the_stdlib_rule_runs_with_the_same_bytes() -> None:
    """With orjson unimportable (the extra not installed), the same bytes come out."""
    script = (
        "import sys\n"
        "sys.modules['orjson'] = None\n"  # import orjson now raises ImportError
        "from cdp_logging._core import serialise as _json\n"
        "assert _json.ENCODER == 'json', _json.ENCODER\n"
        "assert _json.dumps is _json.dumps_stdlib\n"
        "assert _json.dumps_members is _json.dumps_members_stdlib\n"
        "from tests.test_fast_json import digest_of_stream\n"
        "sys.stdout.write(digest_of_stream(3000))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert 0 == child.returncode, child.stderr
    assert digest_of_stream(3000) == child.stdout
