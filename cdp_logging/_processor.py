"""``AnalyticsProcessor``: the structlog front door.

Place it before the renderer (or before ``wrap_for_formatter`` / ``render_to_log_kwargs``
when structlog is routed into stdlib). It recognises the same two forms as the handler,
in structlog's spelling: ``log.info("track", user_id=..., event_name=...)`` and
``log.info("page", cdp={...})``.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any, Final, Literal

import structlog
from typing_extensions import Unpack

from ._client import Analytics, refuse_options_beside
from ._core.calls import EVENT_DICT_FLAT_KEYS, fields_from_event_dict
from ._core.options import ClientOptions
from ._core.report import warn
from ._handler import AnalyticsHandler

__all__ = ["AnalyticsProcessor"]

After = Literal["keep", "strip", "drop"]
_AFTER: Final = ("keep", "strip", "drop")


class AnalyticsProcessor:
    """A structlog processor that sends analytics events and passes the event on.

    Args:
        write_key, host, options: The same keywords as ``Analytics``, for a client
            of its own (flushed at interpreter exit like every client, and reopened,
            like the handler's, by an event that reaches it after the exit hook
            closed it).
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
        **options: Unpack[ClientOptions],
    ) -> None:
        if after not in _AFTER:
            raise ValueError(f"after must be one of {', '.join(_AFTER)}, got {after!r}")
        if client is not None and handler is not None:
            raise ValueError("pass client= or handler=, not both")
        shared = client is not None or handler is not None
        if shared:
            refuse_options_beside("client=/handler=", write_key, host, options)
        self._after = after
        self._handler = handler
        self._client: Analytics | None = client
        if not shared:
            self._client = Analytics(write_key, host, **options)

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
            try:
                found = fields_from_event_dict(event_dict)
            except Exception as error:  # noqa: BLE001 - its payload raised: ours to report
                self.client.unreadable(error)
                return event_dict
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
