"""Framework examples, run for real against the collector: servers started, requests
served, a graceful stop, and exactly what was logged delivered."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, line_reader

EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(
    command: list[str],
    ready: str,
    collector: Collector,
    *,
    cwd: Path = EXAMPLES,
    stop: signal.Signals = signal.SIGTERM,
    exit_codes: tuple[int, ...] = (0,),
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """Start *command*, wait (bounded) for a line containing *ready*, stop it gracefully."""
    env = {
        **os.environ,
        "CDP_WRITE_KEY": WRITE_KEY,
        "CDP_HOST": collector.url,
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = line_reader(process.stdout)
    seen: list[str] = []
    try:
        while not any(ready in line for line in seen):
            seen.append(lines.get(timeout=60))  # bounded: raises queue.Empty after 60 s
        yield process
        process.send_signal(stop)
        assert process.wait(timeout=60) in exit_codes
    finally:
        process.kill()
        process.wait(timeout=10)


class TestServerless:
    def test_each_invocation_is_delivered_before_it_returns(self, collector: Collector) -> None:
        """The handler flushes per invocation: all arrive though the process ends with os._exit."""
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "serverless_handler.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "CDP_WRITE_KEY": WRITE_KEY, "CDP_HOST": collector.url},
        )

        assert 0 == done.returncode, done.stderr
        assert ["user-0", "user-1", "user-2"] == sorted(m["userId"] for m in collector.messages())


class TestFlaskGunicorn:
    def test_graceful_stop_delivers_every_request(self, collector: Collector) -> None:
        """Flask under gunicorn with 2 workers: N requests, SIGTERM, exactly N delivered."""
        port = free_port()
        n = 100
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "flask_app:app",
        ]
        with server(command, "Booting worker", collector), requests.Session() as session:
            for i in range(n):
                answer = session.post(
                    f"http://127.0.0.1:{port}/checkout/u{i}?total=9.5", timeout=10
                )
                assert 200 == answer.status_code

        assert {f"u{i}" for i in range(n)} == {m["userId"] for m in collector.messages()}
        assert n == len(collector.messages())
        assert {9.5} == {m["properties"]["total"] for m in collector.messages()}
        # The view passes no user id: user and page come from the WSGI middleware.
        for message in collector.messages():
            page = message["context"]["page"]
            assert f"/checkout/{message['userId']}" == page["path"]
            assert "?total=9.5" == page["search"]
            assert "127.0.0.1" == message["context"]["ip"]


class TestFastAPIUvicorn:
    def test_logging_never_blocks_the_event_loop(self, collector: Collector) -> None:
        """With the CDP taking 3 s a request, async endpoints still answer at once."""
        collector.faults.latency(3.0, count=1)
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "--port", str(port), "fastapi_app:app"]
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is its clean exit.
        with (
            server(command, "Uvicorn running", collector, exit_codes=(0, -signal.SIGTERM)),
            requests.Session() as session,
        ):
            started = time.monotonic()
            for i in range(30):
                answer = session.get(
                    f"http://127.0.0.1:{port}/articles/{i}", headers={"X-User": f"a{i}"}, timeout=10
                )
                assert 200 == answer.status_code
            elapsed = time.monotonic() - started
            assert collector.wait_for_requests(1, timeout=5)  # the slow request is under way

        assert elapsed < 2.0
        assert 30 == len(collector.messages())
        assert {"Article"} == {m["name"] for m in collector.messages()}
        # The view passes no id: user and page come from the ASGI middleware.
        for message in collector.messages():
            article = message["properties"]["article_id"]
            assert f"a{article}" == message["userId"]
            assert f"/articles/{article}" == message["context"]["page"]["path"]


class TestDjango:
    def test_logging_setting_and_runserver(self, collector: Collector) -> None:
        """Django's LOGGING setting builds the handler; events are delivered when the
        development server is stopped with Ctrl-C."""
        port = free_port()
        command = [
            sys.executable,
            str(EXAMPLES / "django_app.py"),
            "runserver",
            "--noreload",
            f"127.0.0.1:{port}",
        ]
        with (
            server(command, "Quit the server", collector, stop=signal.SIGINT),
            requests.Session() as s,
        ):
            for i in range(20):
                assert 200 == s.get(f"http://127.0.0.1:{port}/signup/d{i}", timeout=10).status_code
                s.cookies.set("user", f"d{i}")  # signed in, as a session would say
                assert 200 == s.get(f"http://127.0.0.1:{port}/plans", timeout=10).status_code

        types = sorted(m["type"] for m in collector.messages())
        assert ["identify"] * 20 + ["track"] * 40 == types
        # The plans view passes no user id: the Django middleware bound user and page.
        viewed = [m for m in collector.messages() if m.get("event") == "Plans Viewed"]
        assert [f"d{i}" for i in range(20)] == sorted(
            (m["userId"] for m in viewed), key=lambda user: int(user[1:])
        )
        assert {"/plans"} == {m["context"]["page"]["path"] for m in viewed}
