"""No bleed under real servers (issue #10): a request's context reaches its own events only.

Each server runs ``tests/no_bleed_app.py``; 50 requests are sent at once, each as its
own user, and the view tracks without passing an id. At the (strict) collector, every
event must carry exactly its own request's who and where, and an event logged meanwhile
by a thread or task that is in no request must carry none. Requests differ in which
fields they have at all (a user or an anonymous id, a referrer, a locale), so a field
left behind by an earlier request on the same thread would show up on a later one.
"""

from __future__ import annotations

import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from cdp_logging import __version__
from cdp_logging.collector import Collector

from .conftest import ROOT
from .test_frameworks import free_port, server

N = 50
LIBRARY = {"name": "cdp_logging", "version": __version__}
IDENTIFYING = ("userId", "anonymousId", "context")


def request_headers(n: int) -> dict[str, str]:
    """Even requests are a signed-in user, odd ones an analytics.js visitor's cookie."""
    headers = {"User-Agent": f"client-{n}"}
    if n % 2 == 0:
        headers["X-User"] = f"u{n}"
    else:
        headers["Cookie"] = f"ajs_anonymous_id=%22anon-{n}%22"  # JSON-quoted, as analytics.js
    if n % 3 == 0:
        headers["Referer"] = f"http://ref.example/{n}"
    if n % 4 == 0:
        headers["Accept-Language"] = f"lang-{n},en;q=0.5"
    return headers


def expected(n: int, port: int) -> dict[str, Any]:
    """Request n's track, as the collector must have it (ids, context; no more, no less)."""
    page = {"path": f"/r/{n}", "url": f"http://127.0.0.1:{port}/r/{n}?n={n}", "search": f"?n={n}"}
    if n % 3 == 0:
        page["referrer"] = f"http://ref.example/{n}"
    context: dict[str, Any] = {
        "ip": "127.0.0.1",
        "userAgent": f"client-{n}",
        "page": page,
        "library": LIBRARY,
    }
    if n % 4 == 0:
        context["locale"] = f"lang-{n}"
    ids = {"userId": f"u{n}"} if n % 2 == 0 else {"anonymousId": f"anon-{n}"}
    return {**ids, "context": context}


def get(port: int, n: int) -> dict[str, Any]:
    answer = requests.get(
        f"http://127.0.0.1:{port}/r/{n}?n={n}", headers=request_headers(n), timeout=30
    )
    assert 200 == answer.status_code, answer.text
    served: dict[str, Any] = answer.json()
    return served


def serve_and_check(
    command: list[str], ready: str, collector: Collector, port: int, **options: Any
) -> list[dict[str, Any]]:
    """Start the server, send N requests at once, stop it; check every event delivered."""
    with (
        server(command, ready, collector, cwd=ROOT, **options),
        ThreadPoolExecutor(max_workers=N) as pool,
    ):
        served = list(pool.map(lambda n: get(port, n), range(N)))

    assert 0 == collector.counts()["rejected_requests"]
    messages = collector.messages()
    requested = {m["properties"]["n"]: m for m in messages if m["event"] == "Request"}
    assert set(range(N)) == set(requested)
    for n, message in requested.items():
        shown = {key: message[key] for key in IDENTIFYING if key in message}
        assert expected(n, port) == shown, f"request {n}"
    outside = [m for m in messages if m["event"] == "Outside"]
    assert {f"outside-{n}" for n in range(0, N, 5)} == {m["userId"] for m in outside}
    for message in outside:
        assert {"library": LIBRARY} == message["context"]
        assert "anonymousId" not in message
    assert N + len(outside) == len(messages)
    # Threads were reused: some thread of some process served more than one request.
    per_thread: dict[tuple[int, int], int] = {}
    for answer in served:
        key = (answer["pid"], answer["thread"])
        per_thread[key] = per_thread.get(key, 0) + 1
    assert max(per_thread.values()) > 1
    return served


def gunicorn(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", *args]


@pytest.mark.parametrize(
    ("worker", "app"),
    [
        (["-k", "sync", "-w", "2"], "tests.no_bleed_app:flask_app(pair=False)"),
        (["-k", "gthread", "-w", "2", "--threads", "4"], "tests.no_bleed_app:flask_app()"),
    ],
    ids=["sync", "gthread"],
)
def test_flask_under_gunicorn(collector: Collector, worker: list[str], app: str) -> None:
    """gunicorn sync (one thread a worker, reused for every request) and gthread (4 pool
    threads a worker, requests paired while bound): each event carries its own request."""
    port = free_port()

    served = serve_and_check(gunicorn(port, *worker, app), "Booting worker", collector, port)

    if "gthread" in worker:
        assert sum(answer["overlapped"] for answer in served) >= N // 2


def test_fastapi_under_uvicorn(collector: Collector) -> None:
    """uvicorn, one event loop: request tasks bound at once, each awaiting a partner
    between binding and tracking, still send only their own context."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--port",
        str(port),
        "tests.no_bleed_app:fastapi_app",
    ]

    served = serve_and_check(
        command, "Uvicorn running", collector, port, exit_codes=(0, -signal.SIGTERM)
    )

    assert sum(answer["overlapped"] for answer in served) >= N // 2
    assert 1 == len({answer["thread"] for answer in served})  # all on one loop's thread


def test_django_under_gunicorn_gthread(collector: Collector) -> None:
    """Django's middleware under gunicorn gthread, as Django is deployed: pool threads
    reused across requests, the user from CDP_USER_ID, requests paired while bound."""
    port = free_port()
    command = gunicorn(
        port, "-k", "gthread", "-w", "1", "--threads", "4", "tests.no_bleed_app:django_app()"
    )

    served = serve_and_check(command, "Booting worker", collector, port)

    assert sum(answer["overlapped"] for answer in served) >= N // 2
