"""Celery: the sender's bound context travels with each task, and every task delivers.

``cdp_logging.celery.setup(app)`` connects four of Celery's signals:

* ``before_task_publish`` (where ``delay``/``apply_async`` runs, a web request say):
  what ``bind_context`` bound there goes into the task message's headers, as one JSON
  text (ours: it never fails to serialise, whatever the app bound, and whichever
  serializer the app uses for task arguments).
* ``task_prerun`` / ``task_postrun`` (in the worker process that runs the task): that
  context is bound while the task runs, so its events carry the user it was sent for,
  and the previous state is restored after it: nothing one task bound, or bound
  itself, reaches the next task of the same process.
* ``task_postrun`` also flushes every client in the process (``cdp_logging.flush``,
  bounded by *timeout*): the prefork pool ends its processes with ``os._exit``, which
  skips exit hooks, and may recycle or lose them between tasks; the end of a task is
  the last moment known to be safe. ``worker_process_shutdown`` flushes once more, for
  what was logged outside any task. When a task's flush runs out of time (the CDP is
  down, say), waiting again at the next task would not deliver anything sooner, only
  slow every task by *timeout* for as long as the outage lasts: so the next tasks ask
  for a send without waiting, until one finds everything delivered again.

A task run eagerly (``task_always_eager``, ``.apply()``) runs in the caller's thread,
inside the caller's own context: it is left alone, and not flushed, since the caller
did not ask to wait.

Celery's signals are process-wide: the handlers serve every app of the process, and
calling ``setup`` again (for another app, or twice) connects nothing more.

This module is ``cdp_logging.celery``; ``import celery`` below is the real package
(absolute imports), as ``structlog.twisted`` imports Twisted.
"""

from __future__ import annotations

import contextvars
import json
import threading
from typing import Any, Final

from ._core.context import BOUND, Bound, bind_context, get_context
from ._core.report import warn
from ._core.serialise import dumps
from ._delivery.flushing import DEFAULT_FLUSH_TIMEOUT, flush

try:
    from celery import signals
except ImportError as error:
    raise ImportError(
        "cdp_logging.celery needs Celery, an optional extra: pip install 'cdp_logging[celery]'"
    ) from error

__all__ = ["HEADER", "setup"]

# The task message header the bound context travels in.
HEADER: Final = "cdp_context"
_UID: Final = "cdp_logging.celery"

_settings = {"timeout": DEFAULT_FLUSH_TIMEOUT}
# Whether the last task's flush ran out of time (per process: a forked child inherits
# the parent's, which is False, as a parent that runs no task never flushes).
_behind = False
# task id -> the token that restores what was bound before the task ran. A dict rather
# than one slot: the threads pool runs several tasks at once in one process.
_tokens: dict[str, contextvars.Token[Bound | None]] = {}
_tokens_lock = threading.Lock()


def setup(app: Any, *, timeout: float = DEFAULT_FLUSH_TIMEOUT) -> None:
    """Carry bound context into *app*'s tasks and deliver at the end of each task.

    Call it where the app is made (the module ``celery -A`` imports), so that both the
    processes that send tasks and the worker processes run it. *timeout* bounds the
    flush at the end of each task (shared by every client in the process).

    Raises:
        ImportError: Celery is not installed (``cdp_logging[celery]``).

    .. versionadded:: 0.2.0
    """
    global _behind
    del app  # the signals are process-wide: see the module's docstring
    _settings["timeout"] = max(0.0, float(timeout))
    _behind = False
    signals.before_task_publish.connect(_publishing, weak=False, dispatch_uid=_UID)
    signals.task_prerun.connect(_starting, weak=False, dispatch_uid=_UID)
    signals.task_postrun.connect(_ended, weak=False, dispatch_uid=_UID)
    signals.worker_process_shutdown.connect(_process_ending, weak=False, dispatch_uid=_UID)


def _publishing(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put what is bound here into the message's headers (protocol 2)."""
    if headers is None or BOUND.get() is None:
        return
    try:
        headers[HEADER] = dumps(get_context()).decode()
    except Exception as error:  # noqa: BLE001 - sending the task matters more
        warn(f"celery: the bound context was not added to the task: {type(error).__name__}")


def _starting(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Bind the context the task was sent with, in place of whatever is bound now."""
    request = getattr(task, "request", None)
    if task_id is None or request is None or getattr(request, "is_eager", False):
        return
    token = BOUND.set(None)
    with _tokens_lock:
        _tokens[task_id] = token
    text = request.get(HEADER) if hasattr(request, "get") else None
    if not text:
        return
    try:
        fields = json.loads(text)
        if isinstance(fields, dict):
            bind_context(**fields)
    except Exception as error:  # noqa: BLE001 - the task runs, with what could be bound
        warn(f"celery: the task's context could not be bound: {type(error).__name__}")


def _ended(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Restore what was bound before the task, then deliver what it logged."""
    with _tokens_lock:
        token = _tokens.pop(task_id, None) if task_id is not None else None
    if token is None:
        return  # eager, or not started through _starting
    global _behind
    try:
        BOUND.reset(token)
    except ValueError:  # ended in another context than it started in
        BOUND.set(None)
    _behind = not flush(0.0 if _behind else _settings["timeout"])


def _process_ending(**_: Any) -> None:
    flush(_settings["timeout"])
