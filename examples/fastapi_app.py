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
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

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


def current_user(scope: MutableMapping[str, Any]) -> str | None:
    """Who is asking; a real app decodes its session or token here (a header stands in)."""
    for name, value in scope.get("headers") or ():
        if name == b"x-user":
            return bytes(value).decode("utf-8", "replace")
    return None


app = FastAPI(lifespan=lifespan)
# Every event tracked during a request carries its user, ip, user agent, locale and page;
# a visitor with no user still has analytics.js's ajs_anonymous_id cookie.
app.add_middleware(AnalyticsMiddleware, user_id=current_user)


@app.get("/articles/{article_id}")
async def read_article(article_id: int) -> dict[str, int]:
    # No user or anonymous id here: the middleware bound them for this request.
    log.info("page", extra={"cdp": {"name": "Article", "properties": {"article_id": article_id}}})
    return {"article_id": article_id}
