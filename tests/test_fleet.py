"""The fleet buffer: apps add to a real Redis stream, relays deliver it to the collector.

Everything is real: redis-server on a free 127.0.0.1 port, app processes and relays as
subprocesses (one SIGKILLed mid-request), the collector as the CDP. Each test has a
stream of its own, so they share one Redis.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest
import redis

import cdp_logging
from cdp_logging import RetryPolicy
from cdp_logging._core.buffer_option import parse_redis_url
from cdp_logging._relay import Relay
from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, RedisServer, line_reader

FAST = RetryPolicy(base=0.01, cap=0.05)


@pytest.fixture
def stream(redis_server: RedisServer) -> Iterator[str]:
    """A stream name of this test's own, deleted afterwards."""
    name = f"test-{os.urandom(4).hex()}"
    yield name
    redis.Redis.from_url(redis_server.url).delete(name)


def buffer_url(server: RedisServer, stream: str, **query: object) -> str:
    extra = "".join(f"&{key}={value}" for key, value in query.items())
    return f"{server.url}?stream={stream}{extra}"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # bounded by the deadline
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


def next_line(lines: Queue[str], containing: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except Empty:
            pytest.fail(f"no line with {containing!r} within {timeout:g} s")
        if containing in line:
            return line


def by_user(collector: Collector) -> dict[str, set[str]]:
    """messageIds per userId: a message delivered twice shows one id, never two."""
    ids: dict[str, set[str]] = defaultdict(set)
    for message in collector.messages():
        ids[message["userId"]].add(message["messageId"])
    return ids


def start_relay(
    server: RedisServer, stream: str, collector: Collector, takeover: float = 2.0
) -> tuple[subprocess.Popen[str], Queue[str]]:
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdp_logging",
            "relay",
            "--buffer",
            buffer_url(server, stream),
            "--host",
            collector.url,
            "--takeover",
            str(takeover),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "CDP_WRITE_KEY": WRITE_KEY},
    )
    lines = line_reader(relay.stdout)  # type: ignore[arg-type]
    next_line(lines, "relaying stream", 30)
    return relay, lines


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(30)


# The app: N events, then (with "fork") a fork whose child sends N more through its own
# connection.
APP = """
import os, sys, time, cdp_logging
url, key, buffer, tag, count, pause, fork = sys.argv[1:8]
client = cdp_logging.Analytics(key, url, buffer=buffer, flush_interval=0.05,
                               max_events_in_batch=50)
def burst(name):
    for i in range(int(count)):
        client.track(f"{name}-{i}", name)
        if float(pause):
            time.sleep(float(pause))  # pacing the load, not waiting for anything
burst(tag)
if fork != "fork":
    sys.exit(0)
pid = os.fork()
if pid == 0:
    burst(tag + "-child")
    sys.exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def start_app(
    collector: Collector, buffer: str, tag: str, count: int, pause: float = 0.0, fork: bool = True
) -> subprocess.Popen[str]:
    arguments = [collector.url, WRITE_KEY, buffer, tag, str(count), str(pause)]
    return subprocess.Popen(
        [sys.executable, "-c", APP, *arguments, "fork" if fork else "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


class TestOption:
    def test_without_the_extra_it_is_a_value_error_naming_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
        with pytest.raises(ValueError, match=r"pip install 'cdp_logging\[redis\]'"):
            cdp_logging.Analytics("k", buffer="redis://127.0.0.1:6379/0")

    @pytest.mark.parametrize(
        "url",
        [
            "redis://:s3cret-pw@/0",
            "redis://user:s3cret-pw@127.0.0.1:6379/0?max_len=lots",
            "redis://user:s3cret-pw@127.0.0.1:6379/0?stream=",
            "sqlite-ish://user:s3cret-pw@x",
        ],
    )
    def test_a_bad_url_fails_at_construction_without_its_password(self, url: str) -> None:
        with pytest.raises(ValueError, match="buffer") as caught:
            cdp_logging.Analytics("k", buffer=url)
        assert "s3cret-pw" not in str(caught.value)

    @pytest.mark.parametrize(
        "url", ["redis://user:s3cret/pw@127.0.0.1:6379/0", "rediss://default:s3cret/pw@h/0"]
    )
    def test_a_password_with_a_slash_is_refused_without_showing_it(self, url: str) -> None:
        """Not percent-encoded, a "/" ends the user part: urlsplit would show the password
        as host or port. The error names the host only."""
        with pytest.raises(ValueError, match="percent-encode") as caught:
            cdp_logging.Analytics("k", buffer=url)
        assert "s3cret" not in str(caught.value)
        assert "/pw" not in str(caught.value)

    def test_the_url_parts(self) -> None:
        parsed = parse_redis_url(
            "rediss://bob:pw@cache:6380/2?stream=events&max_len=7&ssl_cert_reqs=none"
        )
        assert ("events", 7, "rediss://cache:6380/2") == (
            parsed.stream,
            parsed.max_len,
            parsed.display,
        )
        assert "rediss://bob:pw@cache:6380/2?ssl_cert_reqs=none" == parsed.url  # ours removed
        assert "pw" not in repr(parsed)
        client = cdp_logging.Analytics("k", buffer="redis://bob:pw@cache:6380/2")
        assert "pw" not in repr(client.options) + repr(client._sender._transport)
        client.close(0)


class TestAppSide:
    def test_the_stream_bound_drops_and_reports_queue_full(
        self, redis_server: RedisServer, stream: str, collector: Collector
    ) -> None:
        """Beyond max_len, a batch is dropped whole and reported; nothing is trimmed."""
        errors: list[cdp_logging.DeliveryError] = []
        client = cdp_logging.Analytics(
            WRITE_KEY,
            collector.url,
            buffer=buffer_url(redis_server, stream, max_len=10),
            on_error=errors.append,
            stderr_warnings=False,
        )
        for i in range(10):
            client.track(f"u{i}", "fits")
        assert client.flush(5)
        for i in range(4):
            client.track(f"v{i}", "over")
        assert client.flush(5)

        assert {"queue_full": 4} == client.stats()["errors"]
        assert 10 == redis.Redis.from_url(redis_server.url).xlen(stream)
        assert "max_len=10" in errors[0].reason
        assert {"over"} == {m["event"] for e in errors for m in e.messages}
        assert [] == collector.messages()  # in the stream, for a relay; not posted
        client.close(1)

    def test_unreachable_redis_never_holds_the_caller_and_goes_direct(
        self, collector: Collector, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A Redis that accepts connections and never answers: calls stay instant, the
        sender times out once (socket_timeout), says so once, and posts directly."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            port = silent.getsockname()[1]
            client = cdp_logging.Analytics(
                WRITE_KEY,
                collector.url,
                buffer=f"redis://127.0.0.1:{port}/0?socket_timeout=0.3&socket_connect_timeout=0.3",
                max_events_in_batch=10,
            )
            started = time.perf_counter()
            for i in range(200):
                client.track(f"u{i}", "E")
            calls = time.perf_counter() - started
            assert client.flush(10)
            client.close(2)

        assert calls < 1.0, calls  # 200 calls, not 200 x the 0.3 s timeout: the sender waits
        assert collector.wait_for_messages(200, 5)
        err = capfd.readouterr().err
        assert 1 == err.count("unreachable"), err
        assert f"redis://127.0.0.1:{port}/0 unreachable" in err


class TestRelay:
    """A relay in this process's thread, for the CDP's answers (its own loop is real)."""

    @contextmanager
    def running_relay(
        self, redis_server: RedisServer, stream: str, collector: Collector, **kw: Any
    ) -> Iterator[Relay]:
        """A relay in a thread of this process, stopped (and joined) on leaving."""
        relay = Relay(
            parse_redis_url(buffer_url(redis_server, stream)),
            WRITE_KEY,
            collector.url,
            retry=kw.pop("retry", FAST),
            **kw,
        )
        thread = threading.Thread(target=relay.run, daemon=True)
        thread.start()
        try:
            yield relay
        finally:
            relay.stop()
            thread.join(10)

    def fill(
        self,
        redis_server: RedisServer,
        stream: str,
        collector: Collector,
        events: list[tuple[str, str]],
    ) -> None:
        app = cdp_logging.Analytics(
            WRITE_KEY, collector.url, buffer=buffer_url(redis_server, stream)
        )
        for call, user in events:
            if call == "group":
                app.group(user, "g1")
            else:
                app.track(user, "E")
        assert app.flush(5)
        app.close(1)

    def test_a_cdp_outage_loses_nothing_and_a_refusal_is_removed(
        self,
        redis_server: RedisServer,
        stream: str,
        collector: Collector,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """503s beyond the retries leave messages pending, taken over and retried; a 400
        for one call type is reported and removed from the stream, the rest delivered."""
        collector.faults.status(503, count=4)
        collector.faults.reject_type("group")
        self.fill(
            redis_server,
            stream,
            collector,
            [("track", f"u{i}") for i in range(30)] + [("group", "bad")],
        )
        client = redis.Redis.from_url(redis_server.url)
        with self.running_relay(
            redis_server,
            stream,
            collector,
            takeover=1.5,
            retry=RetryPolicy(base=0.01, cap=0.02, max_retries=1),
        ) as relay:
            wait_until(lambda: 0 == client.xlen(stream), 20, "the stream emptied")

        assert {f"u{i}" for i in range(30)} == {m["userId"] for m in collector.messages()}
        assert 1 == relay.refused
        assert relay.kept >= 1  # the 503s outlasted the retries at least once
        err = capfd.readouterr().err
        assert "kept in the stream" in err
        assert "removed from the stream" in err
        assert 0 == client.xpending(stream, relay.group)["pending"]

    def test_a_refused_write_key_keeps_the_stream(
        self,
        redis_server: RedisServer,
        stream: str,
        collector: Collector,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """A 401 is the relay's configuration, not the messages': they stay in the stream
        (one mistyped key must not empty a fleet's backlog), and a relay with the right
        key delivers them later, with their messageIds."""
        self.fill(redis_server, stream, collector, [("track", f"u{i}") for i in range(5)])
        client = redis.Redis.from_url(redis_server.url)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
        ids = {fields[b"m"] for _, fields in entries}
        collector.faults.status(401, seconds=60)
        with self.running_relay(redis_server, stream, collector, takeover=60) as relay:
            wait_until(lambda: relay.kept >= 5, 20, "the relay kept the refused messages")
        assert (5, 0, 0) == (client.xlen(stream), relay.refused, len(collector.messages()))
        assert "kept in the stream" in capfd.readouterr().err

        collector.faults.clear()
        with self.running_relay(redis_server, stream, collector, takeover=0.5):
            wait_until(lambda: 0 == client.xlen(stream), 20, "the stream emptied")
        sent = {json.loads(raw)["messageId"] for raw in ids}
        assert sent == {m["messageId"] for m in collector.messages()}

    def test_a_stopped_relay_with_nothing_pending_leaves_the_group(
        self, redis_server: RedisServer, stream: str, collector: Collector
    ) -> None:
        """Consumers do not pile up with every restart; one with entries pending stays
        (removing it would drop them from the pending list, beyond any takeover)."""
        client = redis.Redis.from_url(redis_server.url)
        group = "cdp_logging_relays"
        client.xgroup_create(stream, group, id="0", mkstream=True)
        client.xgroup_createconsumer(stream, group, "gone")
        client.xadd(stream, {"m": b"{}"})
        client.xreadgroup(group, "holding", {stream: ">"})  # one entry pending
        relay = Relay(
            parse_redis_url(buffer_url(redis_server, stream)),
            WRITE_KEY,
            collector.url,
            takeover=0.01,
        )  # not run: its housekeeping step alone, limit 10 x 0.01 s idle

        def names() -> set[bytes]:
            return {c["name"] for c in client.xinfo_consumers(stream, group)}

        wait_until(lambda: relay._forget_the_dead(client) > 0, 5, "the idle consumer removed")
        assert {b"holding"} == names()
        relay._sender.close(0)


class TestFleet:
    def test_two_apps_two_relays_one_killed_mid_request(
        self, redis_server: RedisServer, stream: str, collector: Collector
    ) -> None:
        """Relay A dies holding a request the collector stored but had not answered; relay B
        takes A's messages over: all delivered, duplicates only as the same messageId.
        Each app forks, so four processes add to the stream, each through its own socket."""
        collector.faults.latency(60, count=1)
        buffer = buffer_url(redis_server, stream)
        relay_a, _ = start_relay(redis_server, stream, collector)
        app_1 = start_app(collector, buffer, "one", 100)
        assert collector.wait_for_requests(1, 20)  # A's first request, held open
        relay_a.kill()
        relay_a.wait(10)
        assert (0, "") == (app_1.wait(30), app_1.stderr.read())  # type: ignore[union-attr]

        relay_b, _ = start_relay(redis_server, stream, collector)
        app_2 = start_app(collector, buffer, "two", 100)
        assert (0, "") == (app_2.wait(30), app_2.stderr.read())  # type: ignore[union-attr]
        users = {
            f"{tag}-{i}" for tag in ("one", "one-child", "two", "two-child") for i in range(100)
        }
        wait_until(lambda: users <= set(by_user(collector)), 30, "every message delivered")
        client = redis.Redis.from_url(redis_server.url)
        wait_until(lambda: 0 == client.xlen(stream), 10, "the stream emptied")
        assert 0 == stop(relay_b)

        ids = by_user(collector)
        assert users == set(ids)
        assert all(1 == len(message_ids) for message_ids in ids.values())  # dups: same id
        counts = collector.counts()
        assert counts["duplicate_message_ids"] == counts["messages"] - len(users)
        assert counts["duplicate_message_ids"] >= 1  # A's held request was sent again
        assert 0 == client.xpending(stream, "cdp_logging_relays")["pending"]

    def test_redis_restarted_under_load(self, tmp_path: Path, collector: Collector) -> None:
        """Redis stops while an app sends: the app posts directly and says so once, then
        goes back to the stream when Redis returns; the relay reconnects. Nothing is lost
        (this Redis keeps an fsynced AOF, as a fleet's buffer should)."""
        server = RedisServer(tmp_path, appendonly=True).start()
        try:
            stream = "restart"
            relay, relay_lines = start_relay(server, stream, collector)
            app = start_app(
                collector, buffer_url(server, stream), "load", 800, pause=0.004, fork=False
            )
            app_lines = line_reader(app.stderr)  # type: ignore[arg-type]
            assert collector.wait_for_messages(20, 20)  # through the relay
            server.stop()
            next_line(app_lines, "unreachable", 20)
            posted = len(collector.messages())
            assert collector.wait_for_messages(posted + 10, 20)  # directly, meanwhile
            server.start()
            next_line(app_lines, "answers again", 20)
            next_line(relay_lines, "answers again", 20)
            assert 0 == app.wait(60)
            users = {f"load-{i}" for i in range(800)}
            wait_until(lambda: users <= set(by_user(collector)), 30, "every message delivered")
            assert 0 == stop(relay)
        finally:
            server.stop()

        assert all(1 == len(message_ids) for message_ids in by_user(collector).values())
        rest = []
        while True:  # bounded: the app has exited, its stderr is finite
            try:
                rest.append(app_lines.get(timeout=1))
            except Empty:
                break
        assert not [line for line in rest if "unreachable" in line], rest  # said once
