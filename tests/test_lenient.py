"""The collector's default (lenient) mode: it answers as the real services do.

Each test sends what a real SDK or a hand-written client sends to Segment or
Customer.io and that they accept, and checks that the collector accepts it too, keeping
with each message what the real service would drop or flag in it.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cdp_logging.collector import Collector

KEY = "lenient-key-5ecret"
SENT_AT = "2024-05-01T12:00:00.000Z"


def message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "messageId": uuid.uuid4().hex, "userId": "u1"}
    if kind == "track":
        base["event"] = "Signed Up"
    base.update(fields)
    return base


def post(
    collector: Collector,
    body: object,
    *,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = (KEY, ""),
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{collector.url}/v1/batch",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
        auth=auth,
        timeout=5,
    )


def marks(collector: Collector) -> list[tuple[bool, int, tuple[str, ...]]]:
    return [(event.accepted, event.status, event.problems) for event in collector.events()]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(KEY,)) as running:
        yield running


def test_default_is_lenient() -> None:
    """No argument gives the mode any SDK can be pointed at; strict is asked for."""
    assert (False, True) == (Collector().strict, Collector(strict=True).strict)


def test_what_segment_python_2_4_sends_is_accepted(collector: Collector) -> None:
    """A null anonymousId beside a userId, writeKey and _metadata in the body, a retry count."""
    sent = message(anonymousId=None, context={"library": {"name": "analytics-python"}})
    body = {"batch": [sent], "sentAt": SENT_AT, "writeKey": KEY, "_metadata": {"n": 1}}

    response = post(collector, body, headers={"X-Retry-Count": "1"})

    assert (200, {"success": True}) == (response.status_code, response.json())
    assert [sent] == collector.messages()
    assert [(True, 200, ())] == marks(collector)
    assert "1" == collector.batches()[0].headers["X-Retry-Count"]


def test_no_sent_at_is_accepted(collector: Collector) -> None:
    """@customerio/cdp-analytics-node 0.5.9 sends no sentAt; the services take it."""
    response = post(collector, {"batch": [message()]})

    assert 200 == response.status_code
    assert [(True, 200, ())] == marks(collector)


@pytest.mark.parametrize(
    ("auth", "headers", "body_key", "status"),
    [
        pytest.param(None, {}, KEY, 200, id="writeKey-in-body-no-header"),
        pytest.param(None, {"Authorization": f"Bearer {KEY}"}, None, 200, id="bearer"),
        pytest.param((KEY, "any-password"), {}, None, 200, id="basic-with-password"),
        pytest.param(None, {"Authorization": "Bearer oauth-token"}, KEY, 200, id="oauth+body"),
        pytest.param(None, {}, "wrong-key", 401, id="unknown-body-key"),
        pytest.param(("wrong-key", ""), {}, None, 401, id="unknown-basic-key"),
        pytest.param(None, {}, None, 401, id="no-key-anywhere"),
    ],
)
def test_write_key_anywhere_the_services_read_it(
    collector: Collector,
    auth: tuple[str, str] | None,
    headers: dict[str, str],
    body_key: str | None,
    status: int,
) -> None:
    """Basic, Bearer or writeKey in the body; a key the collector was not given is 401."""
    body: dict[str, Any] = {"batch": [message()], "sentAt": SENT_AT}
    if body_key is not None:
        body["writeKey"] = body_key

    response = post(collector, body, headers=headers, auth=auth)

    assert status == response.status_code, response.text
    assert (status == 200) == collector.batches()[0].write_key_ok
    assert KEY not in response.text


def test_gzip_body_is_accepted(collector: Collector) -> None:
    body = gzip.compress(json.dumps({"batch": [message()], "sentAt": SENT_AT}).encode())

    response = post(collector, body, headers={"Content-Encoding": "gzip"})

    assert 200 == response.status_code
    assert collector.batches()[0].gzip


def test_what_the_service_would_drop_is_accepted_and_marked(collector: Collector) -> None:
    """Each message keeps its own marks; the valid one beside them has none."""
    anonymous = message(userId=None, anonymousId=None)
    huge = message(properties={"blob": "x" * 33_000})
    late = message("identify", timestamp="yesterday")
    valid = message("page", name="Home", category=None)
    body = {"batch": [anonymous, huge, late, valid]}

    response = post(collector, body)

    assert 200 == response.status_code
    [first, second, third, fourth] = marks(collector)
    assert (True, 200, ("track needs a userId or an anonymousId",)) == first
    size = len(json.dumps(huge, separators=(",", ":")))
    assert (True, 200, (f"message is {size} bytes, the limit is 32000",)) == second
    assert ("timestamp 'yesterday' is not an ISO 8601 date-time",) == third[2]
    assert (True, 200, ()) == fourth
    assert [anonymous, huge, late, valid] == collector.messages()


def test_marks_are_readable_from_the_api(collector: Collector) -> None:
    post(collector, {"batch": [message(event=None)]})

    answer = requests.get(f"{collector.url}/api/events?last=10", timeout=5).json()

    [event] = answer["events"]
    assert (True, ["track needs an event name"]) == (event["accepted"], event["problems"])


def test_wrong_content_type_is_marked_not_refused(collector: Collector) -> None:
    """A form body is a client bug worth naming; text/plain is what analytics.js sends."""
    body = {"batch": [message()], "sentAt": SENT_AT}
    form = "application/x-www-form-urlencoded"

    wrong = post(collector, body, headers={"Content-Type": form})
    plain = post(collector, body, headers={"Content-Type": "text/plain;charset=UTF-8"})

    assert (200, 200) == (wrong.status_code, plain.status_code)
    assert [
        (True, 200, (f"Content-Type must be application/json, got '{form}'",)),
        (True, 200, ()),
    ] == marks(collector)


def test_item_that_is_not_an_object_is_shown_but_is_no_message(collector: Collector) -> None:
    """The service drops it; the viewer shows it marked; messages() lists only messages."""
    kept = message()

    response = post(collector, {"batch": ["just a string", kept]})

    assert 200 == response.status_code
    assert [(True, 200, ("a message must be an object, got str",)), (True, 200, ())] == (
        marks(collector)
    )
    assert ([kept], 1) == (collector.messages(), collector.counts()["messages"])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{not json", "invalid JSON", id="invalid-json"),
        pytest.param(b'{"sentAt": "x"}', 'the body has no "batch" list', id="no-batch"),
        pytest.param(b'{"batch": {}}', '"batch" must be a list, got dict', id="batch-not-list"),
        pytest.param(
            json.dumps({"batch": [message(properties={"b": "x" * 510_000})]}).encode(),
            "request body is",
            id="over-500kb",
        ),
    ],
)
def test_what_the_services_refuse_is_still_400(
    collector: Collector, body: bytes, reason: str
) -> None:
    """Segment answers 400 to JSON errors and bodies over its limit, and so does this."""
    response = post(collector, body)

    assert 400 == response.status_code
    assert response.json()["error"].startswith(reason)
    assert [] == collector.messages()


def test_strict_mode_still_refuses_each_of_these() -> None:
    """The same requests, to Collector(strict=True), get today's answers."""
    with Collector(write_keys=(KEY,), strict=True) as strict:
        no_sent_at = post(strict, {"batch": [message()]})
        body_key = post(
            strict, {"batch": [message()], "sentAt": SENT_AT, "writeKey": KEY}, auth=None
        )
        null_id = post(strict, {"batch": [message(anonymousId=None)], "sentAt": SENT_AT})
        bearer = post(
            strict,
            {"batch": [message()], "sentAt": SENT_AT},
            headers={"Authorization": f"Bearer {KEY}"},
            auth=None,
        )
        plain = post(
            strict,
            {"batch": [message()], "sentAt": SENT_AT},
            headers={"Content-Type": "text/plain"},
        )

    # The key in the body is documented on every path, so the strict mode takes it too.
    assert [400, 200, 400, 401, 415] == [
        answer.status_code for answer in (no_sent_at, body_key, null_id, bearer, plain)
    ]
    assert "sentAt is required" in no_sent_at.json()["error"]
    assert "anonymousId must be a string, got NoneType" in null_id.json()["error"]


def test_sqlite_store_keeps_marks_and_lists_only_messages(tmp_path: Any) -> None:
    database = tmp_path / "events.sqlite3"
    with Collector(database=database) as first:
        post(first, {"batch": [7, message(userId=None)]})
    with Collector(database=database) as second:
        assert [
            (True, 200, ("a message must be an object, got int",)),
            (True, 200, ("track needs a userId or an anonymousId",)),
        ] == marks(second)
        assert (1, {"track": 1}) == (len(second.messages()), second.counts()["by_type"])


def test_basic_auth_header_is_never_echoed(collector: Collector) -> None:
    """A broken Basic header is refused with a reason that names its shape, not its bytes."""
    token = base64.b64encode(b":").decode()
    response = post(
        collector, {"batch": [message()]}, headers={"Authorization": f"Basic {token}"}, auth=None
    )

    assert (401, "the write key (the Basic user name) is empty") == (
        response.status_code,
        response.json()["error"],
    )
