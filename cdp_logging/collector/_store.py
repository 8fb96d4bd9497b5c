"""What the collector received, behind one Condition, in memory or in SQLite.

Tests wait on that Condition (``wait_for_messages``) instead of sleeping: the wait ends
the moment a handler thread stores what the test is waiting for, and a test that
fails does so at its timeout rather than at an arbitrary sleep.

Every message is kept as a :class:`StoredEvent`, the messages of rejected requests
too (with the problems that got them rejected), because the live viewer's job is to
show what was wrong; ``messages()`` still lists only what was accepted.
"""

from __future__ import annotations

import abc
import copy
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._declared import DeclaredPlan
from ._plan import TrackingPlan

__all__ = [
    "EventFilter",
    "MemoryStore",
    "RequestRecord",
    "Row",
    "Store",
    "StoredEvent",
    "now_iso",
]

# One message of a request and the problems it is shown with (none when accepted).
Row = tuple[Any, tuple[str, ...]]
# Which stored events a reader wants; see StoredEvent.matches.
EventFilter = Callable[["StoredEvent"], bool]


def now_iso(at: float | None = None) -> str:
    """*at* (default: now) in UTC as ISO 8601 with milliseconds, the form the viewer shows."""
    moment = (
        dt.datetime.now(dt.timezone.utc)
        if at is None
        else dt.datetime.fromtimestamp(at, dt.timezone.utc)
    )
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the collector saw it, accepted or not.

    Every request is recorded but those reading the collector back (the viewer, the
    API, ``/stats``, ``/faults``): a batch, a single message, a CORS preflight, and
    one refused for its path or method, so that a client posting to the wrong place
    sees its requests counted and shown rather than an empty collector.

    Attributes:
        status: The status answered; 0 when a fault closed the connection without
            any answer (``refuse``, ``reset_after_store``).
        reason: Why the request was not answered 200 (the ``error`` text sent back,
            or the fault that cut the connection); empty on 200.
        message_count: Length of the ``batch`` list; 0 when the body did not parse.
        body_bytes: Size of the body after decompression.
        gzip: Whether the body came with ``Content-Encoding: gzip``.
        headers: The request headers, the Authorization value replaced by
            ``"<redacted>"`` so that a record can be printed.
        write_key_ok: Whether the Basic credentials carried an accepted write key.
        sent_at: The batch's ``sentAt`` as sent, if the body had a string there.
        message_ids: The ``messageId`` strings of the batch, in order.
        method: The HTTP method.
        path: The path, without its query string.

    .. versionchanged:: 0.2.0
       Every request is recorded, with ``method`` and ``path``.
    """

    status: int
    reason: str
    message_count: int
    body_bytes: int
    gzip: bool
    headers: dict[str, str]
    write_key_ok: bool
    sent_at: str | None
    message_ids: tuple[str, ...]
    # Defaults, so that records written by an earlier version still load.
    method: str = "POST"
    path: str = "/v1/batch"


@dataclass(frozen=True)
class StoredEvent:
    """One message as the collector received it, accepted or not: a row of the viewer.

    Attributes:
        id: Increases with every stored message and is never reused, even after
            ``reset()``, so a viewer asking for "what came after id N" never misses
            or repeats a row.
        received_at: When its request arrived (UTC, ISO 8601).
        accepted: Whether its request was accepted (and the message stored).
        status: The HTTP status its request was answered (0: no answer, by a fault).
        problems: Why it was rejected: its own problems when the batch was rejected
            for its messages, else the request's reason. When accepted: what the real
            service would drop or flag in it (the lenient mode's marks), empty when
            nothing, and always empty in the strict mode.
        message: The message as received: normally an object, but whatever JSON
            value stood in the batch when rejected (or accepted by the lenient mode),
            and None when the request held no readable batch at all (bad JSON, a
            refused connection, a path or method the collector does not serve).
        method: The HTTP method of its request.
        path: The path of its request (``/v1/batch``, ``/v1/t``...).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``method`` and ``path``.
    """

    id: int
    received_at: str
    accepted: bool
    status: int
    problems: tuple[str, ...]
    message: Any
    method: str = "POST"
    path: str = "/v1/batch"

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``GET /api/events`` answers."""
        return {
            "id": self.id,
            "received_at": self.received_at,
            "accepted": self.accepted,
            "status": self.status,
            "problems": list(self.problems),
            "message": self.message,
            "method": self.method,
            "path": self.path,
        }

    def matches(
        self,
        *,
        type: str | None = None,
        event: str | None = None,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        marked: bool | None = None,
    ) -> bool:
        """Whether this event passes every filter given (None: any).

        *event* is a track's event name or a page's or screen's name; *marked* True
        keeps events with problems (a marked message, or a rejected one), False those
        accepted with none.
        """
        message = self.message if isinstance(self.message, dict) else {}
        wanted = (("type", type), ("userId", user_id), ("anonymousId", anonymous_id))
        if any(value is not None and message.get(key) != value for key, value in wanted):
            return False
        if event is not None:
            name = message.get("event" if message.get("type") == "track" else "name")
            if message.get("type") not in ("track", "page", "screen") or name != event:
                return False
        if marked is not None:
            has_marks = bool(self.problems) or not self.accepted
            if has_marks != marked:
                return False
        return True


class Store(abc.ABC):
    """Thread-safe storage of requests and their messages, in arrival order.

    The public methods take the Condition and call the ``_``-methods a backend
    implements, so a backend never locks and every write wakes the waiters.
    """

    def __init__(self, declared: DeclaredPlan | None = None) -> None:
        self._changed = threading.Condition()
        self._plan = TrackingPlan()
        self._declared = declared

    # -- what the server calls ------------------------------------------------------

    def add_accepted(
        self, record: RequestRecord, messages: Sequence[Mapping[str, Any] | Row]
    ) -> None:
        """Remember a request and store its *messages*, counting repeated messageIds.

        Each item is a message, or a ``(message, marks)`` row: the lenient mode accepts
        what the real services accept and keeps, with each message, what they would
        drop or flag in it. A repeat is stored all the same: the real services
        de-duplicate later, and a test of a client's retries needs to see each copy.
        """
        rows = [item if isinstance(item, tuple) else (item, ()) for item in messages]
        at = time.time()
        received_at = now_iso(at)
        with self._changed:
            self._insert(record, True, received_at, rows)
            self._plan.add(at, [message for message, _ in rows])
            self._observe(rows)
            self._changed.notify_all()

    def add_rejected(
        self, record: RequestRecord, rows: Sequence[Row] = (), *, observe: bool = False
    ) -> None:
        """Remember a rejected request and each of its messages with its problems.

        *observe*: count its messages against the declared plan all the same (the
        strict mode refused them for breaking it, and that is what the plan's view is
        for).
        """
        received_at = now_iso()
        with self._changed:
            self._insert(record, False, received_at, rows)
            if observe:
                self._observe(rows)
            self._changed.notify_all()

    def _observe(self, rows: Sequence[Row]) -> None:
        if self._declared is not None:
            for message, _ in rows:
                self._declared.observe(message)

    # -- what the collector's readers call ------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        """Copies of the accepted messages, so a caller cannot edit the store."""
        with self._changed:
            return self._messages()

    def records(self) -> list[RequestRecord]:
        with self._changed:
            return self._records()

    def counts(self) -> dict[str, Any]:
        with self._changed:
            return self._counts()

    def events(self, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """Stored events with an id above *after*, oldest first, at most *limit*."""
        with self._changed:
            return self._events(after, limit)

    def latest(self, limit: int) -> list[StoredEvent]:
        """The last *limit* stored events, oldest first."""
        with self._changed:
            return self._latest(limit)

    def select(
        self, keep: EventFilter, *, after: int = 0, limit: int | None = None, newest: bool = False
    ) -> list[StoredEvent]:
        """Stored events *keep* accepts, oldest first: the first *limit* with an id
        above *after*, or with *newest* the last *limit* of them.
        """
        chosen: list[StoredEvent] = []
        with self._changed:
            for event in self._scan(after, newest):
                if limit is not None and len(chosen) >= limit:
                    break
                if keep(event):
                    chosen.append(copy.deepcopy(event))
        return chosen[::-1] if newest else chosen

    def plan(self, now: float | None = None) -> dict[str, Any]:
        """The tracking plan of the accepted messages: ``rate`` and ``schema``, and with
        a declared plan, ``declared``: how the messages compare with it.

        See :class:`TrackingPlan` and :meth:`DeclaredPlan.comparison`; *now* (default:
        the current time) ends the rate's window.
        """
        with self._changed:
            answer = {
                "rate": self._plan.rate(time.time() if now is None else now),
                "schema": self._plan.schema(),
            }
            if self._declared is not None:
                answer["declared"] = self._declared.comparison()
            return answer

    def wait_for_messages(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._message_count() >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._request_count() >= count, timeout)

    def reset(self) -> None:
        with self._changed:
            self._clear()
            self._plan.clear()
            if self._declared is not None:
                self._declared.clear()
            self._changed.notify_all()

    def close(self) -> None:
        """Release what the store holds open; reading again later reopens it."""
        with self._changed:
            self._close()

    # -- what a backend implements, always called with the Condition held -----------

    @abc.abstractmethod
    def _insert(
        self, record: RequestRecord, accepted: bool, received_at: str, rows: Sequence[Row]
    ) -> None: ...

    @abc.abstractmethod
    def _messages(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _records(self) -> list[RequestRecord]: ...

    @abc.abstractmethod
    def _counts(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _events(self, after: int, limit: int | None) -> list[StoredEvent]: ...

    @abc.abstractmethod
    def _latest(self, limit: int) -> list[StoredEvent]: ...

    @abc.abstractmethod
    def _scan(self, after: int, newest: bool) -> Iterator[StoredEvent]:
        """Every event with an id above *after*, oldest first (newest first if asked)."""

    @abc.abstractmethod
    def _message_count(self) -> int: ...

    @abc.abstractmethod
    def _request_count(self) -> int: ...

    @abc.abstractmethod
    def _clear(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


class MemoryStore(Store):
    """The default store: lists in memory, gone with the process, and fast."""

    def __init__(self, declared: DeclaredPlan | None = None) -> None:
        super().__init__(declared)
        self._events_kept: list[StoredEvent] = []
        # The id of _events_kept[0] once there is one; ids are consecutive from there.
        self._first_id = 1
        self._next_id = 1
        self._records_kept: list[RequestRecord] = []
        self._accepted_requests = 0
        self._message_total = 0
        self._seen_ids: set[str] = set()
        self._duplicates = 0
        self._by_type: Counter[str] = Counter()
        self._by_request: Counter[tuple[str, str, int]] = Counter()

    def _insert(
        self, record: RequestRecord, accepted: bool, received_at: str, rows: Sequence[Row]
    ) -> None:
        if not self._events_kept:
            self._first_id = self._next_id
        for message, problems in rows:
            if accepted and isinstance(message, dict):
                message_id = message.get("messageId")
                if isinstance(message_id, str):
                    if message_id in self._seen_ids:
                        self._duplicates += 1
                    self._seen_ids.add(message_id)
                self._by_type[str(message.get("type"))] += 1
                self._message_total += 1
            stored = copy.deepcopy(message)
            self._events_kept.append(
                StoredEvent(
                    self._next_id,
                    received_at,
                    accepted,
                    record.status,
                    problems,
                    stored,
                    record.method,
                    record.path,
                )
            )
            self._next_id += 1
        self._records_kept.append(record)
        self._accepted_requests += accepted
        self._by_request[(record.method, record.path, record.status)] += 1

    def _messages(self) -> list[dict[str, Any]]:
        return copy.deepcopy(
            [
                event.message
                for event in self._events_kept
                if event.accepted and isinstance(event.message, dict)
            ]
        )

    def _records(self) -> list[RequestRecord]:
        return list(self._records_kept)

    def _counts(self) -> dict[str, Any]:
        return {
            "requests": len(self._records_kept),
            "accepted_requests": self._accepted_requests,
            "rejected_requests": len(self._records_kept) - self._accepted_requests,
            "messages": self._message_total,
            "by_type": dict(self._by_type),
            "duplicate_message_ids": self._duplicates,
            "by_request": [
                {"method": method, "path": path, "status": status, "count": count}
                for (method, path, status), count in self._by_request.items()
            ],
        }

    def _scan(self, after: int, newest: bool) -> Iterator[StoredEvent]:
        start = max(0, after + 1 - self._first_id)
        kept = self._events_kept[start:]
        # The store's own objects: select() copies only what it keeps.
        return reversed(kept) if newest else iter(kept)

    def _events(self, after: int, limit: int | None) -> list[StoredEvent]:
        start = max(0, after + 1 - self._first_id)
        stop = None if limit is None else start + limit
        return copy.deepcopy(self._events_kept[start:stop])

    def _latest(self, limit: int) -> list[StoredEvent]:
        return copy.deepcopy(self._events_kept[-limit:]) if limit > 0 else []

    def _message_count(self) -> int:
        return self._message_total

    def _request_count(self) -> int:
        return len(self._records_kept)

    def _close(self) -> None:
        """Memory holds nothing open."""

    def _clear(self) -> None:
        self._events_kept.clear()
        self._records_kept.clear()
        self._accepted_requests = 0
        self._message_total = 0
        self._seen_ids.clear()
        self._duplicates = 0
        self._by_type.clear()
        self._by_request.clear()
