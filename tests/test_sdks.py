"""Real clients, pointed at the lenient collector: every call they make is accepted and shown.

The SDKs a team is likely to run beside this library, at pinned versions, are
installed from PyPI and npm into ``.cache/sdks`` under the repository (once: a later
run finds them there) and never into the dev virtualenv. Each runs in its own process,
as in an app, sends the six call types and flushes the way its docs say to; the test
then reads every call back from the collector's API. curl, following the HTTP APIs'
own examples (one message per request, no messageId, the key in the body), is a
client too.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cdp_logging._core.protocol import CALL_TYPES
from cdp_logging.collector import Collector

from .conftest import ROOT

KEY = "sdk-key-5ecret"
CACHE = ROOT / ".cache" / "sdks"
INSTALL_SECONDS = 600
RUN_SECONDS = 60


@dataclass(frozen=True)
class Sdk:
    name: str
    registry: str  # "pypi" or "npm"
    requirement: str
    # What it sends that the strict mode refuses (the README's table): these are why
    # the lenient mode exists, checked so that a new version changing them is noticed.
    null_anonymous_id: bool
    sent_at: bool
    gzip: bool = False

    @property
    def folder(self) -> Path:
        name = self.requirement.replace("/", "+").replace("@", "_").replace("=", "_")
        # A Python SDK's wheels (cryptography's, cffi's) are built for one interpreter.
        python = f"-py{sys.version_info.major}{sys.version_info.minor}"
        return CACHE / (name + (python if self.registry == "pypi" else ""))


SDKS = (
    Sdk("segment-analytics-python", "pypi", "segment-analytics-python==2.4.0", True, True),
    Sdk("customerio-cdp-analytics", "pypi", "customerio-cdp-analytics==1.1.0", True, True),
    Sdk("@segment/analytics-node", "npm", "@segment/analytics-node@3.1.0", False, True),
    Sdk(
        "@customerio/cdp-analytics-node",
        "npm",
        "@customerio/cdp-analytics-node@0.5.9",
        False,
        False,
    ),
    # The Segment Node library before analytics-node 3 replaced it (its own API).
    Sdk("analytics-node", "npm", "analytics-node@6.2.0", False, True),
    # RudderStack's fork of segment-analytics-python gzips every batch by default.
    Sdk("rudder-sdk-python", "pypi", "rudder-sdk-python==2.1.9", True, True, gzip=True),
)


def install(sdk: Sdk) -> Path:
    """Install *sdk* into its own folder of the cache, unless an earlier run did.

    A stamp written after a complete install tells the two apart: an interrupted
    install is redone rather than half used.
    """
    stamp = sdk.folder / ".installed"
    if stamp.exists():
        return sdk.folder
    shutil.rmtree(sdk.folder, ignore_errors=True)
    sdk.folder.mkdir(parents=True)
    if sdk.registry == "pypi":
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        command += ["--target", str(sdk.folder), sdk.requirement]
    else:
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install the Node SDKs (Node.js 20)"
        command = [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix"]
        command += [str(sdk.folder), sdk.requirement]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False
    )
    assert 0 == result.returncode, f"installing {sdk.requirement} failed:\n{result.stderr}"
    stamp.write_text(sdk.requirement)
    return sdk.folder


# The six calls, the same for both Python SDKs (customerio-cdp-analytics is a fork of
# segment-analytics-python). flush() blocks until the queue is sent, as their READMEs
# say; max_retries=1 bounds customerio-cdp-analytics 1.1.0, which retries a 400.
PYTHON_SCRIPT = """
import sys
from {module} import Client

errors = []
client = Client({key!r}, host={host!r}, max_retries=1, on_error=lambda e, b: errors.append(e))
client.identify("u-1", {{"plan": "pro", "seats": 3}})
client.track("u-1", "Order Completed", {{"revenue": 12.5, "currency": "EUR"}})
client.page("u-1", "Docs", "Install", {{"path": "/docs/install"}})
client.screen("u-1", "Onboarding", "Welcome", {{"step": 1}})
client.group("u-1", "g-1", {{"name": "Acme"}})
client.alias("anon-1", "u-1")
client.flush()
client.shutdown()
if errors:
    sys.exit(f"errors: {{errors}}")
"""

# Node SDKs queue and send on a timer; closeAndFlush() is the documented way to send
# what is queued before the process exits.
NODE_SCRIPT = """
const {{ Analytics }} = require({package!r});
const analytics = new Analytics({{ writeKey: {key!r}, host: {host!r}, maxRetries: 1 }});
analytics.on("error", (error) => {{ console.error(error); process.exitCode = 1; }});
analytics.identify({{ userId: "u-1", traits: {{ plan: "pro", seats: 3 }} }});
analytics.track({{ userId: "u-1", event: "Order Completed",
  properties: {{ revenue: 12.5, currency: "EUR" }} }});
analytics.page({{ userId: "u-1", category: "Docs", name: "Install",
  properties: {{ path: "/docs/install" }} }});
analytics.screen({{ userId: "u-1", category: "Onboarding", name: "Welcome",
  properties: {{ step: 1 }} }});
analytics.group({{ userId: "u-1", groupId: "g-1", traits: {{ name: "Acme" }} }});
analytics.alias({{ userId: "u-1", previousId: "anon-1" }});
analytics.closeAndFlush({{ timeout: 20000 }}).catch((error) => {{
  console.error(error); process.exitCode = 1;
}});
"""

# analytics-node 6: a positional write key, and flush() takes a callback.
OLD_NODE_SCRIPT = """
const Analytics = require("analytics-node");
const analytics = new Analytics({key!r}, {{ host: {host!r}, flushAt: 100, retryCount: 1,
  errorHandler: (error) => {{ console.error(error); process.exitCode = 1; }} }});
analytics.identify({{ userId: "u-1", traits: {{ plan: "pro", seats: 3 }} }});
analytics.track({{ userId: "u-1", event: "Order Completed",
  properties: {{ revenue: 12.5, currency: "EUR" }} }});
analytics.page({{ userId: "u-1", category: "Docs", name: "Install",
  properties: {{ path: "/docs/install" }} }});
analytics.screen({{ userId: "u-1", category: "Onboarding", name: "Welcome",
  properties: {{ step: 1 }} }});
analytics.group({{ userId: "u-1", groupId: "g-1", traits: {{ name: "Acme" }} }});
analytics.alias({{ userId: "u-1", previousId: "anon-1" }});
analytics.flush((error) => {{ if (error) {{ console.error(error); process.exitCode = 1; }} }});
"""

PYTHON_MODULES = {
    "segment-analytics-python": "segment.analytics",
    "customerio-cdp-analytics": "customerio.analytics",
    "rudder-sdk-python": "rudderstack.analytics",
}


def run_sdk(sdk: Sdk, folder: Path, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NODE"))}
    if sdk.registry == "pypi":
        code = PYTHON_SCRIPT.format(module=PYTHON_MODULES[sdk.name], key=KEY, host=url)
        command = [sys.executable, "-c", textwrap.dedent(code)]
        env["PYTHONPATH"] = str(folder)
    else:
        node = shutil.which("node")
        assert node is not None, "node (Node.js 20) is needed to run the Node SDKs"
        script = tmp_path / "send.js"
        template = OLD_NODE_SCRIPT if sdk.name == "analytics-node" else NODE_SCRIPT
        script.write_text(template.format(package=sdk.name, key=KEY, host=url))
        command = [node, str(script)]
        env["NODE_PATH"] = str(folder / "node_modules")
    return subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_SECONDS, env=env, check=False
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector(write_keys=(KEY,)) as running:
        yield running


@pytest.mark.timeout(INSTALL_SECONDS + RUN_SECONDS)  # the first run installs the SDK
@pytest.mark.parametrize("sdk", SDKS, ids=[sdk.name for sdk in SDKS])
def test_sdk_sends_all_six_calls_and_each_is_accepted_and_shown(
    sdk: Sdk, collector: Collector, tmp_path: Path
) -> None:
    folder = install(sdk)

    result = run_sdk(sdk, folder, collector.url, tmp_path)

    assert 0 == result.returncode, result.stderr
    assert collector.wait_for_messages(6, timeout=10)
    records = collector.batches()
    assert [200] * len(records) == [record.status for record in records]
    sent = {message["type"]: message for message in collector.messages()}
    assert sorted(CALL_TYPES) == sorted(sent)
    # Read back as the viewer reads it: every event accepted, nothing marked.
    answer = requests.get(f"{collector.url}/api/events?last=100", timeout=5).json()["events"]
    assert [(True, 200, [])] * 6 == [(e["accepted"], e["status"], e["problems"]) for e in answer]
    assert sorted(CALL_TYPES) == sorted(e["message"]["type"] for e in answer)
    page = requests.get(f"{collector.url}/", timeout=5)
    assert 200 == page.status_code
    assert "<title>cdp-logging collector</title>" in page.text
    nulls = [m.get("anonymousId", "absent") is None for m in sent.values() if m["type"] != "alias"]
    assert [sdk.null_anonymous_id] * 5 == nulls
    assert [sdk.sent_at] * len(records) == [record.sent_at is not None for record in records]
    assert [sdk.gzip] * len(records) == [record.gzip for record in records]


# curl as each HTTP API's documentation shows it: one message per request, no
# messageId, the key as `-u KEY:` (Segment), as a Basic header built by hand
# (Customer.io), or as "writeKey" in the body; and Segment's batch, whose context is
# given once for every message.
CURL_CALLS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("segment", "identify", {"userId": "u-7", "traits": {"email": "ann@example.com"}}),
    ("segment", "track", {"userId": "u-7", "event": "Item Purchased", "properties": {"x": 1}}),
    ("segment", "page", {"userId": "u-7", "name": "Pricing", "properties": {"path": "/p"}}),
    ("segment", "screen", {"userId": "u-7", "name": "Settings"}),
    ("segment", "group", {"userId": "u-7", "groupId": "g-7", "traits": {"employees": 12}}),
    ("segment", "alias", {"previousId": "anon-7", "userId": "u-7"}),
    ("body-key", "track", {"anonymousId": "anon-7", "event": "Opened", "writeKey": KEY}),
    ("customerio", "identify", {"userId": "u-8", "traits": {"plan": "pro"}}),
    ("customerio", "track", {"userId": "u-8", "event": "Upgraded", "properties": {"to": "pro"}}),
    ("customerio", "page", {"anonymousId": "anon-8", "name": "Home"}),
    ("customerio", "screen", {"userId": "u-8", "name": "Inbox"}),
    ("customerio", "group", {"userId": "u-8", "groupId": "g-8"}),
    ("customerio", "alias", {"previousId": "anon-8", "userId": "u-8"}),
    (
        "segment",
        "batch",
        {
            "batch": [
                {"type": "identify", "userId": "u-9", "traits": {"age": 26}},
                {"type": "track", "userId": "u-9", "event": "Song Played"},
                {"type": "page", "userId": "u-9", "name": "Library"},
            ],
            "context": {"device": {"type": "phone"}},
        },
    ),
)


def curl(style: str, url: str, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("curl")
    assert binary is not None, "curl is needed for the HTTP API examples"
    command = [binary, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url]
    command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    if style == "segment":
        command += ["-u", f"{KEY}:"]
    elif style == "customerio":
        token = base64.b64encode(f"{KEY}:".encode()).decode()
        command += ["-H", f"Authorization: Basic {token}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_SECONDS, check=False)


def test_curl_following_each_service_s_examples(collector: Collector) -> None:
    answers = [curl(style, f"{collector.url}/v1/{path}", body) for style, path, body in CURL_CALLS]

    assert [("200", "")] * len(CURL_CALLS) == [(a.stdout, a.stderr) for a in answers]
    events = collector.events()
    assert [(True, 200, ())] * 16 == [(e.accepted, e.status, e.problems) for e in events]
    assert 16 == len({event.message["messageId"] for event in events})
    assert all("writeKey" not in event.message for event in events)
    assert [{"device": {"type": "phone"}}] * 3 == [e.message["context"] for e in events[-3:]]
