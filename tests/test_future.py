"""The Future a direct call returns: a real ``concurrent.futures.Future`` in every use,
whose Condition and decoded result are made only when something asks for them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

import cdp_logging
from cdp_logging._delivery.future import LAZY, CallFuture
from cdp_logging.collector import Collector

from .conftest import run_python

MESSAGE = {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"}
DATA = json.dumps(MESSAGE).encode()

Maker = Callable[..., cdp_logging.Analytics]


def test_this_python_gets_the_saving() -> None:
    """Without the layout check passing, every other test here would test a plain Future."""
    assert LAZY
    assert "_condition" not in vars(CallFuture())


class TestThroughTheClient:
    def test_a_dropped_then_read_future_has_the_delivered_message(
        self, make_client: Maker, collector: Collector
    ) -> None:
        client = make_client()
        futures = [client.track("u", f"E{i}") for i in range(5)]
        assert client.flush(timeout=5)
        # Nothing looked at them before delivery: settled without a Condition.
        assert all("_condition" not in vars(f) for f in futures)
        assert "state=finished returned dict>" in repr(futures[0])  # not NoneType
        sent = {m["messageId"]: m for m in collector.messages()}
        for i, future in enumerate(futures):
            result = future.result(timeout=0)
            assert result["event"] == f"E{i}"
            assert sent[result["messageId"]]["event"] == f"E{i}"
            assert future.result() is result  # decoded once

    def test_a_waiter_and_a_done_callback_hear_of_delivery(self, make_client: Maker) -> None:
        client = make_client(max_events_in_batch=1000, flush_interval=60)
        heard: list[dict[str, Any]] = []
        client.track("u", "first").result(timeout=5)  # the first message goes at once
        future = client.track("u", "waited")
        future.add_done_callback(lambda done: heard.append(done.result()))
        waiter = concurrent.futures.ThreadPoolExecutor(1).submit(future.result, 5)
        assert not future.done()
        assert client.flush(timeout=5)
        assert waiter.result(timeout=5)["event"] == "waited"
        assert [m["event"] for m in heard] == ["waited"]

    def test_wait_as_completed_and_asyncio(self, make_client: Maker) -> None:
        client = make_client(max_events_in_batch=1)  # each is sent as it comes
        futures = [client.track("u", f"E{i}") for i in range(3)]
        done, not_done = concurrent.futures.wait(futures, timeout=5)
        assert len(done) == 3
        assert not not_done
        assert sorted(f.result()["event"] for f in concurrent.futures.as_completed(futures)) == [
            "E0",
            "E1",
            "E2",
        ]

        async def awaited() -> dict[str, Any]:
            return await asyncio.wrap_future(client.track("u", "async"))

        assert asyncio.run(asyncio.wait_for(awaited(), 5))["event"] == "async"

    def test_a_refused_call_fails_its_future(self, make_client: Maker) -> None:
        future = make_client().track("u", None)
        error = future.exception(timeout=0)
        assert isinstance(error, cdp_logging.DeliveryError)
        assert error.code == "invalid_message"


class TestDeliver:
    def test_after_delivery_a_done_callback_runs_at_once(self) -> None:
        future = CallFuture()
        future.deliver(DATA)
        seen: list[object] = []
        future.add_done_callback(lambda done: seen.append(done.result()))
        assert seen == [MESSAGE]
        assert future.done()
        assert not future.cancelled()

    def test_a_cancelled_future_stays_cancelled(self) -> None:
        future = CallFuture()
        assert future.cancel()
        future.deliver(DATA)  # does not raise
        assert future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=0)

    @pytest.mark.parametrize("looked_first", [False, True], ids=["racing", "looked-at"])
    def test_waiters_always_wake(self, looked_first: bool) -> None:
        """A waiter and deliver() must never miss each other, in either order.

        "racing": the waiter starts as deliver() runs, so the two meet in any order.
        "looked-at": the waiter has made the Condition (``done()``) before deliver(),
        and is usually inside ``result()``'s wait by then: deliver() must notify it.
        A waiter that missed its notify would time out and fail the round.
        """
        for _ in range(200):
            future = CallFuture()
            ready = threading.Event()
            got: list[object] = []

            def wait(
                future: CallFuture = future,
                ready: threading.Event = ready,
                got: list[object] = got,
            ) -> None:
                if looked_first:
                    future.done()
                ready.set()
                got.append(future.result(timeout=5))

            waiter = threading.Thread(target=wait)
            waiter.start()
            ready.wait(timeout=5)
            future.deliver(DATA)
            waiter.join(timeout=10)
            assert got == [MESSAGE]

    def test_a_reader_never_gets_none_while_another_decodes(self) -> None:
        """Two threads read a Future deliver() settled with bytes. The first is held just
        after Future.result has read the undecoded None, while the second decodes: the
        first must still return the dict. The hold is a Condition whose exit waits, for
        the first reader only, until the second has its result, so the order is forced,
        not hoped for."""
        future = CallFuture()
        future.deliver(DATA)
        assert "_condition" not in vars(future)  # settled with the bytes kept
        held_out, decoded = threading.Event(), threading.Event()
        reader: list[int] = []

        class HoldingCondition(threading.Condition):
            def __exit__(self, *exc: Any) -> None:
                super().__exit__(*exc)
                if threading.get_ident() in reader and not held_out.is_set():
                    held_out.set()
                    decoded.wait(timeout=5)

        vars(future)["_condition"] = HoldingCondition()
        got: list[object] = []

        def read() -> None:
            reader.append(threading.get_ident())
            got.append(future.result(timeout=5))

        first = threading.Thread(target=read)
        first.start()
        assert held_out.wait(timeout=5)
        second = future.result(timeout=5)
        decoded.set()
        first.join(timeout=5)
        assert second == MESSAGE
        assert got == [second]
        assert got[0] is second  # decoded once: both have the same dict


@pytest.mark.parametrize(
    "fork",
    ["os.fork()", "ctypes.PyDLL(None).fork()"],
    ids=["os.fork", "libc-fork-no-hooks"],
)
def test_a_fork_while_the_sender_settles_leaves_the_child_free(fork: str) -> None:
    """deliver() takes a lock per settled call on the sender thread; a fork at that
    moment copies it held into the child, where nothing would ever release it. The
    parent holds it across the fork here, as the sender would; the child must still make
    a Condition and settle a Future (an alarm ends a child stuck on the copied lock).
    libc's fork runs no os.register_at_fork hook, as under uWSGI's default."""
    done = run_python(
        f"""
        import ctypes, os, signal
        from cdp_logging._delivery import future as _future
        from cdp_logging._delivery.future import CallFuture
        from cdp_logging._core.process import process_lock

        with process_lock(_future._MAKING):
            pid = {fork}
            if pid == 0:
                signal.alarm(10)
                future = CallFuture()
                future.done()  # makes the Condition, under the lock
                future.deliver(b'{{"event": "E"}}')
                print("child result", future.result(timeout=1)["event"], flush=True)
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        """,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["child result E", "child exit 0"], done.stdout
