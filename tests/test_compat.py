"""Each CPython internal in ``_compat`` has a fallback, and the fallback is correct."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading

import pytest

from cdp_logging import _compat
from cdp_logging._core import process
from cdp_logging._core import serialise as json_rule


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout.strip()


class TestFallbacks:
    def test_without_the_c_encoder_the_bytes_are_the_same(self) -> None:
        """No json.encoder.c_make_encoder: JSONEncoder.encode writes the same bytes."""
        value = {"a": [1, 2.5, "é", None, True], "b": {"c": 10**30}}
        expected = json_rule.dumps_stdlib(value).decode()
        assert json_rule._C_ENCODE is not None  # this CPython has it: the fast path ran
        out = run(
            """
            import json.encoder
            json.encoder.c_make_encoder = None
            from cdp_logging._core import serialise
            assert serialise._C_ENCODE is None
            print(serialise.dumps_stdlib({"a": [1, 2.5, "é", None, True], "b": {"c": 10**30}})
                  .decode())
            """
        )
        assert expected == out

    def test_a_changed_future_layout_gives_a_plain_future(self) -> None:
        """A Future with an attribute we do not know: CallFuture is a full Future, eager."""
        out = run(
            """
            import concurrent.futures
            original = concurrent.futures.Future.__init__
            def init(self):
                original(self)
                self._new_in_a_later_cpython = 1
            concurrent.futures.Future.__init__ = init
            from cdp_logging._delivery.future import LAZY, CallFuture
            future = CallFuture()
            assert "_condition" in vars(future)
            future.deliver(b'{"type":"track"}')
            print(LAZY, future.result(timeout=1))
            """
        )
        assert "False {'type': 'track'}" == out

    def test_the_lock_question_is_answered_and_falls_back_to_no(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Inside logging's lock: True; with a lock that cannot say: False (wait, bounded)."""
        with logging._lock:  # type: ignore[attr-defined]
            assert _compat.holding_logging_lock()
        assert not _compat.holding_logging_lock()
        monkeypatch.setattr(logging, "_lock", threading.Lock())
        assert not _compat.holding_logging_lock()

    def test_relisting_without_logging_internals_does_nothing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No _handlerList: a reopened handler is not relisted, and nothing raises."""
        handler = logging.NullHandler()
        monkeypatch.delattr(logging, "_handlerList")
        _compat.relist_handler(handler)
        monkeypatch.undo()
        refs = logging._handlerList  # type: ignore[attr-defined]
        assert any(ref() is handler for ref in refs)  # made by Handler.__init__


class TestProcessState:
    def test_reset_for_tests_forgets_everything_process_wide(self) -> None:
        """Members, captures, the re-entry guard and the id prefix: all as a new process."""
        run(
            """
            import cdp_logging
            from cdp_logging._core import process
            from cdp_logging._core.calls import new_message_id
            client = cdp_logging.Analytics("k", send=False)
            sink = []
            process.capture_sinks.append(sink)
            process.sending_threads.add(1)
            first = new_message_id()
            client.close()
            process.reset_for_tests()
            assert not list(process._MEMBERS)
            assert process.capture_sinks == [] and process.sending_threads == set()
            assert not process.exit_hook_ran()
            second = new_message_id()
            assert first.split("-")[0] != second.split("-")[0], (first, second)
            assert second.endswith("-1")
            """
        )

    def test_the_hot_path_reads_the_same_objects_reset_clears(self) -> None:
        """reset_for_tests clears in place: names imported elsewhere stay the live ones."""
        from cdp_logging._core import capture

        assert capture._sinks is process.capture_sinks
