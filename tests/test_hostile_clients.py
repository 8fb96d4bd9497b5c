"""Bad input and bad clients: every request gets an answer or a timeout, memory stays
bounded, and the collector keeps serving the next client.

The slow-client cases use a collector with sub-second timeouts, so each costs well under
a second; the client side sleeps between its bytes because being slow is the behaviour
under test, not a stand-in for waiting on an event.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cdp_logging.collector import Collector

from .conftest import ROOT

KEY = "hostile-key-5ecret"
SENT_AT = "2024-05-01T12:00:00.000Z"


def body(*messages: dict[str, Any]) -> bytes:
    return json.dumps({"batch": list(messages), "sentAt": SENT_AT}).encode()


def message(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", "messageId": uuid.uuid4().hex, **fields}


def post(url: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{url}/v1/batch",
        data=data,
        headers={"Content-Type": "application/json"},
        auth=(KEY, ""),
        timeout=5,
    )


def still_serving(collector: Collector) -> None:
    assert 200 == post(collector.url, body(message())).status_code


def request_bytes(port: int, data: bytes, length: int | None = None) -> bytes:
    declared = len(data) if length is None else length
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}"
        "\r\nAuthorization: Basic aG9zdGlsZS1rZXktNWVjcmV0Og==\r\n\r\n"
    )
    return head.encode() + data


def answer_of(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes, bounded by the socket's timeout."""
    received = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return received
        received += chunk


@pytest.fixture(params=[False, True], ids=["lenient", "strict"])
def collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    with Collector(
        write_keys=(KEY,), strict=request.param, request_timeout=0.5, idle_timeout=0.5
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b'{"batch": [', "invalid JSON", id="truncated"),
        pytest.param(b"\xff\xfe{}", "the body is not UTF-8", id="not-utf8"),
        pytest.param(b'{"batch": [], "x": NaN}', "invalid JSON", id="nan"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "the JSON nests deeper than 100", id="deep"),
        pytest.param(
            body(message(properties=json.loads('{"a":' * 200 + "1" + "}" * 200))),
            "the JSON nests deeper than 100",
            id="deep-properties",
        ),
    ],
)
def test_bad_json_is_400_and_the_next_request_is_served(
    collector: Collector, data: bytes, reason: str
) -> None:
    response = post(collector.url, data)

    assert 400 == response.status_code
    assert response.json()["error"].startswith(reason)
    still_serving(collector)


def test_nesting_within_the_limit_is_accepted(collector: Collector) -> None:
    nested = json.loads('{"a":' * 90 + "1" + "}" * 90)

    assert 200 == post(collector.url, body(message(properties=nested))).status_code


def test_body_declared_huge_is_refused_unread(collector: Collector) -> None:
    """A Content-Length of a gigabyte is answered at once, without reading it."""
    with socket.create_connection(("127.0.0.1", collector.port or 0), timeout=5) as connection:
        connection.sendall(request_bytes(collector.port or 0, b"{", length=1_000_000_000))
        answer = answer_of(connection)

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"request body is 1000000000 bytes, the limit is 500000" in answer
    still_serving(collector)


def test_body_over_the_limit_is_read_and_refused(collector: Collector) -> None:
    big = body(message(properties={"pad": "x" * 700_000}))

    response = post(collector.url, big)

    assert (400, f"request body is {len(big)} bytes, the limit is 500000") == (
        response.status_code,
        response.json()["error"],
    )
    still_serving(collector)


@pytest.fixture
def quick() -> Iterator[Collector]:
    """Timeouts do not depend on the mode: one mode is enough for them."""
    with Collector(write_keys=(KEY,), request_timeout=0.5, idle_timeout=0.5) as running:
        yield running


@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_byte_a_second_client_gets_408_within_the_request_timeout(
    quick: Collector, stage: str
) -> None:
    """Each byte alone is in time; the request as a whole is not, and is cut at 0.5 s."""
    port = quick.port or 0
    full = request_bytes(port, body(message()))
    split = full.index(b"\r\n\r\n") + 4
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        started = time.monotonic()
        if stage == "body":
            connection.sendall(full[:split])
        trickle = full[:split] if stage == "headers" else full[split:]
        for index in range(20):  # 20 bytes 0.1 s apart: 2 s if nothing cut it
            try:
                connection.sendall(trickle[index : index + 1])
            except OSError:
                break
            time.sleep(0.1)
            if index == 1:
                still_serving(quick)  # another client is served meanwhile
        answer = answer_of(connection)
        elapsed = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 0.4 < elapsed < 1.5
    assert 1 == len(quick.messages())  # the other client's, not the slow one's
    still_serving(quick)


def test_a_silent_connection_is_closed_after_the_idle_timeout(quick: Collector) -> None:
    with socket.create_connection(("127.0.0.1", quick.port or 0), timeout=5) as connection:
        started = time.monotonic()
        answer = answer_of(connection)

    assert (b"", True) == (answer, 0.4 < time.monotonic() - started < 1.5)


def test_200_concurrent_connections_are_all_answered() -> None:
    """200 clients at once, each with a batch: 200 answers of 200, 200 messages stored."""
    with Collector(write_keys=(KEY,)) as collector:
        port = collector.port or 0
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(200)]
        try:
            for connection in sockets:
                connection.sendall(request_bytes(port, body(message()))[:-5])
            # Every connection is open and mid-request before any of them completes.
            for connection in sockets:
                connection.sendall(request_bytes(port, body(message()))[-5:])
            answers = [connection.recv(4096) for connection in sockets]
        finally:
            for connection in sockets:
                connection.close()
        assert collector.wait_for_messages(200, timeout=10)
        assert [True] * 200 == [answer.startswith(b"HTTP/1.1 200 ") for answer in answers]
        still_serving(collector)


def test_connections_past_the_limit_get_503_and_the_rest_are_served() -> None:
    with Collector(write_keys=(KEY,), max_connections=5, request_timeout=0.5) as collector:
        port = collector.port or 0
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        try:
            for connection in held:
                connection.sendall(b"POST /v1/batch HTTP/1.1\r\n")  # and nothing more
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                refused = answer_of(extra)
            cut = [answer_of(connection) for connection in held]
        finally:
            for connection in held:
                connection.close()

        assert refused.startswith(b"HTTP/1.1 503 ")
        assert b"Retry-After: 1" in refused
        assert [True] * 5 == [answer.startswith(b"HTTP/1.1 408 ") for answer in cut]
        still_serving(collector)


def test_memory_stays_bounded_under_200_clients_sending_too_big_bodies() -> None:
    """200 clients each hold a 3.5 MB body half sent at once: the peak stays near 100 MB.

    Whole, the bodies would be 700 MB; the collector keeps about 500 KB of each (the
    limit, so that it can say by how much a body is over it) and throws the rest away
    as it reads. Run in a process of its own so that its peak is its own.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp_logging.collector", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[3].rsplit(":", 1)[1])
        big = request_bytes(port, body(message(properties={"pad": "x" * 3_500_000})))
        half = len(big) // 2
        all_half_sent = threading.Barrier(201)
        answers: list[bytes] = []

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
                connection.sendall(big[:half])
                all_half_sent.wait(30)
                connection.sendall(big[half:])
                answers.append(connection.recv(4096))

        before = _peak_kib(process.pid)
        senders = [threading.Thread(target=send) for _ in range(200)]
        for sender in senders:
            sender.start()
        all_half_sent.wait(30)
        for sender in senders:
            sender.join(30)
        grown_mib = (_peak_kib(process.pid) - before) / 1024
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    assert [True] * 200 == [answer.startswith(b"HTTP/1.1 400 ") for answer in answers]
    assert grown_mib < 160, f"the peak grew by {grown_mib:.0f} MB"


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.parametrize(
    "options",
    [
        {"request_timeout": 0},
        {"idle_timeout": -1},
        {"request_timeout": True},
        {"max_connections": 0},
        {"max_connections": 2.5},
    ],
)
def test_limits_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Collector(**options)
