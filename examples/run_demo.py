"""Run examples/app.py against the embedded local collector and show what it received."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cdp_logging.collector import Collector

HERE = Path(__file__).resolve().parent
WRITE_KEY = "demo-write-key"


def main() -> int:
    with Collector(write_keys=(WRITE_KEY,), strict=True) as collector:
        print(f"collector listening on {collector.url}\n")
        env = {**os.environ, "CDP_WRITE_KEY": WRITE_KEY, "CDP_HOST": collector.url}
        print("--- the app's own log output ---", flush=True)
        app = subprocess.run([sys.executable, str(HERE / "app.py")], env=env, check=False)
        print(f"--- the app exited with code {app.returncode} ---\n")
        messages = collector.messages()
        requests = len(collector.batches())
        print(f"the collector received {len(messages)} messages in {requests} request(s):")
        for message in messages:
            who = message.get("userId") or message.get("anonymousId")
            what = (
                message.get("event")
                or message.get("name")
                or message.get("groupId")
                or (message.get("previousId") and f"{message['previousId']} -> {message['userId']}")
                or ""
            )
            print(f"  {message['type']:<9} {who:<11} {what:<20} {message['timestamp']}")
        print("\none message as it arrived on the wire:")
        print(json.dumps(messages[1] if len(messages) > 1 else messages, indent=2))
        counts = collector.counts()
        print(f"\nby type: {json.dumps(counts['by_type'], sort_keys=True)}")
        expected = {"identify": 1, "track": 2, "page": 1, "screen": 1, "group": 1, "alias": 1}
        ok = app.returncode == 0 and counts["by_type"] == expected
        print("demo OK: all six call types delivered at exit" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
