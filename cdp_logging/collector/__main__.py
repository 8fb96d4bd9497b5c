"""``python -m cdp_logging.collector``: run a collector and print what it accepts.

The first line gives the URL (a script that starts it with ``--port 0`` reads the
port from there); then one line per accepted message. SIGINT and SIGTERM stop it
cleanly with exit status 0, so a supervisor or a test can end it as a normal run.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ._collector import Collector

__all__ = ["describe", "main"]

# What identifies a message beyond its user, per call type.
_DETAIL_FIELDS = {
    "track": ("event",),
    "page": ("name", "category"),
    "screen": ("name", "category"),
    "group": ("groupId",),
    "alias": ("previousId",),
}
_BAG_FIELDS = ("traits", "properties")


def describe(message: Mapping[str, Any]) -> str:
    """One line a person can scan: the call, who, what, and the messageId."""

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdp_logging.collector",
        description="A local POST /v1/batch server that validates, keeps and prints messages.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    parser.add_argument(
        "--write-key",
        action="append",
        dest="write_keys",
        metavar="KEY",
        help="accept only this write key (repeat for more); default: any non-empty key",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM; 0 then, 2 for bad arguments, 1 if it cannot listen."""
    parser = _parser()
    args = parser.parse_args(argv)
    stopped = threading.Event()
    printing = threading.Lock()

    def show(messages: list[dict[str, Any]]) -> None:
        lines = "".join(describe(message) + "\n" for message in messages)
        with printing:
            sys.stdout.write(lines)
            sys.stdout.flush()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        collector = Collector(args.write_keys, host=args.host, port=args.port, on_batch=show)
    except ValueError as error:
        parser.error(str(error))
    try:
        collector.start()
    except OSError as error:
        print(f"collector: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:
        print(f"collector listening on {collector.url}", flush=True)
        stopped.wait()
    finally:
        collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
