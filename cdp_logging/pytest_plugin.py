"""The pytest plugin (entry point ``pytest11``): the ``cdp_messages`` fixture, and the
tracking plan in the test suite (``--cdp-plan PATH`` or the ini key ``cdp_plan``).

With a plan, every message any client in the test process accepts while a test runs
(captured or sent) is checked against it, and a test that tracked a message breaking
the plan fails with the reasons. The run ends with a "tracking plan coverage" line:
how many planned events the suite fired, and which it never did, so a planned event
no test exercises is seen. Under pytest-xdist each worker checks its own tests and
the controller adds up what they fired.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Final

import pytest

from ._core import capture as _capture
from ._core.plan import Problem, TrackingPlan, describe, load_plan
from .testing import CapturedMessages, capture_messages

__all__ = [
    "cdp_messages",
    "pytest_addoption",
    "pytest_configure",
    "pytest_runtest_call",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_testnodedown",
]

_PLAN_KEY: Final = pytest.StashKey["_PlanWatch"]()
# How a worker hands the events it fired to the xdist controller.
_WORKER_OUTPUT: Final = "cdp_plan_fired"


@pytest.fixture
def cdp_messages() -> Iterator[CapturedMessages]:
    """The wire messages the code under test tracked, none of them sent."""
    with capture_messages() as messages:
        yield messages


class _PlanWatch:
    """The plan, the events fired across the run, and the current test's violations."""

    def __init__(self, plan: TrackingPlan) -> None:
        self.plan = plan
        self.fired: set[str] = set()
        self.violations: list[list[Problem]] = []
        # One bound method, kept: each ``self.see`` is a new object, and unwatch()
        # removes the very object watch() was given.
        self.watcher = self.see

    def see(self, message: dict[str, Any]) -> None:
        if message.get("type") == "track" and isinstance(message.get("event"), str):
            self.fired.add(message["event"])
        problems = self.plan.check(message)
        if problems:
            self.violations.append(problems)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cdp_logging")
    group.addoption(
        "--cdp-plan",
        metavar="PATH",
        default=None,
        help="a tracking plan (JSON): fail tests that track messages breaking it, and "
        "report which planned events the suite fired",
    )
    # "paths": relative to the ini file, wherever pytest is started from.
    parser.addini("cdp_plan", "the tracking plan file for --cdp-plan", type="paths", default=[])


def pytest_configure(config: pytest.Config) -> None:
    given = config.getoption("--cdp-plan")
    in_ini = config.getini("cdp_plan")
    path = given if given else (in_ini[0] if in_ini else None)
    if not path:
        return
    try:
        plan = load_plan(str(path))
    except (ImportError, ValueError) as error:
        raise pytest.UsageError(f"--cdp-plan: {error}") from None
    config.stash[_PLAN_KEY] = _PlanWatch(plan)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Watch what the test tracks, from the start of its call phase."""
    watch = item.config.stash.get(_PLAN_KEY, None)
    if watch is not None:
        watch.violations = []
        _capture.watch(watch.watcher)


# An old-style wrapper, which every pytest and pluggy knows: the plugin loads in every
# suite of every project that installs the package, not only in those with a plan.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Fail the call phase of a test that tracked a message breaking the plan."""
    outcome = yield
    watch = item.config.stash.get(_PLAN_KEY, None)
    if watch is None or call.when != "call":
        return
    _capture.unwatch(watch.watcher)
    if not watch.violations:
        return
    lines = [describe(problems) for problems in watch.violations[:20]]
    more = len(watch.violations) - len(lines)
    if more:
        lines.append(f"... and {more} more")
    text = (
        f"tracked {len(watch.violations)} message(s) breaking the tracking plan "
        f"{watch.plan.source}:\n" + "\n".join(lines)
    )
    watch.violations = []
    report = outcome.get_result()
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:  # failed anyway: the plan's word goes beside the test's own
        report.sections.append(("tracking plan", text))


def pytest_sessionfinish(session: pytest.Session) -> None:
    watch = session.config.stash.get(_PLAN_KEY, None)
    output = getattr(session.config, "workeroutput", None)
    if watch is not None and output is not None:  # an xdist worker: tell the controller
        output[_WORKER_OUTPUT] = sorted(watch.fired)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's controller: add up the events each worker fired (only called under xdist)."""
    watch = node.config.stash.get(_PLAN_KEY, None)
    fired = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if watch is not None and fired:
        watch.fired.update(fired)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    watch = config.stash.get(_PLAN_KEY, None)
    if watch is None or getattr(config, "workerinput", None) is not None:
        return
    planned = watch.plan.events
    if planned is None:
        terminalreporter.write_line("tracking plan coverage: the plan lists no events")
        return
    fired = sorted(planned & watch.fired)
    never = sorted(planned - watch.fired)
    line = f"tracking plan coverage: {len(fired)} of {len(planned)} planned events fired"
    if never:
        line += "; never fired: " + ", ".join(never)
    terminalreporter.write_line(line)
