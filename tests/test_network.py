"""Network options on real sockets: headers, a proxy, TLS with verify, Segment's OAuth.

Every server here is a real one on 127.0.0.1: the project's collector, a forwarding
proxy, a TLS server with a certificate made for the test, and an OAuth token server
that checks the signed assertion with the public key, as Segment's does.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import http.server
import ipaddress
import json
import logging
import logging.config
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import cdp_logging
from cdp_logging import DeliveryError, errors
from cdp_logging.collector import Collector

from .conftest import WRITE_KEY, run_python


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def url_of(server: _Server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}"


def sent_directly(client: cdp_logging.Analytics) -> bool:
    """Whether the client's batches went through the session's pool (``_transports.direct``)
    rather than ``Session.send``: each option must work on the path it takes."""
    transport = client._sender._transport
    return getattr(transport, "_direct", None) is not None


# -- headers ---------------------------------------------------------------------------


class TestHeaders:
    def test_extra_headers_reach_the_server(self, collector: Collector) -> None:
        with cdp_logging.Analytics(
            WRITE_KEY, collector.url, headers={"X-Tenant": "shop-eu", "User-Agent": "shop/1.4"}
        ) as client:
            client.track("u1", "Paid")
            assert client.flush(5)
            assert sent_directly(client)
        [request] = collector.batches()
        headers = {name.lower(): value for name, value in request.headers.items()}
        assert ("shop-eu", "shop/1.4", 200) == (
            headers["x-tenant"],
            headers["user-agent"],
            request.status,
        )

    @pytest.mark.parametrize("name", ["Authorization", "content-type", "CONTENT-LENGTH"])
    def test_ours_cannot_be_replaced(self, name: str) -> None:
        with pytest.raises(ValueError, match="headers cannot replace"):
            cdp_logging.AnalyticsHandler(WRITE_KEY, "http://127.0.0.1:9", headers={name: "x"})

    @pytest.mark.parametrize(
        "headers",
        [{"X Tenant": "a"}, {"X-Tenant": "a\r\nX-Evil: 1"}, {"X-Tenant": 2}, ["X-Tenant"]],
    )
    def test_malformed_headers_fail_at_construction(self, headers: Any) -> None:
        """Not later, at every request, as a network error retried without end."""
        with pytest.raises(ValueError, match="headers"):
            cdp_logging.Analytics(WRITE_KEY, "http://127.0.0.1:9", headers=headers)

    def test_network_options_need_the_built_in_transport(self) -> None:
        from cdp_logging._transports.base import Response
        from cdp_logging._transports.mock import MockTransport

        transport = MockTransport(lambda body: Response(200, ""))
        with pytest.raises(ValueError, match="proxies, headers"):
            cdp_logging.Analytics(
                WRITE_KEY,
                transport=transport,
                proxies={"http": "http://127.0.0.1:9"},
                headers={"X-A": "b"},
            )


# -- a proxy ---------------------------------------------------------------------------


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards absolute-URI requests (what a client sends a plain-HTTP proxy)."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        type(self).seen.append(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=5)
        skip = {"host", "proxy-connection", "connection", "proxy-authorization"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        upstream.request("POST", target.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TestProxies:
    def test_batches_go_through_the_proxy(self, collector: Collector) -> None:
        _Proxy.seen = []
        proxy = serve(_Proxy)
        try:
            with cdp_logging.Analytics(
                WRITE_KEY, collector.url, proxies={"http": url_of(proxy)}
            ) as client:
                client.track("u1", "Paid")
                assert client.flush(5)
                assert not sent_directly(client)  # a proxy: through Session.send
            assert [collector.url + "/v1/batch"] == _Proxy.seen
            assert ["Paid"] == [m["event"] for m in collector.messages()]
        finally:
            proxy.shutdown()

    def test_the_proxy_password_never_reaches_an_error_or_stderr(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A proxy that echoes the credentials it got (as some error pages do)."""

        class Echo(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                sent = self.headers.get("Proxy-Authorization", "").split(" ")[-1]
                data = b"refused credentials " + base64.b64decode(sent)
                self.send_response(400)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        proxy = serve(Echo)
        reported: list[DeliveryError] = []
        try:
            with (
                cdp_logging.Analytics(
                    WRITE_KEY,
                    "http://127.0.0.1:9",
                    proxies={
                        "http": f"http://alice:pr0xy-s3cret@127.0.0.1:{proxy.server_address[1]}"
                    },
                    on_error=reported.append,
                ) as client,
                pytest.raises(DeliveryError) as raised,
            ):
                client.track("u1", "Paid").result(5)
        finally:
            proxy.shutdown()
        assert "refused credentials alice:" in raised.value.reason
        for text in (raised.value.reason, repr(reported), capsys.readouterr().err):
            assert "pr0xy-s3cret" not in text

    def test_a_bad_proxy_url_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(ValueError, match=r"proxies\['https'\]") as raised:
            cdp_logging.Analytics(WRITE_KEY, proxies={"https": "user:s3cret@proxy"})
        assert "s3cret" not in str(raised.value)


# -- TLS and verify --------------------------------------------------------------------


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdp-logging test")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Batches(http.server.BaseHTTPRequestHandler):
    """A minimal /v1/batch: answers 200 and keeps the bodies and auth headers."""

    bodies: ClassVar[list[dict[str, Any]]] = []
    auth: ClassVar[list[str]] = []
    tenants: ClassVar[list[str]] = []
    answers: ClassVar[list[int]] = []  # statuses to answer first, then 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.auth.append(self.headers.get("Authorization", ""))
        cls.tenants.append(self.headers.get("X-Tenant", ""))
        status = cls.answers.pop(0) if cls.answers else 200
        if status == 200:
            cls.bodies.append(body)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = make_certificate(tmp_path)
    _Batches.bodies, _Batches.auth, _Batches.answers = [], [], []
    server = _Server(("127.0.0.1", 0), _Batches)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield url_of(server, "https"), cert
    server.shutdown()


class TestVerify:
    def test_a_ca_bundle_path_trusts_the_server(self, tls_server: tuple[str, Path]) -> None:
        url, cert = tls_server
        with cdp_logging.Analytics(WRITE_KEY, url, verify=str(cert)) as client:
            assert "Paid" == client.track("u1", "Paid").result(5)["event"]
            assert sent_directly(client)
        assert 1 == len(_Batches.bodies)

    def test_the_default_refuses_an_unknown_certificate_and_false_accepts_it(
        self, tls_server: tuple[str, Path]
    ) -> None:
        url, _ = tls_server
        with cdp_logging.Analytics(WRITE_KEY, url, max_retries=0, stderr_warnings=False) as client:
            with pytest.raises(DeliveryError) as raised:
                client.track("u1", "Refused").result(5)
            assert sent_directly(client)
        assert errors.NETWORK == raised.value.code
        assert "SSL" in raised.value.reason or "certificate" in raised.value.reason
        with cdp_logging.Analytics(WRITE_KEY, url, verify=False) as client:
            with pytest.warns(Warning, match="Unverified HTTPS"):
                event = client.track("u1", "Paid").result(5)["event"]
            assert ("Paid", True) == (event, sent_directly(client))
        assert ["Paid"] == [b["batch"][0]["event"] for b in _Batches.bodies]

    def test_strings_from_config_files_and_a_missing_path(self) -> None:
        options = cdp_logging.Analytics(WRITE_KEY, verify="false", send=False)
        assert options.options.verify is False
        options.close()
        with pytest.raises(ValueError, match="does not exist"):
            cdp_logging.Analytics(WRITE_KEY, verify="/nonexistent/ca.pem")


# -- OAuth -----------------------------------------------------------------------------


class _TokenServer(http.server.BaseHTTPRequestHandler):
    """Segment's token endpoint as its docs describe it: checks the RS256 assertion."""

    public_key: Any = None
    audience = ""
    issued: ClassVar[list[str]] = []
    problems: ClassVar[list[str]] = []
    expires_in: float = 3600
    refuse = False

    def do_POST(self) -> None:
        cls = type(self)
        form = dict(
            urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
        )
        status, answer = 200, dict[str, Any]()
        try:
            assert "/token" == self.path
            assert "client_credentials" == form["grant_type"]
            assert (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                == form["client_assertion_type"]
            )
            assert "tracking_api:write" == form["scope"]
            header = jwt.get_unverified_header(form["client_assertion"])
            assert ("RS256", "key-1") == (header["alg"], header["kid"])
            claims = jwt.decode(
                form["client_assertion"],
                cls.public_key,
                algorithms=["RS256"],
                audience=cls.audience,
                issuer="client-1",
                options={"require": ["exp", "iat", "jti", "sub"]},
            )
            assert "client-1" == claims["sub"]
            assert claims["exp"] - claims["iat"] <= 60
        except (AssertionError, KeyError, jwt.PyJWTError) as problem:
            cls.problems.append(repr(problem))
            status, answer = 400, {"error": "invalid_request"}
        if cls.refuse:
            status, answer = 401, {"error": "invalid_client"}
        if status == 200:
            token = f"token-{len(cls.issued) + 1}"
            cls.issued.append(token)
            answer = {"access_token": token, "expires_in": cls.expires_in, "scope": form["scope"]}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def oauth_servers() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(batch server URL, token server URL, the oauth option with a PEM key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    tokens = serve(_TokenServer)
    batches = serve(_Batches)
    _TokenServer.public_key = key.public_key()
    _TokenServer.audience = url_of(tokens)
    _TokenServer.issued, _TokenServer.problems = [], []
    _TokenServer.expires_in, _TokenServer.refuse = 3600, False
    _Batches.bodies, _Batches.auth, _Batches.answers = [], [], []
    _Batches.tenants = []
    oauth = {
        "client_id": "client-1",
        "client_key": pem,
        "key_id": "key-1",
        "auth_server": url_of(tokens) + "/",
    }
    yield url_of(batches), url_of(tokens), oauth
    tokens.shutdown()
    batches.shutdown()


class TestOAuth:
    def test_bearer_token_from_a_signed_assertion_reused_until_half_spent(
        self, oauth_servers: tuple[str, str, dict[str, str]]
    ) -> None:
        host, _, oauth = oauth_servers
        with cdp_logging.Analytics(WRITE_KEY, host, oauth=oauth) as client:
            for event in ("A", "B"):
                client.track("u1", event)
                assert client.flush(5)
        assert [] == _TokenServer.problems
        assert ["token-1"] == _TokenServer.issued
        assert ["Bearer token-1", "Bearer token-1"] == _Batches.auth

    def test_renewed_before_it_expires(
        self, oauth_servers: tuple[str, str, dict[str, str]], tmp_path: Path
    ) -> None:
        """A token past half its lifetime is replaced before the next batch (here the
        lifetime is a microsecond, so every batch finds it spent). The key from a file."""
        host, _, oauth = oauth_servers
        _TokenServer.expires_in = 0.000001
        key_file = tmp_path / "key.pem"
        key_file.write_text(oauth["client_key"])
        with cdp_logging.Analytics(
            WRITE_KEY, host, oauth={**oauth, "client_key": str(key_file)}
        ) as client:
            for event in ("A", "B"):
                client.track("u1", event)
                assert client.flush(5)
        assert ["Bearer token-1", "Bearer token-2"] == _Batches.auth

    def test_a_401_gets_one_new_token_and_one_more_try(
        self, oauth_servers: tuple[str, str, dict[str, str]]
    ) -> None:
        host, _, oauth = oauth_servers
        _Batches.answers = [401]
        with cdp_logging.Analytics(WRITE_KEY, host, oauth=oauth) as client:
            assert "A" == client.track("u1", "A").result(5)["event"]
            _Batches.answers = [401, 401]
            second = client.track("u1", "B")
            assert client.flush(5)
            with pytest.raises(DeliveryError) as raised:
                second.result(5)
            assert sent_directly(client)
        assert (errors.HTTP_STATUS, 401) == (raised.value.code, raised.value.status)
        assert ["token-1", "token-2", "token-3"] == _TokenServer.issued
        assert ["Bearer token-1", "Bearer token-2", "Bearer token-2", "Bearer token-3"] == (
            _Batches.auth
        )

    def test_refused_credentials_are_reported_and_the_key_never_printed(
        self,
        oauth_servers: tuple[str, str, dict[str, str]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        host, tokens, oauth = oauth_servers
        _TokenServer.refuse = True
        reported: list[DeliveryError] = []
        with cdp_logging.Analytics(WRITE_KEY, host, oauth=oauth, on_error=reported.append) as c:
            with pytest.raises(DeliveryError) as raised:
                c.track("u1", "A").result(5)
            shown = repr(c) + repr(c.options) + repr(c._sender)
        assert (401, []) == (raised.value.status, _Batches.auth)
        assert f"{tokens}/token answered 401" in raised.value.reason
        secret = oauth["client_key"].splitlines()[1]
        for text in (shown, str(raised.value), repr(reported), capsys.readouterr().err):
            assert secret not in text

    def test_through_dict_config(
        self, oauth_servers: tuple[str, str, dict[str, str]], app_logger: logging.Logger
    ) -> None:
        """oauth, headers and verify as a YAML or INI file would hand them over."""
        host, _, oauth = oauth_servers
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "cdp": {
                        "class": "cdp_logging.AnalyticsHandler",
                        "write_key": WRITE_KEY,
                        "host": host,
                        "oauth": oauth,
                        "headers": {"X-Tenant": "shop-eu"},
                        "verify": "true",
                    }
                },
                "loggers": {app_logger.name: {"handlers": ["cdp"], "propagate": False}},
            }
        )
        handler = app_logger.handlers[0]
        assert isinstance(handler, cdp_logging.AnalyticsHandler)
        app_logger.info("track", extra={"user_id": "u1", "event": "Paid"})
        assert handler.client.flush(5)
        assert (["Bearer token-1"], ["shop-eu"]) == (_Batches.auth, _Batches.tenants)

    def test_bad_settings_fail_at_construction_without_the_key(self) -> None:
        good = {"client_id": "c", "key_id": "k"}
        bad_key = (
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n"
        )
        with pytest.raises(ValueError, match="not an unencrypted PEM private key") as raised:
            cdp_logging.Analytics(WRITE_KEY, oauth={**good, "client_key": bad_key})
        assert "bm90IGEga2V5" not in str(raised.value)
        with pytest.raises(ValueError, match="neither"):
            cdp_logging.Analytics(WRITE_KEY, oauth={**good, "client_key": "/no/such/key.pem"})
        with pytest.raises(ValueError, match="needs key_id"):
            cdp_logging.AnalyticsHandler(WRITE_KEY, oauth={"client_id": "c", "client_key": "x"})
        with pytest.raises(ValueError, match="unknown key"):
            cdp_logging.Analytics(WRITE_KEY, oauth={**good, "client_key": "x", "secret": "y"})

    def test_without_the_extra_the_error_names_it(self) -> None:
        done = run_python(
            """
            import sys
            sys.modules["jwt"] = None
            import cdp_logging
            try:
                cdp_logging.Analytics("k", oauth={"client_id": "c", "client_key": "x",
                                                  "key_id": "k"})
            except ValueError as error:
                print(error)
            """
        )
        assert "pip install 'cdp_logging[oauth]'" in done.stdout, done.stderr
