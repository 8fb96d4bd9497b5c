"""The collector's HTTP server: a real socket on 127.0.0.1 speaking the batch protocol."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._faults import FaultPlan
from ._store import RequestRecord, Store
from ._validate import Rejection, auth_user, decompress, parse_batch

__all__ = ["Collector"]

BatchCallback = Callable[[list[dict[str, Any]]], object]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as real servers do, so the client's connection pooling (and
    # what happens to a pooled connection when the server goes away) is exercised.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may already be gone
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a test run must not print a line per request."""

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if not isinstance(payload, bytes) else "text/plain"
        )
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/v1/batch":
            self.server.collector._handle_batch(self)
        elif path == "/faults":
            try:
                self.server.collector.faults.add_from_json(json.loads(self._body()))
            except (ValueError, TypeError) as error:
                self.reply(400, {"error": str(error)})
                return
            self.reply(200, {"success": True})
        else:
            self._body()
            self.reply(404, {"error": f"no such endpoint: POST {path}"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        collector = self.server.collector
        if url.path == "/health":
            self.reply(200, b"ok")
        elif url.path == "/stats":
            self.reply(200, collector.counts())
        elif url.path == "/messages":
            query = parse_qs(url.query)
            kind = query.get("type", [None])[0]
            user = query.get("user_id", [None])[0]
            messages = [
                m
                for m in collector.messages()
                if (kind is None or m.get("type") == kind)
                and (user is None or user in (m.get("userId"), m.get("anonymousId")))
            ]
            self.reply(200, messages)
        else:
            self.reply(404, {"error": f"no such endpoint: GET {url.path}"})

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/messages":
            self.server.collector.reset(faults=False)
            self.reply(200, {"success": True})
        elif path == "/faults":
            self.server.collector.faults.clear()
            self.reply(200, {"success": True})
        else:
            self.reply(404, {"error": f"no such endpoint: DELETE {path}"})

    def abort(self, reset: bool) -> None:
        """End the connection with no answer; with *reset*, as an RST instead of a FIN."""
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()


class Collector:
    """A local server for ``POST /v1/batch``; use it as a context manager.

    Args:
        write_keys: Keys accepted in Basic auth; None accepts any non-empty key.
        host, port: Where to listen; port 0 picks a free one. ``stop()`` then
            ``start()`` listens on the same port again, so a test can take the
            collector down and bring it back while a client keeps its URL.
        on_batch: Called with each accepted batch's messages (the CLI prints them).

    Its repr and its request records never show a write key.
    """

    def __init__(
        self,
        write_keys: Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self._keys = frozenset(write_keys) if write_keys is not None else None
        self._host = host
        self._port = port
        self._on_batch = on_batch
        self._store = Store()
        self.faults = FaultPlan()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<Collector {self.url} {state}>"

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> Collector:
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            self._server = _Server((self._host, self._port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="cdp-collector",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection; bounded and idempotent."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            connections = list(server.open_connections)
        # Keep-alive connections would otherwise go on being served by their threads.
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- reading back -------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        return self._store.messages()

    def batches(self) -> list[RequestRecord]:
        return self._store.requests()

    def counts(self) -> dict[str, Any]:
        return self._store.counts()

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> bool:
        return self._store.wait_for_messages(count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        return self._store.wait_for_requests(count, timeout)

    def reset(self, *, faults: bool = True) -> None:
        self._store.reset()
        if faults:
            self.faults.clear()

    # -- one batch request ----------------------------------------------------------

    def _handle_batch(self, handler: _Handler) -> None:
        faults = self.faults
        if faults.take(("refuse",)) is not None:
            handler.abort(reset=False)
            return
        raw = handler._body()
        gzipped = handler.headers.get("Content-Encoding", "").lower() == "gzip"
        headers = {
            k: ("<redacted>" if k.lower() == "authorization" else v)
            for k, v in handler.headers.items()
        }
        user = auth_user(handler.headers.get("Authorization"))
        key_ok = user is not None and (self._keys is None or user in self._keys)
        messages: list[dict[str, Any]] = []
        sent_at: str | None = None
        body_bytes = len(raw)
        extra_headers: dict[str, str] = {}
        reset = False
        try:
            delay = faults.delay()
            if delay:
                self._stopping.wait(delay)
            if not key_ok:
                raise Rejection(401, "missing or unknown write key (HTTP Basic user name)")
            body = decompress(raw) if gzipped else raw
            body_bytes = len(body)
            invalid: Rejection | None = None
            try:
                messages, sent_at = parse_batch(body)
            except Rejection as rejection:
                invalid = rejection
            # An injected status wins over validation, as a failing server answers
            # before it looks; the record still names the messageIds it was sent.
            fault = faults.take(("status",))
            if fault is not None:
                if fault.retry_after is not None:
                    extra_headers["Retry-After"] = f"{fault.retry_after:g}"
                raise Rejection(fault.status, fault.reason or f"injected {fault.status}")
            if invalid is not None:
                raise invalid
            rejected = faults.take(("reject_type",), {str(m.get("type")) for m in messages})
            if rejected is not None:
                raise Rejection(
                    rejected.status,
                    rejected.reason or f"requests holding {rejected.call_type} are rejected",
                )
            reset = faults.take(("reset_after_store",)) is not None
            status, reason = 200, ""
        except Rejection as rejection:
            status, reason = rejection.status, rejection.reason
            stored = []
        else:
            stored = messages
        record = RequestRecord(
            status=status,
            reason=reason,
            message_count=len(messages),
            body_bytes=body_bytes,
            gzip=gzipped,
            headers=headers,
            write_key_ok=key_ok,
            sent_at=sent_at,
            message_ids=tuple(str(m.get("messageId")) for m in messages),
        )
        self._store.add(record, stored)
        if stored and self._on_batch is not None:
            self._on_batch(stored)
        if reset:
            handler.abort(reset=True)
        elif status == 200:
            handler.reply(200, {"success": True})
        else:
            handler.reply(status, {"error": reason}, extra_headers)
