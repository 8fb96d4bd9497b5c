"""``AnalyticsProcessor``: the structlog front door.

Place it before the renderer (or before ``wrap_for_formatter`` / ``render_to_log_kwargs``
when structlog is routed into stdlib). It recognises the same two forms as the handler,
in structlog's spelling: ``log.info("track", user_id=..., event_name=...)`` and
``log.info("page", cdp={...})``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, MutableMapping
from typing import Any, Final, Literal

import structlog

from ._calls import EVENT_DICT_FLAT_KEYS, fields_from_event_dict
from ._client import Analytics
from ._handler import AnalyticsHandler
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
from ._report import warn
from ._transport import Transport

__all__ = ["AnalyticsProcessor"]

After = Literal["keep", "strip", "drop"]
_AFTER: Final = ("keep", "strip", "drop")


class AnalyticsProcessor:
    """A structlog processor that sends analytics events and passes the event on.

    Args:
        write_key, host, ...: The same options as ``Analytics``, for a client of its
            own (flushed at interpreter exit like every client).
        client: Share an existing ``Analytics`` instead.
        handler: Share the client of an ``AnalyticsHandler`` instead (follows the
            handler if it reopens its client after ``dictConfig`` closed it).
        after: What happens to an analytics event dict once it is queued:
            ``"keep"`` (default) passes it on unchanged, so the log line still shows
            the call, like a stdlib record reaching the app's other handlers;
            ``"strip"`` removes the payload keys (``cdp`` and the flat keys) so traits
            and properties stay out of log files; ``"drop"`` raises ``DropEvent``,
            except inside a ``ProcessorFormatter`` chain, where ``DropEvent`` would
            escape into logging as an error, so there it strips instead.

    The processor never raises into the application: a refused message is reported
    through ``on_error``, ``stats()`` and stderr, like everywhere else.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        *,
        client: Analytics | None = None,
        handler: AnalyticsHandler | None = None,
        after: After = "keep",
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
        if after not in _AFTER:
            raise ValueError(f"after must be one of {', '.join(_AFTER)}, got {after!r}")
        if client is not None and handler is not None:
            raise ValueError("pass client= or handler=, not both")
        self._after = after
        self._handler = handler
        self._client: Analytics | None = client
        if client is None and handler is None:
            self._client = Analytics(
                write_key,
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
                transport=transport,
            )

    @property
    def client(self) -> Analytics:
        """The ``Analytics`` this processor sends through."""
        if self._handler is not None:
            return self._handler.client
        assert self._client is not None
        return self._client

    def __repr__(self) -> str:
        return f"<AnalyticsProcessor after={self._after!r} {self.client!r}>"

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        try:
            found = fields_from_event_dict(event_dict)
            if found is None:
                return event_dict
            call_type, fields, strict = found
            self.client.submit(call_type, fields, time.time(), strict=strict)
        except Exception as error:  # noqa: BLE001 - never raise into the application
            warn(f"AnalyticsProcessor failed: {type(error).__name__}")
            return event_dict
        if self._after == "keep":
            return event_dict
        if self._after == "drop" and "_record" not in event_dict:
            raise structlog.DropEvent
        event_dict.pop("cdp", None)
        for key in EVENT_DICT_FLAT_KEYS:
            event_dict.pop(key, None)
        return event_dict
