"""A WSGI app for the gunicorn fork test: configured at import, so --preload forks it."""

from __future__ import annotations

import logging
import logging.config
import os
from collections.abc import Callable, Iterable
from typing import Any

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cdp": {
                "class": "cdp_logging.AnalyticsHandler",
                "flush_interval": float(os.environ.get("CDP_TEST_FLUSH_INTERVAL", "60")),
                "max_events_in_batch": 1000,
                # The shared-file test (test_durable) gives the workers one SQLite buffer.
                "buffer": os.environ.get("CDP_TEST_BUFFER", "memory"),
            }
        },
        "loggers": {"app": {"handlers": ["cdp"], "level": "INFO", "propagate": False}},
    }
)
log = logging.getLogger("app")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    request_id = environ.get("QUERY_STRING", "")
    log.info(
        "track",
        extra={"user_id": request_id, "event": "Served", "properties": {"pid": os.getpid()}},
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
