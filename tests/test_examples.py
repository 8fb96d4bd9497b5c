"""Every example runs, against the collector, and delivers what it says it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdp_logging._core.plan import load_plan
from cdp_logging._plan_codegen import generate_module
from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY


def run_example(name: str, collector: Collector) -> subprocess.CompletedProcess[str]:
    return run_python_against(collector, str(ROOT / "examples" / name))


def run_python_against(collector: Collector, *args: str) -> subprocess.CompletedProcess[str]:
    """Run python with *args* as a user would, with the collector as its CDP."""
    env = {**os.environ, "CDP_WRITE_KEY": WRITE_KEY, "CDP_HOST": collector.url}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )


class TestExamples:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("app.py", {"identify": 1, "track": 2, "page": 1, "screen": 1, "group": 1, "alias": 1}),
            ("structlog_app.py", {"identify": 1, "track": 1, "page": 1}),
            ("structlog_stdlib.py", {"track": 1, "page": 1}),
        ],
    )
    def test_example_delivers_at_exit(
        self, collector: Collector, name: str, expected: dict[str, int]
    ) -> None:
        """The example exits 0 and the collector has exactly its events."""
        done = run_example(name, collector)

        assert 0 == done.returncode, done.stderr
        assert expected == collector.counts()["by_type"]

    def test_strip_keeps_traits_out_of_the_log(self, collector: Collector) -> None:
        """structlog_app.py uses after='strip': traits reach the CDP, not the console."""
        done = run_example("structlog_app.py", collector)

        assert "pro" not in done.stdout + done.stderr
        identify = next(m for m in collector.messages() if m["type"] == "identify")
        assert {"plan": "pro"} == identify["traits"]

    def test_demo_runs(self) -> None:
        """The README's demo command's script reports success."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "run_demo.py")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )

        assert 0 == done.returncode, done.stdout + done.stderr
        assert "demo OK" in done.stdout


def test_user_style_example_test_passes(collector: Collector) -> None:
    """examples/test_flask_app.py passes with the installed fixture and sends nothing."""
    done = run_python_against(
        collector, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_flask_app.py"
    )

    assert 0 == done.returncode, done.stdout + done.stderr
    assert [] == collector.messages()


class TestTrackingPlanExample:
    """README's worked example: the Flask app's plan, its generated module, its tests."""

    def test_the_generated_module_matches_the_plan(self) -> None:
        examples = ROOT / "examples"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cdp_logging",
                "plan",
                "check",
                str(examples / "tracking-plan.json"),
                "--module",
                str(examples / "shop_tracking.py"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == done.returncode, done.stdout + done.stderr
        # And it is what the generator writes now, not only from the same plan.
        plan = load_plan(examples / "tracking-plan.json")
        expected = generate_module(plan, "tracking-plan.json")
        assert expected == (examples / "shop_tracking.py").read_text()

    def test_the_suite_keeps_the_plan_and_reports_coverage(self, collector: Collector) -> None:
        done = run_python_against(
            collector,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "examples/test_flask_app.py",
            "--cdp-plan",
            "examples/tracking-plan.json",
        )
        assert 0 == done.returncode, done.stdout + done.stderr
        assert (
            "tracking plan coverage: 1 of 2 planned events fired; never fired: Checkout Started"
            in done.stdout
        )

    def test_an_edited_plan_fails_the_test_that_breaks_it(
        self, collector: Collector, tmp_path: Path
    ) -> None:
        plan = json.loads((ROOT / "examples" / "tracking-plan.json").read_text())
        plan["events"]["Order Completed"]["properties"]["properties"]["total"]["minimum"] = 50
        edited = tmp_path / "plan.json"
        edited.write_text(json.dumps(plan))
        done = run_python_against(
            collector,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "examples/test_flask_app.py",
            "--cdp-plan",
            str(edited),
        )
        assert 1 == done.returncode, done.stdout + done.stderr
        assert "FAILED examples/test_flask_app.py::test_checkout_is_tracked" in done.stdout
        assert "/properties/total: 39.95 is less than the minimum of 50" in done.stdout
        assert [] == collector.messages()
