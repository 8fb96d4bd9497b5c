"""FastAPI, served by uvicorn: ``uvicorn --app-dir examples fastapi_app:app``.

The logging call only queues the message (microseconds, no I/O), so it is safe to make
straight from an ``async def`` endpoint: it never blocks the event loop, however slow
the CDP is. Key and host from the environment.

Flush in the lifespan's shutdown: after its graceful shutdown uvicorn re-raises the
SIGTERM it caught (0.29 and later), which ends the process without running exit hooks.
The flush runs in a thread, so the event loop is not blocked while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import cdp_logging
from cdp_logging.asgi import AnalyticsMiddleware

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler"}},
        "loggers": {"api": {"handlers": ["cdp"], "level": "INFO"}},
    }
)
log = logging.getLogger("api")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await asyncio.to_thread(cdp_logging.flush, 5.0)


app = FastAPI(lifespan=lifespan)
# Every event tracked during a request carries its ip, user agent, locale and page.
app.add_middleware(AnalyticsMiddleware)


@app.get("/articles/{article_id}")
async def read_article(article_id: int, user: str = "anonymous") -> dict[str, int]:
    log.info(
        "page",
        extra={
            "cdp": {
                "anonymous_id": user,
                "name": "Article",
                "properties": {"article_id": article_id},
            }
        },
    )
    return {"article_id": article_id}
