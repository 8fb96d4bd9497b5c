"""``Analytics``: the client both front doors share, and the only public sender API.

It turns calls into serialised messages (``_core.calls``), hands them to its ``Sender``, and
turns refusals into reported ``DeliveryError``s. It never raises from a call: an
invalid message, a full queue or a closed client are reported through ``on_error``,
``stats()``, the call's Future and callback, and a rate-limited stderr line.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from os import getpid
from threading import get_ident
from types import TracebackType
from typing import Any, cast

from typing_extensions import Unpack

from ._buffers import make_buffer
from ._buffers.base import Buffer, Tracked
from ._core import calls as _calls
from ._core import capture as _capture
from ._core.errors import (
    BEFORE_SEND,
    CLOSED,
    INVALID_MESSAGE,
    MESSAGE_TOO_LARGE,
    PLAN_VIOLATION,
    QUEUE_FULL,
    REENTRANT,
    DeliveryError,
)
from ._core.options import ClientOptions, Options, build_options
from ._core.pipeline import make_build
from ._core.plan import describe
from ._core.process import (
    capture_active,
    exit_hook_ran,
    process_lock,
    register_client,
    sending_threads,
)
from ._core.report import Reporter, warn
from ._core.secrets import Scrubber
from ._core.serialise import decode
from ._delivery.future import CallFuture
from ._delivery.sender import Sender
from ._delivery.settle import resolve_call
from ._transports.requests import http_transport

__all__ = ["Analytics", "Callback", "client_or_new", "refuse_options_beside"]

Callback = Callable[[Exception | None, dict[str, Any]], object]

# Refused before they were queued; every other code is a failure of a queued message.
_DROP_CODES = frozenset(
    {QUEUE_FULL, CLOSED, INVALID_MESSAGE, MESSAGE_TOO_LARGE, REENTRANT, BEFORE_SEND, PLAN_VIOLATION}
)
# plan_mode="warn" tells each distinct problem once; past this many, a process logging a
# fresh event name per call would grow the set without end, so it stops telling.
_MAX_PLAN_PROBLEMS_TOLD = 1000


def _scrubber(write_key: str, *others: str) -> Scrubber:
    """Remove the write key (and its Basic-auth form) from any text we did not write,
    and *others* (a proxy URL's password, say)."""
    return Scrubber(write_key, *others)


class Analytics:
    """A CDP client: six calls, a bounded queue, and a background sender.

    Args:
        write_key: The source's write key; defaults to ``$CDP_WRITE_KEY``.
        host: Where to POST ``/v1/batch``; defaults to ``$CDP_HOST``, else
            ``https://cdp.customer.io``.
        **options: The options of the documentation's Options page (``ClientOptions``),
            the same for ``AnalyticsHandler`` and ``AnalyticsProcessor``.

    Raises:
        ValueError: an option is invalid, or there is no write key at all.
        TypeError: an option that does not exist.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        write_key: str | None = None,
        host: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._options = build_options(write_key, host, **options)
        self._scrub = _scrubber(
            self._options.write_key,
            *(
                password
                for url in (self._options.proxies or {}).values()
                if (password := urllib.parse.urlsplit(url).password)
            ),
        )
        self._reporter = Reporter(
            self._options.on_error, self._scrub, stderr=self._options.stderr_warnings
        )
        self._triggers = self._options.flush_triggers
        # calls.build itself unless context, redact or before_send is configured: the
        # choice is made here, once, so a client without them pays nothing per call.
        self._build = make_build(
            self._options.context, self._options.redact, self._options.before_send, self._scrub
        )
        self._filtered = 0  # messages a before_send hook dropped, in this process
        self._filtered_lock = threading.Lock()
        self._filtered_pid = getpid()
        # close() without reopen=True: later calls are refused (``closed``) for good.
        # A client closed by a logging handler or by the exit hook opens a new sender
        # for the next message instead, as logging.FileHandler reopens its file.
        self._final = False
        # Calls after the exit hook share one deadline: shutdown_timeout from the first.
        self._after_exit_deadline: float | None = None
        # The thread inside _reopen / the after-exit delivery: a signal handler's call
        # in that same thread must not wait for the lock its thread holds.
        self._reopening: int | None = None
        self._delivering_after_exit: int | None = None
        self._sender = self._new_sender()
        register_client(self)
        # The tracking plan: None costs the logging call one check, and nothing else.
        self._plan = self._options.tracking_plan
        self._plan_violations = 0
        self._plan_told: set[tuple[str, ...]] = set()

    def _new_sender(self, carried: dict[str, int] | None = None) -> Sender:
        options = self._options
        transport = options.transport
        if transport is None:
            transport = http_transport(options)
        return Sender(
            options,
            transport,
            self._reporter,
            self._scrub,
            buffer=functools.partial(make_buffer, options),
            owns_transport=options.transport is None,
            carried=carried,
        )

    def __repr__(self) -> str:
        state = "closed" if self._sender.closed else "open"
        return f"<Analytics host={self._options.host!r} {state}>"

    @property
    def options(self) -> Options:
        """The validated settings (the write key is left out of its repr)."""
        return self._options

    @property
    def closed(self) -> bool:
        return self._sender.closed

    @property
    def buffer(self) -> Buffer:
        """The buffer this client's messages wait in now (memory or SQLite).

        .. versionadded:: 0.2.0
        """
        return self._sender.buffer

    # -- the six calls --------------------------------------------------------------

    def identify(
        self,
        user_id: str | int | None = None,
        *,
        anonymous_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Say who a user is and what they are like (traits)."""
        return self._call(
            "identify",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "traits": traits,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def track(
        self,
        user_id: str | int | None = None,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record that a user did something (``event``)."""
        return self._call(
            "track",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "event": event,
                "properties": properties,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def page(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record a web page view."""
        return self._view("page", locals())

    def screen(
        self,
        user_id: str | int | None = None,
        name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        category: str | None = None,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Record a mobile or app screen view."""
        return self._view("screen", locals())

    def group(
        self,
        user_id: str | int | None = None,
        group_id: str | int | None = None,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | int | None = None,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Put a user in a group (a company, an account)."""
        return self._call(
            "group",
            {
                "user_id": user_id,
                "anonymous_id": anonymous_id,
                "group_id": group_id,
                "traits": traits,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def alias(
        self,
        previous_id: str | int | None = None,
        user_id: str | int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        integrations: Mapping[str, Any] | None = None,
        timestamp: Any = None,
        message_id: str | None = None,
        callback: Callback | None = None,
    ) -> Future[dict[str, Any]]:
        """Merge two identities: ``previous_id`` becomes ``user_id``."""
        return self._call(
            "alias",
            {
                "previous_id": previous_id,
                "user_id": user_id,
                "context": context,
                "integrations": integrations,
                "timestamp": timestamp,
                "message_id": message_id,
            },
            callback,
        )

    def _view(self, call_type: str, arguments: dict[str, Any]) -> Future[dict[str, Any]]:
        callback = arguments.pop("callback")
        arguments.pop("self")
        return self._call(call_type, arguments, callback)

    def _call(
        self, call_type: str, fields: dict[str, Any], callback: Callback | None
    ) -> Future[dict[str, Any]]:
        future = CallFuture()
        self.submit(
            call_type,
            fields,
            time.time(),
            strict=True,
            future=future,
            callback=callback,
            logged=False,
        )
        return future

    # -- the path every front door takes ---------------------------------------------

    def submit(
        self,
        call_type: object,
        fields: Mapping[str, Any],
        created: float,
        strict: bool,
        *,
        future: Future[dict[str, Any]] | None = None,
        callback: Callback | None = None,
        logged: bool = True,
    ) -> bool:
        """Build, serialise and queue one message; report instead of raising.

        The path every front door takes (the six calls, the handler, the processor),
        so each rule about a call is applied in one place: a record *logged* while we
        are sending (from inside a callback, or by the HTTP stack) is refused, a client
        that the handler or the exit hook closed reopens, and every refusal is
        reported. Returns whether the message was queued.

        A direct call (``logged`` False) from a callback is sent: the application
        asked for it by name, as in a callback that tracks "batch delivered"; a
        logging call there is the one that loops unseen, through a logger the
        callback may not know ends at us.
        """
        if type(call_type) is not str:
            # A str subclass is its text; calling its methods (hash, str) may raise.
            call_type = _calls.plain_call_type(call_type)
        if logged and get_ident() in sending_threads:
            self._reentered(call_type)
            return False
        sender = self._sender
        if sender.pid != getpid():  # a forked child no fork hook has reset yet
            sender.ensure_process()
        try:
            built = self._build(call_type, fields, created, strict)  # by position: cheaper
        except Exception as error:  # noqa: BLE001 - a value no rule foresaw: report, never raise
            built = DeliveryError(
                INVALID_MESSAGE,
                f"{_calls.name_of(call_type)}: could not read or serialise the message "
                f"({type(error).__name__}: {self._scrub.cut(_calls.error_text(error), 200)})",
                messages=[],
            )
        if not isinstance(built, bytes):
            if built is None:  # a before_send hook dropped it
                self._drop_filtered(future, callback)
            else:
                reason = self._scrub(built.reason)  # it may quote the application's values
                if reason != built.reason:
                    built = DeliveryError(built.code, reason, messages=built.messages)
                self._refuse(built, future, callback)
            return False
        plan = self._plan
        if (
            plan is not None
            # With redact or before_send the message sent is not the fields given: only
            # the full check, on what is sent, can say whether it keeps the plan.
            and (self._build is not _calls.build or not plan.quick_ok(call_type, fields, built))
            and self._breaks_plan(built, future, callback)
        ):
            return False
        # The list itself, not _capture.capturing(): a call less on every message (~400
        # instructions under callgrind); an empty list is the same lock-free "no".
        if capture_active and self._captured(built, future, callback):
            return True
        entry: bytes | Tracked = built
        if future is not None or callback is not None:
            entry = Tracked(built, future, callback)
        urgent = call_type in self._triggers
        refused = sender.submit(entry, urgent)
        if refused is None:
            return True
        if refused == CLOSED and not self._final:
            # Closed by a handler's close() (dictConfig, maybe while this call was on
            # its way) or by the exit hook: open a new sender rather than lose it.
            refused = self._resubmit(entry, urgent)
            if refused is None:
                return True
        if refused == QUEUE_FULL and self._options.buffer_path is not None:
            reason = (
                f"the buffer {self._options.buffer_path} is at max_buffer_bytes="
                f"{self._options.max_buffer_bytes} (or max_queue_size="
                f"{self._options.max_queue_size} wait to be written): {self._options.host} "
                "is not taking messages as fast as they come; check the network or raise them"
            )
        elif refused == QUEUE_FULL:
            reason = (
                f"the queue is at its bound (max_queue_size={self._options.max_queue_size} "
                f"messages, max_queue_bytes={self._options.max_queue_bytes} bytes): "
                f"{self._options.host} is not taking them as fast as they come; "
                "check the network or raise those bounds"
            )
        else:
            reason = "the client was closed; messages logged after close() are not sent"
        wants = future is not None or callback is not None or self._reporter.wants_errors
        messages = [decode(built)] if wants else []
        self._refuse(DeliveryError(refused, reason, messages=messages), future, callback)
        return False

    def _breaks_plan(
        self, built: bytes, future: Future[dict[str, Any]] | None, callback: Callback | None
    ) -> bool:
        """Check *built* against the plan, exactly (on its JSON); True when it is refused.

        Only for messages the shortcut could not clear, so the cost of decoding is paid
        by messages that (nearly always) break the plan, not by every call.
        """
        plan = self._plan
        assert plan is not None  # only called with a plan
        message = decode(built)
        problems = plan.check(message)
        if not problems:
            return False
        reason = self._scrub(describe(problems))
        with process_lock("plan"):  # per pid: a fork cannot leave it held
            self._plan_violations += 1
            fresh = []
            for problem in problems:
                told = self._plan_told
                if problem.key not in told and len(told) < _MAX_PLAN_PROBLEMS_TOLD:
                    told.add(problem.key)
                    fresh.append(problem)
        if self._options.plan_mode == "drop":
            self._refuse(
                DeliveryError(PLAN_VIOLATION, reason, messages=[message]), future, callback
            )
            return True
        if fresh and self._options.stderr_warnings:
            warn(
                f"delivered, but {self._scrub(describe(fresh))} (plan_mode='warn'; "
                "each distinct problem is told once)"
            )
        return False

    def _resubmit(self, entry: bytes | Tracked, urgent: bool) -> str | None:
        """Queue *entry* on a new sender; after the exit hook, also deliver it now.

        Nothing will close a sender opened after the exit hook and logging.shutdown()
        (a call from an atexit hook that runs later), so each such call delivers at
        once, one at a time, and all of them within one ``shutdown_timeout`` from the
        first: a hundred late calls cannot hold exit for a hundred timeouts.
        """
        if not exit_hook_ran():
            sender = self._reopen()
            return CLOSED if sender is None else sender.submit(entry, urgent)
        me = get_ident()
        if self._delivering_after_exit == me:
            # A signal handler's call, in this thread, interrupted the delivery below:
            # waiting for the lock this thread holds would never end. Reported closed.
            return CLOSED
        with process_lock("after-exit"):
            self._delivering_after_exit = me  # no call between: no handler runs here
            try:
                sender = self._reopen()
                if sender is None:
                    return CLOSED
                if self._after_exit_deadline is None:
                    timeout = self._options.shutdown_timeout
                    self._after_exit_deadline = time.monotonic() + timeout
                # This call sends, so that everything is settled (delivered or reported)
                # before it returns: a sender thread would report a batch it held at the
                # deadline only after this call, and maybe the process, had ended.
                sender.without_thread()
                refused = sender.submit(entry, urgent)
                if refused is None:
                    sender.close(max(0.0, self._after_exit_deadline - time.monotonic()))
                return refused
            finally:
                self._delivering_after_exit = None

    def _reopen(self) -> Sender | None:
        """A new sender in place of the closed one, once however many threads ask;
        None when the application closed the client for good.

        The lock is per pid (a parent thread holding it at fork cannot block the
        child), and not the handler's: logging.shutdown() holds that one while our
        close() waits for delivery. close() takes it too, so a final close() and a
        reopen cannot cross.
        """
        me = get_ident()
        if self._reopening == me:
            # A signal handler's call, in this thread, interrupted the reopening below
            # (a new sender being made): it is refused as closed, and reported.
            return None
        with process_lock("reopen"):
            self._reopening = me  # no call between: no handler runs here
            try:
                if self._final:
                    return None
                old = self._sender
                if old.closed:
                    self._sender = self._new_sender(carried=old.stats())
                return self._sender
            finally:
                self._reopening = None

    def _reentered(self, call_type: object) -> None:
        """Refuse a record logged from inside one of our callbacks, where it would loop.

        Counted and warned about on stderr, but ``on_error`` does not hear of it: it
        may be where the record came from, and telling it would recurse.
        """
        error = DeliveryError(
            REENTRANT,
            f"a {_calls.name_of(call_type)} record logged from inside an on_flush, on_error or "
            "call callback is not sent (each delivery would log one more); call the client's "
            "methods there instead, or log from the application",
        )
        self._reporter.report(error, 1, callback=False)

    def unreadable(self, error: Exception) -> None:
        """Report an analytics record whose payload raised when it was read.

        Its ``cdp`` mapping's ``get`` raised, say: there is no message to build, but the
        record was meant for us, so it is counted and reported (``invalid_message``)
        rather than left to ``logging.Handler.handleError``, which prints nothing when
        ``logging.raiseExceptions`` is False.

        .. versionadded:: 0.2.0
        """
        reason = (
            "an analytics record's payload raised when it was read "
            f"({type(error).__name__}: {self._scrub.cut(_calls.error_text(error), 200)}); "
            "give cdp= a dict, or a mapping whose reading cannot fail"
        )
        self._refuse(DeliveryError(INVALID_MESSAGE, reason), None, None)

    def _captured(
        self, built: bytes, future: Future[dict[str, Any]] | None, callback: Callback | None
    ) -> bool:
        """Hand *built* to an active capture (cdp_logging.testing) instead of the queue."""
        message = _capture.offer(built)
        if message is None:
            return False
        resolve_call(future, callback, None, message, self._scrub)
        return True

    def _drop_filtered(
        self, future: Future[dict[str, Any]] | None, callback: Callback | None
    ) -> None:
        """A message a before_send hook dropped: counted, and its call told None.

        Not an error: the application asked for it, so on_error and stderr stay quiet.
        """
        if self._filtered_pid != getpid():
            # A forked child counts its own, as the reporter does, and must not wait
            # on a lock a parent thread held at the fork.
            self._filtered_lock = threading.Lock()
            self._filtered = 0
            self._filtered_pid = getpid()
        with self._filtered_lock:
            self._filtered += 1
        resolve_call(future, callback, None, cast("dict[str, Any]", None), self._scrub)

    def _refuse(
        self,
        error: DeliveryError,
        future: Future[dict[str, Any]] | None,
        callback: Callback | None,
    ) -> None:
        self._reporter.report(error, 1)
        message = error.messages[0] if error.messages else {}
        resolve_call(future, callback, error, message, self._scrub)

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything queued before this call.

        Returns True once every message accepted before the call is settled (delivered,
        or failed and reported), False if *timeout* (default ``shutdown_timeout``)
        seconds passed first. Never waits longer than that.
        """
        return self._sender.flush(self._timeout(timeout))

    def close(self, timeout: float | None = None, *, reopen: bool = False) -> None:
        """Deliver what is queued (within *timeout*, default ``shutdown_timeout``) and stop.

        Idempotent. Messages still undelivered at the deadline are reported with code
        ``shutdown_timeout``; calls after close are reported with code ``closed``,
        unless *reopen*: then the next call opens a new sender, as a closed
        ``logging.FileHandler`` reopens its file (what ``AnalyticsHandler.close`` asks,
        since dictConfig closes handlers that may still be attached).

        .. versionchanged:: 0.2.0 *reopen*.
        """
        with process_lock("reopen"):
            self._final = self._final or not reopen
            sender = self._sender
        sender.close(self._timeout(timeout))

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` for asyncio: the wait runs in a worker thread, so the loop keeps running.

        .. versionadded:: 0.2.0
        """
        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> None:
        """``close`` for asyncio, waiting in a worker thread, never on the loop.

        .. versionadded:: 0.2.0
        """
        await asyncio.to_thread(self.close, timeout)

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._options.shutdown_timeout
        return max(0.0, float(timeout))

    def stats(self) -> dict[str, Any]:
        """Counters since this client started (in this process).

        ``queued`` messages were accepted into the queue; each ends ``delivered``
        (or ``not_sent`` with send=False) or ``failed``; ``dropped`` ones never got in;
        ``pending`` are queued or in flight now; ``errors`` counts messages by code;
        ``filtered`` were dropped on purpose by a ``before_send`` hook (not an error).
        ``plan_violations`` counts messages that broke the tracking plan, delivered
        (``plan_mode="warn"``) or refused (``"drop"``).
        """
        numbers: dict[str, Any] = self._sender.stats()
        errors = self._reporter.counts()
        numbers["dropped"] = sum(n for code, n in errors.items() if code in _DROP_CODES)
        numbers["failed"] = sum(n for code, n in errors.items() if code not in _DROP_CODES)
        numbers["errors"] = errors
        numbers["filtered"] = self._filtered if self._filtered_pid == getpid() else 0
        numbers["plan_violations"] = self._plan_violations
        return numbers

    def __enter__(self) -> Analytics:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def refuse_options_beside(
    given: str, write_key: str | None, host: str | None, options: object
) -> None:
    """A front door handed a client (*given*) takes no client options too: they would
    be silently ignored, the client having its own."""
    if write_key is not None or host is not None or options:
        raise ValueError(f"pass {given} or the client's options (write_key, host, ...), not both")


def client_or_new(
    client: Analytics | None,
    write_key: str | None,
    host: str | None,
    options: ClientOptions,
) -> tuple[Analytics, bool]:
    """The client a front door sends through, and whether it made (so owns) it."""
    if client is not None:
        refuse_options_beside("client=", write_key, host, options)
        return client, False
    return Analytics(write_key, host, **options), True
