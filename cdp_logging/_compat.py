"""Every use of a CPython internal, in one place, each with why it is worth it and what
happens without it.

Each of these is private API that a CPython release may change. Each is looked up
defensively here, and each has a fallback that keeps the behaviour correct and loses
only what the internal bought; ``tests/test_compat.py`` runs every fallback. Figures:
CPython 3.11, ``timeit`` on this project's 2-core machine, a typical track message.

1. ``json.encoder.c_make_encoder``, called with its positional arguments. Speed:
   ``JSONEncoder.encode`` builds a new C encoder on every call; building it once saves
   ~2.0 us of ~6.1 us per message (a third of the JSON cost, about 20% of a logging
   call through the handler with the standard-library encoder). Without it:
   ``JSONEncoder.encode``, the same bytes.
2. ``concurrent.futures.Future``'s attribute layout (``_condition``, ``_state``, ...)
   and ``concurrent.futures._base.PENDING``/``FINISHED``. Speed: a direct call's Future
   is made without its Condition until something asks (``_delivery.future``): 0.38 us
   instead of 1.67 us, about 19% of a direct ``track()``. Without it (the layout
   changed): a plain ``Future`` subclass, the same behaviour.
3. ``logging._lock._is_owned``. Correctness: inside ``dictConfig`` (which holds
   logging's module lock) a flush must not wait for the sender thread, which may be
   blocked on that very lock; knowing it lets the calling thread send itself. Without
   it: flush waits, bounded by its timeout, as if the lock were not held.
4. ``logging._handlerList`` and ``logging._addHandlerRef``. Correctness: a handler
   reopened after ``dictConfig`` closed it is put back on the list ``logging.shutdown``
   flushes, so its records are delivered at exit. Without them: the exit hook still
   delivers (it walks our own registry), only logging's own flush skips it.
"""

from __future__ import annotations

import json.encoder
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Final

__all__ = [
    "FINISHED",
    "FUTURE_LAYOUT_KNOWN",
    "PENDING",
    "holding_logging_lock",
    "make_c_encoder",
    "relist_handler",
]

# -- 1. the C JSON encoder ------------------------------------------------------------


def make_c_encoder(
    default: Callable[[Any], Any],
) -> Callable[[Any, int], Iterable[str]] | None:
    """A compact, UTF-8 (``ensure_ascii=False``), ``allow_nan=False`` C encoder, built
    once; None where this CPython has none (then use ``JSONEncoder.encode``).

    No markers dict: a cycle then ends in RecursionError (the C encoder guards its
    recursion), which the caller treats like any other value it must clean.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
        #  skipkeys, allow_nan), as json.encoder._make_iterencode's caller passes them.
        encoder: Callable[[Any, int], Iterable[str]] = make(
            None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    except TypeError:  # the signature changed
        return None
    return encoder


# -- 2. Future's layout ---------------------------------------------------------------

# The state names Future keeps in ``_state`` (plain strings in every CPython so far).
PENDING: Final = "PENDING"
FINISHED: Final = "FINISHED"
# The attributes Future.__init__ sets, as ``_delivery.future`` knows them.
_LAYOUT: Final = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}


def _future_layout_known() -> bool:
    try:
        from concurrent.futures import _base
    except ImportError:  # pragma: no cover - a CPython without the module
        return False
    states = (getattr(_base, "PENDING", None), getattr(_base, "FINISHED", None))
    return set(vars(Future())) == _LAYOUT and states == (PENDING, FINISHED)


FUTURE_LAYOUT_KNOWN: Final = _future_layout_known()


# -- 3. is logging's module lock held by this thread? ---------------------------------


def holding_logging_lock() -> bool:
    """Whether this thread holds logging's module lock (it does inside ``dictConfig``).

    False when that cannot be known, which makes the caller wait (bounded) instead.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if callable(is_owned) else False
    except Exception:  # noqa: BLE001 - an internal that changed behaves as absent
        return False


# -- 4. logging's own list of handlers to flush at exit -------------------------------


def relist_handler(handler: logging.Handler) -> None:
    """Put *handler* back on the list ``logging.shutdown`` flushes; nothing if absent.

    Takes logging's module lock (``_addHandlerRef`` does): never call it under ours.
    """
    listed = getattr(logging, "_handlerList", None)
    add_ref = getattr(logging, "_addHandlerRef", None)
    if not callable(add_ref) or listed is None:
        return
    if not any(ref() is handler for ref in list(listed)):
        add_ref(handler)
