"""Flask, served by gunicorn: ``gunicorn --chdir examples -w 2 flask_app:app``.

Logging is configured at import, so it also works with ``--preload``: each worker
delivers its own events, and gunicorn's graceful stop (SIGTERM) lets every worker's
exit hook deliver what it still holds. Key and host from CDP_WRITE_KEY / CDP_HOST.

Its events follow ``tracking-plan.json`` (README, "Tracking plan"): the handler checks
each one at the logging call, and ``shop_tracking`` (``cdp-logging plan codegen
tracking-plan.json -o shop_tracking.py``) makes a wrong property a mypy error here.
The plan needs the validator: ``pip install 'cdp_logging[plan]'``.
"""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from typing import Any

from flask import Flask, abort, request
from shop_tracking import order_completed

from cdp_logging.wsgi import AnalyticsMiddleware

PLAN = Path(__file__).resolve().parent / "tracking-plan.json"

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "cdp": {
                "class": "cdp_logging.AnalyticsHandler",
                "max_events_in_batch": 50,
                # Delivered, but counted and told on stderr, if an event breaks the plan.
                "tracking_plan": str(PLAN),
                "plan_mode": "warn",
            },
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
    total = request.args.get("total", type=float)
    if total is None:
        abort(400)
    # No user_id here: the middleware bound it for this request.
    log.info("track", extra=order_completed(total=total))
    return {"status": "ok"}
