"""``cdp-logging relay``: deliver from the fleet's Redis stream to the CDP.

Every relay is a consumer of one consumer group on the stream
(https://redis.io/docs/latest/develop/data-types/streams/#consumer-groups): XREADGROUP
hands each entry to exactly one relay, and the entry stays in the group's pending list
(PEL), owned by that relay, until the relay acknowledges it. A relay acknowledges
(XACK, then XDEL, so the stream's length is what is still to deliver and the apps'
bound means something) only once the CDP accepted the message, or refused it for good
(a 4xx other than 408/429, after the sender's 413/400 halving) and it was reported.

Delivery itself is the library's own ``Sender``: the same batching by the protocol's
limits, retries with backoff, 413/400 halving and reports as in an app, so the delivery
rules live in one place. Each message goes in as a ``Tracked`` entry whose callback
records how it ended.

Takeover. A relay that dies leaves its entries pending, owned by a consumer that will
never acknowledge them. Every relay renews its own in-progress entries (XCLAIM to
itself with JUSTID resets an entry's idle time,
https://redis.io/docs/latest/commands/xclaim/) every ``takeover/6`` seconds, and takes
over (XAUTOCLAIM, https://redis.io/docs/latest/commands/xautoclaim/) entries idle for
``2/3·takeover``, checked every ``takeover/6``
seconds. A dead relay's entries are therefore delivered by another within ``takeover``
seconds (30 by default), while a live relay's never look idle. A message whose retries
ran out while the CDP was down is not acknowledged and no longer renewed, so it is
taken over the same way (by any relay, this one included) and tried again: a CDP outage
of any length loses nothing; the stream's bound is what limits it.

Redis going away (a restart, a failover) only pauses reading: the relay reconnects with
a jittered backoff up to ``MAX_BACKOFF`` seconds, recreates the group if Redis came back
empty, and acknowledges what was delivered meanwhile.
"""

from __future__ import annotations

import functools
import os
import random
import secrets
import socket
import threading
import time
from collections import deque
from typing import Any, Final

from ._buffers import make_buffer
from ._buffers.base import Tracked
from ._buffers.redis import FIELD, connect
from ._client import _scrubber
from ._core.buffer_option import RedisBuffer
from ._core.errors import HTTP_STATUS, KEPT, DeliveryError
from ._core.options import build_options
from ._core.protocol import MAX_BATCH_MESSAGES
from ._core.report import Reporter, warn
from ._core.retry import DEFAULT_RETRY, RetryPolicy
from ._delivery.sender import Sender
from ._transports.base import CONFIGURATION_STATUSES, Outcome, classify
from ._transports.requests import RequestsTransport

__all__ = ["DEFAULT_GROUP", "DEFAULT_TAKEOVER", "Relay", "consumer_name"]

DEFAULT_GROUP: Final = "cdp_logging_relays"
DEFAULT_TAKEOVER: Final = 30.0
DEFAULT_CAPACITY: Final = 10_000
# Entries asked for per XREADGROUP, and per XAUTOCLAIM page.
READ_COUNT: Final = 1_000
CLAIM_COUNT: Final = 500
MAX_BACKOFF: Final = 5.0
# How long a read waits for new entries while messages are in progress: the loop
# acknowledges what was delivered at least this often.
BUSY_BLOCK_MS: Final = 50
# A consumer with nothing pending and idle for this many takeover times is a relay that
# stopped (or died and was taken over); it is removed from the group so the group's
# consumer list does not grow with every restart. A live relay reads at least every
# second, and one removed by mistake is recreated by its next read.
FORGET_AFTER_TAKEOVERS: Final = 10
# KEYS[1] the stream; ARGV: group, this consumer, idle limit in ms. XINFO CONSUMERS
# replies with name/pending/idle pairs per consumer (7.2 adds inactive).
_FORGET: Final = """
local removed = 0
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""
# Longer than any read's BLOCK, so a blocked read is never cut off by its own socket.
SOCKET_TIMEOUT: Final = 5.0


def consumer_name() -> str:
    """Unique per process, and readable in XINFO CONSUMERS: host, pid and a nonce."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Relay:
    """One relay process: a consumer of the group, and a sender to the CDP.

    ``run`` loops until ``stop`` is called (the CLI calls it on SIGTERM / SIGINT), then
    delivers what it holds within ``shutdown_timeout``, acknowledges it, and returns.
    What is still pending then is taken over by another relay.
    """

    def __init__(
        self,
        buffer: RedisBuffer,
        write_key: str | None,
        host: str | None,
        *,
        group: str = DEFAULT_GROUP,
        takeover: float = DEFAULT_TAKEOVER,
        capacity: int = DEFAULT_CAPACITY,
        shutdown_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        consumer: str | None = None,
    ) -> None:
        if not takeover > 0:
            raise ValueError(f"takeover must be a positive number of seconds, got {takeover!r}")
        self.options = build_options(
            write_key,
            host,
            max_events_in_batch=MAX_BATCH_MESSAGES,
            max_queue_size=capacity,
            # Send as soon as there is something; batches fill while one is in flight.
            flush_interval=0,
            shutdown_timeout=shutdown_timeout,
            stderr_warnings=False,  # the relay says what it does with each failure
            retry=retry or DEFAULT_RETRY,
        )
        self.buffer = buffer
        self.group = group
        self.consumer = consumer or consumer_name()
        self.takeover = takeover
        self._capacity = capacity
        self._idle_ms = max(1, int(takeover * 2 / 3 * 1000))
        self._interval = takeover / 6
        self._stopping = threading.Event()
        self._client: Any = None
        self._group_ready = False
        self._down = False
        self._lock = threading.Lock()
        self._in_progress: set[bytes] = set()
        self._finished: deque[tuple[bytes, bool]] = deque()  # (entry id, acknowledge?)
        self._unacked: list[bytes] = []
        self._renewed_at = 0.0
        self._claimed_at = 0.0
        self._forgotten_at = time.monotonic()
        self.refused = 0
        self.kept = 0
        scrub = _scrubber(self.options.write_key)
        self._report = Reporter(None, scrub)  # the relay's own, rate-limited, stderr lines
        transport = RequestsTransport(self.options.endpoint, self.options.write_key, gzip=False)
        self._sender = Sender(
            self.options,
            transport,
            Reporter(None, scrub, stderr=False),
            scrub,
            buffer=functools.partial(make_buffer, self.options),
            owns_transport=True,
        )

    def stop(self) -> None:
        self._stopping.set()

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception as error:
                if not _is_redis_error(error):
                    raise
                self._unreachable(error)
                self._stopping.wait(random.uniform(backoff / 2, backoff))  # noqa: S311 - jitter
                backoff = min(MAX_BACKOFF, backoff * 2)
            else:
                backoff = 0.1
        self._sender.close(self.options.shutdown_timeout)
        try:
            self._acknowledge()
        except Exception as error:
            if not _is_redis_error(error):
                raise
            warn(
                f"could not acknowledge {len(self._unacked)} delivered message(s) at exit "
                f"({type(error).__name__}): another relay will deliver them again"
            )

    def _step(self) -> None:
        client = self._connected()
        self._acknowledge()
        now = time.monotonic()
        if now - self._renewed_at >= self._interval:
            self._renew(client)
            self._renewed_at = now
        if now - self._claimed_at >= self._interval:
            self._take_over(client)
            self._claimed_at = now
        if now - self._forgotten_at >= self.takeover * FORGET_AFTER_TAKEOVERS:
            self._forget_the_dead(client)
            self._forgotten_at = now
        room = self._capacity - self._pending()
        if room <= 0:
            self._stopping.wait(BUSY_BLOCK_MS / 1000)
            return
        block = BUSY_BLOCK_MS if self._pending() else int(min(1.0, self._interval) * 1000)
        answer = client.xreadgroup(
            self.group,
            self.consumer,
            {self.buffer.stream: ">"},
            count=min(room, READ_COUNT),
            block=max(1, block),
        )
        for _, entries in answer or ():
            self._hand_over(entries)

    def _connected(self) -> Any:
        if self._client is None:
            self._client = connect(self.buffer, SOCKET_TIMEOUT)
        client = self._client
        if not self._group_ready:
            import redis

            try:
                client.xgroup_create(self.buffer.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            self._group_ready = True
        if self._down:
            client.ping()
            self._down = False
            warn(f"Redis at {self.buffer.display} answers again: relaying")
        return client

    def _unreachable(self, error: BaseException) -> None:
        if "NOGROUP" in str(error):
            # Redis came back without our group (restarted without persistence, or
            # the stream was deleted): make it again, and carry on.
            self._group_ready = False
            return
        if not self._down:
            self._down = True
            warn(
                f"Redis at {self.buffer.display} unreachable ({type(error).__name__}: {error}): "
                f"retrying every {MAX_BACKOFF:g} s at most; messages in progress are still sent"
            )

    def _pending(self) -> int:
        with self._lock:
            return len(self._in_progress)

    # -- entries in and out -----------------------------------------------------------

    def _hand_over(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        """Give each entry to the sender, the last one urgent: send now, not at an interval."""
        fresh = []
        with self._lock:
            for entry_id, fields in entries:
                if entry_id not in self._in_progress:
                    self._in_progress.add(entry_id)
                    fresh.append((entry_id, fields))
        for index, (entry_id, fields) in enumerate(fresh):
            data = (fields or {}).get(FIELD)
            if not data:
                # Deleted under us (an XAUTOCLAIM of an id an XDEL removed, Redis < 7),
                # or not written by cdp_logging: nothing to deliver.
                self._finished.append((entry_id, True))
                continue
            entry = Tracked(data, None, functools.partial(self._settled, entry_id))
            refused = self._sender.submit(entry, urgent=index == len(fresh) - 1)
            if refused is not None:
                self._finished.append((entry_id, False))

    def _settled(self, entry_id: bytes, error: Exception | None, message: dict[str, Any]) -> None:
        """On the sender thread, as each message ends: acknowledge it, or leave it pending."""
        if error is None:
            self._finished.append((entry_id, True))
            return
        final = False
        if isinstance(error, DeliveryError) and error.code == HTTP_STATUS:
            # A refused write key or host is this relay's configuration, not the
            # message's: removing it would empty the fleet's stream over one typo.
            final = (
                error.status is not None
                and classify(error.status) is not Outcome.RETRY
                and error.status not in CONFIGURATION_STATUSES
            )
        if final and isinstance(error, DeliveryError):
            with self._lock:
                self.refused += 1
            self._report.report(
                DeliveryError(
                    error.code,
                    f"{error.reason}; removed from the stream",
                    status=error.status,
                    messages=[message],
                )
            )
        else:
            reason = getattr(error, "reason", str(error))
            self._report.report(
                DeliveryError(
                    KEPT,
                    f"{reason}; kept in the stream, tried again after the takeover time",
                    messages=[message],
                )
            )
        self._finished.append((entry_id, final))

    def _acknowledge(self) -> None:
        """XACK and XDEL what ended for good; forget what stays pending."""
        while True:
            try:
                entry_id, acknowledge = self._finished.popleft()
            except IndexError:
                break
            with self._lock:
                self._in_progress.discard(entry_id)
            if acknowledge:
                self._unacked.append(entry_id)
            else:
                self.kept += 1
        if not self._unacked or self._client is None:
            return
        ids = self._unacked
        pipe = self._client.pipeline(transaction=False)
        pipe.xack(self.buffer.stream, self.group, *ids)
        pipe.xdel(self.buffer.stream, *ids)
        pipe.execute()
        self._unacked = []

    def _renew(self, client: Any) -> None:
        """Reset the idle time of what this relay is delivering, so nobody takes it over."""
        with self._lock:
            ids = list(self._in_progress)
        if not ids:
            return
        # Only what the group still lists as ours: XCLAIM with no minimum idle time
        # would take back an entry another relay took over while this one was cut off
        # from Redis past the takeover time, and both would send it.
        ordered = sorted(ids, key=_stream_order)
        listed = client.xpending_range(
            self.buffer.stream,
            self.group,
            min=ordered[0],
            max=ordered[-1],
            count=2 * len(ids) + CLAIM_COUNT,
            consumername=self.consumer,
        )
        mine = {entry["message_id"] for entry in listed}
        ids = [entry_id for entry_id in ids if entry_id in mine]
        for start in range(0, len(ids), CLAIM_COUNT):
            client.xclaim(
                self.buffer.stream,
                self.group,
                self.consumer,
                0,
                ids[start : start + CLAIM_COUNT],
                justid=True,
            )

    def _take_over(self, client: Any) -> None:
        """Claim entries idle past the takeover threshold: a dead relay's, or given up on."""
        cursor: Any = "0-0"
        while self._capacity - self._pending() > 0:
            answer = client.xautoclaim(
                self.buffer.stream,
                self.group,
                self.consumer,
                self._idle_ms,
                start_id=cursor,
                count=min(CLAIM_COUNT, self._capacity - self._pending()),
            )
            cursor, entries = answer[0], answer[1]
            if entries:
                self._hand_over(entries)
            if cursor in (b"0-0", "0-0"):
                return

    def _forget_the_dead(self, client: Any) -> int:
        """Remove long-idle consumers with nothing pending; return how many.

        One script, so no consumer can read (and own) an entry between the check and
        the removal: removing one with entries pending would drop them from the PEL,
        where no relay could ever take them over.
        """
        limit_ms = int(self.takeover * FORGET_AFTER_TAKEOVERS * 1000)
        removed: int = client.eval(
            _FORGET, 1, self.buffer.stream, self.group, self.consumer, limit_ms
        )
        return removed

    def summary(self) -> str:
        numbers = self._sender.stats()
        return (
            f"relayed {numbers['delivered']} message(s) in {numbers['requests']} request(s); "
            f"{self.refused} refused for good; {self.kept} left pending for a retry"
        )


def _is_redis_error(error: BaseException) -> bool:
    import redis

    return isinstance(error, redis.RedisError | OSError)


def _stream_order(entry_id: bytes) -> tuple[int, ...]:
    """A stream entry id ("<ms>-<seq>") as numbers: as bytes, b"9-0" sorts after b"10-0"."""
    return tuple(int(part) for part in entry_id.split(b"-"))
