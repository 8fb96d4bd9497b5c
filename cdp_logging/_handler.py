"""``AnalyticsHandler``: the stdlib logging front door.

A record is an analytics record when it carries a mapping under ``cdp``, or when its
message is exactly a call type and it carries flat payload keys. Every other record is
ignored here (it still reaches the application's other handlers as a log line).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from threading import get_ident
from typing import Any

from ._calls import fields_from_record
from ._client import Analytics
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
)
from ._sender import exit_hook_ran, process_lock, sending_threads
from ._transport import Transport

__all__ = ["AnalyticsHandler"]


def _relist(handler: logging.Handler) -> None:
    """Put a reopened handler back on the list ``logging.shutdown`` flushes at exit.

    dictConfig took it off, so a record logged after our exit hook ran would be lost.
    Private API, stable since 2.7; skipped if absent. Not under our lock: it takes
    logging's module lock.
    """
    listed = getattr(logging, "_handlerList", None)
    add_ref = getattr(logging, "_addHandlerRef", None)
    if not callable(add_ref) or listed is None:
        return
    if not any(ref() is handler for ref in list(listed)):
        add_ref(handler)


class AnalyticsHandler(logging.Handler):
    """Send analytics records to a CDP; ignore every other record.

    Every option is a plain keyword (the same names as ``Analytics``), so
    ``logging.config.dictConfig`` can build it with ``"class":
    "cdp_logging.AnalyticsHandler"`` and no factory. Pass ``client=`` to share one
    ``Analytics`` (one queue, one connection pool) between several front doors; the
    handler then flushes it but leaves closing it to its owner.

    Like ``logging.FileHandler``, a handler that was closed (``dictConfig`` closes the
    handlers it replaces, even those still attached to a logger it did not mention)
    opens a new client when an analytics record reaches it again, so those records are
    delivered, and flushed at exit, instead of being lost.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        *,
        level: int | str = logging.NOTSET,
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
        client: Analytics | None = None,
    ) -> None:
        super().__init__(level)
        self._options: dict[str, Any] = {
            "host": host,
            "max_events_in_batch": max_events_in_batch,
            "flush_interval": flush_interval,
            "max_queue_size": max_queue_size,
            "on_error": on_error,
            "on_flush": on_flush,
            "max_retries": max_retries,
            "timeout": timeout,
            "gzip": gzip,
            "send": send,
            "flush_triggers": flush_triggers,
            "shutdown_timeout": shutdown_timeout,
            "buffer": buffer,
            "max_buffer_bytes": max_buffer_bytes,
            "transport": transport,
        }
        self._owns_client = client is None
        self._client = client if client is not None else Analytics(write_key, **self._options)
        # Kept only to reopen after close; never shown (repr is logging's default).
        self._write_key = self._client.options.write_key

    @property
    def client(self) -> Analytics:
        """The ``Analytics`` this handler sends through."""
        return self._client

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter, then emit without taking the handler's lock.

        ``Handler.handle`` serialises every emit through ``self.lock``; ours needs no
        lock (the queue has its own, held for an append), and an RLock round trip is a
        measurable share of a logging call. Filters still apply, including 3.12's
        record-replacing ones.
        """
        if self.filters:
            result = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):
                record = result
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if get_ident() in sending_threads:
                return  # our own or the HTTP stack's record: never re-enter
            found = fields_from_record(record)
            if found is None:
                return
            call_type, fields, strict = found
            queued = self._client.submit(
                call_type, fields, record.created, strict=strict, closed_ok=self._owns_client
            )
            if queued is None:  # closed: by dictConfig, maybe while this call was on its way
                client = self._reopen()
                client.submit(call_type, fields, record.created, strict=strict)
                if exit_hook_ran():
                    # Logged after our exit hook and logging.shutdown() (from an atexit
                    # hook that runs later): nothing will close this client, so send now,
                    # within shutdown_timeout; a later record reopens another.
                    client.close()
        except Exception:  # noqa: BLE001 - a logging call never raises into the app
            self.handleError(record)

    def _reopen(self) -> Analytics:
        # A lock of our own, not the handler's: logging.shutdown() holds that one while
        # our close() waits for delivery, so a logging call would wait with it, and
        # dictConfig takes it after logging's module lock, the opposite order to ours
        # below. Per pid, so a parent thread holding it at fork cannot block the child.
        with process_lock("reopen"):
            reopened = self._client.closed
            if reopened:
                self._client = Analytics(self._write_key, **self._options)
            client = self._client
        if reopened:
            _relist(self)
        return client

    def flush(self) -> None:
        """Deliver what is queued, waiting at most ``shutdown_timeout`` seconds."""
        self._client.flush()

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout`` and stop the sender.

        A shared ``client=`` is flushed, not closed: its owner closes it.
        """
        try:
            if self._owns_client:
                self._client.close()
            else:
                self._client.flush()
        finally:
            super().close()
