"""Product analytics (Segment / Customer.io CDP calls) sent by logging.

``logger.info("track", extra={"cdp": {...}})`` reaches ``AnalyticsHandler``, which turns
it into a CDP message and hands it to a background sender; structlog users add
``AnalyticsProcessor``. ``Analytics`` is the client both share.
"""

from __future__ import annotations

from ._client import Analytics
from ._context import bind_context, bound_context, clear_context, get_context
from ._errors import DeliveryError
from ._flushing import aflush, flush, flushing
from ._handler import AnalyticsHandler
from ._processor import AnalyticsProcessor
from ._version import __version__

__all__ = [
    "Analytics",
    "AnalyticsHandler",
    "AnalyticsProcessor",
    "DeliveryError",
    "__version__",
    "aflush",
    "bind_context",
    "bound_context",
    "clear_context",
    "flush",
    "flushing",
    "get_context",
]
