"""The tracking plan as the collector sees it: how fast each call arrives, and the schema.

Kept up to date as messages are stored, rather than recomputed from every stored
message at each poll of the viewer, so that a long run with an SQLite file costs the
same to look at as a short one. Both halves are bounded: the rate keeps the last
minutes only, and the schema stops learning new names and keys past a limit (and says
how many it left out), so a client sending a fresh event name per call cannot grow it
without end.

The schema answers the question a tracking plan exists for: which properties does each
event carry, and of which JSON type. A key seen with two types (``revenue`` as a number
in one service and as a string in another) is the classic analytics bug: the warehouse
column takes the first type and the other values are lost or turned to null.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["MAX_KEYS", "MAX_SCHEMAS", "RATE_SECONDS", "TrackingPlan", "json_type"]

# The chart's window: long enough to see a burst and the quiet after it.
RATE_SECONDS: Final = 300
MAX_SCHEMAS: Final = 500
MAX_KEYS: Final = 200

# Where each call type keeps the keys the plan is about, and what names its schema.
_BAGS: Final = {
    "track": ("properties", "event"),
    "page": ("properties", "name"),
    "screen": ("properties", "name"),
    "identify": ("traits", None),
    "group": ("traits", None),
}


def json_type(value: object) -> str:
    """The JSON type *value* had on the wire: string, number, boolean, null, object, array.

    Integers and fractions are one type, as in JSON: ``12`` and ``12.5`` are both a
    valid revenue, ``"12.5"`` is not.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


def _schema_name(message: Mapping[str, Any]) -> tuple[str, str] | None:
    """(call type, name) whose schema *message* feeds, or None if it feeds none."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _BAGS:
        return None
    name_field = _BAGS[kind][1]
    if name_field is None:
        return kind, ""
    name = message.get(name_field)
    return kind, name if isinstance(name, str) else ""


class TrackingPlan:
    """Per-second counts by call type over the last minutes, and the keys seen per event.

    Not thread-safe: the store calls it with its Condition held.
    """

    def __init__(self) -> None:
        # (second, counts by type), oldest first; a second with nothing has no entry.
        self._seconds: deque[tuple[int, Counter[str]]] = deque()
        self._messages: Counter[tuple[str, str]] = Counter()
        self._keys: dict[tuple[str, str], dict[str, Counter[str]]] = {}
        self._left_out = 0

    def clear(self) -> None:
        self._seconds.clear()
        self._messages.clear()
        self._keys.clear()
        self._left_out = 0

    def add(self, at: float, messages: Iterable[object]) -> None:
        """Count *messages*, which arrived at *at* (seconds since the epoch)."""
        second = math.floor(at)
        for message in messages:
            if not isinstance(message, Mapping):
                continue
            kind = message.get("type")
            self._count(second, kind if isinstance(kind, str) else "?")
            self._learn(message)
        self._forget_before(second - RATE_SECONDS)

    def _count(self, second: int, kind: str) -> None:
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1][kind] += 1
            return
        if self._seconds and self._seconds[-1][0] > second:
            # A message stored with an earlier time (a database reopened): find its second.
            for seen, counts in self._seconds:
                if seen == second:
                    counts[kind] += 1
                    return
            return
        self._seconds.append((second, Counter({kind: 1})))

    def _forget_before(self, second: int) -> None:
        while self._seconds and self._seconds[0][0] <= second:
            self._seconds.popleft()

    def _learn(self, message: Mapping[str, Any]) -> None:
        name = _schema_name(message)
        if name is None:
            return
        keys = self._keys.get(name)
        if keys is None:
            if len(self._keys) >= MAX_SCHEMAS:
                self._left_out += 1
                return
            keys = self._keys[name] = {}
        self._messages[name] += 1
        bag = message.get(_BAGS[name[0]][0])
        if not isinstance(bag, Mapping):
            return
        for key, value in bag.items():
            types = keys.get(str(key))
            if types is None:
                if len(keys) >= MAX_KEYS:
                    self._left_out += 1
                    continue
                types = keys[str(key)] = Counter()
            types[json_type(value)] += 1

    def rate(self, now: float) -> dict[str, Any]:
        """Counts per second by type for the last ``RATE_SECONDS`` up to *now*."""
        end = math.floor(now)
        start = end - RATE_SECONDS + 1
        return {
            "start": start,
            "seconds": RATE_SECONDS,
            "counts": [
                {"second": second, "by_type": dict(counts)}
                for second, counts in self._seconds
                if start <= second <= end
            ],
        }

    def schema(self) -> dict[str, Any]:
        """Each event (and each call's traits) with its keys, their types and counts.

        ``conflict`` is true for a key seen with more than one type, null aside: an
        optional property sent as null is normal, a number sent as a string is not.
        """
        events = []
        for (kind, name), keys in sorted(self._keys.items()):
            events.append(
                {
                    "type": kind,
                    "name": name,
                    "bag": _BAGS[kind][0],
                    "messages": self._messages[(kind, name)],
                    "keys": [
                        {
                            "key": key,
                            "types": dict(types.most_common()),
                            "count": sum(types.values()),
                            "conflict": len(set(types) - {"null"}) > 1,
                        }
                        for key, types in sorted(keys.items())
                    ],
                }
            )
        return {"events": events, "left_out": self._left_out}
