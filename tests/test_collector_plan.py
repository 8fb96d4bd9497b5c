"""The collector with a declared tracking plan (issue 26): ``Collector(plan=...)`` and
``collect --plan``. Lenient marks and strict 400s in the client's own words, and the
comparison ``GET /api/plan`` answers (the viewer's side is in test_viewer.py)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import cdp_logging
from cdp_logging._core.plan import PlanError
from cdp_logging.cli import main
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, run_python

SENT_AT = "2024-05-01T12:00:00.000Z"
PLAN: dict[str, Any] = {
    "events": {
        "Order Completed": {
            "description": "A checkout succeeded.",
            "properties": {
                "type": "object",
                "properties": {
                    "total": {"type": "number", "minimum": 0},
                    "items": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["total"],
                "additionalProperties": False,
            },
        },
        "Checkout Started": {"properties": {"type": "object"}},
    },
    "identify": {"traits": {"type": "object", "properties": {"email": {"type": "string"}}}},
}
TOTAL_AS_TEXT = (
    "track 'Order Completed' breaks the tracking plan: "
    '/properties/total: "39.95" is not of type "number"'
)
UNPLANNED = (
    "track 'Order Complete' breaks the tracking plan: /event: \"Order Complete\" is not a "
    'planned event (did you mean "Order Completed"?); add it to the plan\'s events, or fix '
    "the name"
)


def message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "messageId": uuid.uuid4().hex,
        "userId": "u1",
        "timestamp": SENT_AT,
    }
    base.update(fields)
    return base


def order(**properties: Any) -> dict[str, Any]:
    return message(event="Order Completed", properties=properties)


def post(collector: Collector, *messages: object, path: str = "/v1/batch") -> requests.Response:
    body: object = {"batch": list(messages), "sentAt": SENT_AT}
    if path != "/v1/batch":
        [body] = messages
    return requests.post(f"{collector.url}{path}", json=body, auth=(WRITE_KEY, ""), timeout=5)


def declared(collector: Collector) -> dict[str, Any]:
    """The comparison, as ``GET /api/plan`` answers it (and ``plan()`` the same)."""
    answer = requests.get(f"{collector.url}/api/plan", timeout=5)
    assert 200 == answer.status_code
    comparison: dict[str, Any] = answer.json()["declared"]
    assert collector.plan()["declared"] == comparison
    return comparison


@pytest.fixture
def plan_path(tmp_path: Path) -> Path:
    path = tmp_path / "tracking-plan.json"
    path.write_text(json.dumps(PLAN))
    return path


@pytest.fixture
def collector(plan_path: Path) -> Iterator[Collector]:
    """Lenient, with the plan: what make_client's clients send to in this file."""
    with Collector(write_keys=(WRITE_KEY,), plan=plan_path) as running:
        yield running


class TestLenient:
    def test_a_mark_is_the_client_s_warning_word_for_word(
        self,
        make_client: Callable[..., cdp_logging.Analytics],
        collector: Collector,
        plan_path: Path,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """The same plan at both ends: the collector's mark is the client's reason."""
        client = make_client(tracking_plan=str(plan_path), plan_mode="warn")
        client.track("u1", "Order Completed", {"total": "39.95"})
        client.track("u1", "Order Complete", {"total": 1})
        client.identify("u1", traits={"email": 42})
        client.track("u1", "Order Completed", {"total": 39.95})
        assert client.flush(5)
        assert collector.wait_for_messages(4)

        warned = capfd.readouterr().err
        marks = [event.problems for event in collector.events()]
        assert 3 == client.stats()["plan_violations"]
        assert [(TOTAL_AS_TEXT,), (UNPLANNED,)] == marks[:2]
        [identify_mark] = marks[2]
        assert () == marks[3]
        for [mark] in marks[:3]:
            assert f"delivered, but {mark} (plan_mode='warn'" in warned
        assert identify_mark.startswith("identify breaks the tracking plan: /traits/email: 42")

    def test_a_mark_comes_beside_the_protocol_s_and_the_message_is_kept(
        self, collector: Collector
    ) -> None:
        sent = {**order(total="39.95"), "userId": None}
        assert 200 == post(collector, sent).status_code
        [event] = collector.events()
        assert ("track needs a userId or an anonymousId", TOTAL_AS_TEXT) == event.problems
        assert [sent] == collector.messages()
        assert [event] == collector.events(marked=True)

    def test_the_batch_context_is_merged_before_the_check(self, collector: Collector) -> None:
        """What is checked is the message as stored, whatever the endpoint."""
        answer = requests.post(
            f"{collector.url}/v1/track",
            json=message(event="Checkout Started", properties={"any": "thing"}),
            auth=(WRITE_KEY, ""),
            timeout=5,
        )
        assert 200 == answer.status_code
        assert post(collector, order(total="39.95"), path="/v1/t").ok
        assert [(), (TOTAL_AS_TEXT,)] == [event.problems for event in collector.events()]


class TestStrict:
    @pytest.fixture
    def strict(self, plan_path: Path) -> Iterator[Collector]:
        with Collector(write_keys=(WRITE_KEY,), strict=True, plan=plan_path) as running:
            yield running

    def test_a_batch_breaking_the_plan_is_400_naming_the_message(self, strict: Collector) -> None:
        good, bad = order(total=1), order(total="39.95")
        answer = post(strict, good, bad)
        assert (400, f"batch[1]: {TOTAL_AS_TEXT}") == (answer.status_code, answer.json()["error"])
        assert [] == strict.messages()
        assert [(f"HTTP 400: batch[1]: {TOTAL_AS_TEXT}",), (TOTAL_AS_TEXT,)] == [
            event.problems for event in strict.events()
        ]

    def test_one_message_posted_alone_has_no_index(self, strict: Collector) -> None:
        answer = post(strict, order(total="39.95"), path="/v1/track")
        assert (400, TOTAL_AS_TEXT) == (answer.status_code, answer.json()["error"])

    def test_the_protocol_s_refusal_comes_first(self, strict: Collector) -> None:
        sent = order(total="39.95")
        del sent["userId"]
        answer = post(strict, sent)
        assert "batch[0]: track needs a userId or an anonymousId" == answer.json()["error"]

    def test_many_violations_are_one_readable_reason(self, strict: Collector) -> None:
        answer = post(strict, *[order(total=f"{n}") for n in range(25)])
        reason = answer.json()["error"]
        assert reason.endswith("; and 5 more")
        assert reason.count("breaks the tracking plan") == 20

    def test_a_refused_violation_is_counted_in_the_comparison(self, strict: Collector) -> None:
        post(strict, order(total="x"))
        post(strict, order(total=1, n=1))  # refused for its properties, so counted too
        post(
            strict, {**order(total="x"), "userId": 5}
        )  # refused for the protocol, not counted for the protocol, not the plan
        comparison = declared(strict)
        assert (2, 2) == (comparison["planned"][1]["seen"], comparison["planned"][1]["violations"])

    def test_a_client_sees_the_refusal_with_the_reason(
        self, strict: Collector, plan_path: Path
    ) -> None:
        errors: list[cdp_logging.DeliveryError] = []
        client = cdp_logging.Analytics(
            WRITE_KEY, strict.url, on_error=errors.append, shutdown_timeout=5.0
        )
        try:
            client.track("u1", "Order Completed", {"total": "39.95"})
            assert client.flush(5)
        finally:
            client.close(timeout=2)
        [error] = errors
        # The reason as the collector's JSON answer quotes it.
        assert json.dumps(f"batch[0]: {TOTAL_AS_TEXT}") in error.reason


class TestComparison:
    def test_planned_never_seen_unplanned_and_violations_per_key(
        self, collector: Collector
    ) -> None:
        post(
            collector,
            order(total="1", items=["a", 2, 3]),
            order(total=-1),
            order(total=2),
            message(event="Order Complete", properties={}),
            message(event="Order Complete"),
            message("identify", traits={"email": "a@example.com"}),
            message("page", name="Home"),
        )
        comparison = declared(collector)
        assert [
            ("track", "Checkout Started", 0, 0),
            ("track", "Order Completed", 3, 2),
            ("identify", "identify", 1, 0),
        ] == [(p["type"], p["name"], p["seen"], p["violations"]) for p in comparison["planned"]]
        assert "A checkout succeeded." == comparison["planned"][1]["description"]
        assert ["Checkout Started"] == comparison["never_seen"]
        assert [{"name": "Order Complete", "seen": 2}] == comparison["unplanned"]
        assert [
            # Two wrong items of one message count once: messages, not values.
            ("Order Completed", "/properties/items", 1),
            ("Order Completed", "/properties/total", 2),
        ] == [(v["event"], v["pointer"], v["count"]) for v in comparison["violations"]]
        assert "-1 is less than the minimum of 0" == comparison["violations"][1]["text"]
        assert (6, 0) == (comparison["checked"], comparison["left_out"])
        assert str(collector.plan()["declared"]["source"]).endswith("tracking-plan.json")

    def test_reset_forgets_it(self, collector: Collector) -> None:
        post(collector, order(total="1"))
        requests.delete(f"{collector.url}/api/events", timeout=5).raise_for_status()
        comparison = declared(collector)
        assert ([], 0) == (comparison["violations"], comparison["checked"])
        assert ["Checkout Started", "Order Completed", "identify"] == comparison["never_seen"]

    def test_it_is_bounded(self) -> None:
        """A fresh event name per call, or a fresh key per message, cannot grow it."""
        plan = {"events": {"E": {"properties": {"additionalProperties": {"type": "string"}}}}}
        with Collector(plan=plan) as collector:
            for start in range(0, 600, 300):
                names = [message(event=f"N{n}") for n in range(start, start + 300)]
                assert post(collector, *names).ok
            assert post(
                collector, *[message(event="E", properties={f"k{n}": n}) for n in range(300)]
            ).ok
            comparison = declared(collector)
        assert 500 == len(comparison["unplanned"])
        pointers = [v for v in comparison["violations"] if v["event"] == "E"]
        assert 200 == len(pointers)
        # 100 names past the limit, and 100 pointers.
        assert 100 + 100 == comparison["left_out"]

    def test_a_reopened_database_is_compared_again(self, tmp_path: Path) -> None:
        database = tmp_path / "events.sqlite3"
        with Collector(database=database) as first:
            post(first, order(total="1"))
        with Collector(database=database, plan=PLAN) as second:
            comparison = declared(second)
        assert [("Order Completed", "/properties/total", 1)] == [
            (v["event"], v["pointer"], v["count"]) for v in comparison["violations"]
        ]

    def test_a_track_named_identify_is_not_the_identify_call(self) -> None:
        plan = {
            "events": {"identify": {"properties": {"properties": {"n": {"type": "number"}}}}},
            "identify": {"traits": {"properties": {"n": {"type": "string"}}}},
        }
        with Collector(plan=plan) as collector:
            post(
                collector,
                message(event="identify", properties={"n": "x"}),
                message("identify", traits={"n": 1}),
                message("identify", traits={"n": 2}),
            )
            comparison = declared(collector)
        assert [("track", 1, 1), ("identify", 2, 2)] == [
            (p["type"], p["seen"], p["violations"]) for p in comparison["planned"]
        ]
        assert [("identify", "/traits/n", 2), ("track", "/properties/n", 1)] == [
            (v["type"], v["pointer"], v["count"]) for v in comparison["violations"]
        ]

    def test_items_that_are_not_messages_are_kept_unchecked(self, collector: Collector) -> None:
        """The lenient mode keeps a batch item that is not an object; the plan has no say."""
        assert post(collector, 7, "text", order(total=1)).ok
        assert 3 == len(collector.events())
        assert 1 == declared(collector)["checked"]

    def test_without_a_plan_there_is_no_comparison(self) -> None:
        with Collector() as plain:
            assert "declared" not in plain.plan()
            assert post(plain, order(total="1")).ok
            assert [()] == [event.problems for event in plain.events()]


class TestBadPlans:
    def test_a_bad_plan_is_an_error_at_construction(self, tmp_path: Path) -> None:
        with pytest.raises(PlanError, match="/events: must map event names"):
            Collector(plan={"events": []})
        missing = tmp_path / "nope.json"
        with pytest.raises(ValueError, match=r"nope\.json: cannot be read"):
            Collector(plan=missing)

    def test_the_command_exits_2_naming_the_problem(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        bad = tmp_path / "plan.json"
        bad.write_text('{"events": {"E": {"properties": {"type": 5}}}}')
        with pytest.raises(SystemExit) as exited:
            main(["collect", "--memory", "--port", "0", "--plan", str(bad)])
        assert 2 == exited.value.code
        err = capsys.readouterr().err
        assert "--plan: " in err
        assert "/events/E/properties/type" in err

    def test_a_missing_extra_names_it(self, plan_path: Path) -> None:
        result = run_python(
            f"""
            import sys
            sys.modules["jsonschema_rs"] = None  # as if the plan extra were not installed
            from cdp_logging.collector import Collector
            try:
                Collector(plan={{"events": {{}}}})
            except ImportError as error:
                print(error)
            from cdp_logging.collector._cli import main
            main(["--port", "0", "--plan", {str(plan_path)!r}])
            """
        )
        assert "pip install 'cdp_logging[plan]'" in result.stdout, result.stderr
        assert 2 == result.returncode
        assert "cdp_logging[plan]" in result.stderr


def test_collect_plan_prints_the_reason_on_the_message_s_line(plan_path: Path) -> None:
    """``python -m cdp_logging.collector --plan``: its first line names the plan, and each
    message that breaks it is printed with the reason."""
    command = [sys.executable, "-m", "cdp_logging.collector", "--port", "0"]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        [*command, "--plan", str(plan_path)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        stdout = process.stdout

        def read() -> None:
            for text in stdout:
                lines.put(text)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            first = lines.get(timeout=10)
            assert f"lenient, tracking plan {plan_path})" in first
            url = first.removeprefix("collector listening on ").split()[0]
            body = {"batch": [order(total="39.95")], "sentAt": SENT_AT}
            assert requests.post(f"{url}/v1/batch", json=body, auth=("k", ""), timeout=5).ok
            line = lines.get(timeout=5)
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=5)
            reader.join(5)
    assert line.rstrip("\n").endswith(f"  [{TOTAL_AS_TEXT}]")
    assert 0 == returncode
