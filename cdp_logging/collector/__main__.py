"""``python -m cdp_logging.collector``: run the collector and print what arrives."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ._server import Collector


def describe(message: dict[str, Any]) -> str:
    who = message.get("userId") or message.get("anonymousId") or "-"
    what = message.get("event") or message.get("name") or message.get("groupId") or ""
    if message.get("type") == "alias":
        what = f"{message.get('previousId')} -> {message.get('userId')}"
    return f"{message.get('type', '?'):<9} {who:<16} {what:<28} {message.get('timestamp', '')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdp_logging.collector",
        description="A local server for POST /v1/batch: validates, stores and prints messages.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks one)")
    parser.add_argument(
        "--write-key",
        action="append",
        dest="write_keys",
        metavar="KEY",
        help="accept only this write key (repeatable; default: any)",
    )
    args = parser.parse_args(argv)

    def show(messages: list[dict[str, Any]]) -> None:
        for message in messages:
            print(describe(message), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Collector(args.write_keys, host=args.host, port=args.port, on_batch=show) as collector:
        print(f"collector listening on {collector.url}", flush=True)
        while not stop.wait(0.5):
            pass
    print("collector stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
