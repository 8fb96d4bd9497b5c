"""The local collector: the batch protocol, strict validation, faults, control endpoints, CLI."""

from __future__ import annotations

import gzip
import http.client
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cdp_logging.collector import Collector, Fault, FaultPlan, RequestRecord
from cdp_logging.collector._validate import timestamp_problem

WRITE_KEY = "collector-test-key-5ecret"
SENT_AT = "2024-05-01T12:00:00.000Z"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(WRITE_KEY,), strict=True) as running:
        yield running


def message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A valid message of *kind*; *fields* override or add (None removes a field)."""
    base: dict[str, Any] = {"type": kind, "messageId": uuid.uuid4().hex, "userId": "u1"}
    base.update(
        {
            "track": {"event": "Signed Up"},
            "group": {"groupId": "g1"},
            "alias": {"previousId": "anon-1"},
        }.get(kind, {})
    )
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def batch(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": SENT_AT, **extra}


def post(
    collector: Collector,
    payload: object,
    *,
    key: str | None = WRITE_KEY,
    compress: bool = False,
    headers: dict[str, str] | None = None,
    session: requests.Session | None = None,
) -> requests.Response:
    """POST *payload* (JSON-encoded unless it is bytes) to /v1/batch as a client would."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json"}
    if compress:
        data = gzip.compress(data)
        all_headers["Content-Encoding"] = "gzip"
    all_headers.update(headers or {})
    sender: Any = session or requests
    response: requests.Response = sender.post(
        f"{collector.url}/v1/batch",
        data=data,
        headers=all_headers,
        auth=(key, "") if key is not None else None,
        timeout=5,
    )
    return response


def rejection(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


class TestAcceptedBatch:
    def test_valid_batch_is_stored(self, collector: Collector) -> None:
        """A valid batch is answered 200 and its messages are stored in order."""
        sent = [message(event="one"), message(event="two")]

        response = post(collector, batch(*sent))

        assert (200, {"success": True}) == (response.status_code, response.json())
        assert sent == collector.messages()

    def test_every_call_type_is_accepted(self, collector: Collector) -> None:
        """All six call types are accepted and counted by type."""
        kinds = ["identify", "track", "page", "screen", "group", "alias"]

        assert 200 == post(collector, batch(*(message(kind) for kind in kinds))).status_code
        assert dict.fromkeys(kinds, 1) == collector.counts()["by_type"]

    def test_gzip_body_is_decompressed(self, collector: Collector) -> None:
        """A gzip body is accepted; the record gives its decompressed size."""
        payload = batch(message())
        size = len(json.dumps(payload).encode())

        assert 200 == post(collector, payload, compress=True).status_code
        record = collector.batches()[0]
        assert (True, size) == (record.gzip, record.body_bytes)
        assert payload["batch"] == collector.messages()

    def test_record_describes_the_request(self, collector: Collector) -> None:
        """The request record holds status, counts, sentAt and messageIds, key redacted."""
        sent = [message(messageId="a"), message(messageId="b")]
        post(collector, batch(*sent))

        record = collector.batches()[0]
        assert (
            RequestRecord(
                status=200,
                reason="",
                message_count=2,
                body_bytes=len(json.dumps(batch(*sent)).encode()),
                gzip=False,
                headers=record.headers,
                write_key_ok=True,
                sent_at=SENT_AT,
                message_ids=("a", "b"),
            )
            == record
        )
        assert "<redacted>" == record.headers["Authorization"]
        assert WRITE_KEY not in repr(record)

    @pytest.mark.parametrize(
        "stamp",
        ["2024-05-01T12:00:00Z", "2024-05-01T14:00:00.123456+02:00", "2024-05-01T12:00:00.1-0000"],
    )
    def test_timestamp_with_a_zone_is_accepted(self, collector: Collector, stamp: str) -> None:
        """A timestamp with Z or an offset is accepted, whatever its fraction's width."""
        assert 200 == post(collector, batch(message(timestamp=stamp))).status_code

    def test_messages_are_copies(self, collector: Collector) -> None:
        """Changing what messages() returned does not change the store."""
        post(collector, batch(message(properties={"plan": "pro"})))

        collector.messages()[0]["properties"]["plan"] = "changed"

        assert "pro" == collector.messages()[0]["properties"]["plan"]

    def test_connection_is_kept_alive(self, collector: Collector) -> None:
        """Answers are HTTP/1.1 with Content-Length, and the connection stays open."""
        connection = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=5)
        try:
            statuses = []
            for _ in range(2):
                connection.request("GET", "/health")
                response = connection.getresponse()
                statuses.append((response.status, response.read(), response.will_close))
                assert "2" == response.getheader("Content-Length")
        finally:
            connection.close()

        assert [(200, b"ok", False)] * 2 == statuses


class TestAuth:
    def test_missing_authorization_is_401(self, collector: Collector) -> None:
        """A request without Authorization is answered 401 and nothing is stored."""
        response = post(collector, batch(message()), key=None)

        assert 401 == response.status_code
        assert "missing Authorization" in response.json()["error"]
        assert [] == collector.messages()

    def test_unknown_key_is_401_without_echoing_it(self, collector: Collector) -> None:
        """A wrong key is answered 401 and neither key appears in the answer."""
        response = post(collector, batch(message()), key="wrong-key-123")

        assert (401, "unknown write key") == rejection(response)
        assert "wrong-key-123" not in response.text
        assert WRITE_KEY not in response.text
        assert (False, "<redacted>") == (
            collector.batches()[0].write_key_ok,
            collector.batches()[0].headers["Authorization"],
        )

    def test_password_must_be_empty(self, collector: Collector) -> None:
        """Basic credentials with a password are refused: the key is the user name."""
        response = requests.post(
            f"{collector.url}/v1/batch",
            json=batch(message()),
            auth=(WRITE_KEY, "secret"),
            timeout=5,
        )

        assert 401 == response.status_code
        assert "password must be empty" in response.json()["error"]

    def test_any_key_accepted_without_write_keys(self) -> None:
        """With write_keys=None any non-empty key is accepted."""
        with Collector(strict=True) as open_collector:
            assert 200 == post(open_collector, batch(message()), key="whatever").status_code
            assert 401 == post(open_collector, batch(message()), key="").status_code

    def test_repr_hides_write_keys(self, collector: Collector) -> None:
        """The collector's repr shows how many keys it accepts, never which."""
        text = repr(collector)

        assert WRITE_KEY not in text
        assert f"<Collector {collector.url} running, strict, accepting 1 key(s)>" == text


class TestRejectedBatch:
    def test_invalid_json_is_400(self, collector: Collector) -> None:
        """A body that is not JSON is answered 400 and recorded with no messages."""
        response = post(collector, b'{"batch": [')

        assert 400 == response.status_code
        assert response.json()["error"].startswith("invalid JSON")
        assert (0, ()) == (collector.batches()[0].message_count, collector.batches()[0].message_ids)

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_nan_literal_is_400(self, collector: Collector, literal: str) -> None:
        """NaN and Infinity are not JSON, as the reference client forgets."""
        text = json.dumps(batch(message(properties={"x": 0}))).replace('"x": 0', f'"x": {literal}')

        assert (400, f"invalid JSON: {literal} is not valid JSON") == rejection(
            post(collector, text.encode())
        )

    @pytest.mark.parametrize(
        ("payload", "reason"),
        [
            ({"sentAt": SENT_AT}, 'the body has no "batch" list'),
            ({"batch": {}, "sentAt": SENT_AT}, '"batch" must be a list, got dict'),
            ({"batch": [], "sentAt": SENT_AT}, '"batch" is empty'),
            ([1], "the body must be a JSON object, got list"),
        ],
    )
    def test_bad_shape_is_400(self, collector: Collector, payload: object, reason: str) -> None:
        """The body must be an object holding a non-empty batch list."""
        status, error = rejection(post(collector, payload))

        assert (400, True) == (status, error.startswith(reason))

    def test_too_many_messages_is_400(self, collector: Collector) -> None:
        """A batch of more than 2,500 messages is refused before they are checked."""
        response = post(collector, {"batch": [{}] * 2501, "sentAt": SENT_AT})

        assert (400, "batch holds 2501 messages, the limit is 2500") == rejection(response)

    def test_oversized_body_is_400(self, collector: Collector) -> None:
        """A body over 500,000 bytes is refused with its size."""
        payload = json.dumps(batch(message(properties={"pad": "x" * 500_000}))).encode()

        assert (400, f"request body is {len(payload)} bytes, the limit is 500000") == rejection(
            post(collector, payload)
        )
        assert len(payload) == collector.batches()[0].body_bytes

    def test_oversized_gzip_body_is_400(self, collector: Collector) -> None:
        """The limit applies to the body after decompression, however small the gzip."""
        payload = json.dumps(batch(message(properties={"pad": "x" * 600_000}))).encode()

        assert (400, f"request body is {len(payload)} bytes, the limit is 500000") == rejection(
            post(collector, payload, compress=True)
        )

    def test_broken_gzip_is_400(self, collector: Collector) -> None:
        """A body that says gzip but is not gzip is refused."""
        response = post(collector, b"not gzip", headers={"Content-Encoding": "gzip"})

        assert 400 == response.status_code
        assert "gzip body cannot be decompressed" in response.json()["error"]

    def test_unknown_content_encoding_is_400(self, collector: Collector) -> None:
        """Only gzip (or no encoding) is understood."""
        response = post(collector, batch(message()), headers={"Content-Encoding": "br"})

        assert (400, "unsupported Content-Encoding 'br': use gzip or none") == rejection(response)

    def test_missing_content_type_is_accepted(self, collector: Collector) -> None:
        """A body without Content-Type is parsed as JSON all the same."""
        response = requests.post(
            f"{collector.url}/v1/batch",
            data=json.dumps(batch(message())),
            auth=(WRITE_KEY, ""),
            timeout=5,
        )

        assert 200 == response.status_code

    def test_wrong_content_type_is_415(self, collector: Collector) -> None:
        """The body must be declared application/json."""
        response = post(collector, batch(message()), headers={"Content-Type": "text/plain"})

        assert (415, "Content-Type must be application/json, got 'text/plain'") == rejection(
            response
        )

    def test_oversized_message_is_400(self, collector: Collector) -> None:
        """A message over 32,000 bytes serialised is refused, naming its index and size."""
        big = message(properties={"pad": "é" * 16_000})
        size = len(json.dumps(big, separators=(",", ":"), ensure_ascii=False).encode())

        assert (400, f"batch[1]: message is {size} bytes, the limit is 32000") == rejection(
            post(collector, batch(message(), big))
        )

    @pytest.mark.parametrize(
        ("bad", "problem"),
        [
            (message("track", event=None), "track needs an event name"),
            (message("identify", userId=None), "identify needs a userId or an anonymousId"),
            (message("page", userId=None), "page needs a userId or an anonymousId"),
            (message("group", groupId=None), "group needs a groupId"),
            (message("alias", previousId=None), "alias needs a previousId"),
            (message("track", messageId=None), "messageId is required"),
            (message("track", userId=42), "userId must be a string, got int"),
            (message("fly"), "type must be one of identify, track, page, screen, group, alias"),
        ],
    )
    def test_invalid_message_rejects_the_whole_batch(
        self, collector: Collector, bad: dict[str, Any], problem: str
    ) -> None:
        """One message breaking a protocol rule gets the whole request a 400 naming it."""
        response = post(collector, batch(message(), message(), message(), bad))

        status, reason = rejection(response)
        assert (400, True) == (status, reason.startswith(f"batch[3]: {problem}"))
        assert [] == collector.messages()
        assert 4 == collector.batches()[0].message_count

    def test_every_problem_is_named(self, collector: Collector) -> None:
        """The reason lists each problem with the index of its message."""
        response = post(collector, {"batch": [message(event=None), "oops"], "sentAt": SENT_AT})

        assert (
            400,
            "batch[0]: track needs an event name; batch[1]: a message must be an object, got str",
        ) == rejection(response)

    def test_timestamp_without_zone_is_400(self, collector: Collector) -> None:
        """A message timestamp without a time zone is refused."""
        response = post(collector, batch(message(timestamp="2024-05-01T12:00:00")))

        assert (
            400,
            "batch[0]: timestamp '2024-05-01T12:00:00' has no time zone "
            "(add Z or an offset like +02:00)",
        ) == rejection(response)

    def test_missing_sent_at_is_400(self, collector: Collector) -> None:
        """A batch without sentAt is refused: the server needs it to correct clock skew."""
        response = post(collector, {"batch": [message()]})

        assert (400, "sentAt is required: the ISO 8601 time the request was sent") == rejection(
            response
        )

    def test_bad_sent_at_is_400(self, collector: Collector) -> None:
        """A sentAt that is not an ISO 8601 date-time is refused."""
        response = post(collector, batch(message(), sentAt="yesterday"))

        assert (400, "sentAt 'yesterday' is not an ISO 8601 date-time") == rejection(response)

    def test_lone_surrogate_is_400(self, collector: Collector) -> None:
        """An escaped lone surrogate parses as JSON but is not Unicode, so it is refused."""
        text = json.dumps(batch(message(event="PLACEHOLDER"))).replace("PLACEHOLDER", "\\ud800")

        status, reason = rejection(post(collector, text.encode()))
        assert (400, True) == (status, "lone UTF-16 surrogate" in reason)


class TestTimestampProblem:
    @pytest.mark.parametrize(
        "value",
        [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00z",
            "2024-05-01 12:00+01:00",
            "2024-05-01T12:00:00.1234567+0530",
            "2024-05-01T12:00:00,5-08",
        ],
    )
    def test_zoned_date_times_pass(self, value: str) -> None:
        """ISO 8601 date-times with a zone pass the same way on every Python."""
        assert timestamp_problem(value, "timestamp") is None

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("2024-05-01", "'2024-05-01' is not an ISO 8601 date-time"),
            (
                "2024-05-01T12:00:00.000",
                "'2024-05-01T12:00:00.000' has no time zone (add Z or an offset like +02:00)",
            ),
            ("2024-02-30T12:00:00Z", "'2024-02-30T12:00:00Z' is not a real date and time"),
            ("2024-05-01T12:00+24:00", "'2024-05-01T12:00+24:00' is not a real date and time"),
            ("2024-05-01T12:00:00 Z", "'2024-05-01T12:00:00 Z' is not an ISO 8601 date-time"),
        ],
    )
    def test_others_are_named(self, value: str, problem: str) -> None:
        """Anything else gets a reason that says what is wrong with it."""
        assert f"timestamp {problem}" == timestamp_problem(value, "timestamp")

    def test_non_string_is_named(self) -> None:
        """A number where a date-time belongs is named as such."""
        assert "sentAt must be an ISO 8601 string, got int" == timestamp_problem(1, "sentAt")


class TestDuplicates:
    def test_repeat_in_a_later_request_is_counted_and_stored(self, collector: Collector) -> None:
        """A messageId already stored counts as a duplicate and is stored again."""
        repeated = message()
        post(collector, batch(repeated))
        post(collector, batch(repeated, message()))

        assert (3, 1) == (
            collector.counts()["messages"],
            collector.counts()["duplicate_message_ids"],
        )

    def test_repeat_within_a_batch_is_counted(self, collector: Collector) -> None:
        """Two messages with one messageId in one batch count one duplicate."""
        repeated = message()
        post(collector, batch(repeated, repeated))

        assert 1 == collector.counts()["duplicate_message_ids"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestFaultPlan:
    def test_count_runs_out(self) -> None:
        """A fault with a count acts that many times, then no more."""
        plan = FaultPlan()
        fault = plan.status(503, count=2)

        assert [fault, fault, None] == [plan.take(("status",)) for _ in range(3)]
        assert [] == plan.active()

    def test_seconds_window_ends(self) -> None:
        """A fault with seconds acts until that much time has passed, then no more."""
        clock = FakeClock()
        plan = FaultPlan(clock=clock)
        fault = plan.status(500, seconds=1.5)

        clock.now += 1.49
        assert fault == plan.take(("status",))
        clock.now += 0.01
        assert plan.take(("status",)) is None

    def test_first_added_wins(self) -> None:
        """Of two faults of the same point, the one added first acts first."""
        plan = FaultPlan()
        first = plan.status(503, count=1)
        second = plan.status(500, count=1)

        assert [first, second] == [plan.take(("status",)), plan.take(("status",))]

    def test_reject_type_matches_only_its_type(self) -> None:
        """A reject_type fault acts only on a batch holding its call type."""
        plan = FaultPlan()
        fault = plan.reject_type("group")

        assert (None, fault) == (
            plan.take(("reject_type",), {"track"}),
            plan.take(("reject_type",), {"track", "group"}),
        )

    def test_without_limits_lasts_until_cleared(self) -> None:
        """A fault with neither count nor seconds acts until clear()."""
        plan = FaultPlan()
        fault = plan.refuse()

        assert [fault] * 3 == [plan.take(("refuse",)) for _ in range(3)]
        plan.clear()
        assert plan.take(("refuse",)) is None

    @pytest.mark.parametrize(
        "spec",
        [
            {"kind": "status", "status": 99},
            {"kind": "status", "status": 503, "count": 0},
            {"kind": "status", "status": 503, "count": 1.5},
            {"kind": "status", "status": 503, "seconds": -1},
            {"kind": "status", "status": 503, "retry_after": "1\r\nX-Evil: 1"},
            {"kind": "latency", "delay": float("inf")},
            {"kind": "reject_type", "call_type": "fly"},
            {"kind": "refuse", "colour": "red"},
            {"kind": "explode"},
        ],
    )
    def test_bad_arguments_raise_value_error(self, spec: dict[str, Any]) -> None:
        """Every argument is checked when the fault is added, and nothing is added."""
        plan = FaultPlan()

        with pytest.raises(ValueError, match=r"."):
            plan.add(spec)
        assert [] == plan.active()

    def test_add_takes_the_json_form(self) -> None:
        """add() takes the method name as kind and its arguments by name."""
        plan = FaultPlan()

        fault = plan.add({"kind": "status", "status": 429, "count": 1, "retry_after": 2})

        assert Fault("status", status=429, retry_after=2, count=1) == fault
        assert {"kind": "status", "status": 429, "retry_after": 2, "count": 1} == fault.to_json()


class TestFaults:
    def test_status_by_count(self, collector: Collector) -> None:
        """status(503, count=3) answers 503 three times without storing, then 200."""
        collector.faults.status(503, count=3)

        statuses = [post(collector, batch(message())).status_code for _ in range(4)]

        assert [503, 503, 503, 200] == statuses
        assert [503, 503, 503, 200] == [record.status for record in collector.batches()]
        assert 1 == len(collector.messages())

    def test_status_for_seconds(self, collector: Collector) -> None:
        """status(500, seconds=0.3) answers 500 within the window and 200 after it."""
        started = time.monotonic()
        collector.faults.status(500, seconds=0.3)

        during = post(collector, batch(message())).status_code
        assert time.monotonic() - started < 0.3, "the first request was too slow to test this"
        time.sleep(max(0.0, started + 0.35 - time.monotonic()))  # let the window pass
        after = post(collector, batch(message())).status_code

        assert (500, 200) == (during, after)

    def test_status_with_retry_after_and_reason(self, collector: Collector) -> None:
        """retry_after becomes a Retry-After header and reason the error text."""
        collector.faults.status(429, count=1, retry_after=2, reason="slow down")

        response = post(collector, batch(message()))

        assert (429, "2", {"error": "slow down"}) == (
            response.status_code,
            response.headers.get("Retry-After"),
            response.json(),
        )

    def test_status_comes_before_auth(self, collector: Collector) -> None:
        """A status fault answers even a request with a wrong key, as an outage would."""
        collector.faults.status(503, count=1)

        assert 503 == post(collector, batch(message()), key="wrong").status_code

    def test_latency_delays_the_answer(self, collector: Collector) -> None:
        """latency(0.3, count=1) holds back one answer by 0.3 s, and only one."""
        collector.faults.latency(0.3, count=1)

        started = time.monotonic()
        first = post(collector, batch(message())).status_code
        slow = time.monotonic() - started
        started = time.monotonic()
        post(collector, batch(message()))
        fast = time.monotonic() - started

        assert (200, True, True) == (first, slow >= 0.3, fast < 0.3)

    def test_stop_cuts_latency_short(self, collector: Collector) -> None:
        """stop() does not wait out a latency fault; the held request gets no answer."""
        collector.faults.latency(30)
        errors: list[BaseException] = []

        def send() -> None:
            try:
                post(collector, batch(message()))
            except requests.ConnectionError as error:
                errors.append(error)

        sender = threading.Thread(target=send)
        sender.start()
        assert collector.wait_for_requests(1)
        started = time.monotonic()
        collector.stop()
        stopping = time.monotonic() - started
        sender.join(5)

        assert (True, 1, 1) == (stopping < 1.0, len(errors), len(collector.messages()))

    def test_refuse_drops_the_connection(self, collector: Collector) -> None:
        """refuse(count=2) gives the client two connection errors, then it gets through."""
        collector.faults.refuse(count=2)

        for _ in range(2):
            with pytest.raises(requests.ConnectionError):
                post(collector, batch(message()))
        response = post(collector, batch(message()))

        assert 200 == response.status_code
        assert [0, 0, 200] == [record.status for record in collector.batches()]
        assert 1 == len(collector.messages())

    def test_reset_after_store_stores_then_drops(self, collector: Collector) -> None:
        """reset_after_store stores the batch yet the client sees an error, so it retries."""
        collector.faults.reset_after_store(count=1)
        payload = batch(message(), message())

        with pytest.raises(requests.ConnectionError):
            post(collector, payload)
        stored = len(collector.messages())
        retried = post(collector, payload).status_code

        assert (2, 200) == (stored, retried)
        assert (4, 2) == (
            collector.counts()["messages"],
            collector.counts()["duplicate_message_ids"],
        )
        assert [0, 200] == [record.status for record in collector.batches()]

    def test_reject_type(self, collector: Collector) -> None:
        """reject_type('group') refuses every batch holding a group, and only those."""
        collector.faults.reject_type("group")

        first = rejection(post(collector, batch(message(), message("group"))))
        plain = post(collector, batch(message())).status_code
        again = post(collector, batch(message("group"))).status_code

        assert ((400, "group messages are rejected (injected fault)"), 200, 400) == (
            first,
            plain,
            again,
        )
        assert {"track": 1} == collector.counts()["by_type"]

    def test_reject_type_with_another_status(self, collector: Collector) -> None:
        """reject_type takes the status to answer."""
        collector.faults.reject_type("alias", status=422, reason="no aliases here")

        assert (422, "no aliases here") == rejection(post(collector, batch(message("alias"))))

    def test_faults_leave_control_endpoints_alone(self, collector: Collector) -> None:
        """Faults act on /v1/batch only, so a test can still read the stats."""
        collector.faults.status(503)
        collector.faults.refuse()

        assert 200 == requests.get(f"{collector.url}/stats", timeout=5).status_code

    def test_clear_removes_faults(self, collector: Collector) -> None:
        """faults.clear() ends every fault at once."""
        collector.faults.status(503)
        collector.faults.refuse()

        collector.faults.clear()

        assert 200 == post(collector, batch(message())).status_code

    def test_reset_removes_faults_and_store(self, collector: Collector) -> None:
        """reset() forgets messages and records and ends every fault."""
        post(collector, batch(message()))
        collector.faults.status(503)

        collector.reset()

        assert ([], [], []) == (
            collector.messages(),
            collector.batches(),
            collector.faults.active(),
        )


class TestHttpEndpoints:
    def get(self, collector: Collector, path: str) -> requests.Response:
        return requests.get(f"{collector.url}{path}", timeout=5)

    def test_health(self, collector: Collector) -> None:
        """GET /health answers 200 ok."""
        response = self.get(collector, "/health")

        assert (200, "ok") == (response.status_code, response.text)

    def test_stats(self, collector: Collector) -> None:
        """GET /stats answers the counts as JSON."""
        post(collector, batch(message(), message("identify")))
        post(collector, b"nope")

        assert {
            "requests": 2,
            "accepted_requests": 1,
            "rejected_requests": 1,
            "messages": 2,
            "by_type": {"track": 1, "identify": 1},
            "duplicate_message_ids": 0,
            "by_request": [
                {"method": "POST", "path": "/v1/batch", "status": 200, "count": 1},
                {"method": "POST", "path": "/v1/batch", "status": 400, "count": 1},
            ],
        } == self.get(collector, "/stats").json()

    def test_messages_and_filters(self, collector: Collector) -> None:
        """GET /messages lists messages, filtered by type or by user (userId or anonymousId)."""
        by_user = message(userId="ann")
        by_anon = message("page", userId=None, anonymousId="ann")
        other = message("identify", userId="bob")
        post(collector, batch(by_user, by_anon, other))

        assert (
            [by_user, by_anon, other],
            [by_user],
            [by_user, by_anon],
            [by_anon],
        ) == (
            self.get(collector, "/messages").json(),
            self.get(collector, "/messages?type=track").json(),
            self.get(collector, "/messages?user_id=ann").json(),
            self.get(collector, "/messages?type=page&user_id=ann").json(),
        )

    def test_unknown_filter_is_400(self, collector: Collector) -> None:
        """A misspelt filter is an error, not a silently unfiltered list."""
        response = self.get(collector, "/messages?userId=ann")

        assert (400, "unknown filter 'userId': use type or user_id") == rejection(response)

    def test_delete_messages_resets_the_store(self, collector: Collector) -> None:
        """DELETE /messages forgets messages and records."""
        post(collector, batch(message()))

        response = requests.delete(f"{collector.url}/messages", timeout=5)

        assert (200, [], []) == (response.status_code, collector.messages(), collector.batches())

    def test_faults_over_http(self, collector: Collector) -> None:
        """POST /faults adds a fault, GET /faults lists it, DELETE /faults clears it."""
        added = requests.post(
            f"{collector.url}/faults",
            json={"kind": "status", "status": 503, "count": 5},
            timeout=5,
        )
        listed = self.get(collector, "/faults").json()
        during = post(collector, batch(message())).status_code
        requests.delete(f"{collector.url}/faults", timeout=5)
        after = post(collector, batch(message())).status_code

        assert 200 == added.status_code
        assert [{"kind": "status", "status": 503, "count": 5}] == listed
        assert (503, 200) == (during, after)

    def test_bad_fault_over_http_is_400(self, collector: Collector) -> None:
        """POST /faults with an unusable description is answered 400 with the reason."""
        response = requests.post(
            f"{collector.url}/faults", json={"kind": "status", "status": "503"}, timeout=5
        )

        assert (400, "status must be an HTTP status from 200 to 599, got '503'") == rejection(
            response
        )

    def test_unknown_paths(self, collector: Collector) -> None:
        """Unknown endpoints are 404; GET on the batch endpoint is 405; both are counted."""
        assert (404, 405) == (
            requests.post(f"{collector.url}/v1/tracks", json={}, timeout=5).status_code,
            self.get(collector, "/v1/batch").status_code,
        )
        assert [
            {"method": "POST", "path": "/v1/tracks", "status": 404, "count": 1},
            {"method": "GET", "path": "/v1/batch", "status": 405, "count": 1},
        ] == self.get(collector, "/stats").json()["by_request"]


class TestLifecycle:
    def test_stop_then_start_keeps_the_port(self, collector: Collector) -> None:
        """After stop() the URL refuses connections; start() serves it again."""
        url = collector.url
        collector.stop()

        with pytest.raises(requests.ConnectionError):
            post(collector, batch(message()))
        collector.start()

        assert (url, 200) == (collector.url, post(collector, batch(message())).status_code)

    def test_stop_closes_pooled_connections(self, collector: Collector) -> None:
        """A stopped collector takes nothing, even on a client's kept-alive connection."""
        with requests.Session() as session:
            post(collector, batch(message()), session=session)
            collector.stop()
            with pytest.raises(requests.ConnectionError):
                post(collector, batch(message()), session=session)
            collector.start()
            post(collector, batch(message()), session=session)

        assert 2 == len(collector.messages())

    def test_stop_is_idempotent(self) -> None:
        """stop() before start() and twice after are harmless."""
        idle = Collector()
        idle.stop()
        idle.start()
        idle.stop()
        idle.stop()

        assert not idle.running

    def test_url_needs_a_port(self) -> None:
        """Before its first start with port 0 a collector has no URL."""
        with pytest.raises(RuntimeError, match="no port"):
            _ = Collector().url

    @pytest.mark.parametrize(
        "options",
        [{"write_keys": "one-key"}, {"write_keys": ()}, {"write_keys": ("",)}, {"port": 70000}],
    )
    def test_bad_options_raise_value_error(self, options: dict[str, Any]) -> None:
        """Options are checked when the collector is made."""
        with pytest.raises(ValueError, match=r"."):
            Collector(**options)

    def test_wait_for_messages_times_out(self, collector: Collector) -> None:
        """wait_for_messages returns False at its timeout when too few arrived."""
        started = time.monotonic()

        assert not collector.wait_for_messages(1, timeout=0.05)
        assert time.monotonic() - started < 1.0

    def test_wait_for_messages_wakes_on_arrival(self, collector: Collector) -> None:
        """wait_for_messages returns as soon as another thread's batch is stored."""
        sender = threading.Thread(target=post, args=(collector, batch(message(), message())))
        sender.start()

        assert collector.wait_for_messages(2)
        sender.join(5)

    def test_wait_for_requests_counts_rejected_ones(self, collector: Collector) -> None:
        """wait_for_requests counts requests of any status."""
        post(collector, b"nope")

        assert collector.wait_for_requests(1, timeout=0)

    def test_on_batch_sees_each_accepted_batch(self) -> None:
        """on_batch is called with the messages of every accepted batch, after storing."""
        seen: list[list[dict[str, Any]]] = []
        sent = [message(), message()]
        with Collector(on_batch=seen.append, strict=True) as watched:
            post(watched, batch(*sent), key="k")
            post(watched, b"nope", key="k")

        assert [sent] == seen


class TestCommandLine:
    def test_runs_prints_and_exits_cleanly(self) -> None:
        """The CLI prints its URL, one line per accepted message, and exits 0 on SIGTERM."""
        lines: queue.Queue[str] = queue.Queue()
        command = [sys.executable, "-m", "cdp_logging.collector", "--port", "0"]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            stdout, stderr = process.stdout, process.stderr
            assert stdout is not None
            assert stderr is not None

            def read() -> None:
                for text in stdout:
                    lines.put(text)

            reader = threading.Thread(target=read)
            reader.start()
            try:
                first = lines.get(timeout=10).rstrip("\n")
                url = first.removeprefix("collector listening on ").split()[0]
                sent = message(messageId="cli-1", event="Opened App")
                response = requests.post(
                    f"{url}/v1/batch", json=batch(sent), auth=("any-key", ""), timeout=5
                )
                line = lines.get(timeout=5).rstrip("\n")
                process.send_signal(signal.SIGTERM)
                returncode = process.wait(timeout=5)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
                reader.join(5)
            errors = stderr.read()

        assert first.startswith("collector listening on http://127.0.0.1:")
        assert 200 == response.status_code
        assert 'track    userId="u1" event="Opened App" messageId=cli-1' == line
        assert (0, "") == (returncode, errors)
