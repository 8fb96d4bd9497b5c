"""Flask, served by gunicorn: ``gunicorn --chdir examples -w 2 flask_app:app``.

Logging is configured at import, so it also works with ``--preload``: each worker
delivers its own events, and gunicorn's graceful stop (SIGTERM) lets every worker's
exit hook deliver what it still holds. Key and host from CDP_WRITE_KEY / CDP_HOST.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

from flask import Flask, request

from cdp_logging.wsgi import AnalyticsMiddleware

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cdp": {"class": "cdp_logging.AnalyticsHandler", "max_events_in_batch": 50},
        },
        "loggers": {"shop": {"handlers": ["cdp"], "level": "INFO"}},
    }
)
log = logging.getLogger("shop")
app = Flask(__name__)


def current_user(environ: dict[str, Any]) -> str | None:
    """Who is asking; a real app reads its session here (the path stands in for one)."""
    path = str(environ.get("PATH_INFO", ""))
    return path.rsplit("/", 1)[-1] if path.startswith("/checkout/") else None


# Every event tracked during a request carries its user, ip, user agent and page.
app.wsgi_app = AnalyticsMiddleware(app.wsgi_app, user_id=current_user)  # type: ignore[method-assign]


@app.post("/checkout/<user_id>")
def checkout(user_id: str) -> dict[str, str]:
    # No user_id here: the middleware bound it for this request.
    log.info(
        "track",
        extra={
            "cdp": {
                "event": "Order Completed",
                "properties": {"total": request.args.get("total", type=float)},
            }
        },
    )
    return {"status": "ok"}
