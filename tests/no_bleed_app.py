"""One app, three frameworks, for the no-bleed tests under real servers (issue #10).

Each factory wraps the same view in its framework's ``AnalyticsMiddleware``. The view
tracks without passing any id, so everything identifying in its event comes from what
the middleware bound for that request. While it is bound, the view holds the request
until another request is inside the view too (``pair``), so that requests served by
several threads, or by tasks of one event loop, really are in flight together between
binding and tracking. It also has a thread (WSGI) or a task (ASGI) that is in no
request log an event of its own, while the request waits: that one must carry nothing.

Run by tests/test_no_bleed.py as, e.g., ``gunicorn -k gthread --threads 4
'tests.no_bleed_app:flask_app()'`` or ``uvicorn --factory tests.no_bleed_app:fastapi_app``.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import queue
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

# How long a request waits for a partner (a barrier's timeout, not a delay: with 50
# requests in flight a partner comes within milliseconds; only a last odd one waits).
PAIR_TIMEOUT = 1.0
OUTSIDE_TIMEOUT = 10.0

log = logging.getLogger("no_bleed")
urlpatterns: list[Any] = []  # Django's ROOT_URLCONF is this module; filled by django_app()


def configure_logging() -> None:
    """The handler as a user configures it; key and host from CDP_WRITE_KEY / CDP_HOST."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler"}},
            "loggers": {"no_bleed": {"handlers": ["cdp"], "level": "INFO", "propagate": False}},
        }
    )


def track_request(n: int) -> None:
    log.info("track", extra={"cdp": {"event": "Request", "properties": {"n": n}}})


def track_outside(n: int) -> None:
    log.info("track", extra={"cdp": {"user_id": f"outside-{n}", "event": "Outside"}})


def served(overlapped: bool) -> dict[str, Any]:
    """What the test checks the server did: which process and thread, and whether paired."""
    return {"pid": os.getpid(), "thread": threading.get_ident(), "overlapped": overlapped}


def header_user(request: Any) -> str | None:
    """Django's CDP_USER_ID: the user a header names (a real app reads its session)."""
    user = request.META.get("HTTP_X_USER")
    return str(user) if user else None


# -- threads (gunicorn sync and gthread) ---------------------------------------------------


class Pairing:
    """Lets a request on through once a second one is waiting too, or after the timeout."""

    def __init__(self) -> None:
        self._barrier = threading.Barrier(2, timeout=PAIR_TIMEOUT)
        self._lock = threading.Lock()

    def wait(self) -> bool:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            with self._lock:
                if self._barrier.broken:
                    self._barrier.reset()
            return False
        return True


class OutsideThread:
    """A thread that is in no request: it logs when asked, while the asking request waits."""

    def __init__(self) -> None:
        self._asks: queue.Queue[tuple[int, threading.Event]] = queue.Queue()
        threading.Thread(target=self._run, name="outside", daemon=True).start()

    def _run(self) -> None:
        while True:
            n, done = self._asks.get()
            track_outside(n)
            done.set()

    def log(self, n: int) -> None:
        done = threading.Event()
        self._asks.put((n, done))
        if not done.wait(OUTSIDE_TIMEOUT):
            raise RuntimeError("the outside thread did not log in time")


def thread_view(n: int, pairing: Pairing | None, outside: OutsideThread) -> dict[str, Any]:
    overlapped = pairing.wait() if pairing is not None else False
    track_request(n)
    if n % 5 == 0:
        outside.log(n)
    return served(overlapped)


def flask_app(pair: bool = True) -> Any:
    """Flask under the WSGI middleware; ``pair=False`` for one-thread (sync) workers."""
    from flask import Flask

    from cdp_logging.wsgi import AnalyticsMiddleware

    configure_logging()
    pairing = Pairing() if pair else None
    outside = OutsideThread()
    app = Flask(__name__)

    @app.get("/r/<int:n>")
    def view(n: int) -> dict[str, Any]:
        return thread_view(n, pairing, outside)

    def user(environ: Mapping[str, Any]) -> str | None:
        return environ.get("HTTP_X_USER")

    app.wsgi_app = AnalyticsMiddleware(app.wsgi_app, user_id=user)  # type: ignore[method-assign]
    return app


def django_app() -> Any:
    """Django with the Django middleware, the user from CDP_USER_ID (a header here)."""
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="test-only",
        MIDDLEWARE=["cdp_logging.django.AnalyticsMiddleware"],
        CDP_USER_ID=f"{__name__}.header_user",
    )
    django.setup()
    configure_logging()
    pairing = Pairing()
    outside = OutsideThread()

    def view(request: HttpRequest, n: int) -> JsonResponse:
        return JsonResponse(thread_view(n, pairing, outside))

    urlpatterns[:] = [path("r/<int:n>", view)]
    return get_wsgi_application()


# -- asyncio tasks (uvicorn) ----------------------------------------------------------------


class AsyncPairing:
    """The same for tasks of one loop: the first waits, the second lets both on."""

    def __init__(self) -> None:
        self._waiting: asyncio.Future[None] | None = None

    async def wait(self) -> bool:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            self._waiting = None
            waiting.set_result(None)
            await asyncio.sleep(0)  # let the partner run its track first, in between ours
            return True
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting = mine
        try:
            await asyncio.wait_for(mine, PAIR_TIMEOUT)
        except asyncio.TimeoutError:
            if self._waiting is mine:
                self._waiting = None
            return False
        return True


def fastapi_app() -> Any:
    """FastAPI under the ASGI middleware, with a task of the lifespan's as the outsider."""
    from fastapi import FastAPI

    import cdp_logging
    from cdp_logging.asgi import AnalyticsMiddleware

    configure_logging()
    pairing = AsyncPairing()
    asks: asyncio.Queue[tuple[int, asyncio.Future[None]]] = asyncio.Queue()

    async def outsider() -> None:
        while True:
            n, done = await asks.get()
            track_outside(n)
            done.set_result(None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(outsider())
        yield
        task.cancel()
        await asyncio.to_thread(cdp_logging.flush, 5.0)

    app = FastAPI(lifespan=lifespan)

    @app.get("/r/{n}")
    async def view(n: int) -> dict[str, Any]:
        overlapped = await pairing.wait()
        track_request(n)
        if n % 5 == 0:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asks.put_nowait((n, done))
            await asyncio.wait_for(done, OUTSIDE_TIMEOUT)
        return served(overlapped)

    def user(scope: Mapping[str, Any]) -> str | None:
        for name, value in scope.get("headers") or ():
            if name == b"x-user":
                return bytes(value).decode()
        return None

    app.add_middleware(AnalyticsMiddleware, user_id=user)
    return app
