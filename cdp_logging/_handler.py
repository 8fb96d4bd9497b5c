"""``AnalyticsHandler``: the stdlib logging front door.

A record is an analytics record when it carries a mapping under ``cdp``, or when its
message is exactly a call type and it carries flat payload keys. Every other record is
ignored here (it still reaches the application's other handlers as a log line).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from typing_extensions import Unpack

from ._client import Analytics, client_or_new
from ._compat import relist_handler
from ._core.calls import fields_from_record
from ._core.options import ClientOptions

__all__ = ["AnalyticsHandler"]


class AnalyticsHandler(logging.Handler):
    """Send analytics records to a CDP; ignore every other record.

    It takes the options of ``Analytics``, as plain keywords, so
    ``logging.config.dictConfig`` can build it with ``"class":
    "cdp_logging.AnalyticsHandler"`` and no factory. Pass ``client=`` to share one
    ``Analytics`` (one queue, one connection pool) between several front doors; the
    handler then flushes it but leaves closing it to its owner.

    Like ``logging.FileHandler``, a handler that was closed (``dictConfig`` closes the
    handlers it replaces, even those still attached to a logger it did not mention)
    reopens its client when an analytics record reaches it again, so those records are
    delivered, and flushed at exit, instead of being lost. A ``transport=`` passed in
    is the application's: the handler never closes it, and a reopened client uses it.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        client: Analytics | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        # The client first: Handler.__init__ puts the handler on the list that
        # logging.shutdown() flushes at exit, and a handler whose options were refused
        # must not be there, half made, to print a traceback at exit.
        self._client, self._owns_client = client_or_new(client, write_key, host, options)
        try:
            super().__init__(level)
        except BaseException:
            if self._owns_client:  # a bad level: the client we made has no other owner
                self._client.close()
            raise
        # Set by close(): the next record reopens the client, and the handler must then
        # be back on the list logging.shutdown() flushes at exit.
        self._unlisted = False

    @property
    def client(self) -> Analytics:
        """The ``Analytics`` this handler sends through."""
        return self._client

    def handle(self, record: logging.LogRecord, _from_emit: bool = False) -> bool:
        """Filter, then emit without taking the handler's lock.

        ``Handler.handle`` serialises every emit through ``self.lock``; ours needs no
        lock (the queue has its own, held for an append), and an RLock round trip is a
        measurable share of a logging call. Filters still apply, including 3.12's
        record-replacing ones.

        The emit is written here rather than called: the call was ~470 instructions of
        every logging call (callgrind). ``emit()`` comes back here past the filters, as
        ``Handler.emit`` applies none; a subclass that overrides ``emit`` gets a
        ``handle`` that calls it (``__init_subclass__``).
        """
        if self.filters and not _from_emit:
            passed = self._filtered(record)
            if passed is None:
                return False
            record = passed
        try:
            try:
                payload = record.__dict__.get("cdp")
                if type(payload) is dict:
                    # The usual record, recognised here: what fields_from_record answers
                    # for it, without its two calls (~1,000 instructions per record).
                    # `in` and a subscript, not get(): no method call (~150 instructions).
                    call_type = ("type" in payload and payload["type"]) or record.msg
                    fields: Mapping[str, Any] = payload
                    strict = True
                else:
                    found = fields_from_record(record)
                    if found is None:
                        return True
                    call_type, fields, strict = found
            except Exception as error:  # noqa: BLE001 - its payload raised: ours to report
                self._client.unreadable(error)
                return True
            self._client.submit(call_type, fields, record.created, strict)
            if self._unlisted:
                self._unlisted = False
                relist_handler(self)
        except Exception:  # noqa: BLE001 - a logging call never raises into the app
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        # This class's handle, not self.handle: a subclass's emit that calls ours must
        # not come back to itself through the handle __init_subclass__ gives it.
        AnalyticsHandler.handle(self, record, True)

    def _filtered(self, record: logging.LogRecord) -> logging.LogRecord | None:
        """The record the filters pass (3.12's may pass another in its place), or None."""
        result = self.filter(record)
        if not result:
            return None
        return result if isinstance(result, logging.LogRecord) else record

    def _filter_then_emit(self, record: logging.LogRecord, _from_emit: bool = False) -> bool:
        """``handle`` for a subclass that overrides ``emit``: filters, then its emit."""
        if self.filters:
            passed = self._filtered(record)
            if passed is None:
                return False
            record = passed
        self.emit(record)
        return True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # handle() has emit's work written in (see there); a subclass's own emit() must
        # still see every record, as logging promises, unless it defines handle itself.
        super().__init_subclass__(**kwargs)
        if cls.emit is not AnalyticsHandler.emit and "handle" not in vars(cls):
            cls.handle = AnalyticsHandler._filter_then_emit  # type: ignore[method-assign]

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Deliver what is queued; True once all of it is settled, False at *timeout*.

        ``logging`` calls ``flush()`` with no argument (``logging.shutdown``, a
        ``MemoryHandler`` target): that waits at most ``shutdown_timeout``. It means what
        ``Analytics.flush`` means, so a test or a serverless handler can hold the handler
        it configured, not its client.

        .. versionadded:: 0.2.0
        """
        return self._client.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """The client's counters (``Analytics.stats``): queued, delivered, failed by code...

        .. versionadded:: 0.2.0
        """
        return self._client.stats()

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout`` and stop the sender.

        A shared ``client=`` is flushed, not closed: its owner closes it.
        """
        try:
            if self._owns_client:
                self._unlisted = True  # first: a record may reopen while close() waits
                self._client.close(reopen=True)
            else:
                self._client.flush()
        finally:
            super().close()
