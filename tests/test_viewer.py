"""The live viewer: what the collector keeps for it, the JSON it polls, and the page.

The page itself is tested in a real headless Chromium, driven by playwright: Debian's
``chromium`` package (``.ci/run`` installs it), never a browser playwright downloads.
Without it those tests fail, saying how to install it; the rest of this file needs none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

import cdp_logging
from cdp_logging.collector import Collector, StoredEvent
from cdp_logging.collector._plan import TrackingPlan

from .test_sdks import INSTALL_SECONDS, Sdk, install

KEY = "viewer-test-key-5ecret"
SENT_AT = "2024-05-01T12:00:00.000Z"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The page polls every second; this bounds every wait for what it shows.
WAIT_MS = 15_000
SCREENSHOT = Path("/tmp/viewer.png")
PLAN_SCREENSHOT = Path("/tmp/viewer-plan.png")
SCHEMA_SCREENSHOT = Path("/tmp/viewer-schema.png")


def message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A valid message of *kind*; *fields* override or add (None removes a field)."""
    base: dict[str, Any] = {"type": kind, "messageId": uuid.uuid4().hex, "userId": "u1"}
    base.update({"track": {"event": "Signed Up"}}.get(kind, {}))
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def post(collector: Collector, payload: object, key: str = KEY) -> requests.Response:
    """POST *payload* to /v1/batch as a hand-written client would (bytes go as they are)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(
        f"{collector.url}/v1/batch",
        data=data,
        headers={"Content-Type": "application/json"},
        auth=(key, ""),
        timeout=5,
    )


def batch(*messages: object) -> dict[str, Any]:
    return {"batch": list(messages), "sentAt": SENT_AT}


def shown(events: list[StoredEvent]) -> list[tuple[bool, int, tuple[str, ...], Any]]:
    return [(event.accepted, event.status, event.problems, event.message) for event in events]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(KEY,), strict=True) as running:
        yield running


class TestStoredEvents:
    def test_accepted_messages_are_events_without_problems(self, collector: Collector) -> None:
        """Each accepted message is an event with status 200 and no problems."""
        sent = [message(), message("identify")]
        post(collector, batch(*sent))

        assert [(True, 200, (), sent[0]), (True, 200, (), sent[1])] == shown(collector.events())

    def test_rejected_batch_keeps_each_message_with_its_problems(
        self, collector: Collector
    ) -> None:
        """A message at fault shows its own problem; its valid neighbour the batch's reason."""
        good = message("identify")
        bad = message("track", event=None)

        response = post(collector, batch(good, bad))

        reason = "batch[1]: track needs an event name"
        assert (400, reason) == (response.status_code, response.json()["error"])
        assert [
            (False, 400, (f"HTTP 400: {reason}",), good),
            (False, 400, ("track needs an event name",), bad),
        ] == shown(collector.events())
        assert [] == collector.messages()

    def test_refused_key_is_every_message_s_problem(self, collector: Collector) -> None:
        """A request refused as a whole (here, its key) gives every message that reason."""
        sent = message()
        post(collector, batch(sent), key="wrong-key")

        assert [(False, 401, ("HTTP 401: unknown write key",), sent)] == shown(collector.events())

    def test_unreadable_body_is_one_event_without_a_message(self, collector: Collector) -> None:
        """A body that is not JSON still shows, as one event with no message."""
        post(collector, b"{not json")

        [(accepted, status, problems, stored)] = shown(collector.events())
        assert (False, 400, None) == (accepted, status, stored)
        assert problems[0].startswith("HTTP 400: invalid JSON")

    def test_items_that_are_not_objects_are_kept_as_sent(self, collector: Collector) -> None:
        """Whatever JSON value stood in a rejected batch is kept, for the viewer to show."""
        post(collector, batch("just a string"))

        assert [(False, 400, ("a message must be an object, got str",), "just a string")] == (
            shown(collector.events())
        )

    def test_fault_answers_are_events_too(self, collector: Collector) -> None:
        """A batch a fault turned away shows with the fault's answer."""
        collector.faults.status(503, count=1)
        post(collector, batch(message()))

        assert [(False, 503, ("HTTP 503: injected fault: 503",))] == [
            row[:3] for row in shown(collector.events())
        ]

    def test_ids_grow_and_are_never_reused(self, collector: Collector) -> None:
        """Ids keep growing across reset(), so a viewer polling 'after N' misses nothing."""
        post(collector, batch(message(), message()))
        collector.reset()
        post(collector, batch(message()))

        assert [3] == [event.id for event in collector.events()]
        assert [] == collector.events(after=3)

    def test_after_and_limit(self, collector: Collector) -> None:
        """events(after, limit) pages through what arrived, oldest first."""
        post(collector, batch(*(message() for _ in range(5))))

        assert ([3, 4], [5], []) == (
            [event.id for event in collector.events(after=2, limit=2)],
            [event.id for event in collector.events(after=4)],
            collector.events(after=5),
        )

    def test_events_are_copies(self, collector: Collector) -> None:
        """Changing a returned event's message does not change the store."""
        post(collector, batch(message()))
        collector.events()[0].message["userId"] = "changed"

        assert "u1" == collector.events()[0].message["userId"]


class TestSQLiteStore:
    def test_same_answers_as_memory(self, tmp_path: Path) -> None:
        """A database-backed collector answers messages, counts and records like the default."""
        sent = [message(messageId="a"), message("page", messageId="b"), message(messageId="a")]
        invalid = message(event=None)
        answers = []
        for database in (None, tmp_path / "events.sqlite3"):
            with Collector(write_keys=(KEY,), database=database, strict=True) as running:
                post(running, batch(*sent))
                post(running, batch(invalid))
                post(running, b"nope")
                answers.append(
                    (
                        running.messages(),
                        running.counts(),
                        # Each listens on its own port, which its Host header names.
                        [dataclasses.replace(record, headers={}) for record in running.batches()],
                        shown(running.events()),
                    )
                )

        assert answers[0] == answers[1]
        assert {"track": 2, "page": 1} == answers[1][1]["by_type"]
        assert 1 == answers[1][1]["duplicate_message_ids"]

    def test_reopening_keeps_prior_events(self, tmp_path: Path) -> None:
        """A new collector on the same file starts with what the last one stored."""
        database = tmp_path / "events.sqlite3"
        sent = message()
        with Collector(database=database, strict=True) as first:
            post(first, batch(sent))
            post(first, batch(message(event=None)))
        with Collector(database=database, strict=True) as second:
            post(second, batch(message("identify")))
            kept = second.messages()
            ids = [event.id for event in second.events()]

        assert (sent, "identify") == (kept[0], kept[1]["type"])
        assert [1, 2, 3] == ids

    def test_reading_after_close_reopens_the_file(self, tmp_path: Path) -> None:
        """A closed collector can still be read: the file is opened again."""
        with Collector(database=tmp_path / "events.sqlite3", strict=True) as running:
            post(running, batch(message()))

        assert 1 == len(running.messages())

    def test_uses_wal_mode(self, tmp_path: Path) -> None:
        """The file is in WAL mode, so another process can read while the collector writes."""
        database = tmp_path / "events.sqlite3"
        with Collector(database=database, strict=True):
            with sqlite3.connect(database) as reader:
                mode = reader.execute("PRAGMA journal_mode").fetchone()[0]
            reader.close()

        assert "wal" == mode

    def test_wait_for_messages(self, tmp_path: Path) -> None:
        """wait_for_messages works on the database store too."""
        with Collector(database=tmp_path / "events.sqlite3", strict=True) as running:
            post(running, batch(message(), message()))

            assert running.wait_for_messages(2, timeout=0)
            assert not running.wait_for_messages(3, timeout=0.01)

    def test_foreign_database_is_refused(self, tmp_path: Path) -> None:
        """A database the collector did not write is refused, not written into."""
        database = tmp_path / "app.sqlite3"
        with sqlite3.connect(database) as other:
            other.execute("CREATE TABLE users (id INTEGER)")
        other.close()

        with pytest.raises(ValueError, match="not a cdp-logging collector database"):
            Collector(database=database, strict=True)

    def test_a_file_that_is_not_a_database_raises(self, tmp_path: Path) -> None:
        """A file that is not SQLite raises sqlite3.DatabaseError at construction."""
        path = tmp_path / "notes.txt"
        path.write_text("not a database\n" * 100)

        with pytest.raises(sqlite3.DatabaseError):
            Collector(database=path, strict=True)


class TestEventsEndpoint:
    def get(self, collector: Collector, query: str) -> requests.Response:
        return requests.get(f"{collector.url}/api/events{query}", timeout=5)

    def test_after_limit_and_last(self, collector: Collector) -> None:
        """?after=N&limit=M pages forward; ?last=M answers the newest M, oldest first."""
        post(collector, batch(*(message() for _ in range(4))))

        def ids(query: str) -> list[int]:
            return [event["id"] for event in self.get(collector, query).json()["events"]]

        assert ([1, 2, 3, 4], [2, 3], [3, 4], []) == (
            ids(""),
            ids("?after=1&limit=2"),
            ids("?last=2"),
            ids("?after=4"),
        )

    def test_event_json(self, collector: Collector) -> None:
        """Each event carries id, received_at, accepted, status, problems and the message."""
        sent = message()
        post(collector, batch(sent))

        [event] = self.get(collector, "").json()["events"]
        assert {
            "id": 1,
            "accepted": True,
            "status": 200,
            "problems": [],
            "message": sent,
            "method": "POST",
            "path": "/v1/batch",
        } == {key: value for key, value in event.items() if key != "received_at"}
        assert event["received_at"].endswith("Z")

    @pytest.mark.parametrize(
        "query",
        ["?after=-1", "?limit=0", "?limit=1001", "?last=5&after=1", "?user=ann", "?after=x"],
    )
    def test_bad_queries_are_400(self, collector: Collector, query: str) -> None:
        """A query the endpoint cannot answer exactly is a 400 with a reason."""
        response = self.get(collector, query)

        assert 400 == response.status_code
        assert response.json()["error"]

    def test_page_is_self_contained(self, collector: Collector) -> None:
        """GET / is one HTML page that loads nothing else, under a CSP that forbids it."""
        response = requests.get(f"{collector.url}/", timeout=5)
        policy = response.headers["Content-Security-Policy"]

        assert (200, "text/html; charset=utf-8") == (
            response.status_code,
            response.headers["Content-Type"],
        )
        assert "default-src 'none'" in policy
        assert "connect-src 'self'" in policy
        for outside in ("http://", "https://", "src=", "innerHTML", "insertAdjacentHTML"):
            assert outside not in response.text


# -- the page in a real browser -------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = next((path for path in CHROMIUM_PATHS if os.path.exists(path)), None)
    if executable is None:
        # A failure, not a skip: a skipped browser test would hide that the viewer
        # was never looked at. .ci/run installs Debian's chromium where it is missing.
        pytest.fail(
            f"chromium not installed: none of {', '.join(CHROMIUM_PATHS)} exists "
            "(apt-get install chromium; .ci/run does)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 700})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    try:
        yield opened
    finally:
        context.close()


def utc(timestamp: str) -> str:
    """An ISO 8601 time as the viewer's column shows it: UTC, milliseconds, "Z"."""
    moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def table(page: Page) -> list[list[str]]:
    """The text of every visible row's cells, top to bottom."""
    rows: list[list[str]] = page.locator("#rows tr:visible").evaluate_all(
        "rows => rows.map(row => Array.from(row.cells, cell => cell.textContent))"
    )
    return rows


class TestViewerPage:
    def test_live_rows_filters_and_details(self, collector: Collector, page: Page) -> None:
        """Rows arrive live; filters narrow them; a click shows the event's JSON."""
        requested: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("console", lambda entry: errors.append(entry.text) if _is_error(entry) else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{collector.url}/")
        expect(page.locator("#status")).to_have_text("0 events \u00b7 live", timeout=WAIT_MS)
        expect(page.locator("#empty")).to_be_visible()

        with cdp_logging.Analytics(
            KEY, host=collector.url, max_retries=0, max_events_in_batch=1
        ) as client:
            tracked = client.track("ann", "Purchased", {"revenue": 1}, message_id="t-1").result(5)
            paged = client.page("bob", "Docs", category="Help", message_id="p-1").result(5)
            hostile = client.track(
                "eve", "<img src=x onerror=window.pwned=1>", message_id="x-1"
            ).result(5)
        rejected = post(
            collector,
            batch(
                message("identify", userId="carol", traits={"plan": "pro"}, messageId="i-1"),
                message("track", userId="dave", event=None, messageId="bad-1"),
            ),
        )
        assert 400 == rejected.status_code

        rows = page.locator("#rows tr")
        expect(rows).to_have_count(5, timeout=WAIT_MS)
        received = {event.message["messageId"]: event.received_at for event in collector.events()}
        why = "HTTP 400: batch[1]: track needs an event name"
        # One form in the column: the collector's times and the messages' timestamps.
        assert [
            ["track", "dave", "", utc(received["bad-1"]), "track needs an event name"],
            ["identify", "carol", "traits: plan", utc(received["i-1"]), why],
            ["track", "eve", "<img src=x onerror=window.pwned=1>", utc(hostile["timestamp"]), ""],
            ["page", "bob", "Docs (Help)", utc(paged["timestamp"]), ""],
            ["track", "ann", "Purchased", utc(tracked["timestamp"]), ""],
        ] == table(page)
        assert all(row[3].endswith("Z") and len(row[3]) == 24 for row in table(page))
        assert page.evaluate("window.pwned === undefined")
        expect(page.locator("#empty")).to_be_hidden()
        expect(rows.filter(has_text="dave")).to_have_class("rejected")

        page.select_option("#type-filter", "track")
        expect(page.locator("#rows tr:visible")).to_have_count(3)
        assert ["dave", "eve", "ann"] == [row[1] for row in table(page)]
        expect(page.locator("#status")).to_have_text("3 of 5 events shown \u00b7 live")

        page.select_option("#type-filter", "")
        page.fill("#user-filter", "ann")
        expect(page.locator("#rows tr:visible")).to_have_count(1)
        assert ["ann"] == [row[1] for row in table(page)]

        # A new event arrives while filtered: it shows only if it matches.
        with cdp_logging.Analytics(
            KEY, host=collector.url, max_retries=0, max_events_in_batch=1
        ) as client:
            client.screen("ann", "Home", message_id="s-1").result(5)
            client.screen("zed", "Home", message_id="s-2").result(5)
        expect(rows).to_have_count(7)
        expect(page.locator("#rows tr:visible")).to_have_count(2)
        assert [["screen", "ann"], ["track", "ann"]] == [row[:2] for row in table(page)]

        page.locator("#rows tr:visible", has_text="Purchased").click()
        expect(page.locator("#detail-json")).to_contain_text('"messageId": "t-1"')
        expect(page.locator("#detail-title")).to_contain_text("accepted (HTTP 200)")
        shown_json = json.loads(page.locator("#detail-json").text_content() or "")
        assert tracked == shown_json

        page.fill("#user-filter", "")
        page.locator("#rows tr", has_text="dave").click()
        expect(page.locator("#detail-json")).to_contain_text('"messageId": "bad-1"')
        expect(page.locator("#detail-title")).to_contain_text("rejected (HTTP 400)")
        expect(page.locator("#detail-problems li")).to_have_text(["track needs an event name"])
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        assert [] == errors
        assert [] == [url for url in requested if not url.startswith(f"{collector.url}/")]

    def test_shows_what_a_database_kept(self, tmp_path: Path, page: Page) -> None:
        """Opened on a collector restarted on its database, the page lists earlier events."""
        database = tmp_path / "events.sqlite3"
        with Collector(database=database, strict=True) as first:
            post(first, batch(message(userId="kept")))
        with Collector(database=database, strict=True) as second:
            page.goto(f"{second.url}/")

            expect(page.locator("#rows tr")).to_have_count(1, timeout=WAIT_MS)
            assert "kept" == table(page)[0][1]

    def test_says_when_the_collector_is_gone(self, collector: Collector, page: Page) -> None:
        """When polling fails the status line says so, and recovers when it is back."""
        page.goto(f"{collector.url}/")
        status = page.locator("#status")
        expect(status).to_contain_text("live", timeout=WAIT_MS)

        collector.stop()
        expect(status).to_contain_text("collector unreachable", timeout=WAIT_MS)
        expect(status).to_have_class("down")
        collector.start()
        expect(status).to_have_text("0 events \u00b7 live", timeout=WAIT_MS)


def _is_error(entry: ConsoleMessage) -> bool:
    return entry.type == "error"


# -- the tracking plan: rate and schema -------------------------------------------------


def plan_of(collector: Collector) -> dict[str, Any]:
    answer = requests.get(f"{collector.url}/api/plan", timeout=5)
    assert 200 == answer.status_code
    plan: dict[str, Any] = answer.json()
    assert collector.plan()["schema"] == plan["schema"]
    assert collector.strict is plan["strict"]
    return plan


def keys_of(
    plan: dict[str, Any], kind: str, name: str = ""
) -> dict[str, tuple[dict[str, int], bool]]:
    [event] = [e for e in plan["schema"]["events"] if (e["type"], e["name"]) == (kind, name)]
    return {key["key"]: (key["types"], key["conflict"]) for key in event["keys"]}


class TestTrackingPlan:
    def test_schema_flags_a_key_seen_with_two_types(self, collector: Collector) -> None:
        """revenue as a number and as a string is flagged; null beside a type is not."""
        post(
            collector,
            batch(
                message(event="Order Completed", properties={"revenue": 12, "coupon": None}),
                message(event="Order Completed", properties={"revenue": 9.5, "coupon": "X"}),
                message(event="Order Completed", properties={"revenue": "12.50", "items": []}),
                message("identify", traits={"plan": "pro", "seats": 3}),
                message("identify", traits={"plan": "team", "beta": True}),
            ),
        )

        plan = plan_of(collector)

        assert {
            "coupon": ({"null": 1, "string": 1}, False),
            "items": ({"array": 1}, False),
            "revenue": ({"number": 2, "string": 1}, True),
        } == keys_of(plan, "track", "Order Completed")
        assert {
            "beta": ({"boolean": 1}, False),
            "plan": ({"string": 2}, False),
            "seats": ({"number": 1}, False),
        } == keys_of(plan, "identify")
        assert 0 == plan["schema"]["left_out"]

    def test_rate_counts_each_second_by_type(self, collector: Collector) -> None:
        post(collector, batch(message(), message(), message("identify")))

        rate = plan_of(collector)["rate"]

        assert 300 == rate["seconds"]
        assert {"track": 2, "identify": 1} == {
            kind: n for entry in rate["counts"] for kind, n in entry["by_type"].items()
        }
        assert all(rate["start"] <= entry["second"] for entry in rate["counts"])

    def test_rate_forgets_what_is_older_than_its_window(self) -> None:
        plan = TrackingPlan()
        plan.add(1_000.5, [{"type": "track", "event": "A"}])
        plan.add(1_000.9, [{"type": "track", "event": "A"}])
        plan.add(1_400.0, [{"type": "page", "name": "B"}])

        assert [{"second": 1_400, "by_type": {"page": 1}}] == plan.rate(1_400.2)["counts"]
        # The schema is not a window: it keeps what the chart has forgotten.
        assert [("page", "B", 1), ("track", "A", 2)] == [
            (event["type"], event["name"], event["messages"]) for event in plan.schema()["events"]
        ]

    def test_schema_is_bounded(self) -> None:
        """A fresh event name per call cannot grow it without end: the rest is counted."""
        plan = TrackingPlan()
        plan.add(0.0, [{"type": "track", "event": f"E{n}"} for n in range(600)])
        plan.add(0.0, [{"type": "identify", "traits": {f"k{n}": n for n in range(300)}}])

        schema = plan.schema()
        assert (500, 600 - 500 + 1) == (len(schema["events"]), schema["left_out"])

    def test_rejected_messages_are_not_in_the_plan(self, collector: Collector) -> None:
        post(collector, batch(message(event=None, properties={"x": 1})))

        assert [] == plan_of(collector)["schema"]["events"]

    def test_a_reopened_database_relearns_its_schema(self, tmp_path: Path) -> None:
        database = tmp_path / "events.sqlite3"
        with Collector(database=database) as first:
            post(first, batch(message(properties={"revenue": 1})))
        with Collector(database=database) as second:
            assert {"revenue": ({"number": 1}, False)} == keys_of(
                second.plan(), "track", "Signed Up"
            )


class TestTrackingPlanPage:
    def test_chart_and_schema_view(self, page: Page) -> None:
        """The chart stacks each type's bar; the Schema view flags the two-typed key."""
        errors: list[str] = []
        page.on("console", lambda entry: errors.append(entry.text) if _is_error(entry) else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        with Collector(write_keys=(KEY,)) as lenient:
            page.goto(f"{lenient.url}/")
            expect(page.locator("#status")).to_contain_text("live", timeout=WAIT_MS)
            sent = [
                message(event="Order Completed", properties={"revenue": 12.5, "currency": "EUR"}),
                message(
                    event="Order Completed", properties={"revenue": "12.50", "currency": "EUR"}
                ),
                message("identify", traits={"plan": "pro", "seats": 3}),
                message("page", name="Pricing", properties={"path": "/pricing"}),
                message(userId=None, anonymousId=None, event="Anonymous Click"),
            ]
            assert 200 == post(lenient, {"batch": sent}).status_code

            expect(page.locator("#rate rect")).not_to_have_count(0, timeout=WAIT_MS)
            fills = set(
                page.locator("#rate rect").evaluate_all("r => r.map(x => x.getAttribute('fill'))")
            )
            assert {"#16a34a", "#2563eb", "#9333ea"} == fills
            expect(page.locator("#legend")).to_contain_text("track 3")
            expect(page.locator("#mode")).to_have_text("lenient mode")
            expect(page.locator("#rows tr.flagged")).to_have_count(1)
            expect(page.locator("#rows tr.flagged td.problems")).to_have_text(
                "track needs a userId or an anonymousId"
            )
            page.screenshot(path=str(PLAN_SCREENSHOT))

            page.click("nav button[data-view=schema]")
            expect(page.locator("#schema")).to_be_visible()
            expect(page.locator("#events-view")).to_be_hidden()
            conflict = page.locator("#schema-rows tr.conflict")
            expect(conflict).to_have_count(1)
            expect(conflict.locator("td.key")).to_have_text("properties.revenue")
            expect(conflict.locator("td.types")).to_have_text("number \u00d71, string \u00d71")
            expect(conflict.locator("td.flag")).to_have_text("\u26a0 2 types")
            expect(page.locator("#schema-summary")).to_have_text(
                "4 events and traits; 1 key seen with more than one type."
            )
            page.screenshot(path=str(SCHEMA_SCREENSHOT))

            page.click("nav button[data-view=events]")
            expect(page.locator("#rows")).to_be_visible()
        assert [] == errors

    def test_schema_view_shows_the_declared_plan(self, page: Page) -> None:
        """With ``plan=``: each planned event seen or not, the unplanned flagged, and the
        violations per key under their event."""
        errors: list[str] = []
        page.on("console", lambda entry: errors.append(entry.text) if _is_error(entry) else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        plan = Path(__file__).parent.parent / "examples" / "tracking-plan.json"
        with Collector(write_keys=(KEY,), plan=plan) as lenient:
            page.goto(f"{lenient.url}/")
            expect(page.locator("#status")).to_contain_text("live", timeout=WAIT_MS)
            sent = [
                message(event="Order Completed", properties={"total": 39.95, "currency": "EUR"}),
                message(event="Order Completed", properties={"total": "39.95"}),
                message(event="Order Completed", properties={"total": -1, "currency": "GBP"}),
                message(event="Order Complete", properties={"total": 1}),
                message("identify", traits={"email": "u1@example.com", "plan": "pro"}),
            ]
            assert 200 == post(lenient, {"batch": sent}).status_code
            expect(page.locator("#rows tr.flagged")).to_have_count(3)

            page.click("nav button[data-view=schema]")
            declared = page.locator("#declared")
            expect(declared).to_be_visible()
            expect(page.locator("#declared-source")).to_have_text(str(plan))
            expect(page.locator("#declared-summary")).to_have_text(
                "2 of 3 planned seen (never seen: Checkout Started); 1 unplanned event seen;"
                " 2 messages broke the plan."
            )
            never = page.locator("#declared-rows tr.never")
            expect(never).to_have_count(1)
            expect(never.locator("td.key")).to_have_text("Checkout Started")
            expect(never.locator("td.state")).to_have_text("never seen")
            violated = page.locator("#declared-rows tr.violated")
            expect(violated.locator("td.key")).to_have_text("Order Completed")
            expect(violated.locator("td.seen")).to_have_text("3")
            expect(violated.locator("td.state")).to_have_text("\u26a0 2 broke the plan")
            keys = page.locator("#declared-rows tr.violation")
            expect(keys.locator("td.key")).to_have_text(
                ["\u2003/properties/currency", "\u2003/properties/total"]
            )
            expect(keys.locator("td.seen")).to_have_text(["\u00d71", "\u00d72"])
            expect(keys.nth(1).locator("td.text")).to_have_text("-1 is less than the minimum of 0")
            unplanned = page.locator("#declared-rows tr.unplanned")
            expect(unplanned.locator("td.key")).to_have_text("Order Complete")
            expect(unplanned.locator("td.state")).to_have_text("\u26a0 unplanned")
            identify = page.locator('#declared-rows tr[data-event="identify"]')
            expect(identify.locator("td.state")).to_have_text("\u2713 seen, keeps the plan")
            # What was seen is still shown below, as without a plan.
            expect(page.locator("#schema-rows tr.conflict td.key")).to_have_text("properties.total")
            page.screenshot(path=str(DECLARED_SCREENSHOT))
        assert [] == errors

    def test_without_a_plan_the_schema_view_has_no_plan_section(self, page: Page) -> None:
        with Collector(write_keys=(KEY,)) as plain:
            page.goto(f"{plain.url}/")
            expect(page.locator("#status")).to_contain_text("live", timeout=WAIT_MS)
            assert 200 == post(plain, {"batch": [message()]}).status_code
            page.click("nav button[data-view=schema]")
            expect(page.locator("#schema-rows tr")).not_to_have_count(0)
            expect(page.locator("#declared")).to_be_hidden()


DECLARED_SCREENSHOT = Path("/tmp/viewer-declared-plan.png")
REFUSED_SCREENSHOT = Path("/tmp/viewer-refused.png")


class TestRefusedRequests:
    def test_refused_requests_are_rows_and_marks_filter(self, page: Page) -> None:
        """A 404, a 405 and a 401 are rows of their own; "Show" picks marked or clean rows."""
        with Collector(write_keys=(KEY,)) as collector:
            page.goto(f"{collector.url}/")
            expect(page.locator("#status")).to_contain_text("live", timeout=WAIT_MS)
            url = collector.url
            requests.post(f"{url}/v1/tracks", json={}, auth=(KEY, ""), timeout=5)
            requests.get(f"{url}/v1/batch", timeout=5)
            clean = message(userId="ann", messageId="ok-1")
            requests.post(f"{url}/v1/track", json=clean, auth=(KEY, ""), timeout=5)
            marked = message(userId="bob", event=None, messageId="mk-1")
            requests.post(f"{url}/v1/t", json=marked, auth=(KEY, ""), timeout=5)
            requests.post(f"{url}/v1/identify", json=clean, auth=("wrong", ""), timeout=5)

            expect(page.locator("#rows tr")).to_have_count(5, timeout=WAIT_MS)
            rows = table(page)
            assert [
                ["track", "ann", "Signed Up", "HTTP 401: unknown write key"],
                ["track", "bob", "", "track needs an event name"],
                ["track", "ann", "Signed Up", ""],
                ["request", "", "GET /v1/batch \u2192 HTTP 405", "HTTP 405: use POST /v1/batch"],
                [
                    "request",
                    "",
                    "POST /v1/tracks \u2192 HTTP 404",
                    "HTTP 404: no such endpoint: POST /v1/tracks",
                ],
            ] == [[row[0], row[1], row[2], row[4]] for row in rows]

            page.select_option("#type-filter", "request")
            expect(page.locator("#rows tr:visible")).to_have_count(2)
            page.select_option("#type-filter", "")
            page.select_option("#mark-filter", "unmarked")
            expect(page.locator("#rows tr:visible")).to_have_count(1)
            assert "ann" == table(page)[0][1]
            page.select_option("#mark-filter", "marked")
            expect(page.locator("#rows tr:visible")).to_have_count(4)
            page.locator("#rows tr", has_text="/v1/tracks").click()
            expect(page.locator("#detail-title")).to_contain_text(
                "rejected (HTTP 404) on POST /v1/tracks"
            )
            shown = json.loads(page.locator("#detail-json").text_content() or "")
            assert {"method": "POST", "path": "/v1/tracks", "status": 404} == shown
            page.select_option("#mark-filter", "")
            page.screenshot(path=str(REFUSED_SCREENSHOT), full_page=True)


# -- analytics.js, the browser library, in the browser ------------------------------

ANALYTICS_NEXT = Sdk(
    "@segment/analytics-next", "npm", "@segment/analytics-next@1.84.3", False, True
)
BROWSER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head><body>
<script src="/analytics.js"></script>
<script>
window.run = async (key, collector) => {
  const segment = { apiKey: key, apiHost: collector + "/v1", protocol: "http" };
  // The settings analytics.js would fetch from Segment's CDN, given here instead; no
  // metrics, which would go to the same host.
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: key, cdnURL: location.origin,
      cdnSettings: { integrations: { "Segment.io": segment }, metrics: { sampleRate: 0 } } },
    { integrations: { "Segment.io": { apiHost: segment.apiHost, protocol: "http" } } });
  const sent = [
    await analytics.identify("u-1", { plan: "pro" }),
    await analytics.track("Order Completed", { revenue: 12.5 }),
    await analytics.page("Docs", "Install", { path: "/docs/install" }),
    await analytics.screen("Onboarding", "Welcome"),
    await analytics.group("g-1", { name: "Acme" }),
    await analytics.alias("u-2", "u-1"),
  ];
  return sent.map((ctx) => ctx.failedDelivery() ? String(ctx.failedDelivery().reason) : "");
};
</script></body></html>
"""


@contextlib.contextmanager
def static_site(script: bytes) -> Iterator[str]:
    """An app's own origin on 127.0.0.1 (another port than the collector's: CORS applies)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = {
                "/": (BROWSER_PAGE.encode(), "text/html"),
                "/analytics.js": (script, "text/javascript"),
            }.get(self.path, (b"", "text/plain"))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.timeout(INSTALL_SECONDS + 60)  # the first run installs the library
def test_analytics_js_in_a_browser_delivers_every_call(page: Page) -> None:
    """analytics.js posts text/plain to /v1/i, /v1/t... with a Basic header, after a CORS
    preflight; each of its six calls is answered 200 and stored unmarked.
    """
    folder = install(ANALYTICS_NEXT)
    script = (folder / "node_modules/@segment/analytics-next/dist/umd/index.js").read_bytes()
    # Watched, not intercepted: routing requests would make playwright answer the
    # CORS preflights itself, and the collector's own answers are what is tested.
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with Collector(write_keys=(KEY,)) as collector, static_site(script) as site:
        page.goto(f"{site}/")
        failures = page.evaluate("([key, host]) => run(key, host)", [KEY, collector.url[7:]])
        assert collector.wait_for_messages(6, timeout=10)
        events = collector.events()
        records = collector.requests()

    assert [""] * 6 == failures
    assert [] == [url for url in requested if not url.startswith("http://127.0.0.1:")]
    assert ["/v1/i", "/v1/t", "/v1/p", "/v1/s", "/v1/g", "/v1/a"] == [e.path for e in events]
    assert [(True, 200, ())] * 6 == [(e.accepted, e.status, e.problems) for e in events]
    assert ["identify", "track", "page", "screen", "group", "alias"] == [
        e.message["type"] for e in events
    ]
    assert all("writeKey" not in event.message for event in events)
    posts = [r for r in records if r.method == "POST"]
    assert [(200, "text/plain", site)] * 6 == [
        (r.status, r.headers["Content-Type"].split(";")[0], r.headers["Origin"]) for r in posts
    ]
    # The Basic header is why the browser asks first; its preflights were answered 204.
    assert {("OPTIONS", 204)} == {(r.method, r.status) for r in records if r not in posts}
    assert all(r.headers.get("Authorization") == "<redacted>" for r in posts)
