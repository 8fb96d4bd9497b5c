"""Options: defaults, environment fallbacks and eager validation."""

from __future__ import annotations

from typing import Any

import pytest

import cdp_logging
from cdp_logging._options import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_MAX_EVENTS_IN_BATCH,
    DEFAULT_MAX_QUEUE_SIZE,
    build_options,
)

from .conftest import WRITE_KEY


class TestDefaults:
    def test_contract_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The defaults are the contract's: 20 per batch, 10 s, 10000 queued, Customer.io US."""
        monkeypatch.delenv("CDP_HOST", raising=False)
        options = build_options(write_key="k")

        assert (20, 10.0, 10_000, "https://cdp.customer.io") == (
            options.max_events_in_batch,
            options.flush_interval,
            options.max_queue_size,
            options.host,
        )
        assert (
            20,
            10.0,
            10_000,
        ) == (DEFAULT_MAX_EVENTS_IN_BATCH, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_QUEUE_SIZE)
        assert options.host == DEFAULT_HOST
        assert "https://cdp.customer.io/v1/batch" == options.endpoint


class TestEnvironment:
    def test_write_key_and_host_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CDP_WRITE_KEY and CDP_HOST fill in what the caller leaves out."""
        monkeypatch.setenv("CDP_WRITE_KEY", "from-env")
        monkeypatch.setenv("CDP_HOST", "https://cdp-eu.customer.io/")
        options = build_options()

        assert ("from-env", "https://cdp-eu.customer.io") == (options.write_key, options.host)

    def test_explicit_values_win_over_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An argument beats the environment."""
        monkeypatch.setenv("CDP_WRITE_KEY", "from-env")
        monkeypatch.setenv("CDP_HOST", "https://cdp-eu.customer.io")
        options = build_options(write_key="given", host="http://127.0.0.1:1")

        assert ("given", "http://127.0.0.1:1") == (options.write_key, options.host)

    def test_missing_write_key_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no key anywhere, construction fails with a ValueError naming CDP_WRITE_KEY."""
        monkeypatch.delenv("CDP_WRITE_KEY", raising=False)

        with pytest.raises(ValueError, match="CDP_WRITE_KEY"):
            cdp_logging.Analytics()
        with pytest.raises(ValueError, match="CDP_WRITE_KEY"):
            cdp_logging.AnalyticsHandler()


class TestValidation:
    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("max_events_in_batch", 0),
            ("max_events_in_batch", 2501),
            ("max_events_in_batch", 2.5),
            ("max_events_in_batch", True),
            ("flush_interval", -1),
            ("flush_interval", float("nan")),
            ("max_queue_size", "lots"),
            ("max_retries", -1),
            ("timeout", 0),
            ("shutdown_timeout", float("inf")),
            ("gzip", "maybe"),
            ("flush_triggers", ["track", "purchase"]),
            ("on_error", "not callable"),
            ("host", "cdp.customer.io"),
        ],
    )
    def test_bad_option_fails_at_construction(self, option: str, value: object) -> None:
        """A bad value is a ValueError naming the option, raised at construction."""
        with pytest.raises(ValueError, match=option):
            build_options(write_key="k", **{option: value})  # type: ignore[arg-type]

    def test_strings_from_config_files_are_accepted(self) -> None:
        """Numbers and flags written as strings (INI/YAML configs) are converted."""
        written: dict[str, Any] = {
            "max_events_in_batch": "50",
            "flush_interval": "0.5",
            "gzip": "true",
            "flush_triggers": "identify, alias",
        }
        options = build_options(write_key="k", **written)

        assert (50, 0.5, True, frozenset({"identify", "alias"})) == (
            options.max_events_in_batch,
            options.flush_interval,
            options.gzip,
            options.flush_triggers,
        )

    def test_repr_hides_write_key(self) -> None:
        """The options' repr never shows the write key."""
        options = build_options(write_key=WRITE_KEY)

        assert WRITE_KEY not in repr(options)
        assert "host=" in repr(options)
