"""The HTTP side: a threading server and the handler that answers every client.

It takes messages on every path a client documents (see ``_ingest``), answers CORS
preflights so that browsers reach it, records every request but those reading it
back, and answers the control endpoints (``/stats``, ``/messages``, ``/faults``) and
the live viewer (``/``, ``/api/events``, ``/api/events.jsonl``, see ``_viewer``).

The handler speaks HTTP/1.1 with keep-alive and always sends Content-Length, as the
real services do, because a client's connection pool (and what happens to a pooled
connection when the server goes away) is part of what the tests must exercise.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from .._core.protocol import MAX_BATCH_BYTES
from ._declared import DeclaredPlan
from ._faults import Fault, FaultPlan
from ._ingest import (
    CALL_PATHS,
    INGEST_PATHS,
    METRICS_PATH,
    SHORT_PATHS,
    assign_message_ids,
    batch_with_defaults,
    jsonl,
    single_message,
    without_non_finite,
)
from ._store import RequestRecord, Row, Store, StoredEvent
from ._validate import (
    MAX_LISTED_PROBLEMS,
    Rejected,
    batch_messages,
    body_size_problem,
    content_type_problem,
    decode_body,
    item_problems,
    lenient_auth_problem,
    lenient_marks,
    lenient_payload_problem,
    load_payload,
    payload_problem,
    strict_auth_problem,
)
from ._viewer import (
    EVENTS_PATH,
    FILTERS,
    JSONL_PATH,
    PAGE,
    PAGE_HEADERS,
    PLAN_PATH,
    parse_events_query,
    parse_filters,
)

__all__ = ["Backend", "BatchCallback", "CollectorServer", "RejectedCallback"]

BatchCallback = Callable[[list[dict[str, Any]]], object]
RejectedCallback = Callable[[RequestRecord], object]

# The methods the collector serves (an Allow header's), and the request headers a
# preflight always lets through.
_ALLOW: Final = "POST, GET, DELETE, OPTIONS"
_CORS_HEADERS: Final = ("authorization", "content-type", "content-encoding", "x-retry-count")
_FOREIGN: Final = "a page of another origin may send and read events, not change the collector"
# A method or path is cut to this much in a record: a client may send any garbage.
_MAX_SHOWN_CHARS: Final = 200
# A body is read to its end even when it is rejected, so the connection stays usable
# for the client's next request; beyond this much it is read and thrown away. The
# slack covers gzip's worst case (deflate adds 5 bytes per 16 KB block it cannot
# shrink, plus a header), so a compressed body that could still inflate to less than
# the limit is kept whole.
_KEPT_BODY_BYTES: Final = MAX_BATCH_BYTES + MAX_BATCH_BYTES // 1000 + 1024
_READ_CHUNK: Final = 64 * 1024
# A body declared this big is refused unread, and the connection closed: reading it
# to its end (to keep the connection usable) would let one client make the server
# read gigabytes.
_UNREAD_BODY_BYTES: Final = 8 * MAX_BATCH_BYTES
# An idle keep-alive connection (a client's pool) holds a thread; after this long
# without a request the thread closes it, as real servers do.
IDLE_SECONDS: Final = 60.0
# From a request's first byte to its last: a client sending a byte a second (slowloris)
# would otherwise hold a thread for as long as it likes, since each byte resets a
# plain socket timeout.
REQUEST_SECONDS: Final = 10.0
# Each connection holds a thread and up to about a megabyte of body, so their number
# bounds the memory; past it a connection is answered 503 at once and closed.
MAX_CONNECTIONS: Final = 256


def _raw_answer(status: str, reason: str, *headers: str) -> bytes:
    """A whole JSON error answer, for where the handler's own methods cannot be used."""
    body = json.dumps({"error": reason}).encode("ascii")
    lines = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


_BUSY_ANSWER: Final = _raw_answer(
    "503 Service Unavailable", "too many open connections", "Retry-After: 1"
)
_TIMEOUT_ANSWER: Final = _raw_answer("408 Request Timeout", "the request did not arrive in time")
_REDACTED_HEADERS: Final = frozenset({"authorization", "proxy-authorization"})
_MESSAGE_FILTERS: Final = frozenset({"type", "user_id"})


@dataclass(frozen=True)
class Backend:
    """What every handler thread shares: the store, the faults and the settings."""

    store: Store
    faults: FaultPlan
    write_keys: frozenset[str] | None
    on_batch: BatchCallback | None
    on_rejected: RejectedCallback | None = None
    on_request: RejectedCallback | None = None
    # False: accept what the real services accept and mark it; True: reject with 400.
    strict: bool = False
    idle_seconds: float = IDLE_SECONDS
    request_seconds: float = REQUEST_SECONDS
    max_connections: int = MAX_CONNECTIONS
    # The tracking plan the user declared: its violations are marked (lenient) or 400s.
    declared: DeclaredPlan | None = None


@dataclass(frozen=True)
class _Outcome:
    """The verdict on one batch request, before it is recorded and answered."""

    status: int
    reason: str = ""
    accepted: bool = False
    reset: bool = False
    retry_after: str | None = None
    # Rejected for what its messages hold, so each message is shown with its own problems.
    by_messages: bool = False
    # Rejected for breaking the declared plan: its messages count in the plan's view.
    by_plan: bool = False
    # Accepted by the lenient mode, with what the real service would flag in the request
    # as a whole (each message gets these besides its own).
    marks: tuple[str, ...] = ()


class CollectorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that can also cut its open connections when it stops.

    ``shutdown()`` alone stops accepting but leaves every keep-alive connection
    served by its thread, so a "stopped" collector would still take batches on a
    client's pooled connection. :meth:`close` ends those too.
    """

    daemon_threads = True
    # listen()'s backlog: socketserver's default of 5 makes the kernel drop the SYNs of
    # a burst of clients, each of which then waits a second or more to try again.
    request_queue_size = 1024
    # SO_REUSEADDR: start() after stop() binds the same port at once, even with the
    # previous connections in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self.stopping = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closing = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Replaces ThreadingMixIn's version to register the connection before its thread
        # runs, so that close() can never miss a connection accepted just before it.
        assert isinstance(request, socket.socket)
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="cdp-collector-connection",
            daemon=True,
        )
        with self._connections_lock:
            closing = self._closing
            busy = len(self._connections) >= self.backend.max_connections
            if not (closing or busy):
                self._connections[request] = thread
        if busy and not closing:
            # Answered from the accepting thread, so it must not block: a short timeout,
            # and a client that does not read the answer loses it.
            with contextlib.suppress(OSError):
                request.settimeout(0.5)
                request.sendall(_BUSY_ANSWER)
        if closing or busy:
            self.shutdown_request(request)
            return
        thread.start()

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.pop(request, None)
        super().shutdown_request(request)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client that goes away mid-request is normal (and is what the faults cause);
        # only a real bug is worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close(self, timeout: float) -> None:
        """Stop accepting, cut every open connection, and wait for their threads.

        Bounded by about *timeout* seconds plus the serve loop's poll interval.
        """
        self.stopping.set()  # wakes handlers held by a latency fault
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            self._closing = True
            connections = dict(self._connections)
        for connection in connections:
            # shutdown() rather than close(): the handler thread owns the socket and
            # closes it; this only makes its pending read return at once.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))


def _redacted(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    redacted: dict[str, str] = {}
    for name, value in headers:
        shown = "<redacted>" if name.lower() in _REDACTED_HEADERS else value
        redacted[name] = f"{redacted[name]}, {shown}" if name in redacted else shown
    return redacted


def _message_ids(batch: list[Any]) -> tuple[str, ...]:
    return tuple(
        message["messageId"]
        for message in batch
        if isinstance(message, dict) and isinstance(message.get("messageId"), str)
    )


def _call_types(batch: list[Any]) -> frozenset[str]:
    return frozenset(
        message["type"]
        for message in batch
        if isinstance(message, dict) and isinstance(message.get("type"), str)
    )


def _matches(message: dict[str, Any], query: dict[str, list[str]]) -> bool:
    if "type" in query and message.get("type") not in query["type"]:
        return False
    users = query.get("user_id")
    return users is None or any(message.get(field) in users for field in ("userId", "anonymousId"))


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose reads share one deadline per request.

    Waiting for a request's first byte is bounded by the idle time (a pooled
    connection may stay quiet that long); from that byte on, the whole request must
    arrive within the request time, however slowly its bytes trickle in.
    """

    def __init__(self, connection: socket.socket, idle: float, per_request: float) -> None:
        super().__init__()
        self._connection = connection
        self._idle = idle
        self._per_request = per_request
        self.deadline: float | None = None
        self.timed_out = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            wait = self._idle
        else:
            wait = self.deadline - time.monotonic()
            if wait <= 0:
                self.timed_out = True
                raise TimeoutError("the request took too long to arrive")
        self._connection.settimeout(wait)
        try:
            count = self._connection.recv_into(buffer)
        except TimeoutError:
            self.timed_out = self.deadline is not None
            raise
        if count and self.deadline is None:
            self.deadline = time.monotonic() + self._per_request
        return count

    def next_request(self) -> None:
        self.deadline = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (40 ms a request). Real servers answer in one go.
    disable_nagle_algorithm = True
    server_version = "cdp-collector"
    timeout = IDLE_SECONDS

    def setup(self) -> None:
        super().setup()
        backend = self._collector.backend
        self._reader = _DeadlineReader(
            self.connection, backend.idle_seconds, backend.request_seconds
        )
        self.rfile = io.BufferedReader(self._reader, _READ_CHUNK)

    def handle_one_request(self) -> None:
        self._reader.next_request()
        # The base class ends the connection without a word when a read times out; a
        # client that started a request gets a 408 first, so it knows why.
        super().handle_one_request()
        if self._reader.timed_out:
            self.close_connection = True
            self._reader.timed_out = False
            # Written raw: the request line may not have been read, and the base class's
            # answering methods need it.
            with contextlib.suppress(OSError):
                self.connection.settimeout(1.0)
                self.connection.sendall(_TIMEOUT_ANSWER)

    def version_string(self) -> str:
        # The default adds the Python version, which no real service would announce.
        return self.server_version

    @property
    def _collector(self) -> CollectorServer:
        server = self.server
        assert isinstance(server, CollectorServer)
        return server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: a test run must not print a line per request."""

    # -- framing --------------------------------------------------------------------

    def _reply(
        self,
        status: int,
        payload: object,
        *,
        headers: Iterable[tuple[str, str]] = (),
        close: bool = False,
        content_type: str = "text/plain; charset=utf-8",
        bodyless: bool = False,
    ) -> None:
        # The last read left the socket with what remained of the request's deadline;
        # the answer gets the idle time, so a big /messages answer is not cut short.
        self.connection.settimeout(self._collector.backend.idle_seconds)
        if isinstance(payload, bytes):
            body = payload
        else:
            try:
                text = json.dumps(payload, allow_nan=False)
            except ValueError:
                # Stored messages hold no infinity (see without_non_finite); this keeps
                # any other answer valid JSON too.
                text = json.dumps(without_non_finite(payload), allow_nan=False)
            body, content_type = text.encode("ascii"), "application/json"
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        request_headers = getattr(self, "headers", None)
        origin = None if request_headers is None else request_headers.get("Origin")
        if origin is not None:
            # Any page may send events and read them back: the collector is a local
            # tool, as reachable as its address (see the warning of collect).
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
        for name, value in headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if status != 204 and not bodyless:
            self.wfile.write(body)

    def _error(self, status: int, reason: str, **options: Any) -> None:
        self._reply(status, {"error": reason}, **options)

    def _read_body(self) -> tuple[bytes, int] | None:
        """The body (at most ``_KEPT_BODY_BYTES`` of it) and its full length.

        None means the framing is unusable: an answer closing the connection has
        been sent, or the client went away mid-body.
        """
        if self.headers.get("Transfer-Encoding", "identity").strip().lower() != "identity":
            self._error(411, "send the body with a Content-Length", close=True)
            return None
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b"", 0
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length_header)
        except ValueError:
            self._error(400, "Content-Length is not a whole number", close=True)
            return None
        if length > _UNREAD_BODY_BYTES:
            self._error(
                400,
                f"request body is {length} bytes, the limit is {MAX_BATCH_BYTES}",
                close=True,
            )
            return None
        kept = bytearray()
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, _READ_CHUNK))
            if not chunk:
                self.close_connection = True
                return None
            left -= len(chunk)
            room = _KEPT_BODY_BYTES - len(kept)
            if room > 0:
                kept += chunk[:room]
        return bytes(kept), length

    def _reset_connection(self) -> None:
        """End the connection with an RST and no answer, as a crashed peer would.

        SO_LINGER 0 makes close() send RST instead of FIN; the buffered reader holds a
        reference to the socket, so it is closed first or close() would be deferred.
        """
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.connection.close()

    # -- routing --------------------------------------------------------------------

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path in INGEST_PATHS:
            self._ingest(path)
            return
        framed = self._read_body()
        if framed is None:
            return
        if path == "/faults":
            if self._foreign_origin():
                self._refuse(403, _FOREIGN, framed[1])
            else:
                self._add_fault(framed[0])
        elif path == METRICS_PATH:
            self._record(_Outcome(200, accepted=True), framed[1], [])
            self._reply(200, {"success": True})
        else:
            self._refuse(404, f"no such endpoint: POST {path}", framed[1])

    def do_GET(self) -> None:
        framed = self._read_body()
        if framed is None:
            return
        url = urlsplit(self.path)
        backend = self._collector.backend
        if url.path == "/":
            self._reply(200, PAGE, headers=PAGE_HEADERS, content_type="text/html; charset=utf-8")
        elif url.path == EVENTS_PATH:
            self._list_events(url.query)
        elif url.path == JSONL_PATH:
            self._export_jsonl(url.query)
        elif url.path == PLAN_PATH:
            self._reply(200, {**backend.store.plan(), "strict": backend.strict})
        elif url.path == "/health":
            self._reply(200, b"ok")
        elif url.path == "/stats":
            self._reply(200, backend.store.counts())
        elif url.path == "/messages":
            self._list_messages(url.query)
        elif url.path == "/faults":
            self._reply(200, [fault.to_json() for fault in backend.faults.active()])
        elif url.path in INGEST_PATHS:
            allow = [("Allow", "POST, OPTIONS")]
            self._refuse(405, f"use POST {url.path}", framed[1], headers=allow)
        else:
            self._refuse(404, f"no such endpoint: GET {url.path}", framed[1])

    def do_DELETE(self) -> None:
        framed = self._read_body()
        if framed is None:
            return
        path = urlsplit(self.path).path
        backend = self._collector.backend
        if path in ("/messages", EVENTS_PATH, "/faults") and self._foreign_origin():
            self._refuse(403, _FOREIGN, framed[1])
        elif path in ("/messages", EVENTS_PATH):
            backend.store.reset()
            self._reply(200, {"success": True})
        elif path == "/faults":
            backend.faults.clear()
            self._reply(200, {"success": True})
        else:
            self._refuse(404, f"no such endpoint: DELETE {path}", framed[1])

    def do_OPTIONS(self) -> None:
        """Answer a CORS preflight: any origin may POST events with the headers it asks for.

        analytics.js sends its key in an Authorization header, which makes the
        browser ask first; without this answer it sends nothing at all.
        """
        framed = self._read_body()
        if framed is None:
            return
        asked = self.headers.get("Access-Control-Request-Headers", "")
        names = [*_CORS_HEADERS, *(name.strip().lower() for name in asked.split(","))]
        allowed = ", ".join(name for name in dict.fromkeys(names) if name.isprintable() and name)
        self._record(_Outcome(204, accepted=True), framed[1], [])
        # Another origin may send events and read them back, but not change the
        # collector (DELETE, POST /faults): any page the user opens is another origin.
        ingest = urlsplit(self.path).path in INGEST_PATHS
        self._reply(
            204,
            b"",
            headers=[
                ("Access-Control-Allow-Methods", "POST, OPTIONS" if ingest else "GET, OPTIONS"),
                ("Access-Control-Allow-Headers", allowed),
                ("Access-Control-Max-Age", "600"),
            ],
        )

    def _foreign_origin(self) -> bool:
        """Whether a browser sent this from a page of another origin than the collector.

        A page may post a text/plain body anywhere without asking first; this keeps
        every page the user happens to open from adding faults or emptying the store.
        """
        origin = self.headers.get("Origin")
        return origin is not None and urlsplit(origin).netloc != self.headers.get("Host", "")

    def _unsupported(self) -> None:
        framed = self._read_body()
        if framed is None:
            return
        self._refuse(
            405, f"{self.command} is not served here", framed[1], headers=[("Allow", _ALLOW)]
        )

    do_PUT = do_PATCH = _unsupported

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own refusals (an unknown method, a bad request line), as JSON
        and recorded like every other refusal.
        """
        self.close_connection = True
        reason = message or self.responses.get(code, ("error",))[0]
        self._record(_Outcome(int(code), reason), 0, [])
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            # An unreadable request line leaves the version at 0.9, which has no status
            # line; no client speaks it, and a garbled line deserves a real 400.
            self.request_version = "HTTP/1.0"
        self._error(int(code), reason, close=True, bodyless=self.command == "HEAD")

    # -- recording ------------------------------------------------------------------

    def _record(
        self,
        outcome: _Outcome,
        body_bytes: int,
        batch: list[Any],
        sent_at: str | None = None,
        *,
        auth: str | None = "",
        rows: list[Row] | None = None,
    ) -> RequestRecord:
        """Store the record of this request (and *rows*, or the rejected batch's rows)."""
        backend = self._collector.backend
        # Absent when the request line itself could not be read.
        request_headers = getattr(self, "headers", None) or {}
        if auth == "":
            authorization = request_headers.get("Authorization")
            auth = lenient_auth_problem(authorization, None, backend.write_keys)
        record = RequestRecord(
            status=0 if outcome.reset else outcome.status,
            reason=outcome.reason,
            message_count=len(batch),
            body_bytes=body_bytes,
            gzip=request_headers.get("Content-Encoding", "").strip().lower() == "gzip",
            headers=_redacted(request_headers.items()),
            write_key_ok=auth is None,
            sent_at=sent_at,
            message_ids=_message_ids(batch),
            method=str(getattr(self, "command", None) or "-")[:_MAX_SHOWN_CHARS],
            path=urlsplit(getattr(self, "path", "") or "").path[:_MAX_SHOWN_CHARS],
        )
        if outcome.accepted:
            backend.store.add_accepted(record, rows or [])
        else:
            rows = _rejected_rows(outcome, batch, backend.declared)
            backend.store.add_rejected(record, rows, observe=outcome.by_plan)
            _announce_rejected(backend, backend.on_rejected, record)
        _announce_rejected(backend, backend.on_request, record)
        return record

    def _refuse(
        self, status: int, reason: str, body_bytes: int, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Answer a request the collector does not serve, recorded so that it shows."""
        self._record(_Outcome(status, reason), body_bytes, [])
        self._error(status, reason, headers=headers)

    # -- control endpoints ----------------------------------------------------------

    def _list_messages(self, query_string: str) -> None:
        query = parse_qs(query_string, keep_blank_values=True)
        unknown = sorted(set(query) - _MESSAGE_FILTERS)
        if unknown:
            self._error(400, f"unknown filter {unknown[0]!r}: use type or user_id")
            return
        messages = self._collector.backend.store.messages()
        self._reply(200, [message for message in messages if _matches(message, query)])

    def _list_events(self, query_string: str) -> None:
        try:
            query = parse_events_query(query_string)
        except ValueError as error:
            self._error(400, str(error))
            return
        store = self._collector.backend.store
        if query.filters:
            filters: dict[str, Any] = query.filters

            def keep(event: StoredEvent) -> bool:
                return event.matches(**filters)

            newest = query.after is None
            events = store.select(keep, after=query.after or 0, limit=query.limit, newest=newest)
        elif query.after is None:
            events = store.latest(query.limit)
        else:
            events = store.events(query.after, query.limit)
        self._reply(200, {"events": [event.to_json() for event in events]})

    def _export_jsonl(self, query_string: str) -> None:
        try:
            query = parse_qs(query_string, keep_blank_values=True)
            unknown = sorted(set(query) - set(FILTERS))
            if unknown:
                raise ValueError(f"unknown filter {unknown[0]!r}: use {', '.join(FILTERS)}")
            filters: dict[str, Any] = parse_filters(query)
        except ValueError as error:
            self._error(400, str(error))
            return
        store = self._collector.backend.store
        if filters:
            events = store.select(lambda event: event.matches(**filters))
            messages = [e.message for e in events if e.accepted and isinstance(e.message, dict)]
        else:
            messages = store.messages()
        self._reply(200, jsonl(messages), content_type="application/x-ndjson")

    def _add_fault(self, body: bytes) -> None:
        try:
            spec = json.loads(body)
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object with a kind")
            fault = self._collector.backend.faults.add(spec)
        except (ValueError, RecursionError) as error:
            self._error(400, str(error))
            return
        self._reply(200, {"success": True, "fault": fault.to_json()})

    # -- the endpoints that take messages ---------------------------------------------

    def _ingest(self, path: str) -> None:
        """A batch (``/v1/batch``, ``/v1/b``) or one message (``/v1/track``, ``/v1/t``...)."""
        backend = self._collector.backend
        call_type = CALL_PATHS.get(path)
        gzipped = self.headers.get("Content-Encoding", "").strip().lower() == "gzip"
        authorization = self.headers.get("Authorization")
        # Judged again once the body is read: the key may be its "writeKey".
        auth = (strict_auth_problem if backend.strict else lenient_auth_problem)(
            authorization, None, backend.write_keys
        )

        if backend.faults.take(("refuse",)) is not None:
            refused = _Outcome(0, "refused by a fault: reset before the body was read", reset=True)
            self._record(refused, 0, [], auth=auth)
            self._reset_connection()
            return
        latency = backend.faults.take(("latency",))
        framed = self._read_body()
        if framed is None:
            return

        # The body is parsed before anything is judged, leniently, so that the record
        # of any request (even one a fault answers) shows what the client sent.
        raw, raw_length = framed
        body_bytes = raw_length
        payload: dict[str, Any] | None = None
        batch: list[Any] = []
        route_marks: tuple[str, ...] = ()
        sent_at: str | None = None
        body_problem: Rejected | None = None
        try:
            if raw_length > len(raw):
                # Too big to keep; a gzip body this large cannot inflate to less than
                # the limit either (deflate's worst case adds a few bytes per 16 KB).
                compressed = " compressed" if gzipped else ""
                raise Rejected(
                    400,
                    f"request body is {raw_length} bytes{compressed}, "
                    f"the limit is {MAX_BATCH_BYTES}",
                )
            body, body_bytes = decode_body(raw, self.headers.get("Content-Encoding"))
            too_big = body_size_problem(body_bytes)
            if too_big is not None:
                raise Rejected(400, too_big)
            payload = load_payload(body)
            if call_type is None:
                try:
                    batch = batch_with_defaults(payload, batch_messages(payload))
                except ValueError as error:
                    batch = batch_messages(payload)
                    raise Rejected(400, str(error)) from None
        except Rejected as rejected:
            body_problem = rejected
        else:
            if call_type is None:
                sent_at = payload["sentAt"] if isinstance(payload.get("sentAt"), str) else None
            else:
                message, route_marks = single_message(payload, call_type, path)
                batch = [message]
                sent_at = message["sentAt"] if isinstance(message.get("sentAt"), str) else None
            if not backend.strict:
                batch = assign_message_ids(batch)
        if payload is not None:
            judge_auth = strict_auth_problem if backend.strict else lenient_auth_problem
            auth = judge_auth(authorization, payload.get("writeKey"), backend.write_keys)

        outcome = self._judge(backend, path, auth, body_problem, payload, batch, route_marks)
        if outcome.accepted:
            rows: list[Row] = [
                # The checks have made sure that every item is a valid message.
                (without_non_finite(item), ())
                if backend.strict
                else (
                    without_non_finite(item),
                    (
                        *outcome.marks,
                        *route_marks,
                        *lenient_marks(item),
                        *_plan_marks(backend, item),
                    ),
                )
                for item in batch
            ]
            self._record(outcome, body_bytes, batch, sent_at, auth=auth, rows=rows)
            _announce(backend, [item for item, _ in rows if isinstance(item, dict)])
        else:
            self._record(outcome, body_bytes, batch, sent_at, auth=auth)

        if latency is not None and self._collector.stopping.wait(latency.delay or 0.0):
            self.close_connection = True  # the collector is stopping: no answer
            return
        if outcome.reset:
            self._reset_connection()
        elif outcome.status == 200:
            self._reply(200, {"success": True})
        else:
            retry = [("Retry-After", outcome.retry_after)] if outcome.retry_after else []
            self._error(outcome.status, outcome.reason, headers=retry)

    def _judge(
        self,
        backend: Backend,
        path: str,
        auth: str | None,
        body_problem: Rejected | None,
        payload: dict[str, Any] | None,
        batch: list[Any],
        route_marks: tuple[str, ...],
    ) -> _Outcome:
        """Decide the answer, in the order a real server would find each problem."""
        fault = backend.faults.take(("status",))
        if fault is not None:
            return _status_fault(fault)
        if auth is not None:
            return _Outcome(401, auth)
        marks: tuple[str, ...] = ()
        content_type = content_type_problem(
            self.headers.get("Content-Type"),
            plain_ok=not backend.strict or path in SHORT_PATHS,
        )
        if content_type is not None:
            if backend.strict:
                return _Outcome(415, content_type)
            # Segment's docs require application/json, yet its SDKs never send anything
            # else; flag it rather than refuse what a server might still take.
            marks = (content_type,)
        if body_problem is not None:
            return _Outcome(body_problem.status, body_problem.reason)
        assert payload is not None
        single = path in CALL_PATHS
        if backend.strict:
            if single:
                problems = [*route_marks, *item_problems(batch[0])]
                problem = "; ".join(problems) if problems else None
            else:
                problem = payload_problem(payload, batch)
            if problem is not None:
                return _Outcome(400, problem, by_messages=True)
            problem = _plan_problem(backend.declared, batch, single=single)
            if problem is not None:
                return _Outcome(400, problem, by_messages=True, by_plan=True)
        elif not single:
            problem = lenient_payload_problem(payload)
            if problem is not None:
                return _Outcome(400, problem)
        fault = backend.faults.take(("reject_type", "reset_after_store"), _call_types(batch))
        if fault is not None and fault.kind == "reject_type":
            reason = fault.reason or f"{fault.call_type} messages are rejected (injected fault)"
            return _Outcome(fault.status or 400, reason)
        if fault is not None:
            reason = "reset after store by a fault: no answer sent"
            return _Outcome(200, reason, accepted=True, reset=True, marks=marks)
        return _Outcome(200, accepted=True, marks=marks)


def _announce(backend: Backend, messages: list[dict[str, Any]]) -> None:
    if backend.on_batch is None:
        return
    try:
        # The store holds its own copies, so the callback may keep or change these.
        backend.on_batch(messages)
    except Exception:  # noqa: BLE001 - printed below; the answer must not change
        # The messages are stored; a broken callback must not turn that into a failed
        # request, but its traceback must not vanish either.
        traceback.print_exc()


def _announce_rejected(
    backend: Backend, callback: RejectedCallback | None, record: RequestRecord
) -> None:
    if callback is None:
        return
    try:
        callback(record)
    except Exception:  # noqa: BLE001 - as in _announce: printed, and the answer stands
        traceback.print_exc()


def _plan_marks(backend: Backend, item: object) -> tuple[str, ...]:
    """The lenient mode's mark for breaking the declared plan: the client's own words."""
    if backend.declared is None:
        return ()
    reason = backend.declared.reason(without_non_finite(item))
    return () if reason is None else (reason,)


def _plan_problem(declared: DeclaredPlan | None, batch: list[Any], *, single: bool) -> str | None:
    """Why the strict mode refuses this batch for the declared plan, or None.

    Each reason is the client's, after ``batch[N]: `` as the protocol's are; a message
    posted alone (``/v1/track``) has no index.
    """
    if declared is None:
        return None
    problems = []
    for index, item in enumerate(batch):
        reason = declared.reason(without_non_finite(item))
        if reason is not None:
            problems.append(reason if single else f"batch[{index}]: {reason}")
    if not problems:
        return None
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    hidden = len(problems) - MAX_LISTED_PROBLEMS
    return f"{listed}; and {hidden} more" if hidden > 0 else listed


def _rejected_rows(
    outcome: _Outcome, batch: list[Any], declared: DeclaredPlan | None = None
) -> list[Row]:
    """Each item of a rejected batch with what the viewer shows as its problems.

    A batch rejected for its messages shows each message's own problems, and the
    request's reason beside the valid ones that were rejected with it; otherwise
    (auth, framing, a fault) the request's reason is every message's problem. A
    request with no readable batch is one row with no message, so it still shows.
    """
    if outcome.reset:
        line = outcome.reason
    else:
        line = f"HTTP {outcome.status}: {outcome.reason or 'not stored (injected fault)'}"
    if not batch:
        return [(None, (line,))]
    rows: list[Row] = []
    for item in batch:
        problems: list[str] = []
        if outcome.by_messages:
            problems = item_problems(item)
            if outcome.by_plan and declared is not None:
                reason = declared.reason(without_non_finite(item))
                problems += [] if reason is None else [reason]
        rows.append((without_non_finite(item), tuple(problems) or (line,)))
    return rows


def _status_fault(fault: Fault) -> _Outcome:
    status = fault.status or 500
    reason = "" if status == 200 else fault.reason or f"injected fault: {status}"
    retry_after = None if fault.retry_after is None else str(fault.retry_after)
    return _Outcome(status, reason, retry_after=retry_after)
