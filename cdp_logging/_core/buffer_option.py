"""The ``buffer`` option: which buffer holds messages between the call and the CDP.

Parsing only, kept apart from everything that uses the result so each kind of buffer
adds one branch here: ``"memory"`` (the default: the in-process queue, sent by HTTP),
``"sqlite:PATH"`` (a file that survives the process; see ``_buffers.sqlite``) and
``"redis://..."`` (a Redis stream shared by a fleet, delivered by ``cdp-logging
relay``; see ``_buffers.redis``). Redis is an optional extra; asking for it without the extra
is a ValueError at construction, naming the extra, never an ImportError later in the
sender thread.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_STREAM",
    "DEFAULT_STREAM_MAX_LEN",
    "MEMORY",
    "RedisBuffer",
    "parse_buffer",
    "parse_redis_url",
    "redis_buffer",
    "sqlite_path",
]

MEMORY: Final = "memory"
REDIS_SCHEMES: Final = ("redis://", "rediss://")
SQLITE: Final = "sqlite:"
DEFAULT_STREAM: Final = "cdp_logging"
# The stream's bound in messages. At a few hundred bytes per message this is tens of
# megabytes of Redis memory: enough to ride out a relay outage of hours for a
# moderate fleet, small enough not to push a shared Redis into its maxmemory policy
# (which may evict other keys). Set it with ?max_len=N.
DEFAULT_STREAM_MAX_LEN: Final = 100_000
REDIS_EXTRA_HINT: Final = "pip install 'cdp_logging[redis]'"
# Query parameters that are ours; every other one is redis-py's (socket_timeout, ...).
_OWN_PARAMETERS: Final = ("stream", "max_len")


@dataclass(frozen=True)
class RedisBuffer:
    """A Redis stream as the buffer: where it is, its key, and its bound.

    ``url`` is what redis-py connects to (our own query parameters removed); it may hold
    a password, so it is left out of ``repr``, and ``display`` is what messages show.
    """

    url: str = field(repr=False)
    display: str
    stream: str
    max_len: int


def _display(parts: tuple[str, str, str, str, str]) -> str:
    """The URL without user and password: safe for stderr, reprs and exceptions.

    Built from the scheme and what follows the last "@" of the whole URL, never from
    urlsplit's netloc alone: a password holding "/" or "?" (base64 ones do) that is not
    percent-encoded ends the netloc early, and would be shown as host or path.
    """
    scheme, netloc, path, query, fragment = parts
    rest = netloc + path + ("?" + query if query else "") + ("#" + fragment if fragment else "")
    if "@" in rest:
        rest = rest.rpartition("@")[2]
    host, _, tail = rest.partition("/")
    db = tail.partition("?")[0].partition("#")[0]
    return f"{scheme}://{host}/{db}" if db else f"{scheme}://{host}"


def parse_redis_url(value: str) -> RedisBuffer:
    """``redis[s]://[user:password@]host[:port][/db][?stream=NAME&max_len=N&...]``.

    Raises:
        ValueError: a malformed URL or parameter, or redis-py is not installed.
    """
    parts = urlsplit(value)
    display = _display(parts)
    if "@" in parts.path + parts.query + parts.fragment:
        # A "/", "?" or "#" in the password ended the user part early: redis-py would
        # read the password as host and path. Say so without showing any of it.
        raise ValueError(
            f"buffer: the Redis URL for {display!r} has a '/', '?' or '#' in its user or "
            "password; percent-encode them (urllib.parse.quote(password, safe=''))"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        # Not the error's own text: it quotes the port, which may be part of a password.
        raise ValueError(
            f"buffer: the Redis URL for {display!r} has a port that is not a number"
        ) from None
    if not parts.hostname:
        raise ValueError(f"buffer: the Redis URL {display!r} names no host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {name: text for name, text in query if name in _OWN_PARAMETERS}
    rest = [(name, text) for name, text in query if name not in _OWN_PARAMETERS]
    if any(name == "protocol" for name, _ in rest):
        # The relay reads stream replies in their RESP2 shape (lists, not RESP3 maps).
        raise ValueError("buffer: ?protocol= is not supported; the fleet buffer speaks RESP2")
    stream = own.get("stream", DEFAULT_STREAM)
    if not stream:
        raise ValueError("buffer: ?stream= must name a key")
    try:
        max_len = int(own.get("max_len", DEFAULT_STREAM_MAX_LEN))
    except ValueError:
        raise ValueError(
            f"buffer: ?max_len= must be a whole number, got {own['max_len']!r}"
        ) from None
    if max_len < 1:
        raise ValueError(f"buffer: ?max_len= must be at least 1, got {max_len}")
    if importlib.util.find_spec("redis") is None:
        raise ValueError(
            f"buffer={display!r} needs the Redis client library, an optional extra: "
            f"{REDIS_EXTRA_HINT}"
        )
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return RedisBuffer(url=url, display=display, stream=stream, max_len=max_len)


def parse_buffer(value: object) -> str:
    """Validate the ``buffer`` option; return it as it is kept in ``Options``.

    The option stays a string (what the user wrote, as dictConfig passes it), so the
    parsed form is built again where it is used (``redis_buffer``); building it here
    first means a mistake fails at construction.
    """
    if value is None or value == MEMORY:
        return MEMORY
    if isinstance(value, str) and value.startswith(REDIS_SCHEMES):
        parse_redis_url(value)
        return value
    if isinstance(value, str) and sqlite_path(value):
        return value  # the file is opened, and its problems reported, by _durable
    shown = value if not isinstance(value, str) else _display(urlsplit(value))
    raise ValueError(
        f"buffer must be 'memory', 'sqlite:PATH' or a redis:// or rediss:// URL, got {shown!r}"
    )


def sqlite_path(value: str) -> str | None:
    """The file *value* names as ``sqlite:PATH``; None for another buffer (or no path)."""
    if not value.startswith(SQLITE):
        return None
    path = value[len(SQLITE) :]
    return path if path.strip() else None


def redis_buffer(value: str) -> RedisBuffer | None:
    """The Redis stream *value* (a validated ``buffer``) names, or None for memory."""
    return parse_redis_url(value) if value.startswith(REDIS_SCHEMES) else None
