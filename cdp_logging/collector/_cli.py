"""The ``collect`` command: run a collector, keep what it gets, print a line per event.

It lives in the collector package, not in ``cdp_logging.cli``, so that ``python -m
cdp_logging.collector`` runs it without importing anything from the sending side;
``cdp-logging collect`` adds these same arguments to its own parser.

The first line gives the URL (a script that starts it with ``--port 0`` reads the
port from there); then one line per accepted message and one per rejected request.
SIGINT and SIGTERM stop it cleanly with exit status 0, so a supervisor or a test can
end it as a normal run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ._collector import Collector
from ._declared import DeclaredPlan, load_declared
from ._store import RequestRecord
from ._validate import lenient_marks

__all__ = ["DEFAULT_DATABASE", "add_arguments", "describe", "describe_rejected", "main", "run"]

DEFAULT_DATABASE: Final = "cdp-events.sqlite3"

# What identifies a message beyond its user, per call type.
_DETAIL_FIELDS: Final = {
    "track": ("event",),
    "page": ("name", "category"),
    "screen": ("name", "category"),
    "group": ("groupId",),
    "alias": ("previousId",),
}
_BAG_FIELDS: Final = ("traits", "properties")


def describe(message: Mapping[str, Any]) -> str:
    """One line a person can scan: the call, who, what, when, and the messageId."""

    def shown(value: object) -> str:
        return json.dumps(value, ensure_ascii=False)

    kind = str(message.get("type", "?"))
    parts = [f"{kind:<8}"]
    for field in ("userId", "anonymousId", *_DETAIL_FIELDS.get(kind, ())):
        if field in message:
            parts.append(f"{field}={shown(message[field])}")
    for field in _BAG_FIELDS:
        bag = message.get(field)
        if isinstance(bag, Mapping) and bag:
            parts.append(f"{field}=[{', '.join(map(str, bag))}]")
    if "timestamp" in message:
        parts.append(f"timestamp={message['timestamp']}")
    parts.append(f"messageId={message.get('messageId', '?')}")
    return " ".join(parts)


def describe_rejected(record: RequestRecord) -> str:
    """One line for a request: its status, method, path, size and reason (never the
    key), so that a client posting to the wrong place is told at once. A request
    answered 2xx (a CORS preflight, an empty batch) is "answered", not "rejected".
    """
    noun = "message" if record.message_count == 1 else "messages"
    answer = "no answer" if record.status == 0 else f"HTTP {record.status}"
    # Escaped, so that a path holding control characters cannot redraw the terminal.
    where = json.dumps(f"{record.method} {record.path}", ensure_ascii=False)[1:-1]
    if 200 <= record.status < 300:
        return f"answered {answer} {where} ({record.message_count} {noun})"
    reason = record.reason or "not stored"
    return f"rejected {answer} {where} ({record.message_count} {noun}): {reason}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def add_arguments(parser: argparse.ArgumentParser, *, memory_by_default: bool = False) -> None:
    """Add the ``collect`` options to *parser*.

    ``cdp-logging collect`` keeps events in SQLite unless told ``--memory``; the older
    ``python -m cdp_logging.collector`` keeps them in memory unless given ``--db``, as
    it always did, so a script running it does not start leaving files behind.
    """
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on; 0 picks a free one (%(default)s)"
    )
    parser.add_argument(
        "--write-key",
        action="append",
        dest="write_keys",
        metavar="KEY",
        help="accept only this write key (repeat for more); default: any non-empty key",
    )
    storage = parser.add_mutually_exclusive_group()
    if memory_by_default:
        storage.add_argument(
            "--db", metavar="PATH", help="keep events in this SQLite file (default: in memory)"
        )
        storage.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    else:
        storage.add_argument(
            "--db",
            metavar="PATH",
            default=DEFAULT_DATABASE,
            help="SQLite file to keep events in, created or added to (%(default)s)",
        )
        storage.add_argument(
            "--memory", action="store_true", help="keep events in memory only, not in a file"
        )
    parser.add_argument(
        "--strict",
        action="store_true",
        help=(
            "reject (400, with the reasons) every batch the protocol's rules refuse, as a "
            "client's tests want; default: answer as the real services do and mark "
            "each message with what they would drop or flag"
        ),
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the first line and errors, not events"
    )
    parser.add_argument(
        "--jsonl",
        metavar="PATH",
        help="append each accepted message to this file as one JSON line, as it arrives",
    )
    parser.add_argument(
        "--plan",
        metavar="PATH",
        help=(
            "a tracking plan (JSON) to check each message against: a message that breaks "
            "it is marked, or with --strict its batch refused (400); needs the plan extra"
        ),
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run until SIGINT or SIGTERM; 0 then, 2 for bad arguments, 1 if it cannot start."""
    prog = parser.prog
    database: str | None = None if args.memory else args.db
    stopped = threading.Event()
    printing = threading.Lock()

    def say(text: str) -> None:
        # One lock, so lines from concurrent handler threads never interleave.
        with printing:
            sys.stdout.write(text)
            sys.stdout.flush()

    declared: DeclaredPlan | None = None
    if args.plan is not None:
        try:
            declared = load_declared(args.plan)
        except ImportError as error:
            parser.error(str(error))
        except ValueError as error:  # PlanError: each problem by its pointer in the plan
            parser.error(f"--plan: {error}")

    def show(messages: list[dict[str, Any]]) -> None:
        lines = []
        for message in messages:
            # The lenient mode accepts what the real service would drop: say so on the
            # line, where the person watching the terminal looks.
            marks = [] if args.strict else lenient_marks(message)
            flagged = f"  [the real service would flag: {'; '.join(marks)}]" if marks else ""
            broken = None if declared is None else declared.reason(message)
            if broken is not None:
                flagged += f"  [{broken}]"
            lines.append(describe(message) + flagged + "\n")
        say("".join(lines))

    def show_request(record: RequestRecord) -> None:
        # Accepted messages are printed one a line by show(); what else came (a refusal,
        # a browser's CORS preflight) is printed here, so no request goes unseen.
        if record.status != 200 or not record.message_count:
            say(describe_rejected(record) + "\n")

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    try:
        collector = Collector(
            args.write_keys,
            host=args.host,
            port=args.port,
            on_batch=None if args.quiet else show,
            on_request=None if args.quiet else show_request,
            database=database,
            strict=args.strict,
            jsonl=args.jsonl,
            plan=declared,
        )
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        print(f"{prog}: cannot write {args.jsonl}: {error.strerror or error}", file=sys.stderr)
        return 1
    except sqlite3.Error as error:
        print(f"{prog}: cannot open the database {database}: {error}", file=sys.stderr)
        return 1
    # Counted before listening, so that nothing arriving meanwhile is counted as old.
    earlier = None if database is None else collector.counts()["messages"]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        try:
            collector.start()
        except OSError as error:
            print(
                f"{prog}: cannot listen on {args.host}:{args.port}: {error.strerror or error}"
                " (is another collector running there? --port 0 picks a free port)",
                file=sys.stderr,
            )
            return 1
        mode = "strict" if args.strict else "lenient"
        if declared is not None:
            mode += f", tracking plan {declared.source}"
        say(f"collector listening on {collector.url} (viewer: {collector.url}/, {mode})\n")
        if not args.write_keys and not _is_loopback(args.host):
            # Anyone who can reach the port can then post events and read them all back.
            print(
                f"{prog}: warning: listening on {args.host} without --write-key: anyone "
                "who can reach it can send events and read every stored one",
                file=sys.stderr,
                flush=True,
            )
        if database is not None:
            say(f"storing events in {Path(database).resolve()} ({earlier} from earlier runs)\n")
        stopped.wait()
    finally:
        collector.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cdp_logging.collector``: ``cdp-logging collect``, in memory by default."""
    parser = argparse.ArgumentParser(
        prog="python -m cdp_logging.collector",
        description=(
            "Run a local CDP (/v1/batch, /v1/track..., analytics.js's /v1/t...) that "
            "validates, keeps and prints messages, "
            "with a live viewer at its root URL. Same as 'cdp-logging collect', "
            "except that events are kept in memory unless --db is given."
        ),
    )
    add_arguments(parser, memory_by_default=True)
    args = parser.parse_args(argv)
    if args.db is None:
        args.memory = True
    return run(args, parser)
