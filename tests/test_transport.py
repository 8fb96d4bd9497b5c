"""The HTTP transport: what it takes from the environment, and what it never does."""

from __future__ import annotations

from pathlib import Path

import pytest

import cdp_logging
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY


class TestEnvironment:
    def test_netrc_never_replaces_the_write_key(
        self, collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ~/.netrc entry for the CDP's host does not replace our Basic auth."""
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1\nlogin someone-else\npassword pw\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        client = cdp_logging.Analytics(WRITE_KEY, host=collector.url, max_retries=0)

        assert client.track("u", "E").exception(timeout=5) is None
        assert [True] == [b.write_key_ok for b in collector.batches()]
        client.close()

    def test_proxy_from_environment(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY is honoured (read once, when the session is made)."""
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", collector.url)  # the collector accepts proxy-form URLs
        client = cdp_logging.Analytics(WRITE_KEY, host="http://127.0.0.1:9", max_retries=0)

        assert client.track("u", "via proxy").exception(timeout=5) is None
        assert ["via proxy"] == [m["event"] for m in collector.messages()]
        client.close()
