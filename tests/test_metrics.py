"""``cdp_logging.metrics.register_prometheus``: a real prometheus_client registry, read
through its text exposition and over HTTP on 127.0.0.1, over real clients."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import cdp_logging
from cdp_logging import RetryPolicy
from cdp_logging._core.clock import Waitable
from cdp_logging._delivery.age import MAX_MARKS, Ages
from cdp_logging.collector import Collector
from cdp_logging.errors import CODES
from cdp_logging.metrics import register_prometheus

from .conftest import WRITE_KEY, free_port


def scrape(text: str, client: cdp_logging.Analytics) -> dict[str, Any]:
    """The samples of *client*'s series: name -> value, failed_total as code -> value."""
    number = next(
        label
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("host") == client.options.host
        for label in [sample.labels["client"]]
    )
    found: dict[str, Any] = {"failed": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("client") != number:
                continue
            if sample.name == "cdp_messages_failed_total":
                found["failed"][sample.labels["code"]] = sample.value
            else:
                found[sample.name] = sample.value
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # bounded by the deadline
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class TestExposition:
    def test_delivered_failed_by_code_and_an_empty_queue(
        self, make_client: Callable[..., cdp_logging.Analytics], collector: Collector
    ) -> None:
        registry = CollectorRegistry()
        register_prometheus(registry)
        client = make_client()
        for i in range(3):
            client.track(f"u{i}", "Signed Up")
        client.track("u9")  # no event: refused at the call, invalid_message
        assert client.flush(5)

        found = scrape(generate_latest(registry).decode(), client)

        assert 3 == found["cdp_messages_delivered_total"]
        assert {**dict.fromkeys(CODES, 0.0), "filtered": 0, "not_sent": 0} | {
            "invalid_message": 1.0
        } == found["failed"]
        assert 0 == found["cdp_queue_messages"]
        assert 0 == found["cdp_queue_oldest_age_seconds"]
        assert 3 == collector.counts()["by_type"]["track"]

    def test_a_stuck_queue_shows_its_depth_and_its_oldest_messages_age(self) -> None:
        """Nothing listens at the host: the message waits, retried, and its age grows."""
        registry = CollectorRegistry()
        register_prometheus(registry)
        client = cdp_logging.Analytics(
            WRITE_KEY,
            f"http://127.0.0.1:{free_port()}",
            retry=RetryPolicy(base=0.05, cap=0.1),
            max_retries=1000,
            shutdown_timeout=0.2,
            stderr_warnings=False,
        )
        try:
            before = time.monotonic()
            client.track("u1", "Signed Up")
            after = time.monotonic()
            client.track("u2", "Signed Up")
            wait_until(lambda: client.stats()["retried"] >= 4)  # 0.1 s or more later
            start = time.monotonic()
            found = scrape(generate_latest(registry).decode(), client)
            end = time.monotonic()
        finally:
            client.close(0.2)

        assert 2 == found["cdp_queue_messages"]
        age = found["cdp_queue_oldest_age_seconds"]
        # Measured from when u1 was queued: within the wake-up of the sender thread.
        assert start - after - 0.05 <= age <= end - before
        assert age >= 0.1
        assert 0 == found["cdp_messages_delivered_total"]

    def test_a_scrape_over_http_and_a_second_registration(
        self, make_client: Callable[..., cdp_logging.Analytics]
    ) -> None:
        registry = CollectorRegistry()
        collector = register_prometheus(registry)
        assert collector is register_prometheus(registry)  # not a duplicate-series error
        registry.unregister(collector)
        assert collector is register_prometheus(registry)  # and back
        client = make_client()
        client.track("u1", "Signed Up")
        assert client.flush(5)
        server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            answer = requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5)
        finally:
            server.shutdown()
            thread.join(5)

        assert 200 == answer.status_code
        assert 1 == scrape(answer.text, client)["cdp_messages_delivered_total"]

    def test_the_host_label_leaves_out_a_password(self) -> None:
        registry = CollectorRegistry()
        register_prometheus(registry)
        client = cdp_logging.Analytics(WRITE_KEY, "https://bob:s3cret@cdp.example", send=False)
        try:
            text = generate_latest(registry).decode()
        finally:
            client.close(0)
        assert "s3cret" not in text
        assert 'host="https://cdp.example"' in text

    def test_without_prometheus_client_the_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("prometheus_client", "prometheus_client.metrics_core"):
            monkeypatch.setitem(sys.modules, name, None)  # as if not installed
        with pytest.raises(ImportError, match=r"pip install 'cdp_logging\[prometheus\]'"):
            register_prometheus(CollectorRegistry())


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        raise AssertionError("not waited on")


class TestMarks:
    def test_the_age_is_measured_from_the_latest_mark_at_or_below(self) -> None:
        clock = HandClock()
        ages = Ages(clock)
        ages.mark(0, 100.0, 0)  # 0.. queued at 100 or later
        ages.mark(10, 101.0, 0)  # a batch taken at 101: 10.. came after
        ages.mark(25, 102.5, 0)
        clock.now = 103.0
        assert 3.0 == ages.age(0)
        assert 2.0 == ages.age(24)  # queued between 101 and 102.5: at most 2 s
        assert 0.5 == ages.age(25)

    def test_settled_marks_go_but_the_latest_below_stays(self) -> None:
        clock = HandClock()
        ages = Ages(clock)
        for i in range(5):
            ages.mark(i * 10, 100.0 + i, 0)
        ages.mark(50, 106.0, 35)  # everything below 35 is settled
        clock.now = 110.0
        assert 7.0 == ages.age(35)  # from the mark at 30 (103)
        assert 3 == len(ages._marks)  # 30, 40, 50

    def test_marks_are_bounded_and_the_figure_stays_an_upper_bound(self) -> None:
        clock = HandClock()
        ages = Ages(clock)
        for i in range(MAX_MARKS + 10):
            ages.mark(i, 100.0 + i, 0)
        clock.now = 100.0 + MAX_MARKS + 20
        assert MAX_MARKS == len(ages._marks)
        assert 21.0 == ages.age(MAX_MARKS + 5)  # the last kept mark: older than its own
