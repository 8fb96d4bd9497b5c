"""The total JSON rule: every Python value becomes valid JSON, and nothing raises.

Applications log whatever they hold: Decimals from an ORM, UUID primary keys, numpy
scalars from a model, datetimes, sets. The reference SDK drops some of these silently,
raises on others out of ``track()``, and writes NaN as bare ``NaN`` so that the server
rejects the whole batch. Here each value has one documented conversion:

=====================================  ==============================================
value                                  JSON
=====================================  ==============================================
NaN, +inf, -inf (float or Decimal)     ``null``
aware ``datetime``                     ISO 8601 string with its offset
naive ``datetime``                     taken as local time (as ``datetime.astimezone``
                                       does), ISO 8601 with that offset
``date``                               midnight UTC, ``"2024-05-01T00:00:00+00:00"``
``time``                               ``time.isoformat()``
``timedelta``                          total seconds, a number
``Decimal``                            a number when a float holds it exactly, else a
                                       string with every digit (no precision is lost)
``UUID``, ``pathlib.Path``             ``str(value)``
``Enum``                               its ``.value``, converted by these same rules
``set``, ``frozenset``                 a list, sorted when the items can be sorted
``tuple`` and other sequences          a list
``bytes``, ``bytearray``, memoryview   UTF-8 text, undecodable bytes as ``\\xNN``
any other Mapping                      an object; non-string keys become ``str(key)``
dataclass instance                     an object of its fields
numpy scalar / array (or anything      ``value.tolist()``
with ``tolist()``)
an int of more than ~4,200 digits      the string ``"<int of N bits>"``
a container inside itself              the string ``"[Circular]"``
nesting deeper than 64 levels          the string ``"[Too deep]"`` at that depth
anything else                          ``str(value)``, or ``"<unserializable T>"`` when
                                       ``str`` itself fails
=====================================  ==============================================

The fast path is the C encoder with a ``default`` hook; only when that meets NaN, a
cycle or an odd key does the slower cleaning walk run. With the ``fast`` extra, orjson
writes the same bytes faster (see the end of this module).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

from .._compat import make_c_encoder

__all__ = [
    "ENCODER",
    "decode",
    "dumps",
    "dumps_members",
    "dumps_members_stdlib",
    "dumps_stdlib",
    "to_jsonable",
]

_MAX_DEPTH: Final = 64
_MAX_INT_BITS: Final = 14_000  # about 4,200 decimal digits
_UTC: Final = dt.timezone.utc


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return None
    as_float = float(value)
    # repr(float) is the shortest text that round-trips, so comparing it with the
    # Decimal tells exactly whether the float loses a digit.
    if Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def _set_items(value: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(value)
    except Exception:  # noqa: BLE001 - TypeError, or Decimal('NaN')'s InvalidOperation
        return list(value)


def _fallback_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the message
        return f"<unserializable {type(value).__name__}>"


def _convert(value: Any) -> Any:
    """Turn one non-JSON value into something closer to JSON; never raises."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            try:
                value = value.astimezone()
            except (OverflowError, ValueError, OSError):
                value = value.replace(tzinfo=_UTC)  # datetime.min/max: no local offset
        return value.isoformat()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=_UTC).isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return _set_items(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return tolist()
        except Exception:  # noqa: BLE001
            return _fallback_text(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return _fallback_text(value)


def _key(key: object) -> str:
    """A dict key as JSON needs it: a string, spelled as json.dumps would where it can."""
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, int):
        return str(int(key))
    if isinstance(key, float):
        return repr(float(key)) if math.isfinite(key) else json.dumps(None)
    if isinstance(key, (dt.date, dt.time, uuid.UUID, Decimal)):
        converted = _convert(key)
        return converted if isinstance(converted, str) else json.dumps(converted)
    return _fallback_text(key)


def _clean(value: Any, depth: int, path: set[int]) -> Any:
    """Rebuild *value* from JSON-native types only: the slow, always-correct path."""
    if value is None or isinstance(value, bool):
        return value
    # Subclasses (IntEnum, StrEnum, numpy.float64) collapse to the plain built-in type;
    # str(member) of a (str, Enum) mixin would give "E.A" instead of its value.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        number = int(value)
        # Past Python's int-to-text limit (4,300 digits) no JSON encoder can write it.
        return (
            number
            if number.bit_length() < _MAX_INT_BITS
            else f"<int of {number.bit_length()} bits>"
        )
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "[Too deep]"
    marker = id(value)
    if marker in path:
        return "[Circular]"
    path.add(marker)
    try:
        if isinstance(value, dict):
            return {_key(k): _clean(v, depth + 1, path) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_clean(v, depth + 1, path) for v in value]
        return _clean(_convert(value), depth + 1, path)
    finally:
        path.discard(marker)


def to_jsonable(value: Any) -> Any:
    """Return *value* made only of dict, list, str, int, finite float, bool and None."""
    return _clean(value, 0, set())


_FAST: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_convert
)
# Lone surrogates (from os.fsdecode, broken upstream data) cannot be written as UTF-8;
# \u escapes can, and are still valid JSON.
_ASCII: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_convert
)

# JSONEncoder.encode builds a new C encoder on every call; at a logging call's scale
# that is a third of the cost, so build it once (``_compat``, item 1). A cycle then
# ends in RecursionError, which sends the value down the cleaning walk like any other
# bad value.
_C_ENCODE: Final = make_c_encoder(_convert)


def _encode(value: Any) -> str:
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(value, 0))
    return _FAST.encode(value)


def dumps_members_stdlib(members: dict[str, Any], tail: str) -> bytes | None:
    """JSON bytes of the object holding *members* and then *tail*, members already in JSON.

    The fast path of ``_calls.build``: what the library adds to every message (type,
    context, timestamp, messageId) is written as text once, so only the caller's own
    members go through the encoder. None, for ``dumps`` to clean the whole message,
    when a value breaks the C encoder's rules (NaN, a cycle, an odd key) or cannot be
    UTF-8 (a lone surrogate), or when there is no C encoder.
    """
    if _C_ENCODE is None or not members:
        return None
    try:
        # "{...}" without its closing brace, a comma, the tail, the brace.
        return f"{''.join(_C_ENCODE(members, 0))[:-1]},{tail}}}".encode()
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None


def dumps_stdlib(value: Any) -> bytes:
    """Serialise *value* to compact UTF-8 JSON bytes by the rule in this module's docstring."""
    try:
        text = _encode(value)
    except (ValueError, TypeError, RecursionError):
        # NaN/inf (allow_nan=False), a cycle, a non-string key the C encoder refuses,
        # or nesting past the recursion limit: rebuild the value, then encode that.
        text = _FAST.encode(to_jsonable(value))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _ASCII.encode(json.loads(text)).encode("ascii")


# -- the fast encoder (the `fast` extra) ---------------------------------------------------
#
# orjson (https://github.com/ijl/orjson) writes the same JSON as the rule above for most
# values, several times faster. Where it would write something else, it is kept from it
# and the value goes to the standard-library functions above, so the bytes are the same
# with or without the extra (tests/test_fast_json.py compares them):
#
# * What orjson writes its own way and can hand to ``default`` instead: datetime, date,
#   time and dataclasses (the PASSTHROUGH options), and subclasses of str, int, dict and
#   list (OPT_PASSTHROUGH_SUBCLASS; IntEnum and (str, Enum) members are enums first, below).
#   ``_fast_default`` then writes what the C encoder writes for them.
# * What orjson refuses, so that the whole value goes to the stdlib rule: keys that are not
#   exactly str (the rule's key conversions), ints outside 64 bits (the big-int rule),
#   lone surrogates (the \u escapes), cycles and nesting past 254 levels (RecursionError
#   and "[Circular]" there), and whatever ``default`` raises on.
# * What orjson writes differently and cannot be told not to, found in its output:
#   NaN and infinity, which it writes as null; the rule writes null too, but by
#   rebuilding the whole value (``to_jsonable``), which also cuts nesting at 64 levels.
#   A null can be None or NaN, so any ``null`` sends the value to the stdlib rule.
#   Floats below 1e-4: Python's repr writes 1e-05 and 1.5e-07 where orjson writes
#   0.00001 and 1.5e-7 (repr goes to exponent form below 1e-4 and pads the exponent to
#   two digits: format_float_short in
#   https://github.com/python/cpython/blob/3.11/Python/pystrtod.c).
# * What orjson writes natively the same way: exact UUID (str(uuid)), Enum (its
#   .value, by these same rules), str, int, float, bool, None, dict, list, tuple.
#
# Two inputs still differ, both deliberate constructions: an ``orjson.Fragment``, which
# orjson writes as the raw JSON it holds (that is its purpose), and a member of a
# str/int/float-mixin Enum whose ``_value_`` was set apart from the builtin it is: the
# C encoder writes the builtin, orjson the ``.value``.

try:
    import orjson
except ImportError:  # the `fast` extra is optional: the stdlib rule then runs alone
    orjson = None  # type: ignore[assignment]

# A float orjson spells unlike repr: a one-digit negative exponent after a digit (four
# zeros after a point is the other, found by _suspect). Searched only when the output
# holds "e-": the regex costs several bytes searches, and most messages have no "e-".
_ODD_EXPONENT: Final = re.compile(rb"\de-\d(?!\d)")
_OPTIONS: Final = (
    0
    if orjson is None
    else orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _fast_default(value: Any) -> Any:
    """For orjson: what the C encoder writes for *value*, as a value orjson writes alike."""
    # The C encoder writes subclasses of the built-ins by their built-in value (int and
    # float by int.__repr__/float.__repr__, without their own __int__ or __float__),
    # dicts through their items() and sequences through iteration.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, dict):
        items = list(value.items())
        plain = dict(items)
        if len(plain) != len(items):  # an items() with repeated keys: the C encoder's own
            raise TypeError("repeated keys")
        return plain
    if isinstance(value, (list, tuple)):
        return list(value)
    return _convert(value)


def _suspect(data: bytes) -> bool:
    """Whether orjson's *data* may differ from the stdlib rule's: then the rule runs.

    A null (None, or NaN/inf that orjson writes as null), or a float spelt unlike repr.
    Text inside strings can match too; that only costs the stdlib encoder's time, never
    a different byte.
    """
    # find(), not `in`: bytes.__contains__ first tries the argument as an int, and the
    # TypeError it raises and clears costs about as much as orjson's whole encoding.
    return (
        data.find(b"null") >= 0
        or data.find(b"0.0000") >= 0
        or (data.find(b"e-") >= 0 and _ODD_EXPONENT.search(data) is not None)
    )


def _dumps_fast(value: Any) -> bytes:
    try:
        data = orjson.dumps(value, default=_fast_default, option=_OPTIONS)
    except Exception:  # noqa: BLE001 - whatever orjson refuses, the stdlib rule decides
        return dumps_stdlib(value)
    if _suspect(data):
        return dumps_stdlib(value)
    return data


def _dumps_members_fast(members: dict[str, Any], tail: str) -> bytes | None:
    if not members or _C_ENCODE is None:
        return None  # what the stdlib function returns: build then uses dumps
    try:
        # By position: orjson's keywords cost ~150 instructions more per call.
        data = orjson.dumps(members, _fast_default, _OPTIONS)
        # _suspect's test, on the text: every call pays it, and bytes.find parses its
        # arguments as a tuple each time, where `in` on a str does not (measured under
        # callgrind: the three finds ~4,400 instructions, decoding and three `in` ~2,200).
        # orjson writes only valid UTF-8, and the words sought are ASCII.
        text = data.decode()
        if not (
            "null" in text
            or "0.0000" in text
            or ("e-" in text and _ODD_EXPONENT.search(data) is not None)
        ):
            return f"{text[:-1]},{tail}}}".encode()
    except Exception:  # noqa: BLE001 - as in _dumps_fast
        return dumps_members_stdlib(members, tail)
    return dumps_members_stdlib(members, tail)


#: Serialise *value* to compact UTF-8 JSON bytes by the rule in this module's docstring.
dumps: Final = dumps_stdlib if orjson is None else _dumps_fast
#: ``dumps_members_stdlib``'s bytes, by orjson when it is installed.
dumps_members: Final = dumps_members_stdlib if orjson is None else _dumps_members_fast
#: Which encoder runs: "orjson" with the `fast` extra, else "json".
ENCODER: Final = "json" if orjson is None else "orjson"


def decode(data: bytes) -> dict[str, Any]:
    """A wire message back as a dict, for callbacks, Futures and errors.

    Never on the hot path: only for a call that asked to hear how it ended, an
    ``on_flush`` or ``on_error`` that reads the messages, or a capture.
    """
    message: dict[str, Any] = json.loads(data)
    return message
