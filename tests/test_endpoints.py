"""Every documented way in: the per-call endpoints, analytics.js's short paths, CORS,
requests refused for their path or method, and reading back (filters, JSONL, reset).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cdp_logging.collector import Collector

KEY = "endpoint-key-5ecret"
SENT_AT = "2024-05-01T12:00:00.000Z"
LONG: dict[str, dict[str, Any]] = {
    "identify": {"userId": "u-1", "traits": {"plan": "pro"}},
    "track": {"userId": "u-1", "event": "Order Completed", "properties": {"revenue": 12.5}},
    "page": {"userId": "u-1", "name": "Install", "properties": {"path": "/docs"}},
    "screen": {"anonymousId": "a-1", "name": "Welcome"},
    "group": {"userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}},
    "alias": {"userId": "u-1", "previousId": "a-1"},
}
SHORT = {kind[0]: kind for kind in LONG}


def strict_json(text: str) -> Any:
    """Parse *text* as RFC 8259 JSON: Infinity and NaN are errors, as in browsers."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def post(
    collector: Collector,
    path: str,
    body: object,
    *,
    auth: tuple[str, str] | None = (KEY, ""),
    headers: dict[str, str] | None = None,
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{collector.url}{path}",
        data=data,
        auth=auth,
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=5,
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(KEY,)) as running:
        yield running


@pytest.fixture
def strict() -> Iterator[Collector]:
    with Collector(write_keys=(KEY,), strict=True) as running:
        yield running


@pytest.mark.parametrize("mode", ["lenient", "strict"])
def test_per_call_endpoints_take_one_message_each_with_either_auth(mode: str) -> None:
    """/v1/<call> (Basic) and /v1/<letter> (writeKey in the body): 24 requests, 24 200s."""
    sent: list[dict[str, Any]] = []
    with Collector(write_keys=(KEY,), strict=mode == "strict") as collector:
        statuses = []
        for kind, fields in LONG.items():
            message = {**fields, "messageId": uuid.uuid4().hex}
            statuses.append(post(collector, f"/v1/{kind}", message).status_code)
            sent.append({**message, "type": kind})
        for letter, kind in SHORT.items():
            message = {**LONG[kind], "type": kind, "messageId": uuid.uuid4().hex}
            body = {**message, "writeKey": KEY, "sentAt": SENT_AT}
            answer = post(
                collector, f"/v1/{letter}", body, auth=None, headers={"Content-Type": "text/plain"}
            )
            statuses.append(answer.status_code)
            sent.append({**message, "sentAt": SENT_AT})
        events = collector.events()

    assert [200] * 12 == statuses
    # The type comes from the path; the key in the body is a credential, not kept.
    assert sent == [event.message for event in events]
    assert [()] * 12 == [event.problems for event in events]
    paths = [f"/v1/{kind}" for kind in LONG] + [f"/v1/{letter}" for letter in SHORT]
    assert paths == [event.path for event in events]


def test_short_batch_path_takes_a_batch(strict: Collector) -> None:
    """/v1/b is analytics.js's batch: text/plain, the key in the body, even when strict."""
    message = {**LONG["track"], "type": "track", "messageId": "m-1"}
    body = {"batch": [message], "sentAt": SENT_AT, "writeKey": KEY}

    answer = post(strict, "/v1/b", body, auth=None, headers={"Content-Type": "text/plain"})

    assert (200, [message]) == (answer.status_code, strict.messages())


def test_analytics_js_metrics_are_answered_and_counted_not_stored(collector: Collector) -> None:
    metrics = {"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1}]}

    answer = post(collector, "/v1/m", metrics, auth=None, headers={"Content-Type": "text/plain"})

    assert 200 == answer.status_code
    assert ([], [("POST", "/v1/m", 200)]) == (
        collector.events(),
        [(r.method, r.path, r.status) for r in collector.requests()],
    )


def test_a_type_against_its_path_is_marked_or_refused(
    collector: Collector, strict: Collector
) -> None:
    body = {"type": "identify", "userId": "u-1", "messageId": "m-1"}

    lenient = post(collector, "/v1/track", body)
    refused = post(strict, "/v1/track", body)

    reason = "posted to /v1/track (a track) but its type is 'identify'"
    assert (200, (reason,)) == (lenient.status_code, collector.events()[0].problems)
    assert (400, reason) == (refused.status_code, refused.json()["error"])


def test_cors_preflight_and_answers(collector: Collector) -> None:
    origin = "http://127.0.0.1:9"
    preflight = requests.options(
        f"{collector.url}/v1/t",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-custom",
        },
        timeout=5,
    )
    sent = post(collector, "/v1/t", LONG["track"], headers={"Origin": origin})
    missing = post(collector, "/v1/nowhere", {}, headers={"Origin": origin})
    plain = post(collector, "/v1/t", LONG["track"])

    control = requests.options(
        f"{collector.url}/api/events",
        headers={"Origin": origin, "Access-Control-Request-Method": "DELETE"},
        timeout=5,
    )
    read = requests.get(f"{collector.url}/api/events", headers={"Origin": origin}, timeout=5)

    assert (204, b"") == (preflight.status_code, preflight.content)
    # Another origin may read events back, but not delete them or add faults.
    assert (204, "GET, OPTIONS") == (
        control.status_code,
        control.headers["Access-Control-Allow-Methods"],
    )
    assert origin == read.headers["Access-Control-Allow-Origin"]
    # Without asking first (a text/plain POST, a DELETE sent anyway), it is refused.
    fault = requests.post(
        f"{collector.url}/faults",
        data=json.dumps({"kind": "status", "status": 500}),
        headers={"Origin": origin, "Content-Type": "text/plain"},
        timeout=5,
    )
    wipe = requests.delete(f"{collector.url}/api/events", headers={"Origin": origin}, timeout=5)
    own = requests.delete(f"{collector.url}/faults", headers={"Origin": collector.url}, timeout=5)
    assert (403, 403, 200) == (fault.status_code, wipe.status_code, own.status_code)
    assert [] == collector.faults.active()
    assert origin == preflight.headers["Access-Control-Allow-Origin"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].split(", ")
    assert {"authorization", "content-type", "x-custom"} <= set(allowed)
    assert [(200, origin), (404, origin), (200, None)] == [
        (answer.status_code, answer.headers.get("Access-Control-Allow-Origin"))
        for answer in (sent, missing, plain)
    ]


def test_message_id_is_given_and_context_merged(collector: Collector) -> None:
    """Segment's own batch example: no messageIds, a context for the whole batch."""
    body = {
        "batch": [
            {"type": "track", "userId": "u-1", "event": "A", "context": {"ip": "10.0.0.1"}},
            {"type": "identify", "userId": "u-1", "integrations": {"All": False}},
        ],
        "context": {"ip": "10.0.0.9", "device": {"type": "phone"}},
        "integrations": {"All": True, "Mixpanel": False},
    }

    answer = post(collector, "/v1/batch", body)

    first, second = collector.events()
    assert 200 == answer.status_code
    assert ((), ()) == (first.problems, second.problems)
    assert first.message["messageId"] != second.message["messageId"]
    assert first.message["messageId"].startswith("collector-")
    assert {"ip": "10.0.0.1", "device": {"type": "phone"}} == first.message["context"]
    assert {"All": True, "Mixpanel": False} == first.message["integrations"]
    assert {"ip": "10.0.0.9", "device": {"type": "phone"}} == second.message["context"]
    assert {"All": False, "Mixpanel": False} == second.message["integrations"]


def test_a_context_merged_into_too_many_messages_is_refused(collector: Collector) -> None:
    """A 40 KB context and 12,000 empty messages fit in one body, not merged in memory."""
    body = {"batch": [{}] * 12_000, "context": {"pad": "x" * 40_000}, "writeKey": KEY}

    answer = post(collector, "/v1/batch", body, auth=None)

    assert 400 == answer.status_code
    assert answer.json()["error"].startswith(
        "the batch's context and integrations (40022 bytes), merged into each of its 12000"
    )
    assert 0 == collector.counts()["messages"]


def test_strict_mode_still_requires_a_message_id(strict: Collector) -> None:
    body = {"batch": [{"type": "track", "userId": "u-1", "event": "A"}], "sentAt": SENT_AT}

    answer = post(strict, "/v1/batch", body)

    assert (400, "batch[0]: messageId is required") == (answer.status_code, answer.json()["error"])


def test_non_finite_numbers_are_marked_and_every_answer_is_json(
    collector: Collector, strict: Collector
) -> None:
    body = b'{"batch": [{"type": "track", "userId": "u", "event": "A", "messageId": "m",'
    body += b' "properties": {"big": 1e999, "small": -1e999, "fine": 1.5}}],'
    body += b' "sentAt": "2024-05-01T12:00:00.000Z"}'

    lenient = post(collector, "/v1/batch", body)
    refused = post(strict, "/v1/batch", body)
    readings = [
        requests.get(f"{collector.url}{path}", timeout=5).text
        for path in ("/messages", "/api/events?last=10", "/api/plan", "/stats")
    ]
    lines = requests.get(f"{collector.url}/api/events.jsonl", timeout=5).text.splitlines()

    reason = "properties.big, properties.small: a number too large for JSON (1e999 or more)"
    assert (200, (reason,)) == (lenient.status_code, collector.events()[0].problems)
    assert {"big": None, "small": None, "fine": 1.5} == collector.messages()[0]["properties"]
    assert 400 == refused.status_code
    assert reason in refused.json()["error"]
    for text in [*readings, *lines, *(json.dumps(e.to_json()) for e in strict.events())]:
        strict_json(text)
    assert not any(
        isinstance(value, float) and not math.isfinite(value)
        for value in strict.events()[0].message["properties"].values()
    )


def test_every_request_is_counted_with_method_path_and_status(collector: Collector) -> None:
    url = collector.url
    answers = [
        requests.post(f"{url}/v1/tracks", json={}, auth=(KEY, ""), timeout=5).status_code,
        requests.get(f"{url}/v1/track", timeout=5).status_code,
        requests.put(f"{url}/v1/batch", json={}, timeout=5).status_code,
        requests.request("BREW", f"{url}/v1/batch", timeout=5).status_code,
        post(collector, "/v1/track", LONG["track"], auth=("wrong", "")).status_code,
        post(collector, "/v1/track", LONG["track"]).status_code,
    ]
    brewed = requests.request("BREW", f"{url}/v1/batch", timeout=5)
    requests.get(f"{url}/api/events", timeout=5)  # reading back is not counted

    stats = requests.get(f"{url}/stats", timeout=5).json()
    assert [404, 405, 405, 501, 401, 200] == answers
    assert ("application/json", True) == (brewed.headers["Content-Type"], "BREW" in brewed.text)
    assert (7, 1, 6) == (
        stats["requests"],
        stats["accepted_requests"],
        stats["rejected_requests"],
    )
    assert [
        ("POST", "/v1/tracks", 404, 1),
        ("GET", "/v1/track", 405, 1),
        ("PUT", "/v1/batch", 405, 1),
        ("BREW", "/v1/batch", 501, 2),
        ("POST", "/v1/track", 401, 1),
        ("POST", "/v1/track", 200, 1),
    ] == [(r["method"], r["path"], r["status"], r["count"]) for r in stats["by_request"]]
    # Each refusal is a row of the viewer: an event without a message.
    refused = [(e.method, e.path, e.status) for e in collector.events() if e.message is None]
    assert [
        ("POST", "/v1/tracks", 404),
        ("GET", "/v1/track", 405),
        ("PUT", "/v1/batch", 405),
        ("BREW", "/v1/batch", 501),
        ("BREW", "/v1/batch", 501),
    ] == refused
    assert 2 == len(collector.batches())


def seed(collector: Collector) -> None:
    """Five messages: two users, three call types, one marked."""
    batch = [
        {"type": "track", "userId": "ann", "event": "Order Completed", "messageId": "1"},
        {"type": "track", "userId": "bob", "event": "Signed Up", "messageId": "2"},
        {"type": "page", "anonymousId": "anon-9", "name": "Order Completed", "messageId": "3"},
        {"type": "identify", "userId": "ann", "traits": {"plan": "pro"}, "messageId": "4"},
        {"type": "track", "userId": "ann", "messageId": "5"},
    ]
    assert 200 == post(collector, "/v1/batch", {"batch": batch}).status_code


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("type=track", ["1", "2", "5"]),
        ("event=Order%20Completed", ["1", "3"]),
        ("user_id=ann", ["1", "4", "5"]),
        ("anonymous_id=anon-9", ["3"]),
        ("marked=true", ["5"]),
        ("marked=false", ["1", "2", "3", "4"]),
        ("type=track&user_id=ann&marked=false", ["1"]),
        ("user_id=ann&limit=2", ["1", "4"]),
        ("user_id=ann&last=2", ["4", "5"]),
        ("user_id=nobody", []),
    ],
)
def test_events_filters(collector: Collector, query: str, ids: list[str]) -> None:
    seed(collector)

    answer = requests.get(f"{collector.url}/api/events?{query}", timeout=5)

    assert ids == [event["message"]["messageId"] for event in answer.json()["events"]]


@pytest.mark.parametrize(
    "query", ["marked=yes", "type=track&type=page", "colour=red", "limit=0", "last=2&limit=2"]
)
def test_bad_filters_are_400(collector: Collector, query: str) -> None:
    answer = requests.get(f"{collector.url}/api/events?{query}", timeout=5)

    assert 400 == answer.status_code
    assert answer.json()["error"]


def test_the_same_filters_in_python(collector: Collector) -> None:
    seed(collector)

    found = collector.events(type="track", user_id="ann", marked=False)
    pages = collector.events(event="Order Completed", anonymous_id="anon-9")

    assert (["1"], ["3"]) == (
        [event.message["messageId"] for event in found],
        [event.message["messageId"] for event in pages],
    )


def test_delete_empties_the_store_and_the_counts(collector: Collector) -> None:
    seed(collector)
    collector.faults.status(503, count=1)

    answer = requests.delete(f"{collector.url}/api/events", timeout=5)

    assert 200 == answer.status_code
    assert ([], [], 0) == (collector.events(), collector.messages(), collector.counts()["requests"])
    assert 1 == len(collector.faults.active())  # the faults are the test's, not the store's


def test_jsonl_export(collector: Collector, tmp_path: Path) -> None:
    seed(collector)
    post(collector, "/v1/batch", b"not json")

    every = requests.get(f"{collector.url}/api/events.jsonl", timeout=5)
    tracks = requests.get(f"{collector.url}/api/events.jsonl?type=track&marked=false", timeout=5)
    written = collector.export_jsonl(tmp_path / "out.jsonl")

    assert "application/x-ndjson" == every.headers["Content-Type"]
    assert collector.messages() == [strict_json(line) for line in every.text.splitlines()]
    assert ["1", "2"] == [strict_json(line)["messageId"] for line in tracks.text.splitlines()]
    assert (5, every.text) == (written, (tmp_path / "out.jsonl").read_text())


def test_jsonl_option_appends_each_message_as_it_arrives(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    path.write_text('{"kept": "from before"}\n')
    with Collector(jsonl=path) as collector:
        seed(collector)
        post(collector, "/v1/t", {**LONG["track"], "messageId": "6"}, auth=None)

    lines = [strict_json(line) for line in path.read_text().splitlines()]
    assert [{"kept": "from before"}, *collector.messages()] == lines
    assert 6 == len(lines)  # the refused request (no key) wrote nothing


def test_collect_command_writes_jsonl_and_prints_refusals(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    command = [sys.executable, "-m", "cdp_logging.collector", "--port", "0", "--jsonl", str(path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[3]
            requests.post(f"{url}/v1/tracks", json={}, auth=(KEY, ""), timeout=5)
            requests.post(f"{url}/v1/track", json=LONG["track"], auth=(KEY, ""), timeout=5)
            requests.options(f"{url}/v1/t", headers={"Origin": "http://127.0.0.1:9"}, timeout=5)
            refused, accepted = process.stdout.readline(), process.stdout.readline()
            preflight = process.stdout.readline()
        finally:
            process.terminate()
            process.wait(timeout=10)

    assert refused.startswith("rejected HTTP 404 POST /v1/tracks (0 messages): no such endpoint")
    assert accepted.startswith("track")
    assert "answered HTTP 204 OPTIONS /v1/t (0 messages)\n" == preflight
    [line] = path.read_text().splitlines()
    assert "Order Completed" == strict_json(line)["event"]


def test_absurd_latency_is_refused(collector: Collector) -> None:
    """1e308 s used to be accepted, and the next batch then got no answer at all."""
    answers = [
        requests.post(f"{collector.url}/faults", json=spec, timeout=5)
        for spec in ({"kind": "latency", "delay": 1e308}, {"kind": "latency", "delay": 3601})
    ]

    assert [400, 400] == [answer.status_code for answer in answers]
    assert "delay must be at most 3600 seconds" in answers[1].json()["error"]
    assert 200 == post(collector, "/v1/batch", {"batch": [LONG["track"]]}).status_code


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="garbled-line"),
        pytest.param(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, id="long-uri"),
        pytest.param(b"BREW /v1/t HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 501, id="method"),
    ],
)
def test_the_server_s_own_refusals_are_json_and_counted(
    collector: Collector, request_bytes: bytes, status: int
) -> None:
    """What http.server answers by itself (HTML before) is JSON, and shows like the rest."""
    with socket.create_connection(("127.0.0.1", collector.port or 0), timeout=5) as connection:
        connection.sendall(request_bytes)
        answer = b""
        while chunk := connection.recv(65536):  # the server closes: bounded
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert strict_json(body.decode())["error"]
    assert [status] == [record.status for record in collector.requests()]


def test_sqlite_store_filters_counts_and_forgets_the_same(tmp_path: Path) -> None:
    """The same reading back from a database, also for what an earlier run kept."""
    database = tmp_path / "events.sqlite3"
    with Collector(database=database) as first:
        seed(first)
        requests.post(f"{first.url}/v1/tracks", json={}, timeout=5)
    with Collector(database=database) as second:
        url = second.url
        newest = requests.get(f"{url}/api/events?user_id=ann&last=2", timeout=5).json()
        marked = second.events(marked=True)
        counts = second.counts()
        lines = requests.get(f"{url}/api/events.jsonl?type=track", timeout=5).text.splitlines()
        requests.delete(f"{url}/api/events", timeout=5)
        emptied = (second.events(), second.counts()["requests"])

    assert ["4", "5"] == [event["message"]["messageId"] for event in newest["events"]]
    assert [("POST", "/v1/batch", "5"), ("POST", "/v1/tracks", None)] == [
        (e.method, e.path, e.message and e.message["messageId"]) for e in marked
    ]
    assert [
        {"method": "POST", "path": "/v1/batch", "status": 200, "count": 1},
        {"method": "POST", "path": "/v1/tracks", "status": 404, "count": 1},
    ] == counts["by_request"]
    assert ["1", "2", "5"] == [strict_json(line)["messageId"] for line in lines]
    assert ([], 0) == emptied
