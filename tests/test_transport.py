"""The HTTP transport: what it takes from the environment, and what it never does."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.adapters

import cdp_logging
from cdp_logging._transports.base import TransportError
from cdp_logging._transports.requests import RequestsTransport
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

    def test_ca_bundle_only_for_https(
        self, collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """REQUESTS_CA_BUNDLE is used for https; over http it is not handed to requests,
        which would stat() it on every request, on the sender thread."""
        bundle = tmp_path / "ca.pem"
        bundle.write_text("")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        checked: list[str] = []
        real_isdir = os.path.isdir

        def isdir(path: Any) -> bool:
            checked.append(os.fspath(path))
            return real_isdir(path)

        monkeypatch.setattr(os.path, "isdir", isdir)
        client = cdp_logging.Analytics(WRITE_KEY, host=collector.url, max_retries=0)
        for n in range(3):
            client.track("u", f"E{n}")
            assert client.flush(5)
        https = RequestsTransport("https://cdp.example/v1/batch", WRITE_KEY, gzip=False)

        assert 3 == len(collector.messages())
        assert 3 == len(collector.batches())
        assert str(bundle) not in checked
        client.close()
        assert str(bundle) == https._get_session()[0].verify  # no request is made

    def test_https_proxy_gets_the_ca_bundle(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An https proxy in front of an http host is a TLS connection: it needs the bundle."""
        bundle = tmp_path / "corp-ca.pem"
        bundle.write_text("")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:3128")
        transport = RequestsTransport("http://cdp.example/v1/batch", WRITE_KEY, gzip=False)

        assert str(bundle) == transport._get_session()[0].verify  # no request is made


class TestCookies:
    def test_a_cookie_the_server_sets_is_sent_back(self) -> None:
        """Like Session.post: a load balancer's stickiness cookie comes back on later batches."""
        seen: list[str | None] = []

        class Sticky(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(self.headers.get("Cookie"))
                body = b'{"success":true}'
                self.send_response(200)
                self.send_header("Set-Cookie", "AWSALB=sticky; Path=/")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sticky) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/batch"
            transport = RequestsTransport(url, WRITE_KEY, gzip=False)
            try:
                for _ in range(2):
                    assert 200 == transport.send(b'{"batch":[]}', timeout=5).status
            finally:
                transport.close()
                server.shutdown()

        assert [None, "AWSALB=sticky"] == seen


_ONE = (
    b'{"batch":[{"type":"track","userId":"u","event":"E","messageId":"m1",'
    b'"timestamp":"2026-01-01T00:00:00.000+00:00"}],"sentAt":"2026-01-01T00:00:00.000+00:00"}'
)


class TestDirectPost:
    """The plain endpoint's POST goes through the session's urllib3 pool, not Session.send."""

    def test_plain_endpoint_direct_and_delivered(self, collector: Collector) -> None:
        transport = RequestsTransport(f"{collector.url}/v1/batch", WRITE_KEY, gzip=True)
        answers = [transport.send(_ONE, 5.0) for _ in range(3)]

        assert transport._direct is not None
        assert [200, 200, 200] == [answer.status for answer in answers]
        assert 3 == len(collector.batches())  # gzip and Basic auth accepted each time
        assert all(batch.write_key_ok for batch in collector.batches())
        transport.close()
        assert transport._direct is None

    def test_a_proxy_goes_through_requests(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", collector.url)
        transport = RequestsTransport("http://127.0.0.1:9/v1/batch", WRITE_KEY, gzip=False)

        assert 200 == transport.send(_ONE, 5.0).status
        assert transport._direct is None
        transport.close()

    def test_no_answer_reads_as_through_requests(self) -> None:
        """A refused connection is reported in the same words by both paths."""
        reasons = []
        for direct in (True, False):
            transport = RequestsTransport("http://127.0.0.1:9/v1/batch", WRITE_KEY, gzip=False)
            transport._get_session()
            assert transport._direct is not None
            if not direct:
                transport._direct = None
            with pytest.raises(TransportError) as raised:
                transport.send(b'{"batch":[]}', 5.0)
            reasons.append(str(raised.value))
            transport.close()

        assert reasons[0] == reasons[1]
        assert reasons[0].startswith("ConnectionError: HTTPConnectionPool(host='127.0.0.1'")

    def test_a_refusal_is_read_as_requests_reads_it(self, collector: Collector) -> None:
        """Not a success: the server's text comes back, as through Session.send."""
        answers = []
        for direct in (True, False):
            transport = RequestsTransport(f"{collector.url}/v1/batch", WRITE_KEY, gzip=False)
            transport._get_session()
            assert transport._direct is not None
            if not direct:
                transport._direct = None
            answers.append(transport.send(b'{"batch":[]}', 5.0))
            assert 200 == transport.send(_ONE, 5.0).status  # the connection is still good
            transport.close()

        assert 400 == answers[0].status
        assert "is empty" in answers[0].text
        assert answers[0] == answers[1]

    def test_a_short_body_fails_in_the_words_of_requests(self) -> None:
        """A success whose body ends early: no answer, worded as Session.send words it."""

        class Short(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'{"success"')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        reasons = []
        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/batch"
            try:
                for direct in (True, False):
                    transport = RequestsTransport(url, WRITE_KEY, gzip=False)
                    transport._get_session()
                    assert transport._direct is not None
                    if not direct:
                        transport._direct = None
                    with pytest.raises(TransportError) as raised:
                        transport.send(_ONE, 5.0)
                    reasons.append(str(raised.value).split(":")[0])
                    transport.close()
            finally:
                server.shutdown()
        assert ["ChunkedEncodingError", "ChunkedEncodingError"] == reasons

    @pytest.mark.parametrize(
        ("owner", "name"),
        [
            # responses and requests-mock replace these for a test's duration; OpenTelemetry's,
            # ddtrace's and other instrumentations wrap Session.send for the process.
            (requests.adapters.HTTPAdapter, "send"),
            (requests.Session, "send"),
            (requests.Session, "get_adapter"),
        ],
    )
    def test_requests_patched_later_still_sees_the_post(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch, owner: type, name: str
    ) -> None:
        """A wrapper put on requests, even after the session exists, sees every batch."""
        transport = RequestsTransport(f"{collector.url}/v1/batch", WRITE_KEY, gzip=False)
        assert 200 == transport.send(_ONE, 5.0).status  # the session and its pool exist now
        original = getattr(owner, name)
        seen: list[str] = []

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        answers = [transport.send(_ONE, 5.0).status for _ in range(2)]
        transport.close()

        assert ([200, 200], 3) == (answers, len(collector.batches()))
        assert len(seen) >= 2  # each POST went through what the application patched
