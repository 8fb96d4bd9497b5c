"""A fast, counting HTTP sink for the benchmark, run as its own process.

Usage: python benchmarks/sink.py [--port 0] [--cpu N]   (prints its URL on the first line)

It runs in a separate process so that parsing requests never takes the GIL from the
process being measured; it does as little as it can per request (one ``bytes.count``)
so that its own speed is not what the benchmark ends up measuring.

* ``POST /v1/batch`` answers 200 ``{"success":true}`` and adds the number of messages in
  the body to the total. Messages are counted as occurrences of ``"messageId"``: both
  SDKs put exactly one per message, and it avoids parsing JSON on the hot path.
  ``Content-Encoding: gzip`` bodies are decompressed first.
* ``GET /count`` returns ``{"count": N, "requests": R, "bad": B, "sizes": {...}}`` as
  JSON, ``sizes`` mapping messages per request (as a string) to how many requests had it.
* ``DELETE /count`` resets them all to zero (and releases a hold).
* ``POST /hold`` makes batch requests wait (at most 30 s each) before they are counted
  and answered, until ``POST /release``. The exit scenario uses it to keep each SDK's
  first request in flight while it queues 10,000 events, so that all of them are still
  queued when the script ends, for both SDKs alike.

The process exits when its stdin reaches end of file, so a parent that dies without
cleaning up never leaves an orphan sink listening.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

_OK_BODY: Final = b'{"success":true}'
# One pre-built response, written with a single send: headers and body in separate
# small writes can stall on Nagle plus delayed ACK (about 40 ms per request on Linux).
_OK_RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_OK_BODY)).encode("ascii") + b"\r\n"
    b"\r\n" + _OK_BODY
)
_MARKER: Final = b'"messageId"'
# The longest a held batch request waits for /release: a forgotten hold cannot hang.
_MAX_HOLD_SECONDS: Final = 30.0


class _Counter:
    """Totals shared by the server's connection threads; one lock, held for an add.

    ``sizes`` counts requests by the messages each carried: a request count alone
    cannot tell ten requests of 500 from one of 50 and nine of 550, and the
    instruction counts' fixed fill (``run.py --fill``) is only checked if it can.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.requests = 0
        self.bad = 0
        self.sizes: dict[int, int] = {}

    def add(self, messages: int) -> None:
        with self._lock:
            self.count += messages
            self.requests += 1
            self.sizes[messages] = self.sizes.get(messages, 0) + 1

    def add_bad(self) -> None:
        with self._lock:
            self.bad += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "count": self.count,
                "requests": self.requests,
                "bad": self.bad,
                # JSON keys are strings: messages per request -> requests of that size.
                "sizes": {str(size): n for size, n in sorted(self.sizes.items())},
            }

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            self.requests = 0
            self.bad = 0
            self.sizes = {}


COUNTER = _Counter()
# Set: batch requests are answered at once. Cleared by POST /hold.
OPEN = threading.Event()
OPEN.set()


class _Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, silent, and cheap per request."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request stderr line: it would cost more than the request."""

    def _read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("ascii") + body)

    def do_POST(self) -> None:
        if self.path in ("/hold", "/release"):
            self._read_body()
            if self.path == "/hold":
                OPEN.clear()
            else:
                OPEN.set()
            self._reply(200, b'{"success":true}')
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            COUNTER.add_bad()
            self.close_connection = True
            self._reply(411, b'{"success":false,"reason":"Content-Length required"}')
            return
        body = self.rfile.read(int(length_header))
        if self.path.split("?", 1)[0] != "/v1/batch":
            self._reply(404, b'{"success":false}')
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                COUNTER.add_bad()
                self._reply(400, b'{"success":false,"reason":"bad gzip"}')
                return
        OPEN.wait(_MAX_HOLD_SECONDS)
        # Counted before answering, so a client that saw its 200 is already counted.
        COUNTER.add(body.count(_MARKER))
        self.wfile.write(_OK_RESPONSE)

    def do_GET(self) -> None:
        if self.path != "/count":
            self._reply(404, b'{"success":false}')
            return
        self._reply(200, json.dumps(COUNTER.snapshot()).encode("ascii"))

    def do_DELETE(self) -> None:
        if self.path != "/count":
            self._reply(404, b'{"success":false}')
            return
        COUNTER.reset()
        OPEN.set()
        self._reply(200, json.dumps(COUNTER.snapshot()).encode("ascii"))


def _exit_when_stdin_closes() -> None:
    """End the process once the parent closes our stdin (or dies)."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="keep running when stdin closes (for running the sink by hand)",
    )
    parser.add_argument("--cpu", type=int, default=None, help="run on this CPU only")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"http://{host!s}:{port}", flush=True)
    if not args.no_stdin_watch:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
