"""The fleet buffer, app side: a memory buffer in front of a Redis stream.

With ``buffer="redis://..."`` nothing changes for the caller: a logging call still only
appends to memory (no Redis round trip, no lock beyond the memory buffer's). The
sender thread takes batches from it as from any buffer and, because this buffer
``forwards``, hands each one back to it instead of POSTing it: ``forward`` adds each
message to the stream as one entry (field ``m``: the message's JSON, exactly
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
from .._transports.base import BufferFull, Response
from .base import Post
from .memory import MemoryBuffer

if TYPE_CHECKING:
    import redis

__all__ = ["PROBE_SECONDS", "RedisStreamBuffer", "connect"]

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


class RedisStreamBuffer:
    """Messages wait in memory; the sender moves each batch to the stream (``forward``),
    or POSTs it when Redis is unreachable.

    The Redis client is made per process: a forked child must not share the parent's
    sockets (both would read each other's answers), and redis-py's pool is not safe
    to inherit mid-command from a thread that does not exist in the child. The memory
    part is new per process too: the sender makes a new buffer in a forked child.
    """

    forwards = True

    def __init__(self, spec: RedisBuffer, max_size: int, host: str) -> None:
        # Everything the first command imports, imported now, in the constructing
        # thread: a fork while the sender thread is inside an import leaves the child a
        # half-made module and a held import lock (seen: "partially initialized module
        # 'redis'"). The stdlib ones are what a first connect and command pull in.
        for module in _IMPORTED_FIRST:
            importlib.import_module(module)
        self._spec = spec
        self._host = host
        self._memory = MemoryBuffer(max_size)
        # The caller's put is the memory buffer's own bound method: no extra call.
        self.put = self._memory.put
        self.take = self._memory.take
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._pid = -1
        self._down = False
        self._next_probe = 0.0

    def __repr__(self) -> str:
        return f"<RedisStreamBuffer {self._spec.display} stream={self._spec.stream!r}>"

    @property
    def accepted(self) -> int:
        return self._memory.accepted

    def __len__(self) -> int:
        return len(self._memory)

    def settle(self, start: int, end: int, final: bool) -> str:
        return ""  # what left memory is in the stream (the relay's now) or was POSTed

    def kept_note(self) -> str:
        return ""

    def close(self) -> None:
        """Refuse later puts; the Redis connection goes with ``release``, once drained."""
        self._memory.close()

    def start(self) -> None:
        pass  # nothing runs until the sender takes a batch

    def release(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()

    def _stream(self) -> Any:
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            self._client = connect(self._spec)
            self._script = self._client.register_script(_ADD)
            self._pid = pid
            self._down = False  # a child tries Redis first, whatever the parent saw
        return self._script

    def forward(self, messages: list[bytes], timeout: float, post: Post) -> Response:
        """Add *messages* to the stream, all or none; *post* them if Redis is unreachable.

        Raises:
            BufferFull: the stream is at its bound; the batch is dropped (queue_full).
            TransportError: from the direct POST, as for any batch.
        """
        import redis

        if self._down and time.monotonic() < self._next_probe and self._pid == os.getpid():
            return post(messages, timeout)
        deadline = time.monotonic() + timeout
        try:
            added, length = self._stream()(
                keys=[self._spec.stream], args=[self._spec.max_len, *messages]
            )
        except (redis.RedisError, OSError) as error:
            self._unreachable(error)
            # The POST gets what the Redis attempt left of this request's time, so a
            # flush or close overruns its deadline by one Redis timeout at most.
            return post(messages, max(0.05, deadline - time.monotonic()))
        if self._down:
            self._down = False
            warn(f"Redis at {self._spec.display} answers again: batches go to its stream")
        if not added:
            raise BufferFull(
                f"the Redis stream {self._spec.stream!r} at {self._spec.display} holds "
                f"{length} messages and its bound is max_len={self._spec.max_len}: no relay "
                "is keeping up (is `cdp-logging relay` running?), or raise ?max_len="
            )
        return ACCEPTED

    def _unreachable(self, error: BaseException) -> None:
        self._next_probe = time.monotonic() + PROBE_SECONDS
        if self._down:
            return
        self._down = True
        warn(
            f"Redis at {self._spec.display} unreachable ({type(error).__name__}: {error}): "
            f"delivering directly to {self._host} until it answers again"
        )
