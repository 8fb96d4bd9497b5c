"""The app side of the fleet buffer: batches go to a Redis stream instead of the CDP.

With ``buffer="redis://..."`` nothing changes for the caller: a logging call still only
appends to the in-memory queue (no Redis round trip, no lock beyond the queue's). The
sender thread, which would POST a batch, hands it to ``FleetTransport`` instead, which
adds each message to the stream as one entry (field ``m``: the message's JSON, exactly
as it would have been POSTed, messageId included), and ``cdp-logging relay`` delivers
from there (``_relay``). One entry per message, not per batch, so that relays batch by
the protocol's limits and acknowledge each message on its own outcome.

The stream is bounded by a count (``?max_len=N``), checked and added to by one Lua
script, so the check and the add are atomic across every process of the fleet. A batch
that would take the stream past the bound is dropped whole and reported
(``queue_full``), like a full memory queue. XADD's own MAXLEN trimming is not the
bound: it deletes the *oldest* entries, silently, including ones no relay has read
(https://redis.io/docs/latest/commands/xadd/#capped-streams).

When Redis does not answer (refused, timed out, read-only replica, out of memory,
auth), the batch is POSTed directly instead, so a Redis outage costs the fleet its
shared buffer, never its events. This is said once on stderr per outage, and Redis is
tried again at most every ``PROBE_SECONDS``; the first batch it takes switches back.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import TYPE_CHECKING, Any, Final

from .._core.buffer_option import RedisBuffer
from .._core.report import warn
from .._delivery.batch import body
from .._transports.requests import BufferFull, Response, Transport

if TYPE_CHECKING:
    import redis

    from .._core.options import Options

__all__ = ["PROBE_SECONDS", "FleetTransport", "connect", "fleet_transport"]

# While Redis is down, how often a batch tries it again before going direct: each try
# costs at most a connect timeout on the sender thread (a refused connection, nothing).
PROBE_SECONDS: Final = 2.0
# Socket timeouts (connect and read) of one Redis command, unless the URL sets its own
# (?socket_timeout=). A stream add is one round trip of a few hundred microseconds; a
# Redis that takes seconds is as good as down, and the batch should go direct.
REDIS_TIMEOUT: Final = 2.0
FIELD: Final = b"m"

# KEYS[1] the stream; ARGV[1] its bound; ARGV[2..] one message each. Returns
# {added, length}: added 0 when the batch did not fit (nothing added then).
_ADD: Final = """
local length = redis.call('XLEN', KEYS[1])
local count = #ARGV - 1
if length + count > tonumber(ARGV[1]) then
  return {0, length}
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return {count, length + count}
"""

ACCEPTED: Final = Response(200, "")
_IMPORTED_FIRST: Final = (
    "redis",
    "redis.backoff",
    "redis.retry",
    "encodings.idna",
    "email.parser",
    "secrets",  # redis-py, at the first command (seen as a half-made module too)
    "ssl",  # rediss://
)


def connect(buffer: RedisBuffer, timeout: float = REDIS_TIMEOUT) -> redis.Redis:
    """A client of our own for *buffer*, with redis-py's retries off.

    redis-py retries a failed command 10 times with backoff by default
    (https://github.com/redis/redis-py/pull/4082); the app
    side must fall back to HTTP at once, and the relay has its own backoff, so neither
    wants that. Timeouts from the URL (``?socket_timeout=``) win over ours.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # from_url lets the URL's own query parameters win over these keywords.
    return redis.Redis.from_url(
        buffer.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class FleetTransport:
    """Hands batches to the Redis stream; POSTs them when Redis is unreachable.

    The Redis client is made per process: a forked child must not share the parent's
    sockets (both would read each other's answers), and redis-py's pool is not safe
    to inherit mid-command from a thread that does not exist in the child.
    """

    def __init__(self, buffer: RedisBuffer, direct: Transport, host: str, *, owns_direct: bool):
        # Everything the first command imports, imported now, in the constructing
        # thread: a fork while the sender thread is inside an import leaves the child a
        # half-made module and a held import lock (seen: "partially initialized module
        # 'redis'"). The stdlib ones are what a first connect and command pull in.
        for module in _IMPORTED_FIRST:
            importlib.import_module(module)
        self._buffer = buffer
        self._direct = direct
        self._owns_direct = owns_direct
        self._host = host
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._pid = -1
        self._down = False
        self._next_probe = 0.0

    def __repr__(self) -> str:
        return f"<FleetTransport {self._buffer.display} stream={self._buffer.stream!r}>"

    def _stream(self) -> Any:
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            self._client = connect(self._buffer)
            self._script = self._client.register_script(_ADD)
            self._pid = pid
            self._down = False  # a child tries Redis first, whatever the parent saw
        return self._script

    def send(self, body: bytes, timeout: float) -> Response:
        """A whole body (the Transport protocol): only ever POSTed."""
        return self._direct.send(body, timeout)

    def send_messages(self, messages: list[bytes], timeout: float) -> Response:
        """Add *messages* to the stream, all or none; POST them if Redis is unreachable.

        Raises:
            BufferFull: the stream is at its bound; the batch is dropped (queue_full).
            TransportError: from the direct POST, as for any batch.
        """
        import redis

        if self._down and time.monotonic() < self._next_probe and self._pid == os.getpid():
            return self._direct.send(body(b",".join(messages)), timeout)
        deadline = time.monotonic() + timeout
        try:
            added, length = self._stream()(
                keys=[self._buffer.stream], args=[self._buffer.max_len, *messages]
            )
        except (redis.RedisError, OSError) as error:
            self._unreachable(error)
            # The POST gets what the Redis attempt left of this request's time, so a
            # flush or close overruns its deadline by one Redis timeout at most.
            left = max(0.05, deadline - time.monotonic())
            return self._direct.send(body(b",".join(messages)), left)
        if self._down:
            self._down = False
            warn(f"Redis at {self._buffer.display} answers again: batches go to its stream")
        if not added:
            raise BufferFull(
                f"the Redis stream {self._buffer.stream!r} at {self._buffer.display} holds "
                f"{length} messages and its bound is max_len={self._buffer.max_len}: no relay "
                "is keeping up (is `cdp-logging relay` running?), or raise ?max_len="
            )
        return ACCEPTED

    def _unreachable(self, error: BaseException) -> None:
        self._next_probe = time.monotonic() + PROBE_SECONDS
        if self._down:
            return
        self._down = True
        warn(
            f"Redis at {self._buffer.display} unreachable ({type(error).__name__}: {error}): "
            f"delivering directly to {self._host} until it answers again"
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
        if self._owns_direct:
            self._direct.close()


def fleet_transport(options: Options, transport: Transport, owns: bool) -> tuple[Transport, bool]:
    """The transport a sender uses for *options*' buffer, and whether the sender owns it."""
    from .._core.buffer_option import redis_buffer

    buffer = redis_buffer(options.buffer)
    if buffer is None:
        return transport, owns
    return FleetTransport(buffer, transport, options.host, owns_direct=owns), True
