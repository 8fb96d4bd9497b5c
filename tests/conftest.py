"""Shared fixtures: a real collector on 127.0.0.1 and clients that are always closed."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import cdp_logging
from cdp_logging import RetryPolicy

if TYPE_CHECKING:
    from cdp_logging.collector import Collector

WRITE_KEY = "test-key-5ecret-never-printed"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def collector() -> Iterator[Collector]:
    from cdp_logging.collector import Collector

    with Collector(write_keys=(WRITE_KEY,), strict=True) as running:
        yield running


# Backoff in milliseconds, so retry tests take milliseconds, not seconds.
FAST_RETRY = RetryPolicy(base=0.01, cap=0.05)


@pytest.fixture
def fast_retries() -> RetryPolicy:
    """Ask for it (or mark a test with usefixtures) and make_client's clients use FAST_RETRY."""
    return FAST_RETRY


@pytest.fixture
def make_client(
    collector: Collector, request: pytest.FixtureRequest
) -> Iterator[Callable[..., cdp_logging.Analytics]]:
    made: list[cdp_logging.Analytics] = []
    fast = "fast_retries" in request.fixturenames

    def make(**options: Any) -> cdp_logging.Analytics:
        options.setdefault("write_key", WRITE_KEY)
        options.setdefault("host", collector.url)
        options.setdefault("shutdown_timeout", 5.0)
        if fast:
            options.setdefault("retry", FAST_RETRY)
        client = cdp_logging.Analytics(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=2)


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A logger of its own that propagates nowhere, so tests do not share handlers."""
    logger = logging.getLogger(f"test.app.{os.urandom(4).hex()}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def run_python(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter (the real exit path), bounded by *timeout*."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CDP_WRITE_KEY", None) if env is None or "CDP_WRITE_KEY" not in env else None
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


def line_reader(stream: Iterable[str]) -> queue.Queue[str]:
    """Lines of a child's output as they come, for bounded waits with Queue.get(timeout=)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_gunicorn(
    *args: str, env: dict[str, str]
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """``tests.gunicorn_app:app`` under gunicorn with *args* (workers, bind), and its
    stderr as lines: the master logs there as each worker boots, with its pid."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            *args,
            "--graceful-timeout",
            "20",
            "tests.gunicorn_app:app",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    return server, line_reader(server.stderr)


class RedisServer:
    """A real redis-server on a free 127.0.0.1 port, in a directory of its own.

    Without persistence by default (nothing a test leaves survives a restart); with
    ``appendonly``, every write is fsynced to the AOF first, so a restart keeps the
    stream, as a Redis used as a fleet's buffer should be configured.
    """

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is missing: apt-get install redis-server (.ci/run does)")
        self._binary = binary
        self._directory = directory
        self._appendonly = appendonly
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self._directory),
            "--appendonly",
            "yes" if self._appendonly else "no",
            "--appendfsync",
            "always",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self._directory
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded: until it answers PING
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self._process.poll() is not None:
                pytest.fail(f"redis-server exited with {self._process.returncode}")
            time.sleep(0.02)
        pytest.fail("redis-server did not answer within 10 s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
