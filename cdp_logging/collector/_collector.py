"""The public face of the collector: start, stop, read back, wait."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ._declared import DeclaredPlan, PlanSource, load_declared
from ._faults import FaultPlan
from ._ingest import INGEST_PATHS, jsonl
from ._server import (
    IDLE_SECONDS,
    MAX_CONNECTIONS,
    REQUEST_SECONDS,
    Backend,
    BatchCallback,
    CollectorServer,
    RejectedCallback,
)
from ._sqlite import SQLiteStore
from ._store import MemoryStore, RequestRecord, Store, StoredEvent

__all__ = ["Collector"]

# How often the serve loop looks for a stop request; it bounds how long stop() takes.
_POLL_SECONDS: Final = 0.05
_STOP_SECONDS: Final = 5.0


def _check_write_keys(write_keys: Iterable[str] | None) -> frozenset[str] | None:
    if write_keys is None:
        return None
    if isinstance(write_keys, str):
        # A lone string is iterable too, and would accept each of its characters.
        raise ValueError("write_keys must be a collection of keys, not a single string")
    keys = frozenset(write_keys)
    if not keys:
        raise ValueError("write_keys is empty, so no request could be accepted; pass None")
    if not all(isinstance(key, str) and key for key in keys):
        raise ValueError("every write key must be a non-empty string")
    return keys


class _JsonlWriter:
    """An ``on_batch`` that appends each batch to a JSONL file, then calls the next one.

    The file is opened for each batch and closed after it, so that nothing is held
    open between requests and a reader (``tail -f``, a test) sees whole lines.
    """

    def __init__(self, path: str | os.PathLike[str], then: BatchCallback | None) -> None:
        self._path = Path(path)
        self._then = then
        self._lock = threading.Lock()
        # Fails here, at construction, if the file cannot be written at all.
        with self._path.open("ab"):
            pass

    def __call__(self, messages: list[dict[str, Any]]) -> None:
        with self._lock, self._path.open("ab") as file:
            file.write(jsonl(messages))
        if self._then is not None:
            self._then(messages)


class Collector:
    """A local CDP that keeps what it accepts, for tests: ``POST /v1/batch``, the
    per-call endpoints (``/v1/track``...) and analytics.js's (``/v1/t``...), CORS included.

    Use it as a context manager: it listens on entry (in a daemon thread) and stops
    on exit.

    By default it answers as the real services do (Segment, Customer.io): it accepts
    the write key as Basic user name, Bearer token or ``writeKey`` in the body, null
    for absent fields, no ``sentAt``, any Content-Type, and a message they would drop;
    it keeps with each message what they would drop or flag in it (``events()``, the
    viewer). That is the local CDP any SDK can be pointed at.

    ``strict=True`` is for a client's own tests: a batch holding one invalid message is
    rejected whole with 400 and a reason, so a test cannot pass while a message is
    being lost; only HTTP Basic is accepted, ``sentAt`` is required, and a body that
    is not declared as JSON gets 415.

    ``stop()`` then ``start()`` listens on the same port again (the address is reused),
    so a test can take the collector down, let a client fail against the URL it was
    given, and bring it back on that URL.

    ``GET /`` serves a live viewer of what arrives, rejected messages included.

    Args:
        write_keys: The write keys accepted as HTTP Basic user name; any other gets
            401. None accepts any non-empty key.
        host: The address to listen on.
        port: The port; 0 lets the system pick a free one when first started.
        on_batch: Called on a handler thread with the messages of each accepted
            batch, after they are stored (the command line prints them).
        on_request: Called on a handler thread with the record of every request
            recorded (see :meth:`requests`), accepted or not, after it is stored.
        on_rejected: Called on a handler thread with the record of each rejected
            request, after it is stored.
        database: An SQLite file to keep everything in, created when missing and
            added to when it exists. None (the default) keeps it in memory, which is
            faster and what tests want.
        strict: Apply the protocol's rules strictly (see above) instead of answering
            as the real services do.
        request_timeout: Seconds from a request's first byte to its last; a slower
            one (a client sending a byte a second) is answered 408 and cut.
        idle_timeout: Seconds a kept-alive connection may wait for its next request.
        max_connections: Connections served at once; one more is answered 503 and
            closed. With the per-connection body limit, this bounds the memory.
        jsonl: A file each accepted message is appended to, one JSON line each, as
            it arrives (``cdp-logging collect --jsonl``); created when missing.
        plan: A tracking plan (a JSON file's path, or the same mapping) each message
            is checked against, with the client's checker and in its words: a
            message that breaks it is marked (lenient) or its batch refused with 400
            naming the message (strict). :meth:`plan` then compares what arrived
            with it. Needs the ``plan`` extra (``pip install 'cdp_logging[plan]'``).

    Raises:
        ValueError: *write_keys* is a single string, empty, or holds an empty key;
            *port* is out of range; a timeout is not a positive number;
            *max_connections* is not a whole number from 1; *database* is an SQLite
            file the collector did not write.
        sqlite3.Error: *database* cannot be opened, or is not an SQLite file.
        OSError: *jsonl* cannot be opened for appending.
        ValueError: *plan* cannot be read or is not a
            valid plan, each problem named by its JSON pointer in the plan.
        ImportError: *plan* is given without the ``plan`` extra installed.

    The write keys appear in no repr, record or answer.
    """

    def __init__(
        self,
        write_keys: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_batch: BatchCallback | None = None,
        on_rejected: RejectedCallback | None = None,
        on_request: RejectedCallback | None = None,
        database: str | os.PathLike[str] | None = None,
        strict: bool = False,
        request_timeout: float = REQUEST_SECONDS,
        idle_timeout: float = IDLE_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        jsonl: str | os.PathLike[str] | None = None,
        plan: PlanSource | DeclaredPlan | None = None,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be from 0 to 65535, got {port!r}")
        keys = _check_write_keys(write_keys)
        for name, seconds in (("request_timeout", request_timeout), ("idle_timeout", idle_timeout)):
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, (int, float))
                or not seconds > 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(
                f"max_connections must be a whole number from 1, got {max_connections!r}"
            )
        declared = None if plan is None else load_declared(plan)
        if jsonl is not None:
            on_batch = _JsonlWriter(jsonl, on_batch)
        self.faults = FaultPlan()
        # Opened last, once every other option is known to be good, so a ValueError
        # never leaves a database file open behind it.
        self._store: Store = (
            MemoryStore(declared) if database is None else SQLiteStore(database, declared)
        )
        self._backend = Backend(
            self._store,
            self.faults,
            keys,
            on_batch,
            on_rejected,
            on_request,
            strict=bool(strict),
            idle_seconds=float(idle_timeout),
            request_seconds=float(request_timeout),
            max_connections=max_connections,
            declared=declared,
        )
        self._host = host
        self._port: int | None = port or None
        self._lock = threading.Lock()
        self._server: CollectorServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else f"{self._host} (not started)"
        state = "running" if self.running else "stopped"
        keys = self._backend.write_keys
        accepted = "any key" if keys is None else f"{len(keys)} key(s)"
        mode = "strict" if self._backend.strict else "lenient"
        return f"<Collector {where} {state}, {mode}, accepting {accepted}>"

    @property
    def url(self) -> str:
        """The base URL a client should use, e.g. ``http://127.0.0.1:51234``.

        It stays valid across ``stop()`` and ``start()``.

        Raises:
            RuntimeError: asked before the first start with port 0 (no port yet).
        """
        if self._port is None:
            raise RuntimeError("the collector has no port until it is started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int | None:
        """The port listened on (or to be), None before a first start with port 0."""
        return self._port

    @property
    def strict(self) -> bool:
        """Whether the protocol's rules are applied strictly (400) or only marked."""
        return self._backend.strict

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Collector:
        """Listen (again) and serve in a daemon thread; a no-op when running.

        Raises:
            OSError: the port cannot be bound (for instance, taken by another process
                while this collector was stopped).
        """
        with self._lock:
            if self._server is not None:
                return self
            server = CollectorServer((self._host, self._port or 0), self._backend)
            self._port = server.server_address[1]
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_SECONDS},
                name=f"cdp-collector-{self._port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        """Stop listening and cut every open connection; idempotent.

        A request held by a latency fault is dropped unanswered. Bounded by about
        *timeout* seconds for the handler threads to end.
        """
        # The lock is held throughout so that a start() racing this stop() cannot try to
        # bind the port before it is released.
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            if server is None:
                return
            server.close(timeout)
            if thread is not None:
                thread.join(timeout)

    def close(self) -> None:
        """Stop, and close the database file if there is one; idempotent.

        Reading (``messages()``, ``events()``...) still works afterwards: it reopens
        the file. Leaving a ``with`` block calls this.
        """
        self.stop()
        self._store.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def messages(self) -> list[dict[str, Any]]:
        """Copies of every accepted message, in arrival order."""
        return self._store.messages()

    def batches(self) -> list[RequestRecord]:
        """A record of every request that carried messages (``POST /v1/batch``, a
        per-call endpoint...), accepted or not, in order.
        """
        return [
            record
            for record in self._store.records()
            if record.method == "POST" and record.path in INGEST_PATHS
        ]

    def requests(self) -> list[RequestRecord]:
        """A record of every request but those reading the collector back, in order:
        the batches, CORS preflights, and requests refused for their path or method.
        """
        return self._store.records()

    def events(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        type: str | None = None,
        event: str | None = None,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        marked: bool | None = None,
    ) -> list[StoredEvent]:
        """Every message received, rejected ones too, with an id above *after*.

        Oldest first, at most *limit*. This is what the viewer shows: a rejected
        message carries the problems that got it rejected, and a request refused for
        its path or method is an event without a message. The filters are those of
        ``GET /api/events`` (see :meth:`StoredEvent.matches`): ``events(type="track",
        event="Order Completed", marked=False)``.
        """
        if (type, event, user_id, anonymous_id, marked) == (None,) * 5:
            return self._store.events(after, limit)

        def keep(stored: StoredEvent) -> bool:
            return stored.matches(
                type=type,
                event=event,
                user_id=user_id,
                anonymous_id=anonymous_id,
                marked=marked,
            )

        return self._store.select(keep, after=after, limit=limit)

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every accepted message to *path*, one JSON line each, as
        ``GET /api/events.jsonl`` answers them; returns how many.
        """
        messages = self._store.messages()
        Path(path).write_bytes(jsonl(messages))
        return len(messages)

    def plan(self) -> dict[str, Any]:
        """The tracking plan of what was accepted, as ``GET /api/plan`` answers it.

        ``rate``: accepted messages per second by call type over the last minutes
        (``start``, ``seconds``, and ``counts``: ``{"second", "by_type"}`` for each second
        that had any). ``schema``: for each track, page and screen name, and for identify
        and group traits, the keys seen with their JSON types and counts (``events``), a
        key seen with two types other than null marked ``conflict``; ``left_out`` counts
        what was not learnt past the limits (500 names, 200 keys each). ``strict``:
        the mode, which the viewer shows.

        With a declared plan (``plan=``), ``declared`` compares what arrived with it:
        ``planned`` (each planned event with the messages ``seen`` and ``violations``),
        ``never_seen`` (the planned names), ``unplanned`` (track names seen that the
        plan does not list, with counts), ``violations`` (``{"type", "event",
        "pointer", "count", "text"}`` per event and JSON pointer), ``checked`` and
        ``left_out``, under the same limits. It counts accepted messages, and in the strict mode
        those refused for breaking the plan.
        """
        return {**self._store.plan(), "strict": self.strict}

    def counts(self) -> dict[str, Any]:
        """Totals: requests, accepted_requests, rejected_requests, messages, by_type
        (messages per call type), duplicate_message_ids (repeats of a stored one) and
        by_request (``{"method", "path", "status", "count"}`` for each that was seen).
        """
        return self._store.counts()

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least *count* messages are stored; False at the timeout."""
        return self._store.wait_for_messages(count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least *count* requests were recorded (any path, any status;
        see :meth:`requests`).

        A request is recorded before it is answered (and before a latency fault
        holds its answer back), so this returns while the client is still waiting.
        """
        return self._store.wait_for_requests(count, timeout)

    def reset(self) -> None:
        """Forget every message and request record, and clear the faults.

        ``DELETE /api/events`` forgets the same, but leaves the faults.
        """
        self._store.reset()
        self.faults.clear()
