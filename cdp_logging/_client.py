"""``Analytics``: the client both front doors share, and the only public sender API.

It turns calls into serialised messages (``_calls``), hands them to its ``Sender``, and
turns refusals into reported ``DeliveryError``s. It never raises from a call: an
invalid message, a full queue or a closed client are reported through ``on_error``,
``stats()``, the call's Future and callback, and a rate-limited stderr line.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from os import getpid
from types import TracebackType
from typing import Any

from . import _calls, _capture
from ._errors import CLOSED, INVALID_MESSAGE, QUEUE_FULL, DeliveryError
from ._options import (
    DEFAULT_BUFFER,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BUFFER_BYTES,
    DEFAULT_MAX_EVENTS_IN_BATCH,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEOUT,
    ErrorCallback,
    FlushCallback,
    Options,
    build_options,
)
from ._queue import Tracked
from ._report import Reporter
from ._sender import Sender, close_all, resolve_call
from ._transport import RequestsTransport, Transport

__all__ = ["Analytics", "Callback"]

Callback = Callable[[Exception | None, dict[str, Any]], object]

_DROP_CODES = frozenset({"queue_full", "closed", "invalid_message", "message_too_large"})


def _scrubber(write_key: str) -> Callable[[str], str]:
    """Remove the write key (and its Basic-auth form) from any text we did not write."""
    secrets = [write_key, base64.b64encode(f"{write_key}:".encode()).decode("ascii")]
    # Texts pass through here more than once (an error's reason, then its stderr line):
    # the placeholder must not itself contain the key, or a short test key such as "k"
    # would turn "<write key>" into "<write <write key>ey>".
    placeholder = next(
        (p for p in ("<write key>", "***", "[hidden]") if not any(s in p for s in secrets)),
        "",
    )

    def scrub(text: str) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, placeholder)
        return text

    return scrub


class Analytics:
    """A CDP client: six calls, a bounded queue, and a background sender.

    Args:
        write_key: The source's write key; defaults to ``$CDP_WRITE_KEY``.
        host: Where to POST ``/v1/batch``; defaults to ``$CDP_HOST``, else
            ``https://cdp.customer.io``.
        max_events_in_batch: A flush starts when this many messages are queued.
        flush_interval: Seconds since the last flush after which queued messages go.
        max_queue_size: Messages held at most; beyond it new ones are dropped
            (``queue_full``) rather than blocking the caller.
        on_error: Called with every ``DeliveryError``, in the sender's thread or the
            caller's.
        on_flush: Called with the wire messages of every delivered batch.
        max_retries: Retries of a batch after network errors, 408, 429 and 5xx.
        timeout: Seconds one HTTP request may take (connect and read).
        gzip: Compress request bodies (Segment accepts it; Customer.io does not say).
        send: False runs everything but the HTTP request (tests, development).
        flush_triggers: Call types that start a flush as soon as they are queued.
        shutdown_timeout: Seconds ``close()``, ``flush()`` without a timeout, and the
            exit hook may spend delivering.
        buffer: ``"memory"``, or ``"sqlite:PATH"`` for a file that survives the
            process being killed (README "Surviving crashes").
        max_buffer_bytes: The bound on the SQLite buffer's files; beyond it new
            messages are dropped (``queue_full``).
        transport: Replaces the HTTP transport (tests); see ``cdp_logging.typing``.

    Raises:
        ValueError: an option is invalid, or there is no write key at all.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        *,
        host: str | None = None,
        max_events_in_batch: int = DEFAULT_MAX_EVENTS_IN_BATCH,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        on_error: ErrorCallback | None = None,
        on_flush: FlushCallback | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        gzip: bool = False,
        send: bool = True,
        flush_triggers: Iterable[str] | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        buffer: str = DEFAULT_BUFFER,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        transport: Transport | None = None,
    ) -> None:
        options = build_options(
            write_key=write_key,
            host=host,
            max_events_in_batch=max_events_in_batch,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            on_error=on_error,
            on_flush=on_flush,
            max_retries=max_retries,
            timeout=timeout,
            gzip=gzip,
            send=send,
            flush_triggers=flush_triggers,
            shutdown_timeout=shutdown_timeout,
            buffer=buffer,
            max_buffer_bytes=max_buffer_bytes,
        )
        self._options = options
        self._scrub = _scrubber(options.write_key)
        self._reporter = Reporter(options.on_error, self._scrub)
        self._triggers = options.flush_triggers
        if transport is None:
            transport = RequestsTransport(options.endpoint, options.write_key, gzip=options.gzip)
        self._sender = Sender(options, transport, self._reporter, self._scrub)

    def __repr__(self) -> str:
        state = "closed" if self._sender.closed else "open"
        return f"<Analytics host={self._options.host!r} {state}>"

    @property
    def options(self) -> Options:
        """The validated settings (the write key is left out of its repr)."""
        return self._options

    @property
    def closed(self) -> bool:
        return self._sender._closed  # read at every logging call: one attribute, no hop

    # -- the six calls --------------------------------------------------------------

    def identify(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Say who a user is and what they are like (traits)."""
        return self._call(
            "identify",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "traits": traits,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def track(
        self,
        user_id: str | int | None = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record that a user did something (``event``)."""
        return self._call(
            "track",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "event": event,
                "properties": properties,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def page(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record a web page view."""
        return self._view("page", locals())

    def screen(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record a mobile or app screen view."""
        return self._view("screen", locals())

    def group(
        self,
        user_id: str | int | None = None,
        group_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Put a user in a group (a company, an account)."""
        return self._call(
            "group",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "group_id": group_id,
                "traits": traits,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def alias(
        self,
        previous_id: str | int | None = None,
        user_id: str | int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Merge two identities: ``previous_id`` becomes ``user_id``."""
        return self._call(
            "alias",
            {
                "previous_id": previous_id,
                "user_id": user_id,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def _view(self, call_type: str, arguments: dict[str, Any]) -> Future[dict[str, Any]]:
        callback = arguments.pop("callback")
        arguments.pop("self")
        return self._call(call_type, arguments, callback)

    def _call(
        self, call_type: str, fields: dict[str, Any], callback: Callback | None
    ) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        self.submit(call_type, fields, time.time(), strict=True, future=future, callback=callback)
        return future

    # -- the path every front door takes ---------------------------------------------

    def submit(
        self,
        call_type: object,
        fields: Mapping[str, Any],
        created: float,
        *,
        strict: bool,
        future: Future[dict[str, Any]] | None = None,
        callback: Callback | None = None,
        closed_ok: bool = False,
    ) -> bool | None:
        """Build, serialise and queue one message; report instead of raising.

        This is the handler's and processor's entry point; applications use the six
        calls. Returns whether the message was queued, or None, unreported, when it
        was refused because the client is closed and *closed_ok* says the caller will
        send it elsewhere (the handler, which reopens a client ``dictConfig`` closed).
        """
        sender = self._sender
        if sender._pid != getpid():  # a forked child no fork hook has reset yet
            sender.ensure_process()
        try:
            built = _calls.build(call_type, fields, created, strict=strict)
        except Exception as error:  # noqa: BLE001 - a value no rule foresaw: report, never raise
            built = DeliveryError(
                INVALID_MESSAGE,
                f"{call_type}: could not serialise the message "
                f"({type(error).__name__}: {self._scrub(str(error))[:200]})",
                messages=[],
            )
        if not isinstance(built, bytes):
            self._refuse(built, future, callback)
            return False
        if _capture.capturing() and self._captured(built, future, callback):
            return True
        entry: bytes | Tracked = built
        if future is not None or callback is not None:
            entry = Tracked(built, future, callback)
        refused = sender.submit(entry, call_type in self._triggers)
        if refused is None:
            return True
        if closed_ok and refused == CLOSED:
            return None
        if refused == QUEUE_FULL and self._options.buffer_path is not None:
            reason = (
                f"the buffer {self._options.buffer_path} is at max_buffer_bytes="
                f"{self._options.max_buffer_bytes} (or max_queue_size="
                f"{self._options.max_queue_size} wait to be written): {self._options.host} "
                "is not taking messages as fast as they come; check the network or raise them"
            )
        elif refused == QUEUE_FULL:
            reason = (
                f"the queue already holds max_queue_size={self._options.max_queue_size} "
                f"messages: {self._options.host} is not taking them as fast as they come; "
                "check the network or raise max_queue_size"
            )
        else:
            reason = "the client was closed; messages logged after close() are not sent"
        wants = future is not None or callback is not None or self._reporter.wants_errors
        messages = [_calls.decode(built)] if wants else []
        self._refuse(DeliveryError(refused, reason, messages=messages), future, callback)
        return False

    def _captured(
        self, built: bytes, future: Future[dict[str, Any]] | None, callback: Callback | None
    ) -> bool:
        """Hand *built* to an active capture (cdp_logging.testing) instead of the queue."""
        message = _capture.offer(built)
        if message is None:
            return False
        resolve_call(future, callback, None, message, self._scrub)
        return True

    def _refuse(
        self,
        error: DeliveryError,
        future: Future[dict[str, Any]] | None,
        callback: Callback | None,
    ) -> None:
        self._reporter.report(error, 1)
        message = error.messages[0] if error.messages else {}
        resolve_call(future, callback, error, message, self._scrub)

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued before this call.

        Returns True once every message accepted before the call is settled (delivered,
        or failed and reported), False if *timeout* (default ``shutdown_timeout``)
        seconds passed first. Never waits longer than that.
        """
        return self._sender.flush(self._timeout(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (within *timeout*, default ``shutdown_timeout``) and stop.

        Idempotent. Messages still undelivered at the deadline are reported with code
        ``shutdown_timeout``; calls after close are reported with code ``closed``.
        """
        self._sender.close(self._timeout(timeout))

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` for asyncio: the wait runs in a worker thread, so the loop keeps running.

        .. versionadded:: 0.2.0
        """
        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> None:
        """``close`` for asyncio, waiting in a worker thread, never on the loop.

        .. versionadded:: 0.2.0
        """
        await asyncio.to_thread(self.close, timeout)

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._options.shutdown_timeout
        return max(0.0, float(timeout))

    def stats(self) -> dict[str, Any]:
        """Counters since this client started (in this process).

        ``queued`` messages were accepted into the queue; each ends ``delivered``
        (or ``not_sent`` with send=False) or ``failed``; ``dropped`` ones never got in;
        ``pending`` are queued or in flight now; ``errors`` counts messages by code.
        """
        numbers: dict[str, Any] = self._sender.stats()
        errors = self._reporter.counts()
        numbers["dropped"] = sum(n for code, n in errors.items() if code in _DROP_CODES)
        numbers["failed"] = sum(n for code, n in errors.items() if code not in _DROP_CODES)
        numbers["errors"] = errors
        return numbers

    def __enter__(self) -> Analytics:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# Registered after logging's own atexit hook (logging is imported first), so it runs
# before logging.shutdown(): every sender, including one a dictConfig replaced and no
# longer in logging's handler list, delivers within its shutdown_timeout.
atexit.register(close_all)
