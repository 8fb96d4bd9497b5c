"""``CallFuture``: the ``concurrent.futures.Future`` each direct call returns, made cheap.

Most direct calls are fire-and-forget: the Future is dropped at once, or kept and never
looked at. A stock ``Future`` still costs its caller a ``threading.Condition`` (an RLock
and a waiter list) at every call, and its settlement a lock round trip, a notify and the
decoding of the wire message back into the dict ``result()`` returns. Here the Condition
is made the first time anything asks for it (``result``, ``done``, ``add_done_callback``,
``cancel``, ``concurrent.futures.wait`` ...), and a Future nothing has asked anything of
is settled by ``deliver`` without one: it keeps the wire bytes, and ``result()`` decodes
them on first use.

This leans on ``Future``'s private layout (``_condition``, ``_state``, ``_result``, ...),
unchanged from CPython 3.2 to 3.14; ``_compat`` (item 2) checks it at import, and if a
later CPython changes it, ``CallFuture`` is a plain ``Future`` subclass and only the
saving is lost.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, Final

from .._compat import FINISHED, FUTURE_LAYOUT_KNOWN, PENDING
from .._core.process import process_lock
from .._core.serialise import decode

__all__ = ["LAZY", "CallFuture"]

LAZY: Final = FUTURE_LAYOUT_KNOWN

# The lock that guards the making of a Condition against deliver(): with it, either
# deliver() sees no Condition (so nobody can be waiting or have a done-callback) and
# settles without one, or the Condition exists first and deliver() takes Future's own
# path. One per process: the parent's sender takes it for every call it settles, so a
# fork can copy it held into a child, with or without fork hooks (uWSGI), where no
# thread would ever release it.
_MAKING: Final = "future-condition"


class CallFuture(Future[dict[str, Any]]):
    """A ``concurrent.futures.Future`` whose Condition, and decoded result, wait until asked.

    Everything a Future does works unchanged (``result``, ``exception``,
    ``add_done_callback``, ``cancel``, ``concurrent.futures.wait`` and ``as_completed``,
    ``asyncio.wrap_future``); only what nobody asks for is never paid for.
    """

    def __init__(self) -> None:
        if not LAZY:
            super().__init__()
        else:
            # Future.__init__ without the Condition (see __getattr__).
            self._state = PENDING
            self._result = None
            self._exception = None
            self._waiters = []
            self._done_callbacks: list[Any] = []
        self._data: bytes | None = None

    if not TYPE_CHECKING:
        # Hidden from mypy: a __getattr__ returning Any would stop it flagging a
        # misspelt attribute anywhere on this class; it sees Future's _condition.

        def __getattr__(self, name: str) -> Any:
            """Make the Condition on first use; reached only for attributes not yet set."""
            if name != "_condition":
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            with process_lock(_MAKING):
                condition = self.__dict__.get("_condition")
                if condition is None:
                    condition = self.__dict__["_condition"] = threading.Condition()
            return condition

    def deliver(self, data: bytes) -> None:
        """Resolve with the wire message *data*: the dict ``result()`` returns, decoded
        only if anything asks for it."""
        with process_lock(_MAKING):
            if "_condition" not in self.__dict__ and self._state == PENDING:
                # Nothing has looked at this Future, so nothing waits on it and it has
                # no done-callbacks (adding one makes the Condition): nothing to notify.
                self._data = data
                self._state = FINISHED
                return
        with contextlib.suppress(InvalidStateError):  # cancelled by the application
            self.set_result(decode(data))

    def __repr__(self) -> str:
        if self._data is not None:  # finished, not yet decoded: it will be a dict
            return f"<{type(self).__name__} at {id(self):#x} state=finished returned dict>"
        return super().__repr__()

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        value = super().result(timeout)
        if value is not None:  # settled by set_result (decode never gives None)
            return value
        # Settled by deliver(): the bytes, or, if another thread decoded them after the
        # line above read None, its dict. Checked under the Condition, which the decoding
        # thread holds, so this thread never returns the None it read before.
        with self._condition:  # decoded once, so every caller gets the same dict
            if self._data is not None:
                self._result = decode(self._data)
                self._data = None
            decoded: dict[str, Any] = self._result
        return decoded
