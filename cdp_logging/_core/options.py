"""Every option, declared once: names and types, defaults, environment, validation.

``Analytics``, ``AnalyticsHandler`` and ``AnalyticsProcessor`` all take
``(write_key=None, host=None, **options)``, typed by the one ``ClientOptions``
TypedDict below, and pass them here unchanged; this module turns them into one frozen
``Options`` value, so the three front doors cannot disagree. A bad value fails here, at
construction, with a ValueError naming the option, never later inside the sender thread.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypedDict

from typing_extensions import Unpack

from .buffer_option import MEMORY, parse_buffer, sqlite_path
from .errors import DeliveryError
from .network import OAuthSettings, parse_headers, parse_oauth, parse_proxies, parse_verify
from .pipeline import Hook, parse_before_send, parse_context, parse_redact
from .plan import TrackingPlan, load_plan
from .protocol import CALL_TYPES, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES
from .retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from .._transports.base import Transport

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_HOST",
    "DEFAULT_MAX_BUFFER_BYTES",
    "DEFAULT_MAX_EVENTS_IN_BATCH",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PLAN_MODE",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ENV_HOST",
    "ENV_WRITE_KEY",
    "PLAN_MODES",
    "ClientOptions",
    "Options",
    "build_options",
]

ENV_WRITE_KEY: Final = "CDP_WRITE_KEY"
ENV_HOST: Final = "CDP_HOST"

DEFAULT_HOST: Final = "https://cdp.customer.io"
DEFAULT_MAX_EVENTS_IN_BATCH: Final = 20
DEFAULT_FLUSH_INTERVAL: Final = 10.0
DEFAULT_MAX_QUEUE_SIZE: Final = 10_000
# The memory buffer's bound in bytes of serialised messages, beside its count: 10,000
# messages of 30 KB would otherwise hold ~300 MB.
DEFAULT_MAX_QUEUE_BYTES: Final = 32 * 1024 * 1024
DEFAULT_MAX_RETRIES: Final = 10
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
# Durable buffer: where queued messages live, and the bound on its file.
DEFAULT_BUFFER: Final = MEMORY
DEFAULT_MAX_BUFFER_BYTES: Final = 64 * 1024 * 1024
# A tracking plan's violations: delivered and told (warn), or refused at the call (drop).
PLAN_MODES: Final = ("warn", "drop")
DEFAULT_PLAN_MODE: Final = "warn"
# The smallest durable buffer: a quarter goes to the WAL, and a file this size still
# holds a few hundred messages.
MIN_BUFFER_BYTES: Final = 256 * 1024

ErrorCallback = Callable[[DeliveryError], object]
FlushCallback = Callable[[list[dict[str, Any]]], object]


class ClientOptions(TypedDict, total=False):
    """The options every front door takes as keywords, after ``write_key`` and ``host``.

    docs/options.md's table documents each; a test keeps the two, these annotations,
    ``Options`` and the three signatures in step. dictConfig may hand numbers and flags
    over as strings ("20", "true"): they are accepted and converted.
    """

    max_events_in_batch: int
    flush_interval: float
    max_queue_size: int
    max_queue_bytes: int
    on_error: ErrorCallback | None
    on_flush: FlushCallback | None
    max_retries: int
    retry: RetryPolicy
    timeout: float
    gzip: bool
    send: bool
    flush_triggers: Iterable[str] | None
    shutdown_timeout: float
    stderr_warnings: bool
    buffer: str
    max_buffer_bytes: int
    transport: Transport | None
    # The pipeline a user configures (_core/pipeline.py) and network settings
    # (_core/network.py): each None or empty by default, and then free.
    before_send: Hook | Iterable[Hook] | None
    redact: Iterable[str] | None
    context: Mapping[str, Any] | None
    proxies: Mapping[str, str] | None
    verify: bool | str | None
    headers: Mapping[str, str] | None
    oauth: Mapping[str, str] | None
    tracking_plan: str | os.PathLike[str] | Mapping[str, Any] | TrackingPlan | None
    plan_mode: str


@dataclass(frozen=True)
class Options:
    """Validated settings shared by one client and its sender.

    ``write_key`` is excluded from ``repr`` so that a logged or printed client, handler
    or traceback never shows it.
    """

    write_key: str = field(repr=False)
    host: str
    max_events_in_batch: int
    flush_interval: float
    max_queue_size: int
    retry: RetryPolicy  # its max_retries is always the number in force
    timeout: float
    shutdown_timeout: float
    gzip: bool
    send: bool
    flush_triggers: frozenset[str]
    stderr_warnings: bool
    on_error: ErrorCallback | None = field(repr=False)
    on_flush: FlushCallback | None = field(repr=False)
    transport: Transport | None = field(repr=False, default=None)
    # A redis:// URL may carry a password: never in a repr.
    buffer: str = field(repr=False, default=MEMORY)
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    before_send: tuple[Hook, ...] = field(repr=False, default=())
    redact: tuple[str, ...] = ()
    context: dict[str, Any] | None = None
    # A proxy URL may carry a password, a header a token, oauth a private key.
    proxies: dict[str, str] | None = field(repr=False, default=None)
    verify: bool | str | None = None
    headers: dict[str, str] | None = field(repr=False, default=None)
    oauth: OAuthSettings | None = field(repr=False, default=None)
    # Loaded and checked at construction: a bad plan is a ValueError then, not a
    # warning at every call.
    tracking_plan: TrackingPlan | None = field(repr=False, default=None)
    plan_mode: str = DEFAULT_PLAN_MODE

    @property
    def endpoint(self) -> str:
        return self.host + "/v1/batch"

    @property
    def buffer_path(self) -> str | None:
        """The SQLite file of ``buffer="sqlite:PATH"``; None for the memory buffer."""
        return sqlite_path(self.buffer)

    @property
    def max_retries(self) -> int:
        return self.retry.max_retries or 0


def _number(name: str, value: object, *, minimum: float, integer: bool) -> Any:
    # dictConfig read from YAML/INI often hands numbers over as strings; accept those,
    # but never a bool (True would silently become 1).
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = int(value) if integer else float(value)  # type: ignore[call-overload, arg-type]
    except (TypeError, ValueError):
        kind = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None
    if integer and isinstance(value, float) and value != number:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not math.isfinite(number) or number < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {value!r}")
    return number


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {
        "true",
        "1",
        "yes",
        "on",
        "false",
        "0",
        "no",
        "off",
    }:
        return value.lower() in {"true", "1", "yes", "on"}
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _callback(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def _triggers(value: object) -> frozenset[str]:
    items: Iterable[object]
    if value is None:
        items = ()
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ValueError(f"flush_triggers must be a list of call types, got {value!r}")
    triggers = frozenset(str(item) for item in items)
    unknown = sorted(triggers - set(CALL_TYPES))
    if unknown:
        raise ValueError(
            f"flush_triggers holds {', '.join(unknown)}; call types are {', '.join(CALL_TYPES)}"
        )
    return triggers


def _host(value: object) -> str:
    host = value if value is not None else os.environ.get(ENV_HOST) or DEFAULT_HOST
    if not isinstance(host, str) or not host.startswith(("http://", "https://")):
        raise ValueError(f"host must be an http:// or https:// URL, got {host!r}")
    return host.rstrip("/")


def _write_key(value: object, send: bool) -> str:
    key = value if value is not None else os.environ.get(ENV_WRITE_KEY)
    if not key and not send:
        # Nothing is sent, so nothing can be refused for a missing key: an app configured
        # at import starts in a test environment (send=False, capture_messages) without one.
        return ""
    if not key:
        raise ValueError(
            f"no write key: pass write_key= or set the {ENV_WRITE_KEY} environment variable"
        )
    if not isinstance(key, str):
        raise ValueError(f"write_key must be a string, got {type(key).__name__}")
    return key


def _retry(options: ClientOptions) -> RetryPolicy:
    """One policy holding the retry count: ``max_retries=N`` is short for ``retry=`` with it."""
    policy = options.get("retry", DEFAULT_RETRY)
    if not isinstance(policy, RetryPolicy):
        raise ValueError(f"retry must be a cdp_logging.RetryPolicy, got {type(policy).__name__}")
    if "max_retries" in options:
        count = _number("max_retries", options["max_retries"], minimum=0, integer=True)
        if policy.max_retries is not None and policy.max_retries != count:
            raise ValueError(
                f"max_retries={count} disagrees with retry.max_retries={policy.max_retries}; "
                "pass one of them"
            )
    else:
        count = DEFAULT_MAX_RETRIES if policy.max_retries is None else policy.max_retries
    return dataclasses.replace(policy, max_retries=count)


def _transport(value: object) -> Any:
    if value is not None and not callable(getattr(value, "send", None)):
        raise ValueError(f"transport must have send(body, timeout), got {type(value).__name__}")
    return value


def _tracking_plan(value: object) -> TrackingPlan | None:
    if value is None or value == "":
        return None  # dictConfig from INI or an unset variable: no plan
    if not isinstance(value, (str, os.PathLike, Mapping, TrackingPlan)):
        raise ValueError(
            f"tracking_plan must be a plan file's path or a mapping, got {type(value).__name__}"
        )
    try:
        return load_plan(value)
    except (ImportError, ValueError) as error:
        raise ValueError(f"tracking_plan: {error}") from None


def _plan_mode(value: object) -> str:
    if value not in PLAN_MODES:
        raise ValueError(f"plan_mode must be one of {', '.join(PLAN_MODES)}, got {value!r}")
    return str(value)


OPTION_NAMES: Final = frozenset(ClientOptions.__optional_keys__)


def build_options(
    write_key: str | None = None, host: str | None = None, **options: Unpack[ClientOptions]
) -> Options:
    """Validate every option and fill the defaults and environment fallbacks.

    Raises:
        TypeError: an option name that does not exist (as a misspelt keyword would).
        ValueError: naming the option (or ``CDP_WRITE_KEY``) that is missing or wrong.
    """
    unknown = sorted(options.keys() - OPTION_NAMES)
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r}; options are {', '.join(sorted(OPTION_NAMES))}"
        )
    given = options.get
    batch = _number(
        "max_events_in_batch",
        given("max_events_in_batch", DEFAULT_MAX_EVENTS_IN_BATCH),
        minimum=1,
        integer=True,
    )
    if batch > MAX_BATCH_MESSAGES:
        raise ValueError(
            f"max_events_in_batch must be at most {MAX_BATCH_MESSAGES} (the protocol's limit), "
            f"got {options.get('max_events_in_batch')!r}"
        )
    transport = _transport(given("transport"))
    network = [
        name
        for name, value in (
            ("proxies", given("proxies")),
            ("verify", given("verify")),
            ("headers", given("headers")),
            ("oauth", given("oauth")),
        )
        if value is not None
    ]
    if transport is not None and network:
        raise ValueError(
            f"{', '.join(network)} configure the built-in HTTP transport; with transport= "
            "given, set them on that transport instead"
        )
    send = _flag("send", given("send", True))
    return Options(
        write_key=_write_key(write_key, send),
        host=_host(host),
        max_events_in_batch=batch,
        flush_interval=_number(
            "flush_interval",
            given("flush_interval", DEFAULT_FLUSH_INTERVAL),
            minimum=0,
            integer=False,
        ),
        max_queue_size=_number(
            "max_queue_size",
            given("max_queue_size", DEFAULT_MAX_QUEUE_SIZE),
            minimum=1,
            integer=True,
        ),
        # At least one message of the largest size the protocol allows, so that every
        # valid message fits in an empty queue.
        max_queue_bytes=_number(
            "max_queue_bytes",
            given("max_queue_bytes", DEFAULT_MAX_QUEUE_BYTES),
            minimum=MAX_MESSAGE_BYTES,
            integer=True,
        ),
        retry=_retry(options),
        timeout=_number("timeout", given("timeout", DEFAULT_TIMEOUT), minimum=0.001, integer=False),
        shutdown_timeout=_number(
            "shutdown_timeout",
            given("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT),
            minimum=0,
            integer=False,
        ),
        gzip=_flag("gzip", given("gzip", False)),
        send=send,
        flush_triggers=_triggers(given("flush_triggers")),
        stderr_warnings=_flag("stderr_warnings", given("stderr_warnings", True)),
        on_error=_callback("on_error", given("on_error")),
        on_flush=_callback("on_flush", given("on_flush")),
        transport=transport,
        buffer=parse_buffer(given("buffer")),
        max_buffer_bytes=_number(
            "max_buffer_bytes",
            given("max_buffer_bytes", DEFAULT_MAX_BUFFER_BYTES),
            minimum=MIN_BUFFER_BYTES,
            integer=True,
        ),
        before_send=parse_before_send(given("before_send")),
        redact=parse_redact(given("redact")),
        context=parse_context(given("context")),
        proxies=parse_proxies(given("proxies")),
        verify=parse_verify(given("verify")),
        headers=parse_headers(given("headers")),
        oauth=parse_oauth(given("oauth")),
        tracking_plan=_tracking_plan(given("tracking_plan")),
        plan_mode=_plan_mode(given("plan_mode", DEFAULT_PLAN_MODE)),
    )
