"""The write key appears nowhere: no log line, repr, warning, exception text, stdout or
stderr, in any failure scenario."""

from __future__ import annotations

import base64
import re
from typing import Any

from cdp_logging import Analytics, DeliveryError
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
    # warning" summaries depends on the 10 s rate-limit window, so add them up. And whether
    # the 50 went in one request or two depends on when the sender thread ran: a second
    # batch whose retries the 1 s shutdown_timeout cuts short is reported as
    # shutdown_timeout (its last attempt named), the rest as network.
    reported = re.findall(
        r"^cdp_logging: (\d+) (?:more )?messages? not delivered \((?:network|shutdown_timeout)",
        done.stderr,
        re.M,
    )
    assert 51 == sum(map(int, reported)), done.stderr[-3000:]
    assert "<write key>" in output  # ...and the echoed keys were scrubbed, not absent
    assert WRITE_KEY not in output
    assert token not in output


def _heads(secret: str) -> list[str]:
    """Every leading piece of *secret* of 4 characters or more (contract 22)."""
    return [secret[:size] for size in range(4, len(secret) + 1)]


def test_key_across_the_cut_of_an_answer_leaves_no_head(collector: Collector, capsys: Any) -> None:
    """Issue 24 (8): a server echoing the key where its answer is cut for the report leaves
    neither the key nor any head of 4+ of its characters (nor of its Basic-auth token) in
    on_error, the Future's exception or stderr, at every offset across the cut."""
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    errors: list[DeliveryError] = []
    client = Analytics(
        WRITE_KEY, collector.url, on_error=errors.append, max_retries=0, shutdown_timeout=2
    )
    texts: list[str] = []
    try:
        # The answer is {"error": "<reason>"}: 11 characters before the reason, so these
        # pads put the echoed secret's start from 30 characters before the 300-character
        # cut to its very end.
        for secret in (WRITE_KEY, token):
            for pad in range(260, 300, 3):
                collector.faults.status(400, count=1, reason="x" * pad + secret + " rest")
                future = client.track("u", "E")
                client.flush(5)
                problem = future.exception(5)
                assert isinstance(problem, DeliveryError)
                texts += [str(problem), repr(problem), problem.reason]
    finally:
        client.close(2)
    texts += [f"{e} {e.reason!r}" for e in errors]
    texts.append(capsys.readouterr().err)

    assert 2 * 14 == len(errors)
    assert any("<write key>" in text for text in texts)  # scrubbed, not absent
    leaked = {head for text in texts for head in _heads(WRITE_KEY) + _heads(token) if head in text}
    assert set() == leaked


def test_a_short_key_is_scrubbed_as_a_token_not_inside_words(collector: Collector) -> None:
    """Issue 24 (8): with the key "write", a refused key's report still says "write_key",
    and a server's "write" standing alone is still hidden."""
    errors: list[DeliveryError] = []
    with Analytics("write", collector.url, on_error=errors.append, max_retries=0) as client:
        client.track("u", "E")  # the collector does not know this key: 401
        client.flush(5)
        collector.faults.status(500, count=1, reason="key write refused; check.")
        client.track("u", "E")
        client.flush(5)

    reasons = [error.reason for error in errors]
    assert 2 == len(reasons), reasons
    # Our own words are left whole; the server's "write" is replaced ("<write key>"
    # holds this key, so the placeholder is "***").
    assert "the write key was refused: check write_key / CDP_WRITE_KEY" in reasons[0]
    assert "key *** refused; check." in reasons[1], reasons[1]
