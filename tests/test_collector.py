"""The local collector: protocol, strict validation, storage, faults, CLI."""

from __future__ import annotations

import base64
import gzip
import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


def auth(key: str = WRITE_KEY) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def message(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "E",
        "userId": "u",
        "messageId": f"m-{time.monotonic_ns()}",
        "timestamp": "2024-01-01T00:00:00+00:00",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def body(*messages: dict[str, Any], sent_at: str | None = "2024-01-01T00:00:01Z") -> bytes:
    document: dict[str, Any] = {"batch": list(messages) or [message()]}
    if sent_at is not None:
        document["sentAt"] = sent_at
    return json.dumps(document).encode()


def post(
    collector: Collector, data: bytes, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{collector.url}/v1/batch",
        data=data,
        headers=auth() if headers is None else headers,
        timeout=10,
    )


class TestAccept:
    def test_valid_batch_is_stored(self, collector: Collector) -> None:
        """A valid batch gets 200 and its messages are stored and counted."""
        answer = post(
            collector, body(message(event="A"), message(type="page", name="Docs", event=None))
        )

        assert 200 == answer.status_code
        assert ["A", "Docs"] == [m.get("event") or m.get("name") for m in collector.messages()]
        assert {"track": 1, "page": 1} == collector.counts()["by_type"]

    def test_gzip_body(self, collector: Collector) -> None:
        """A gzip body with Content-Encoding: gzip is read."""
        answer = post(collector, gzip.compress(body()), {**auth(), "Content-Encoding": "gzip"})

        assert 200 == answer.status_code
        assert collector.batches()[0].gzip

    def test_duplicates_counted(self, collector: Collector) -> None:
        """A messageId seen before is stored again and counted as a duplicate."""
        same = message(messageId="dup")
        post(collector, body(same))
        post(collector, body(same))

        assert 1 == collector.counts()["duplicate_message_ids"]
        assert 2 == len(collector.messages())


class TestAuth:
    @pytest.mark.parametrize("headers", [{}, auth("wrong-key"), {"Authorization": "Bearer x"}])
    def test_missing_or_wrong_key_is_401(
        self, collector: Collector, headers: dict[str, str]
    ) -> None:
        """Without the right Basic-auth user, the answer is 401 and the key is not echoed."""
        answer = post(collector, body(), headers)

        assert 401 == answer.status_code
        assert WRITE_KEY not in answer.text
        assert [] == collector.messages()

    def test_repr_and_records_hide_keys(self, collector: Collector) -> None:
        """Neither the collector's repr nor a request record shows the key."""
        post(collector, body())

        assert WRITE_KEY not in repr(collector)
        assert "<redacted>" == collector.batches()[0].headers["Authorization"]


class TestReject:
    @pytest.mark.parametrize(
        ("data", "needle"),
        [
            (b"{not json", "invalid JSON"),
            (b'{"batch": [], "sentAt": "2024-01-01T00:00:00Z", "x": NaN}', "NaN"),
            (b'{"sentAt": "2024-01-01T00:00:00Z"}', '"batch" list'),
            (body(sent_at=None), "sentAt"),
            (body(sent_at="2024-01-01T00:00:00"), "no time zone"),
            (body(*[message() for _ in range(2501)]), "limit is 2500"),
            (body(message(properties={"b": "x" * 33_000})), "limit is 32000"),
            (
                json.dumps(
                    {
                        "batch": [message(properties={"b": "x" * 30_000})] * 17,
                        "sentAt": "2024-01-01T00:00:00Z",
                    }
                ).encode(),
                "limit is 500000",
            ),
            (body(message(event=None)), "batch[0]: track needs an event name"),
            (body(message(userId=None)), "track needs a userId or an anonymousId"),
            (body(message(type="group", event=None)), "group needs a groupId"),
            (body(message(type="alias", event=None)), "alias needs a previousId"),
            (body(message(timestamp="2024-01-01 10:00")), "no time zone"),
            (body(message(type="purchase")), "type must be one of"),
        ],
    )
    def test_invalid_request_is_400_with_reason(
        self, collector: Collector, data: bytes, needle: str
    ) -> None:
        """Each protocol rule broken gives 400 with a reason naming it; nothing is stored."""
        answer = post(collector, data)

        assert 400 == answer.status_code
        assert needle in answer.json()["error"]
        assert [] == collector.messages()
        assert needle in collector.batches()[0].reason


class TestFaults:
    def test_status_by_count_with_retry_after(self, collector: Collector) -> None:
        """status(count=) answers that status that many times, with Retry-After if asked."""
        collector.faults.status(429, count=2, retry_after=3)

        answers = [post(collector, body()) for _ in range(3)]

        assert [429, 429, 200] == [a.status_code for a in answers]
        assert "3" == answers[0].headers["Retry-After"]
        assert 1 == len(collector.messages())

    def test_status_for_a_window(self, collector: Collector) -> None:
        """status(seconds=) answers that status until the window has passed."""
        collector.faults.status(503, seconds=0.3)
        started = time.monotonic()

        assert 503 == post(collector, body()).status_code
        statuses: list[int] = []
        while time.monotonic() - started < 2 and (not statuses or statuses[-1] != 200):
            statuses.append(post(collector, body()).status_code)
        assert 200 == statuses[-1]
        assert time.monotonic() - started >= 0.3

    def test_latency(self, collector: Collector) -> None:
        """latency() holds the answer back."""
        collector.faults.latency(0.3, count=1)
        started = time.monotonic()

        assert 200 == post(collector, body()).status_code
        assert time.monotonic() - started >= 0.3

    def test_refuse(self, collector: Collector) -> None:
        """refuse() closes the connection with no answer."""
        collector.faults.refuse(count=1)

        with pytest.raises(requests.ConnectionError):
            post(collector, body())
        assert 200 == post(collector, body()).status_code

    def test_reset_after_store(self, collector: Collector) -> None:
        """reset_after_store() keeps the batch but the client sees a network error."""
        collector.faults.reset_after_store(count=1)

        with pytest.raises(requests.ConnectionError):
            post(collector, body())
        assert 1 == len(collector.messages())

    def test_reject_type(self, collector: Collector) -> None:
        """reject_type() refuses requests holding that call type, and only those."""
        collector.faults.reject_type("group", 400, reason="no groups")

        assert (
            400 == post(collector, body(message(type="group", groupId="g", event=None))).status_code
        )
        assert 200 == post(collector, body()).status_code

    def test_faults_over_http(self, collector: Collector) -> None:
        """POST /faults adds a fault and DELETE /faults clears them."""
        requests.post(f"{collector.url}/faults", json={"kind": "status", "status": 500}, timeout=5)
        assert 500 == post(collector, body()).status_code
        requests.delete(f"{collector.url}/faults", timeout=5)
        assert 200 == post(collector, body()).status_code

    def test_stop_and_start_on_the_same_port(self, collector: Collector) -> None:
        """stop() refuses connections; start() listens on the same URL again."""
        url = collector.url
        collector.stop()
        with pytest.raises(requests.ConnectionError):
            post(collector, body())
        collector.start()

        assert url == collector.url
        assert 200 == post(collector, body()).status_code


class TestReadBack:
    def test_stats_and_messages_endpoints(self, collector: Collector) -> None:
        """GET /stats counts; GET /messages filters by type and user; DELETE clears."""
        post(collector, body(message(userId="a"), message(userId="b", type="page", event=None)))

        stats = requests.get(f"{collector.url}/stats", timeout=5).json()
        only_a = requests.get(
            f"{collector.url}/messages", params={"user_id": "a"}, timeout=5
        ).json()
        pages = requests.get(f"{collector.url}/messages", params={"type": "page"}, timeout=5).json()
        requests.delete(f"{collector.url}/messages", timeout=5)

        assert 2 == stats["messages"]
        assert ["a"] == [m["userId"] for m in only_a]
        assert ["b"] == [m["userId"] for m in pages]
        assert [] == collector.messages()


class TestCommandLine:
    def test_runs_prints_and_stops_on_sigterm(self) -> None:
        """The CLI serves, prints a line per message, and exits 0 on SIGTERM."""
        process = subprocess.Popen(
            [sys.executable, "-m", "cdp_logging.collector", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            url = first.split()[-1]
            token = base64.b64encode(b"any-key:").decode()
            answer = requests.post(
                f"{url}/v1/batch",
                data=body(message(event="From CLI")),
                headers={"Authorization": f"Basic {token}"},
                timeout=5,
            )
            line = process.stdout.readline()
            process.send_signal(signal.SIGTERM)
            assert 0 == process.wait(timeout=10)
        finally:
            process.kill()
            process.wait(timeout=10)

        assert first.startswith("collector listening on http://127.0.0.1:")
        assert 200 == answer.status_code
        assert "From CLI" in line
