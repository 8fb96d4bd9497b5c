"""Celery: who a task is for travels with it, and each task delivers when it ends.

``cdp_logging.celery.setup(app)`` carries what ``bind_context`` bound where a task was
sent (a web request's user, say) into the task, binds it while the task runs, and
flushes when each task ends: prefork children end with ``os._exit``, which skips exit
hooks, so the end of a task is where delivery must happen. No signal handler to write.

With a Redis on 127.0.0.1 (or CELERY_BROKER_URL), from examples/:
``celery -A celery_app worker --pool=prefork -c 2``, then
``python -c "import celery_app; celery_app.checkout('u1', 'inv-1')"``.
"""

from __future__ import annotations

import logging
import logging.config
import os

from celery import Celery

import cdp_logging
import cdp_logging.celery

app = Celery("billing", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
cdp_logging.celery.setup(app)

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        # A long interval on purpose: what delivers here is the flush at task end.
        "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler", "flush_interval": 60}},
        "loggers": {"billing": {"handlers": ["cdp"], "level": "INFO", "propagate": False}},
    }
)
log = logging.getLogger("billing")


@app.task
def send_invoice(invoice_id: str) -> str:
    # No user id here: it is the one bound where the task was sent.
    log.info("track", extra={"event": "Invoice Sent", "properties": {"invoice": invoice_id}})
    return invoice_id


@app.task
def nightly_report() -> None:
    # Sent with nothing bound (by a scheduler): it acts for no user.
    log.info("track", extra={"anonymous_id": "billing-worker", "event": "Report Built"})


def checkout(user_id: str, invoice_id: str) -> None:
    """What a web view does: the request's user is bound, the task is sent."""
    with cdp_logging.bound_context(user_id=user_id, context={"ip": "203.0.113.7"}):
        send_invoice.delay(invoice_id)
