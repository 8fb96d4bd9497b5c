"""``cdp-logging``: run the local collector, check credentials with one test event,
relay a fleet's Redis stream, or drain an SQLite buffer that a process left behind.

``collect`` is the collector package's own command (it must not import the sending
side, so it lives there); ``send`` is the opposite end: it goes through the real
client (``Analytics``, its queue, sender and transport), so a success says that this
library, with this key, reaches this host, and a failure names what went wrong in the
words the application's ``on_error`` would see. ``relay`` delivers a fleet's Redis
stream (``buffer="redis://..."``) to the CDP; see ``_relay``.

``drain`` also goes through the real client: it opens the file as a buffer, takes over
what processes that are gone left in it, and sends it, with the original messageIds.

Exit status: 0 success (or a collector stopped by SIGINT / SIGTERM), 1 a failure at
run time (undelivered event, port taken, unusable database), 2 bad usage.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Final

from . import __version__, _plan_cli
from ._client import Analytics
from ._core.buffer_option import REDIS_SCHEMES, parse_redis_url
from ._core.errors import HTTP_STATUS, NETWORK, DeliveryError
from ._core.options import DEFAULT_HOST, DEFAULT_MAX_BUFFER_BYTES, ENV_HOST, ENV_WRITE_KEY
from ._core.protocol import CALL_TYPES, MAX_BATCH_MESSAGES
from ._relay import DEFAULT_GROUP, DEFAULT_TAKEOVER, Relay
from .collector import _cli as collect_command

__all__ = ["main"]

_PROG: Final = "cdp-logging"
# What the test event carries beyond its user, so it is easy to find in the service's
# debugger (and to filter out of reports).
_MARK: Final = {"source": "cdp-logging send"}
_TEST_GROUP: Final = "cdp-logging-test-group"
# How much longer than --timeout the answer is awaited: the request itself is bounded
# by --timeout; this covers the queue hand-off to the sender thread.
_GRACE_SECONDS: Final = 1.0
_CLOSE_SECONDS: Final = 1.0
_PROGRESS_SECONDS: Final = 2.0


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Tools for cdp_logging: a local collector with a live viewer, a one-event\n"
            "check of a write key and host, and the relay of a fleet's Redis buffer.\n"
            "Also runs as 'python -m cdp_logging'."
        ),
        epilog=(
            "examples:\n"
            "  cdp-logging collect                 # then open http://127.0.0.1:8765/\n"
            "  CDP_WRITE_KEY=... cdp-logging send --host https://cdp-eu.customer.io\n"
            "  CDP_WRITE_KEY=... cdp-logging relay --buffer redis://redis.internal:6379/0\n"
            "  CDP_WRITE_KEY=... cdp-logging drain /var/lib/app/cdp-buffer.db\n"
            "  cdp-logging plan check tracking-plan.json events.jsonl\n"
            "\n"
            "exit status: 0 success, 1 failure (event not delivered, port taken, bad database),"
            " 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    collect = commands.add_parser(
        "collect",
        help="run the local collector and live viewer",
        description=(
            "Run a local CDP: it takes every request Segment and Customer.io take "
            "(/v1/batch, /v1/track..., analytics.js's /v1/t...) and, by default, answers as "
            "they do, marking each message with what they would drop or flag (--strict "
            "refuses those with 400 instead). It keeps what it accepts (in SQLite unless "
            "--memory), prints one line per accepted message and one per refused request, "
            "and serves a live viewer at its root URL. The first line gives the URL. Stop "
            "it with Ctrl-C or SIGTERM (exit status 0); exit status 1 if the port or "
            "database cannot be used."
        ),
    )
    collect_command.add_arguments(collect)

    send = commands.add_parser(
        "send",
        help="send one test event and print the server's answer",
        description=(
            "Send one valid test event through the library's own client (no retries) and "
            "print it and the server's answer, to check a write key and connectivity. "
            "Exit status 0 when the host accepted it, 1 when it did not, 2 for usage errors. "
            "The write key is never printed."
        ),
    )
    _credentials(send)
    send.add_argument(
        "--type", default="track", choices=CALL_TYPES, help="the call to send (%(default)s)"
    )
    send.add_argument(
        "--user-id", default="cli-test", metavar="ID", help="the userId to send (%(default)s)"
    )
    send.add_argument(
        "--event",
        default="cdp-logging test",
        metavar="NAME",
        help="the track's event, or the page's or screen's name (%(default)s)",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the answer (%(default)s)",
    )
    relay = commands.add_parser(
        "relay",
        help="deliver from a fleet's Redis stream (buffer='redis://...') to the CDP",
        description=(
            "Deliver the messages that app processes with buffer='redis://...' added to a "
            "Redis stream, batched by the protocol's limits, with the library's retries. A "
            "message leaves the stream once the CDP accepted it or refused it for good "
            "(reported on stderr). Run as many relays as you like, on any hosts: each takes "
            "its share, and what a dead one had claimed is taken over within --takeover "
            "seconds. Stop with SIGTERM or Ctrl-C: what is in flight is delivered within "
            "--shutdown-timeout, the rest left for the other relays. Needs the redis extra: "
            "pip install 'cdp_logging[redis]'."
        ),
    )
    relay.add_argument(
        "--buffer",
        required=True,
        metavar="URL",
        help="the apps' buffer option: redis[s]://[user:password@]host:port/db[?stream=NAME]",
    )
    _credentials(relay)
    relay.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        metavar="NAME",
        help="the consumer group all relays of this stream share (%(default)s)",
    )
    relay.add_argument(
        "--takeover",
        type=float,
        default=DEFAULT_TAKEOVER,
        metavar="SECONDS",
        help="within how long a dead relay's messages are taken over (%(default)s)",
    )
    relay.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a stopping relay may deliver what it holds (%(default)s)",
    )
    drain = commands.add_parser(
        "drain",
        help="deliver what an SQLite buffer file holds",
        description=(
            "Deliver the messages a buffer file (buffer='sqlite:PATH') holds, for a buffer "
            "left by a process that will not come back. Rows of a process still running "
            "are left to it. Messages keep their messageIds; what is not delivered by "
            "--timeout stays in the file. Progress goes to stderr. Exit status 0 when "
            "everything was delivered, 1 when something was not, 2 for usage errors."
        ),
    )
    drain.add_argument("path", metavar="PATH", help="the buffer file")
    _credentials(drain)
    drain.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up (keeping the rest in the file) after this long (%(default)s)",
    )
    plan = commands.add_parser(
        "plan",
        help="a tracking plan: infer one from traffic, check it, generate typed code",
        description=(
            "Tracking plans (the tracking_plan option): 'infer' writes one from observed "
            "messages, 'check' validates it and messages against it (exit 0 / 1 / 2), "
            "'codegen' writes a typed module. Checking needs the plan extra: "
            "pip install 'cdp_logging[plan]'."
        ),
    )
    _plan_cli.add_arguments(plan)
    return parser, {
        "collect": collect,
        "send": send,
        "relay": relay,
        "drain": drain,
        "plan": plan,
    }


def _credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=None,
        metavar="URL",
        help=f"where to send (default: ${ENV_HOST}, else {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--write-key",
        default=None,
        metavar="KEY",
        help=(
            f"the source's write key (default: ${ENV_WRITE_KEY}, which is better: a command "
            "line is visible to other users of the machine)"
        ),
    )


def _call(client: Analytics, args: argparse.Namespace) -> Future[dict[str, Any]]:
    user, name = args.user_id, args.event
    if args.type == "identify":
        return client.identify(user, traits=_MARK)
    if args.type == "track":
        return client.track(user, name, _MARK)
    if args.type == "page":
        return client.page(user, name, _MARK)
    if args.type == "screen":
        return client.screen(user, name, _MARK)
    if args.type == "group":
        return client.group(user, _TEST_GROUP, _MARK)
    return client.alias(f"{user}-previous", user)


def _hint(error: DeliveryError) -> str | None:
    if error.code == HTTP_STATUS and error.status in (401, 403):
        return (
            f"check the write key (--write-key or {ENV_WRITE_KEY}) and that its source "
            "belongs to this host (EU workspaces use https://cdp-eu.customer.io)"
        )
    if error.code == NETWORK:
        return "check the host URL, and that this machine can reach it"
    return None


def _send(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    write_key = args.write_key or os.environ.get(ENV_WRITE_KEY)
    if not write_key:
        parser.error(f"no write key: pass --write-key or set the {ENV_WRITE_KEY} variable")
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    host = (args.host or os.environ.get(ENV_HOST) or DEFAULT_HOST).rstrip("/")
    try:
        client = Analytics(
            write_key,
            host=host,
            max_retries=0,
            timeout=args.timeout,
            shutdown_timeout=args.timeout,
            stderr_warnings=False,  # we print our own FAILED line
        )
    except ValueError as error:
        parser.error(str(error))
    what = f"userId {args.user_id!r}"
    if args.type in ("track", "page", "screen"):
        what += f", {'event' if args.type == 'track' else 'name'} {args.event!r}"
    print(f"sending a {args.type} ({what}) to {host}/v1/batch", flush=True)
    try:
        future = _call(client, args)
        try:
            message = future.result(timeout=args.timeout + _GRACE_SECONDS)
        except DeliveryError as error:
            for sent in error.messages:
                print(json.dumps(sent, indent=2), flush=True)
            status = f" {error.status}" if error.status is not None else ""
            print(f"FAILED ({error.code}{status}): {error.reason}", file=sys.stderr)
            hint = _hint(error)
            if hint is not None:
                print(f"hint: {hint}", file=sys.stderr)
            return 1
        except concurrent.futures.TimeoutError:
            print(
                f"FAILED (timeout): no answer from {host} within {args.timeout:g} s",
                file=sys.stderr,
            )
            return 1
    finally:
        client.close(timeout=_CLOSE_SECONDS)
    print(json.dumps(message, indent=2))
    print(f"OK: {host} accepted the {args.type} (messageId {message.get('messageId')})")
    return 0


def _relay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.takeover > 0:
        parser.error(f"--takeover must be a positive number of seconds, got {args.takeover}")
    try:
        buffer = parse_redis_url(args.buffer) if args.buffer.startswith(REDIS_SCHEMES) else None
        if buffer is None:
            parser.error(f"--buffer must be a redis:// or rediss:// URL, got {args.buffer!r}")
        relay = Relay(
            buffer,
            args.write_key,
            args.host,
            group=args.group,
            takeover=args.takeover,
            shutdown_timeout=args.shutdown_timeout,
        )
    except ValueError as error:
        parser.error(str(error))
    # SIGTERM (systemd, docker stop) and Ctrl-C stop reading and deliver what is held.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: relay.stop())
    print(
        f"relaying stream {buffer.stream!r} at {buffer.display} to {relay.options.endpoint} "
        f"as {relay.consumer!r} of group {relay.group!r}; takeover within {args.takeover:g} s",
        flush=True,
    )
    relay.run()
    print(relay.summary(), flush=True)
    return 0


def _drain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ._buffers.sqlite import SQLiteQueue

    write_key = args.write_key or os.environ.get(ENV_WRITE_KEY)
    if not write_key:
        parser.error(f"no write key: pass --write-key or set the {ENV_WRITE_KEY} variable")
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if not os.path.isfile(args.path):
        parser.error(f"{args.path}: no such file")
    host = (args.host or os.environ.get(ENV_HOST) or DEFAULT_HOST).rstrip("/")
    delivered = [0]
    failures: list[DeliveryError] = []

    def count(messages: list[dict[str, Any]]) -> None:
        delivered[0] += len(messages)

    # Room to take the file over: adoption rewrites each row's owner, which needs new
    # index pages, and SQLite never lowers a file's page bound below its size. A bound
    # of twice what the file and its WAL hold (at least the default) leaves that room
    # for a file written with any max_buffer_bytes.
    held = sum(os.path.getsize(p) for p in (args.path, f"{args.path}-wal") if os.path.exists(p))
    try:
        client = Analytics(
            write_key,
            host=host,
            buffer=f"sqlite:{args.path}",
            max_buffer_bytes=max(DEFAULT_MAX_BUFFER_BYTES, 2 * held),
            max_events_in_batch=MAX_BATCH_MESSAGES,
            # Retryable failures go on until --timeout; what is left then stays in the file.
            max_retries=1_000_000,
            shutdown_timeout=_CLOSE_SECONDS,
            on_flush=count,
            on_error=failures.append,
            stderr_warnings=False,  # we print our own lines
        )
    except ValueError as error:
        parser.error(str(error))
    queue = client.buffer
    assert isinstance(queue, SQLiteQueue)  # buffer= says so
    deadline = time.monotonic() + args.timeout
    total = -1
    next_progress = time.monotonic() + _PROGRESS_SECONDS
    usable = True
    try:
        while time.monotonic() < deadline:
            usable = queue.adopt_now()
            if not usable:
                break
            if total < 0:
                total = queue.rows()  # the file is open now
            settled = client.flush(min(_PROGRESS_SECONDS, deadline - time.monotonic()))
            if time.monotonic() >= next_progress:
                print(f"drain: {delivered[0]:,} of {total:,} delivered", file=sys.stderr)
                next_progress = time.monotonic() + _PROGRESS_SECONDS
            if settled and not queue.adopt_now_pending():
                break
    finally:
        client.close(timeout=_CLOSE_SECONDS)
    left, live = queue.remaining()
    for failure in failures[:5]:
        print(f"FAILED ({failure.code}): {failure.reason}", file=sys.stderr)
    if live:
        print(
            f"{live:,} message(s) belong to a running process and were left to it", file=sys.stderr
        )
    if not usable or left or failures:
        print(
            f"FAILED: {delivered[0]:,} delivered, {left:,} left in {args.path}",
            file=sys.stderr,
        )
        return 1
    print(f"OK: {delivered[0]:,} message(s) delivered from {args.path} to {host}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cdp-logging`` with *argv* (default: the command line); return the exit status."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "collect":
        return collect_command.run(args, commands["collect"])
    if args.command == "send":
        return _send(args, commands["send"])
    if args.command == "relay":
        return _relay(args, commands["relay"])
    if args.command == "drain":
        return _drain(args, commands["drain"])
    if args.command == "plan":
        return _plan_cli.run(args, commands["plan"])
    parser.print_help(sys.stderr)
    return 2
