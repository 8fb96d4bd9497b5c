"""Product analytics (Segment / Customer.io CDP calls) sent by logging.

``logger.info("track", extra={"cdp": {...}})`` reaches ``AnalyticsHandler``, which turns
it into a CDP message and hands it to a background sender; structlog users add
``AnalyticsProcessor``. ``Analytics`` is the client both share.

The names are loaded on first use (PEP 562), so that each layer costs only what it
needs: ``import cdp_logging`` imports neither structlog (until ``AnalyticsProcessor``
is first looked up) nor requests (until ``Analytics`` or ``AnalyticsHandler`` is), and
``cdp_logging.collector``, which a test suite or another SDK's developer may run alone,
loads none of the sending side.
"""

from __future__ import annotations

import atexit
import importlib
import logging  # before the exit hook below: see there
import sys
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._client import Analytics
    from ._core.context import bind_context, bound_context, clear_context, get_context
    from ._core.errors import DeliveryError
    from ._core.retry import RetryPolicy
    from ._delivery.flushing import aflush, flush, flushing
    from ._handler import AnalyticsHandler
    from ._processor import AnalyticsProcessor

__all__ = [
    "Analytics",
    "AnalyticsHandler",
    "AnalyticsProcessor",
    "DeliveryError",
    "RetryPolicy",
    "__version__",
    "aflush",
    "bind_context",
    "bound_context",
    "clear_context",
    "flush",
    "flushing",
    "get_context",
]

_HOMES = {
    "Analytics": "._client",
    "AnalyticsHandler": "._handler",
    "AnalyticsProcessor": "._processor",
    "DeliveryError": "._core.errors",
    "RetryPolicy": "._core.retry",
    "aflush": "._delivery.flushing",
    "bind_context": "._core.context",
    "bound_context": "._core.context",
    "clear_context": "._core.context",
    "flush": "._delivery.flushing",
    "flushing": "._delivery.flushing",
    "get_context": "._core.context",
}


def _deliver_at_exit() -> None:
    """Every client delivers what it holds (``_core.process.close_all``), if any was made.

    Registered here, when the package is imported, and not when the sending side is
    first loaded: atexit runs hooks last-registered first, so an application hook
    registered after ``import cdp_logging`` still runs before ours and its events are
    delivered with the rest. It is registered after logging's own hook (logging is
    imported above), so it runs before ``logging.shutdown()``: every sender, including
    one a dictConfig replaced and no longer in logging's handler list, delivers within
    its shutdown_timeout.
    """
    lifecycle = sys.modules.get(f"{__name__}._core.process")
    if lifecycle is not None:
        lifecycle.close_all()


atexit.register(_deliver_at_exit)
del logging


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
