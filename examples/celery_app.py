"""Celery: flush at the end of every task.

Celery's prefork pool ends its child processes with ``os._exit``, which skips exit
hooks, and may recycle them between tasks; a worker can also be killed between tasks.
Connecting ``cdp_logging.flush`` to ``task_postrun`` delivers each task's events when
the task ends. (Any task runner works the same way: decorate the task function with
``@cdp_logging.flushing()``.)

Runnable without a broker server: kombu's filesystem transport, in CELERY_BROKER_DIR.
``celery -A celery_app worker --pool=prefork -c 2`` from examples/, then
``python -c "import celery_app; celery_app.send_invoice.delay('u1')"``.
"""

from __future__ import annotations

import logging
import logging.config
import os
import tempfile
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_postrun

import cdp_logging

BROKER_DIR = Path(os.environ.get("CELERY_BROKER_DIR", Path(tempfile.gettempdir()) / "cdp-celery"))
(BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
(BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)

app = Celery(
    "billing",
    broker="filesystem://",
    broker_transport_options={
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Its exchange tables too: by default kombu writes them to ./control, which put
        # broker files into whatever directory the worker was started from.
        "control_folder": str(BROKER_DIR / "control"),
    },
)

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


@task_postrun.connect
def deliver_after_task(**_: Any) -> None:
    cdp_logging.flush(timeout=2)


@app.task
def send_invoice(user_id: str) -> str:
    log.info("track", extra={"user_id": user_id, "event": "Invoice Sent"})
    return user_id
