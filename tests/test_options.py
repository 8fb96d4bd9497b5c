"""Options: defaults, environment fallbacks and eager validation."""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import cdp_logging
from cdp_logging._core.options import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_MAX_EVENTS_IN_BATCH,
    DEFAULT_MAX_QUEUE_SIZE,
    OPTION_NAMES,
    ClientOptions,
    Options,
    build_options,
)

from .conftest import ROOT, WRITE_KEY, run_python


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
            ("max_queue_bytes", 31_999),
            ("max_queue_bytes", 1.5),
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


class _Transport:
    def send(self, body: bytes, timeout: float) -> Any:
        raise AssertionError("send=False sends nothing")

    def close(self) -> None:
        pass


class TestOneSource:
    """The options are declared once; everything that names them must agree."""

    FRONT_DOORS = (
        cdp_logging.Analytics,
        cdp_logging.AnalyticsHandler,
        cdp_logging.AnalyticsProcessor,
    )

    def test_the_three_front_doors_take_write_key_host_then_the_options(self) -> None:
        for door in self.FRONT_DOORS:
            parameters = list(inspect.signature(door).parameters.values())
            assert ["write_key", "host"] == [p.name for p in parameters[:2]], door
            assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters[:2]), door
            assert all(p.default is None for p in parameters[:2]), door
            rest = parameters[-1]
            assert (rest.name, rest.kind) == ("options", rest.VAR_KEYWORD), door
            assert "Unpack[ClientOptions]" == rest.annotation, door  # as written, unevaluated
            own = {p.name for p in parameters[2:-1]}
            assert not own & OPTION_NAMES, door  # nothing declared twice

    def test_options_value_has_a_field_for_each_option(self) -> None:
        fields = {f.name for f in dataclasses.fields(Options)}
        # max_retries is a property of Options: the count inside its retry policy.
        assert fields | {"max_retries"} == OPTION_NAMES | {"write_key", "host"}
        assert OPTION_NAMES == set(ClientOptions.__annotations__)

    def test_the_docs_table_lists_exactly_the_options(self) -> None:
        page = (ROOT / "docs" / "options.md").read_text()
        section = page.split("\n## The options\n", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
        assert len(rows) == len(set(rows))
        assert set(rows) == OPTION_NAMES | {"write_key", "host"}

    def test_every_option_reaches_the_client_from_each_front_door(self, tmp_path: Path) -> None:
        """Each door hands every option through unchanged: none is dropped on the way."""
        given: dict[str, Any] = {
            "max_events_in_batch": 7,
            "flush_interval": 3.0,
            "max_queue_size": 70,
            "max_queue_bytes": 64_000,
            "on_error": print,
            "on_flush": print,
            "max_retries": 2,
            "timeout": 4.0,
            "gzip": True,
            "send": False,
            "flush_triggers": ["alias"],
            "shutdown_timeout": 1.0,
            "stderr_warnings": False,
            "transport": _Transport(),
            "retry": cdp_logging.RetryPolicy(base=0.1, cap=0.2, max_retry_after=3.0),
            "buffer": f"sqlite:{tmp_path / 'buffer.sqlite3'}",
            "max_buffer_bytes": 1_000_000,
            "before_send": [print],
            "redact": ["traits.email"],
            "context": {"app": {"name": "shop"}},
            "tracking_plan": {"events": {"E": {}}},
            "plan_mode": "drop",
        }
        # The built-in transport's settings, which a transport= given refuses.
        network: dict[str, Any] = {
            "proxies": {"https": "http://127.0.0.1:9"},
            "verify": False,
            "headers": {"X-Tenant": "eu"},
            "oauth": None,  # tests/test_network.py: it needs a key and a token server
        }
        assert set(given) | set(network) == OPTION_NAMES
        converted = {"flush_triggers": frozenset, "before_send": tuple, "redact": tuple}
        for door in self.FRONT_DOORS:
            for chosen in (given, network):
                made = door("k", "http://127.0.0.1:9", **chosen)
                options = made.client.options if hasattr(made, "client") else made.options
                for name, value in chosen.items():
                    expected = converted.get(name, lambda v: v)(value)
                    if name == "retry":
                        expected = dataclasses.replace(value, max_retries=2)
                    actual = getattr(options, name)
                    if name == "tracking_plan":  # loaded at construction
                        actual = actual.data
                    assert expected == actual, (door, name)
                assert "http://127.0.0.1:9" == options.host
                made.close() if isinstance(made, cdp_logging.Analytics) else made.client.close()

    def test_an_unknown_option_is_a_type_error_naming_it(self) -> None:
        for door in self.FRONT_DOORS:
            with pytest.raises(TypeError, match="max_event_in_batch"):
                door("k", max_event_in_batch=5)  # type: ignore[call-arg]  # mypy sees it too

    def test_a_refused_handler_leaves_nothing_behind_for_exit(self) -> None:
        """A start-up that dies of a bad option prints that one error, and nothing at
        exit: no half-made handler stays on logging's exit list to fail there too (the
        uncaught traceback keeps it alive until then)."""
        done = run_python(
            """
            import cdp_logging
            cdp_logging.AnalyticsHandler("k", "http://127.0.0.1:9", max_events_in_batch=100000)
            """
        )
        assert done.returncode == 1
        assert "ValueError: max_events_in_batch must be at most" in done.stderr
        assert done.stderr.count("Traceback") == 1, done.stderr

    def test_a_bad_level_closes_the_client_the_handler_made(self) -> None:
        """The level is checked after the client is made (see the handler's __init__), so
        a refused level must close that client: nobody else holds it, and an open one
        would stay on the exit list for as long as the traceback keeps it alive."""
        from cdp_logging._core import process as _lifecycle

        before = {id(member) for member in _lifecycle._MEMBERS if not member.closed}
        with pytest.raises(ValueError, match="BOGUS") as refused:
            cdp_logging.AnalyticsHandler("k", "http://127.0.0.1:9", level="BOGUS")
        left_open = [
            member
            for member in _lifecycle._MEMBERS
            if not member.closed and id(member) not in before
        ]
        assert left_open == []
        assert refused.traceback  # it is still alive here, holding the half-made handler

    def test_client_and_options_together_are_refused(self) -> None:
        client = cdp_logging.Analytics("k", send=False)
        with pytest.raises(ValueError, match="not both"):
            cdp_logging.AnalyticsHandler(client=client, max_queue_size=5)
        with pytest.raises(ValueError, match="not both"):
            cdp_logging.AnalyticsProcessor(client=client, host="http://127.0.0.1:9")
        client.close()


class TestImportLayers:
    @staticmethod
    def modules_after(statement: str) -> set[str]:
        code = (
            "import sys; before = set(sys.modules); "
            f"{statement}; print('\\n'.join(sorted(set(sys.modules) - before)))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        return set(result.stdout.split())

    def test_import_cdp_logging_loads_neither_structlog_nor_requests(self) -> None:
        loaded = self.modules_after("import cdp_logging")
        assert not {m for m in loaded if m.split(".")[0] in {"structlog", "requests", "urllib3"}}

    def test_structlog_comes_with_the_processor(self) -> None:
        loaded = self.modules_after("import cdp_logging; cdp_logging.AnalyticsProcessor")
        assert "structlog" in loaded

    def test_the_collector_loads_only_the_standard_library_and_the_protocol(self) -> None:
        loaded = self.modules_after("import cdp_logging.collector")
        ours = {m for m in loaded if m.split(".")[0] == "cdp_logging"}
        others = {m.split(".")[0] for m in loaded} - {"cdp_logging"}
        assert not others - set(sys.stdlib_module_names), others - set(sys.stdlib_module_names)
        allowed = {
            "cdp_logging",
            "cdp_logging._core",
            "cdp_logging._core.protocol",
            "cdp_logging._version",
        }
        assert not {m for m in ours if not m.startswith("cdp_logging.collector")} - allowed

    def test_a_collector_with_a_plan_adds_only_the_plan_and_its_validator(self) -> None:
        loaded = self.modules_after(
            "from cdp_logging.collector import Collector; Collector(plan={'events': {}})"
        )
        ours = {m for m in loaded if m.split(".")[0] == "cdp_logging"}
        others = {m.split(".")[0] for m in loaded} - {"cdp_logging"}
        assert {"jsonschema_rs"} == others - set(sys.stdlib_module_names)
        allowed = {
            "cdp_logging",
            "cdp_logging._core",
            "cdp_logging._core.protocol",
            "cdp_logging._core.plan",
            "cdp_logging._version",
        }
        assert "cdp_logging._core.plan" in ours
        assert not {m for m in ours if not m.startswith("cdp_logging.collector")} - allowed
