"""Flask, served by gunicorn: ``gunicorn --chdir examples -w 2 flask_app:app``.

Logging is configured at import, so it also works with ``--preload``: each worker
delivers its own events, and gunicorn's graceful stop (SIGTERM) lets every worker's
exit hook deliver what it still holds. Key and host from CDP_WRITE_KEY / CDP_HOST.
"""

from __future__ import annotations

import logging
import logging.config

from flask import Flask, request

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


@app.post("/checkout/<user_id>")
def checkout(user_id: str) -> dict[str, str]:
    log.info(
        "track",
        extra={
            "cdp": {
                "user_id": user_id,
                "event": "Order Completed",
                "properties": {"total": request.args.get("total", type=float)},
            }
        },
    )
    return {"status": "ok"}
