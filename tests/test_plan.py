"""The tracking plan (issue 26): the plan file, the check at the call in all three front
doors, `cdp-logging plan infer / check / codegen` (with real mypy on the generated
module), and the pytest plugin's --cdp-plan in a real pytest subprocess."""

from __future__ import annotations

import decimal
import json
import logging
import logging.config
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog

import cdp_logging
from cdp_logging import AnalyticsHandler, AnalyticsProcessor, DeliveryError
from cdp_logging._core.plan import MAX_DEPTH, PlanError, Problem, describe, load_plan
from cdp_logging._plan_codegen import python_name
from cdp_logging.cli import main
from cdp_logging.testing import CapturedMessages, capture_messages

from .conftest import WRITE_KEY, run_python

if TYPE_CHECKING:
    from cdp_logging.collector import Collector

ORDER = {
    "type": "object",
    "properties": {
        "revenue": {"type": "number", "minimum": 0},
        "sku": {"type": "string"},
        "currency": {"enum": ["EUR", "USD"]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "price": {"type": "number"}},
                "required": ["id"],
            },
        },
    },
    "required": ["revenue", "sku"],
    "additionalProperties": False,
}
PLAN: dict[str, Any] = {
    "events": {
        "Order Completed": {"description": "A checkout succeeded.", "properties": ORDER},
        "Signed Up": {"properties": {"type": "object"}},
    },
    "identify": {"traits": {"type": "object", "properties": {"email": {"type": "string"}}}},
}
GOOD = {"revenue": 39.95, "sku": "B-17", "currency": "EUR", "items": [{"id": "p1", "price": 9}]}


def track(event: str, properties: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "track", "userId": "u1", "event": event}
    if properties is not None:
        message["properties"] = properties
    return message


def write_plan(tmp_path: Path, plan: object = PLAN, name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(plan))
    return path


class TestThePlan:
    def test_a_message_that_keeps_the_plan_has_no_problems(self) -> None:
        plan = load_plan(PLAN)
        assert [] == plan.check(track("Order Completed", GOOD))
        assert [] == plan.check({"type": "identify", "userId": "u", "traits": {"email": "a@b"}})
        assert [] == plan.check({"type": "page", "userId": "u", "name": "Anything"})
        assert [] == plan.check({"type": "alias", "previousId": "a", "userId": "b"})

    def test_each_problem_has_the_event_and_its_json_pointer(self) -> None:
        plan = load_plan(PLAN)
        bad = {"revenue": "39.95", "currency": "GBP", "items": [{"price": 1}], "sku_": "x"}
        problems = plan.check(track("Order Completed", bad))
        assert {p.event for p in problems} == {"Order Completed"}
        by_pointer = {p.pointer: p.text for p in problems}
        assert set(by_pointer) == {
            "/properties/revenue",
            "/properties/currency",
            "/properties/items/0/id",
            "/properties/sku",
            "/properties/sku_",
        }
        assert '"39.95" is not of type "number"' == by_pointer["/properties/revenue"]
        assert "required" in by_pointer["/properties/sku"]
        assert "not in the plan" in by_pointer["/properties/sku_"]
        reason = describe(problems)
        assert reason.startswith("track 'Order Completed' breaks the tracking plan: ")
        assert "/properties/items/0/id" in reason

    def test_unplanned_event_is_a_violation_with_the_nearest_name(self) -> None:
        plan = load_plan(PLAN)
        [problem] = plan.check(track("Order Complete"))
        assert ("Order Complete", "/event") == (problem.event, problem.pointer)
        assert 'did you mean "Order Completed"' in problem.text

    def test_identify_traits_and_missing_bags(self) -> None:
        plan = load_plan(PLAN)
        [problem] = plan.check({"type": "identify", "userId": "u", "traits": {"email": 3}})
        assert ("identify", "/traits/email") == (problem.event, problem.pointer)
        # A track without properties is checked as {}: the required ones are missing.
        pointers = {p.pointer for p in plan.check(track("Order Completed"))}
        assert {"/properties/revenue", "/properties/sku"} == pointers

    def test_parts_the_plan_leaves_out_are_not_checked(self) -> None:
        plan = load_plan({"identify": {"traits": {"type": "object"}}})
        assert plan.events is None
        assert [] == plan.check(track("Anything At All", {"x": 1}))
        assert [] == plan.check({"type": "group", "groupId": "g", "traits": {"n": 1}})
        # An empty "events" is a plan of no events: every track is unplanned.
        assert ["/event"] == [p.pointer for p in load_plan({"events": {}}).check(track("E"))]

    def test_distinct_problems_share_a_key_whatever_the_values(self) -> None:
        plan = load_plan(PLAN)
        first = plan.check(track("Order Completed", {**GOOD, "revenue": "1"}))
        second = plan.check(track("Order Completed", {**GOOD, "revenue": "2"}))
        assert [p.key for p in first] == [p.key for p in second]
        assert first[0].text != second[0].text

    def test_a_reason_names_ten_problems_and_counts_the_rest(self) -> None:
        plan = load_plan(PLAN)
        extra = {f"unplanned_{n:02d}": n for n in range(30)}
        problems = plan.check(track("Order Completed", {**GOOD, **extra}))
        assert 30 == len(problems)
        reason = describe(problems)
        assert reason.endswith("; and 20 more")
        assert 10 == reason.count("is not in the plan")

    def test_json_pointer_escapes_slash_and_tilde(self) -> None:
        plan = load_plan(
            {"events": {"E": {"properties": {"properties": {"a/b~c": {"type": "integer"}}}}}}
        )
        [problem] = plan.check(track("E", {"a/b~c": "x"}))
        assert "/properties/a~1b~0c" == problem.pointer

    def test_load_from_a_file_and_fingerprint_ignores_formatting(self, tmp_path: Path) -> None:
        path = write_plan(tmp_path)
        plan = load_plan(path)
        assert str(path) == plan.source
        assert {"Order Completed", "Signed Up"} == set(plan.events or ())
        (tmp_path / "spaced.json").write_text(json.dumps(PLAN, indent=4, sort_keys=True))
        assert plan.digest == load_plan(tmp_path / "spaced.json").digest
        assert load_plan(plan) is plan

    @pytest.mark.parametrize(
        ("plan", "expected"),
        [
            ([], "a plan is a JSON file's path or a mapping"),
            ({"event": {}}, "/event: not a plan key"),
            ({"events": []}, "/events: must map event names"),
            ({"events": {"E": 3}}, '/events/E: must be an object such as {"properties"'),
            ({"events": {"E": {"props": {}}}}, "/events/E/props: not an event key"),
            ({"events": {"E": {"properties": "x"}}}, "/events/E/properties: a JSON Schema is"),
            (
                {"events": {"E": {"properties": {"type": "nope"}}}},
                "/events/E/properties/type: not a valid JSON Schema",
            ),
            ({"identify": {"trait": {}}}, "/identify/trait: not a identify key"),
            ({"events": {"E": {"properties": {"enum": [{1, 2}]}}}}, "/: not JSON"),
            ({"events": {"E": {"properties": {"maximum": float("nan")}}}}, "/: not JSON"),
            (
                {"events": {"E": {"properties": {"$ref": "https://example.com/s.json"}}}},
                "cannot $ref a remote schema",
            ),
        ],
    )
    def test_a_bad_plan_names_where_it_is_wrong(self, plan: object, expected: str) -> None:
        with pytest.raises(PlanError) as raised:
            load_plan(plan)  # type: ignore[arg-type]
        assert expected in str(raised.value)

    def test_a_file_that_is_not_json_or_not_there(self, tmp_path: Path) -> None:
        (tmp_path / "broken.json").write_text("{")
        with pytest.raises(PlanError, match="not JSON"):
            load_plan(tmp_path / "broken.json")
        with pytest.raises(PlanError, match="cannot be read"):
            load_plan(tmp_path / "absent.json")

    def test_the_shortcut_only_clears_what_check_clears(self) -> None:
        """quick_ok on raw values never says yes where the wire message breaks the plan."""
        plan = load_plan(PLAN)
        fields: list[tuple[str, dict[str, Any]]] = [
            ("track", {"event": "Order Completed", "properties": GOOD}),
            ("track", {"event": "Order Completed", "properties": {**GOOD, "revenue": "1"}}),
            ("track", {"event_name": "Order Completed", "properties": GOOD}),
            ("track", {"event": "Unplanned", "properties": GOOD}),
            ("track", {"event": "Order Completed", "event_name": "Unplanned"}),
            ("identify", {"traits": {"email": 1}}),
            ("identify", {}),
            ("page", {"name": "P"}),
        ]
        for call_type, given in fields:
            with capture_messages() as sent:
                client = cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", send=False)
                client.submit(call_type, {"user_id": "u", **given}, 0.0, strict=True)
                client.close(0)
            built = json.dumps(sent[0]).encode()
            if plan.quick_ok(call_type, given, built):
                assert [] == plan.check(sent[0]), given

    def test_values_deeper_than_max_depth_are_not_handed_to_the_validator(self) -> None:
        plan = load_plan(RECURSIVE)
        deep: list[Any] = []
        inner = deep
        for _ in range(MAX_DEPTH + 5):
            inner.append([])
            inner = inner[0]
        [problem] = plan.check(track("E", {"x": deep}))
        assert ("/properties", "depth") == (problem.pointer, problem.key[-1])


# Arrays of arrays, all the way down: the validator follows the data as deep as it goes.
RECURSIVE: dict[str, Any] = {
    "events": {
        "E": {
            "properties": {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/n"}, "n": {"type": "integer"}},
                "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
            }
        }
    }
}


@pytest.fixture
def plan_path(tmp_path: Path) -> Path:
    return write_plan(tmp_path)


class TestInTheClient:
    def test_warn_delivers_counts_and_tells_each_problem_once(
        self,
        make_client: Callable[..., cdp_logging.Analytics],
        collector: Collector,
        plan_path: Path,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        errors: list[DeliveryError] = []
        client = make_client(tracking_plan=str(plan_path), on_error=errors.append)
        for revenue in ("1", "2", "3"):
            client.track("u1", "Order Completed", {**GOOD, "revenue": revenue})
        client.track("u1", "Order Completed", GOOD)
        client.track("u1", "Ordr Completed", GOOD)
        assert client.flush(5)
        assert 5 == len(collector.messages())  # all delivered
        stats = client.stats()
        assert 4 == stats["plan_violations"]
        assert {} == stats["errors"]
        assert 0 == stats["dropped"]
        assert [] == errors  # delivered: not a delivery error
        err = capfd.readouterr().err
        assert 1 == err.count("/properties/revenue")  # three messages, one problem
        assert 1 == err.count('"Ordr Completed" is not a planned event')
        assert "plan_mode='warn'" in err

    def test_drop_refuses_at_the_call_like_an_invalid_message(
        self,
        make_client: Callable[..., cdp_logging.Analytics],
        collector: Collector,
    ) -> None:
        errors: list[DeliveryError] = []
        client = make_client(tracking_plan=PLAN, plan_mode="drop", on_error=errors.append)
        future = client.track("u1", "Order Completed", {**GOOD, "revenue": -1})
        client.track("u1", "Order Completed", GOOD)
        assert client.flush(5)
        [error] = errors
        assert "plan_violation" == error.code
        assert "Order Completed" in error.reason
        assert "/properties/revenue" in error.reason
        assert -1 == error.messages[0]["properties"]["revenue"]
        assert future.exception(timeout=1) is error
        assert [GOOD] == [m["properties"] for m in collector.messages()]
        stats = client.stats()
        assert (1, 1, {"plan_violation": 1}) == (
            stats["plan_violations"],
            stats["dropped"],
            stats["errors"],
        )

    def test_values_that_become_valid_json_are_not_violations(
        self, make_client: Callable[..., cdp_logging.Analytics], collector: Collector
    ) -> None:
        """A Decimal revenue and a tuple of items are checked as the JSON they become."""
        client = make_client(tracking_plan=PLAN, plan_mode="drop")
        properties = {**GOOD, "revenue": decimal.Decimal("39.95"), "items": ({"id": "p"},)}
        client.track("u1", "Order Completed", properties)
        assert client.flush(5)
        assert 0 == client.stats()["plan_violations"]
        assert 39.95 == collector.messages()[0]["properties"]["revenue"]

    def test_cyclic_deep_and_huge_values_are_checked_as_sent(self) -> None:
        """What the JSON rule replaces is checked as replaced, and a value nested far
        past the validator's stack (with a recursive schema) never reaches it raw."""
        errors: list[DeliveryError] = []
        client = cdp_logging.Analytics(
            WRITE_KEY,
            "http://127.0.0.1:9",
            send=False,
            tracking_plan=RECURSIVE,
            plan_mode="drop",
            on_error=errors.append,
        )
        deep: list[Any] = []
        inner = deep
        for _ in range(100_000):
            inner.append([])
            inner = inner[0]
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        try:
            with capture_messages() as sent:
                client.track("u", "E", {"x": [[[]]], "n": 1})
                client.track("u", "E", {"x": deep})
                client.track("u", "E", {"x": cyclic})
                client.track("u", "E", {"n": 10**5000})
        finally:
            client.close(0)
        assert 1 == len(sent)
        assert 3 == client.stats()["plan_violations"]
        reasons = [e.reason for e in errors]
        assert '"[Too deep]" is not of type "array"' in reasons[0]
        assert "/properties/x/0: " + '"[Circular]" is not of type "array"' in reasons[1]
        assert "/properties/n: " + '"<int of 16610 bits>" is not of type "integer"' in reasons[2]

    def test_handler_from_dictconfig(self, collector: Collector, plan_path: Path) -> None:
        errors: list[DeliveryError] = []
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cdp": {
                        "class": "cdp_logging.AnalyticsHandler",
                        "write_key": WRITE_KEY,
                        "host": collector.url,
                        "tracking_plan": str(plan_path),
                        "plan_mode": "drop",
                        "on_error": errors.append,
                    }
                },
                "loggers": {"plan.app": {"handlers": ["cdp"], "level": "INFO"}},
            }
        )
        try:
            logger = logging.getLogger("plan.app")
            handler = logger.handlers[0]
            assert isinstance(handler, AnalyticsHandler)
            logger.info("track", extra={"user_id": "u", "event": "Signed Up"})
            logger.info("track", extra={"cdp": {"user_id": "u", "event": "Signed Upp"}})
            logger.info("identify", extra={"user_id": "u", "traits": {"email": ["x"]}})
            assert handler.client.flush(5)
            assert ["Signed Up"] == [m.get("event") for m in collector.messages()]
            assert ["/event", "/traits/email"] == [
                e.reason.split(": ")[1] for e in errors
            ]  # "<subject> breaks the tracking plan: <pointer>: <text>"
        finally:
            logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})

    def test_structlog_processor(self, collector: Collector) -> None:
        processor = AnalyticsProcessor(
            write_key=WRITE_KEY, host=collector.url, tracking_plan=PLAN, plan_mode="drop"
        )
        try:
            log = structlog.wrap_logger(structlog.ReturnLogger(), processors=[processor])
            log.info("track", user_id="u", event_name="Order Completed", properties=GOOD)
            log.info("track", user_id="u", event_name="Order Completed", properties={"sku": 1})
            assert processor.client.flush(5)
            assert 1 == len(collector.messages())
            assert 1 == processor.client.stats()["plan_violations"]
        finally:
            processor.client.close(timeout=2)

    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            ({"plan_mode": "strict"}, "plan_mode must be one of warn, drop"),
            ({"tracking_plan": 3}, "tracking_plan must be a plan file's path or a mapping"),
            ({"tracking_plan": {"events": []}}, "tracking_plan: <mapping>: /events: must map"),
            ({"tracking_plan": "/nonexistent/plan.json"}, "tracking_plan: /nonexistent"),
        ],
    )
    def test_bad_options_fail_at_construction(self, options: Any, expected: str) -> None:
        with pytest.raises(ValueError, match=r"^(tracking_plan|plan_mode)") as raised:
            cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", send=False, **options)
        assert str(raised.value).startswith(expected)

    def test_without_the_extra_the_error_names_it(self) -> None:
        result = run_python(
            """
            import sys
            sys.modules["jsonschema_rs"] = None  # as if the plan extra were not installed
            import cdp_logging
            try:
                cdp_logging.Analytics("k", "http://127.0.0.1:9", tracking_plan={"events": {}})
            except ValueError as error:
                print(error)
            """
        )
        assert "pip install 'cdp_logging[plan]'" in result.stdout, result.stderr
        assert result.stdout.startswith("tracking_plan: ")

    def test_no_plan_no_check(self, make_client: Callable[..., cdp_logging.Analytics]) -> None:
        client = make_client()
        assert client.options.tracking_plan is None
        client.track("u1", "Whatever", {"revenue": "x"})
        assert 0 == client.stats()["plan_violations"]


def cli(*argv: str) -> int:
    return main(list(argv))


def traffic(tmp_path: Path) -> Path:
    """Wire messages as a real client builds them, one JSON object a line."""
    client = cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", send=False)
    with capture_messages() as sent:
        client.track("u1", "Order Completed", {"revenue": 39.95, "sku": "B-17"})
        client.track("u2", "Order Completed", {"revenue": 12, "sku": "C", "coupon": "X"})
        client.track("u2", "Signed Up", {"plan": "pro", "tags": ["a", 1]})
        client.identify("u2", traits={"email": "u2@example.com"})
        client.group("u2", "g1", {"employees": 12})
        client.page("u2", "Home")
    client.close(0)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in sent))
    return path


class TestCommands:
    def test_infer_writes_a_plan_every_message_keeps(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = traffic(tmp_path)
        plan_file = tmp_path / "plan.json"
        assert 0 == cli("plan", "infer", str(source), "-o", str(plan_file))
        plan = json.loads(plan_file.read_text())
        order = plan["events"]["Order Completed"]["properties"]
        assert {"type": "number"} == order["properties"]["revenue"]
        assert ["revenue", "sku"] == order["required"]  # coupon was seen once
        assert order["additionalProperties"] is False
        assert ["string", "integer"] == (
            plan["events"]["Signed Up"]["properties"]["properties"]["tags"]["items"]["type"]
        )
        assert {"identify", "group", "events"} == set(plan)
        assert 0 == cli("plan", "check", str(plan_file), str(source))
        assert "OK: all 6 message(s) keep the plan" in capsys.readouterr().out

    def test_check_exit_status_for_ci(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        plan_file = write_plan(tmp_path)
        messages = tmp_path / "m.jsonl"
        messages.write_text(
            json.dumps(track("Order Completed", GOOD))
            + "\n\n"
            + json.dumps(track("Order Completed", {"sku": 1}))
            + "\n"
        )
        assert 0 == cli("plan", "check", str(plan_file))
        assert 1 == cli("plan", "check", str(plan_file), str(messages))
        err = capsys.readouterr().err
        assert f"{messages}:3: track 'Order Completed' breaks the tracking plan" in err
        assert "FAILED: 1 of 2 message(s) break the plan" in err
        bad = write_plan(tmp_path, {"events": {"E": {"properties": {"type": 1}}}}, "bad.json")
        assert 2 == cli("plan", "check", str(bad), str(messages))
        assert "/events/E/properties/type" in capsys.readouterr().err

    def test_check_tells_a_stale_module(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        plan_file = write_plan(tmp_path)
        module = tmp_path / "tracking.py"
        assert 0 == cli("plan", "codegen", str(plan_file), "-o", str(module))
        assert 0 == cli("plan", "check", str(plan_file), "--module", str(module))
        changed = json.loads(plan_file.read_text())
        changed["events"]["Signed Up"]["properties"]["required"] = ["plan"]
        plan_file.write_text(json.dumps(changed, indent=2))
        capsys.readouterr()
        assert 1 == cli("plan", "check", str(plan_file), "--module", str(module))
        assert "STALE" in capsys.readouterr().err

    def test_usage_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        not_jsonl = tmp_path / "x.jsonl"
        not_jsonl.write_text("[1]\n")
        with pytest.raises(SystemExit) as raised:
            cli("plan", "infer", str(not_jsonl))
        assert 2 == raised.value.code
        assert "x.jsonl:1: a wire message is a JSON object" in capsys.readouterr().err
        assert 2 == cli("plan")


class TestCodegen:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("Order Completed", "order_completed"),
            ("orderCompleted", "order_completed"),
            ("HTTPRequestSent", "http_request_sent"),
            ("checkout-step.viewed", "checkout_step_viewed"),
            ("3D Secure Passed", "n_3d_secure_passed"),
            ("class", "class_"),
            ("datetime", "datetime_"),
            ("€", "unnamed"),
        ],
    )
    def test_python_names(self, name: str, expected: str) -> None:
        assert expected == python_name(name)

    def test_mypy_catches_wrong_names_and_types_and_the_module_runs(
        self, tmp_path: Path, app_logger: logging.Logger
    ) -> None:
        plan = {
            "events": {
                **PLAN["events"],
                "Open": {"properties": {"type": "object", "additionalProperties": False}},
                "Coupon Applied": {
                    "properties": {
                        "properties": {
                            "code": {"type": "string"},
                            "percent": {"type": ["integer", "null"]},
                            "class": {"const": "gold"},
                        },
                        "required": ["code", "percent"],
                    }
                },
            }
        }
        plan_file = write_plan(tmp_path, plan)
        assert 0 == cli("plan", "codegen", str(plan_file), "-o", str(tmp_path / "tracking.py"))
        (tmp_path / "good_use.py").write_text(
            textwrap.dedent(
                """
                import logging

                from tracking import coupon_applied, order_completed, signed_up

                log = logging.getLogger("app")
                log.info("track", extra=order_completed(user_id="u1", revenue=39, sku="B"))
                log.info(
                    "track",
                    extra=order_completed(
                        anonymous_id="a", revenue=1.5, sku="B", currency="USD",
                        items=[{"id": "p"}],
                    ),
                )
                log.info("track", extra=coupon_applied(user_id=7, code="X", percent=None))
                log.info("track", extra=coupon_applied(code="X", percent=5, class_="gold"))
                log.info("track", extra=signed_up(user_id="u", anything="goes"))
                """
            )
        )
        (tmp_path / "bad_use.py").write_text(
            textwrap.dedent(
                """
                from tracking import coupon_applied, open_, order_completed

                a = order_completed(user_id="u1", revenue="39.95", sku="B")
                b = order_completed(user_id="u1", revenue=1, skuu="B")
                c = order_completed(user_id="u1", revenue=1, sku="B", currency="GBP")
                d = coupon_applied(code="X")
                e = coupon_applied(code="X", percent=1, class_="silver")
                f = open_(user_id="u", anything=1)
                """
            )
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--strict",
                "--no-incremental",
                "--cache-dir",
                str(tmp_path / ".mypy_cache"),
                "tracking.py",
                "good_use.py",
                "bad_use.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        lines = [line for line in result.stdout.splitlines() if ": error:" in line]
        assert all(line.startswith("bad_use.py:") for line in lines), result.stdout
        assert {4, 5, 6, 7, 8, 9} == {int(line.split(":")[1]) for line in lines}, result.stdout
        assert 'Unexpected keyword argument "skuu"' in result.stdout
        assert 'Missing named argument "percent"' in result.stdout

        # At run time the functions build what the plan expects.
        sys.path.insert(0, str(tmp_path))
        try:
            import tracking  # type: ignore[import-not-found]
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("tracking", None)
        client = cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", send=False)
        app_logger.addHandler(AnalyticsHandler(client=client))
        with capture_messages() as sent:
            app_logger.info(
                "track", extra=tracking.order_completed(user_id="u1", revenue=3, sku="B")
            )
            app_logger.info(
                "track", extra=tracking.coupon_applied(user_id="u1", code="X", percent=None)
            )
        client.close(0)
        assert [{"revenue": 3, "sku": "B"}, {"code": "X", "percent": None}] == [
            m["properties"] for m in sent
        ]
        checked = load_plan(plan_file)
        assert [[], []] == [checked.check(m) for m in sent]
        assert checked.digest == tracking.PLAN_SHA256


class TestAssertTracked:
    def test_subset_match_on_the_first_message(
        self, cdp_messages: CapturedMessages, make_client: Callable[..., cdp_logging.Analytics]
    ) -> None:
        client = make_client()
        client.track("u1", "Order Completed", {"revenue": 39.95, "sku": "B"})
        client.track("u2", "Order Completed", {"revenue": 1})
        message = cdp_messages.assert_tracked(
            "Order Completed", user_id="u1", properties={"revenue": 39.95}
        )
        assert "B" == message["properties"]["sku"]
        cdp_messages.assert_tracked("Order Completed", userId="u1")

    def test_failures_say_what_was_tracked_instead(
        self, cdp_messages: CapturedMessages, make_client: Callable[..., cdp_logging.Analytics]
    ) -> None:
        client = make_client()
        client.track("u1", "Order Completed", {"revenue": 39.95})
        with pytest.raises(AssertionError, match='no track "Signed Up" was captured; tracked: '):
            cdp_messages.assert_tracked("Signed Up")
        with pytest.raises(AssertionError) as raised:
            cdp_messages.assert_tracked(
                "Order Completed", user_id="u2", properties={"revenue": 1, "sku": "B"}
            )
        text = str(raised.value)
        assert "userId is 'u1', expected 'u2'" in text
        assert "properties.revenue is 39.95, expected 1" in text
        assert "properties.sku is absent" in text

    def test_an_empty_capture_says_what_usually_explains_it(
        self, cdp_messages: CapturedMessages, make_client: Callable[..., cdp_logging.Analytics]
    ) -> None:
        """Nothing captured at all: the failure names the two usual causes; with other
        messages captured (an identify), it does not."""
        with pytest.raises(AssertionError) as raised:
            cdp_messages.assert_tracked("Signed Up")
        assert "nothing was captured at all" in str(raised.value)
        assert "level" in str(raised.value)

        make_client().identify("u1", traits={"plan": "pro"})
        with pytest.raises(AssertionError) as raised:
            cdp_messages.assert_tracked("Signed Up")
        assert "tracked: no track at all" in str(raised.value)
        assert "nothing was captured" not in str(raised.value)


PLUGIN_TESTS = """
import logging

import cdp_logging

log = logging.getLogger("suite")
log.addHandler(cdp_logging.AnalyticsHandler("key-1234", "http://127.0.0.1:9", send=False))
log.setLevel(logging.INFO)


def test_keeps_the_plan(cdp_messages):
    log.info("track", extra={"user_id": "u", "event": "Signed Up"})
    cdp_messages.assert_tracked("Signed Up", user_id="u")


def test_breaks_the_plan():
    log.info("track", extra={"cdp": {"user_id": "u", "event": "Order Completed",
                                     "properties": {"revenue": "39.95", "sku": "B"}}})


def test_tracks_nothing():
    pass


def test_fails_and_breaks_the_plan():
    log.info("track", extra={"user_id": "u", "event": "Signed Upp"})
    assert 1 == 2
"""


class TestPytestPlugin:
    def run_suite(self, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "test_suite.py").write_text(PLUGIN_TESTS)
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_cdp_plan_fails_the_violating_test_and_reports_coverage(
        self, tmp_path: Path, plan_path: Path
    ) -> None:
        result = self.run_suite(tmp_path, "--cdp-plan", str(plan_path))
        out = result.stdout
        assert 1 == result.returncode, out
        assert "2 failed, 2 passed" in out
        assert "FAILED test_suite.py::test_breaks_the_plan" in out
        assert "/properties/revenue" in out
        # A test failing anyway has the plan's word beside its own.
        assert "FAILED test_suite.py::test_fails_and_breaks_the_plan - assert 1 == 2" in out
        assert "- tracking plan -" in out
        assert '"Signed Upp" is not a planned event' in out
        # Each message is seen once, whichever test of the run tracked it.
        assert "tracked 1 message(s) breaking the tracking plan" in out
        assert "tracked 2 message(s)" not in out
        assert (
            "tracking plan coverage: 2 of 2 planned events fired" in out
        )  # a violating event still fired

    def test_ini_key_and_xdist_workers(self, tmp_path: Path, plan_path: Path) -> None:
        plan = json.loads(plan_path.read_text())
        plan["events"]["Never Fired"] = {}
        plan_path.write_text(json.dumps(plan))
        (tmp_path / "pytest.ini").write_text(f"[pytest]\ncdp_plan = {plan_path.name}\n")
        result = self.run_suite(tmp_path, "-n", "2")
        out = result.stdout
        assert "2 failed, 2 passed" in out, out
        assert (
            "tracking plan coverage: 2 of 3 planned events fired; never fired: Never Fired" in out
        )

    def test_without_a_plan_nothing_changes(self, tmp_path: Path) -> None:
        result = self.run_suite(tmp_path)
        assert "1 failed, 3 passed" in result.stdout  # only the test that fails anyway
        assert "tracking plan coverage" not in result.stdout

    def test_a_bad_plan_is_a_usage_error(self, tmp_path: Path) -> None:
        result = self.run_suite(tmp_path, "--cdp-plan", str(tmp_path / "absent.json"))
        assert 4 == result.returncode
        assert "--cdp-plan: " in result.stderr


def test_problem_reads_as_pointer_and_sentence() -> None:
    assert "/properties/x: is wrong" == str(Problem("E", "/properties/x", "is wrong"))
    assert "" == describe([])
