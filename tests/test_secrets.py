"""The write key appears nowhere: no log line, repr, warning, exception text, stdout or
stderr, in any failure scenario."""

from __future__ import annotations

import base64
import re

from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, run_python

SCENARIOS = """
import logging, logging.config, sys, warnings, traceback
import cdp_logging
warnings.simplefilter("always")
logging.captureWarnings(True)
# Everything at DEBUG to stderr: our records, requests', urllib3's.
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
errors = []
def show(*objects):
    for obj in objects:
        print(repr(obj)); print(str(obj))
handler = cdp_logging.AnalyticsHandler(write_key=KEY, host=URL, on_error=errors.append,
                                       max_retries=1, shutdown_timeout=1)
logging.getLogger().addHandler(handler)
log = logging.getLogger("app")
client = handler.client
processor = cdp_logging.AnalyticsProcessor(write_key=KEY, host=URL, max_retries=1)
show(handler, client, client.options, processor, processor.client)

def scenario(fault):
    FAULT(fault)
    log.info("track", extra={"user_id": "u", "event": "E"})
    client.flush(5)

for fault in ["401", "403", "400-echo", "500-echo", "reset", "refuse"]:
    scenario(fault)
log.info("track", extra={"user_id": "u"})                       # invalid
log.info("track", extra={"cdp": {"user_id": "u", "event": "E", "properties": {"b": "x" * 40000}}})
try:
    cdp_logging.Analytics(write_key=KEY, host="not a url")
except ValueError as error:
    traceback.print_exc()
for error in errors:
    show(error, error.reason, error.messages)
    try:
        raise error
    except cdp_logging.DeliveryError:
        traceback.print_exc()
FAULT("down")
for i in range(50):
    log.info("track", extra={"user_id": str(i), "event": "lost at exit"})
print("codes", sorted({e.code for e in errors}))
"""


def test_write_key_never_appears(collector: Collector) -> None:
    """Across auth failures, echoed keys, resets, refusals, invalid input, bad options and
    a lossy exit, neither the key nor its Basic-auth token is printed anywhere."""
    # The child asks for each fault over HTTP (POST /faults), as an out-of-process test would.
    specs = {
        "401": {"kind": "status", "status": 401, "count": 1, "reason": f"unknown key {WRITE_KEY}"},
        "403": {"kind": "status", "status": 403, "count": 1},
        "400-echo": {"kind": "status", "status": 400, "count": 1, "reason": f"bad {WRITE_KEY}"},
        "500-echo": {"kind": "status", "status": 500, "count": 5, "reason": f"boom {WRITE_KEY}"},
        "reset": {"kind": "reset_after_store", "count": 1},
        "refuse": {"kind": "refuse", "count": 5},
        "down": {"kind": "refuse"},
    }
    code = (
        f"URL, KEY = {collector.url!r}, {WRITE_KEY!r}\nSPECS = {specs!r}\n"
        "import requests\n"
        "def FAULT(name):\n"
        "    requests.delete(URL + '/faults', timeout=5)\n"
        "    requests.post(URL + '/faults', json=SPECS[name], timeout=5)\n" + SCENARIOS
    )
    done = run_python(code, timeout=120)
    output = done.stdout + done.stderr
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

    assert 0 == done.returncode, output[-3000:]
    assert "codes ['http_status', 'invalid_message', 'message_too_large', 'network']" in done.stdout
    # The lossy exit: 1 refused message earlier plus the 50 logged while the collector is
    # down are all reported. How they split between full lines and "N more ... since the last
    # warning" summaries depends on the 10 s rate-limit window, so add them up.
    reported = re.findall(
        r"^cdp_logging: (\d+) (?:more )?messages? not delivered \(network", done.stderr, re.M
    )
    assert 51 == sum(map(int, reported)), done.stderr[-3000:]
    assert "<write key>" in output  # ...and the echoed keys were scrubbed, not absent
    assert WRITE_KEY not in output
    assert token not in output
