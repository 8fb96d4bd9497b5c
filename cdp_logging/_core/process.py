"""Process-wide state, all of it in this one module: which senders exist, fork, exit,
who is sending now, message-id seeding, and the active captures.

Everything here is per process and shared by every client in it: the registry the fork
hook and the exit hook walk, the locks that must be new in a forked child, the threads
whose own log records must never come back to us (the re-entry guard), the messageId
prefix a forked child must draw again, the capture lists of ``testing``, and the
multiprocessing finalizer a child needs because it ends with ``os._exit``. A sender
registers itself and offers the few public methods of ``Member``; nothing here looks
inside one, and nothing here imports anything above it. ``reset_for_tests`` puts it all
back as a fresh process has it, as structlog's ``reset_defaults`` does for its config.

Import-time effects, and why each is here rather than on first use: the fork hook is
registered at import, because a fork can happen before any client exists and must
still find the id prefix reseeded; and the ids are seeded at import, as every message
needs one. The exit hook itself is registered by the package's ``__init__`` (see there
for why its order matters).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol

from .report import warn
from .sigterm import holding_sigterm

__all__ = [
    "MESSAGE_IDS",
    "Member",
    "MessageIds",
    "Watcher",
    "capture_active",
    "capture_lock",
    "capture_sinks",
    "capture_watchers",
    "clients",
    "close_all",
    "deliver_at_multiprocessing_exit",
    "exit_hook_ran",
    "flush_all",
    "process_lock",
    "register",
    "register_client",
    "reset_for_tests",
    "reset_process",
    "sending_threads",
    "warn_once",
]


class MessageIds:
    """Unique ids at a fraction of uuid4's cost: a random per-process prefix and a counter.

    The prefix is drawn again in a forked child; otherwise parent and child would hand
    out the same ids and the server, which de-duplicates on messageId, would drop one.
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self._prefix = uuid.uuid4().hex + "-"
        self._counter = itertools.count(1)

    def new(self) -> str:
        return self._prefix + str(next(self._counter))


MESSAGE_IDS: Final = MessageIds()

# Every active capture's list (``testing.capture_messages``), outermost first: nested
# captures all see a message. Read without the lock on the hot path (``bool``).
capture_sinks: list[list[dict[str, Any]]] = []
# Functions that see every accepted message and take none (the pytest plugin's plan
# check): the message is still queued, or captured, as it would have been.
Watcher = Callable[[dict[str, Any]], object]
capture_watchers: list[Watcher] = []
# Sinks and watchers together: what the hot path's one check reads.
capture_active: list[object] = []
capture_lock = threading.Lock()

# What warn_once has told this process, so a mistake repeated in a loop is one line.
# Bounded: past the bound nothing more is remembered, and nothing more is told.
MAX_TOLD: Final = 1000
_told: set[str] = set()


def warn_once(key: str, line: str) -> None:
    """Write *line* to stderr the first time *key* is seen in this process."""
    if key in _told or len(_told) >= MAX_TOLD:
        return
    _told.add(key)
    warn(line)


# The threads sending on our behalf right now (the sender threads, and an application
# thread while flush() or close() sends from it). Every front door refuses a message
# built in one of them, so urllib3's or our own records, and a callback's calls, can
# never loop back into the queue. A set of thread idents rather than a threading.local:
# this is checked at every call, and a local's attribute lookup costs several times a
# set membership test.
sending_threads: set[int] = set()


class Member(Protocol):
    """What the fork and exit hooks need from a sender."""

    @property
    def closed(self) -> bool: ...

    def after_fork(self) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def begin_close(self, timeout: float | None = None) -> bool: ...

    def at_exit(self) -> None: ...


# Every sender in this process. Weak: a client the application dropped is not kept alive
# by being registered (its running thread keeps its sender alive until it is idle, which
# is what exit needs).
_MEMBERS: weakref.WeakSet[Member] = weakref.WeakSet()


def register(member: Member) -> None:
    _MEMBERS.add(member)


# Every client (``Analytics``) in this process, with the number it was given when made,
# for what reads all of them from outside (``cdp_logging.metrics``): a sender is one of
# a client's lifetimes (a reopened client has a new one), a client's counters span them
# all. Weak, as above; the number stays the client's while it lives.
_CLIENTS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_client_numbers = itertools.count(1)
# A client made in one thread while another takes the snapshot would change the dict
# under the iteration (a RuntimeError), so both take process_lock("clients") (new in a
# forked child); removals by the garbage collector are deferred by the dict itself.


def register_client(client: object) -> None:
    with process_lock("clients"):
        _CLIENTS[client] = next(_client_numbers)


def clients() -> list[tuple[int, Any]]:
    """Every live client with its number, oldest first (a snapshot: safe to iterate)."""
    with process_lock("clients"):
        found = [(number, client) for client, number in _CLIENTS.items()]
    return sorted(found, key=_first)


def _first(item: tuple[int, Any]) -> int:
    return item[0]


# One lock per purpose and process id, made on first use: a lock inherited through fork
# may be held by a thread that no longer exists, but a new pid's lock is always new.
_PROCESS_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_process_pid = os.getpid()


def process_lock(purpose: str, pid: int | None = None) -> threading.Lock:
    """This process's lock for *purpose*, safe to take in a child forked with or
    without fork hooks (uWSGI): it was never held by a thread of the parent."""
    key = (purpose, os.getpid() if pid is None else pid)
    lock = _PROCESS_LOCKS.get(key)  # a Lock made only the first time: deliver() asks per call
    if lock is None:
        lock = _PROCESS_LOCKS.setdefault(key, threading.Lock())  # atomic: one per key
    return lock


def reset_process(pid: int) -> None:
    """Once per forked process: what every sender shares. Call with process_lock("reset", pid)."""
    global _process_pid
    if _process_pid == pid:
        return
    # The parent's sending threads do not exist here, and their idents can be reused by
    # the child's threads, whose records would then be refused.
    sending_threads.clear()
    MESSAGE_IDS.reseed()  # else parent and child hand out the same messageIds
    random.seed()  # else every worker retries on the same jittered schedule
    _process_pid = pid


def _reset_all_after_fork() -> None:
    for member in list(_MEMBERS):
        member.after_fork()


def flush_all(timeout: float) -> bool:
    """Flush every sender in this process within one shared *timeout*; True if all settled."""
    deadline = time.monotonic() + timeout
    settled = True
    for member in list(_MEMBERS):
        if not member.closed:
            settled = member.flush(max(0.0, deadline - time.monotonic())) and settled
    return settled


_exit_hook_ran = False


def exit_hook_ran() -> bool:
    """Whether ``close_all`` has run: a client opened after it is closed by nobody."""
    return _exit_hook_ran


def close_all() -> None:
    """Deliver, within each one's shutdown_timeout, what every sender still holds.

    Every sender is told to close before any is waited for, so N clients deliver side
    by side and exit takes the longest shutdown_timeout, not their sum.
    """
    global _exit_hook_ran
    _exit_hook_ran = True
    members = list(_MEMBERS)
    for member in members:
        with contextlib.suppress(Exception):
            member.begin_close()
    for member in members:
        try:
            member.at_exit()
        except Exception as error:  # noqa: BLE001 - one broken sender must not stop the rest
            warn(f"exit delivery failed: {type(error).__name__}")


_finalizer_pid: int | None = None


def deliver_at_multiprocessing_exit() -> None:
    """Have a multiprocessing child deliver before it ends with ``os._exit``.

    multiprocessing ends its children with os._exit, which skips atexit, after running
    its own finalizers (util._exit_function). It clears inherited finalizers when the
    child starts, so registering here, when the child first sends, is what survives.
    """
    global _finalizer_pid
    util = sys.modules.get("multiprocessing.util")
    process = sys.modules.get("multiprocessing.process")
    if util is None or process is None or _finalizer_pid == os.getpid():
        return
    if process.parent_process() is None:
        return  # the main process: the atexit hook covers it
    _finalizer_pid = os.getpid()
    # SIGTERM (Pool.terminate) may come while it delivers: held back until it is done.
    util.Finalize(None, holding_sigterm, args=(close_all,), exitpriority=10)
    # It may also come just before: after the worker's run() returned (a Pool worker that
    # got its stop sentinel) and before the finalizers started. An application handler's
    # sys.exit then ends them before ours runs, and the child's queue is lost, silently.
    # What still runs is threading's own shutdown, in _bootstrap's last `finally`
    # (https://github.com/python/cpython/blob/v3.11.7/Lib/multiprocessing/process.py#L332),
    # which calls the functions registered with threading._register_atexit (CPython's,
    # used by concurrent.futures since 3.9): a second chance, skipped once delivered.
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # threading is shutting down already
            register(_deliver_if_not_yet)


def _deliver_if_not_yet() -> None:
    if not _exit_hook_ran:
        holding_sigterm(close_all)


os.register_at_fork(after_in_child=_reset_all_after_fork)


def reset_for_tests() -> None:
    """Forget every sender, capture, lock and flag, as a new process has none.

    For tests only: the senders are forgotten, not closed (close them first), so the
    exit hook will not deliver for them.
    """
    global _process_pid, _exit_hook_ran, _finalizer_pid
    _MEMBERS.clear()
    _CLIENTS.clear()
    _PROCESS_LOCKS.clear()
    sending_threads.clear()
    capture_sinks.clear()
    capture_watchers.clear()
    capture_active.clear()
    _told.clear()
    MESSAGE_IDS.reseed()
    _process_pid = os.getpid()
    _exit_hook_ran = False
    _finalizer_pid = None
