"""Request middleware (issue #10): who and where bound for one request, never beyond it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests

import cdp_logging
from cdp_logging import _calls
from cdp_logging._request import MAX_VALUE_CHARS, anonymous_id, client_ip
from cdp_logging.wsgi import AnalyticsMiddleware


def environ(**overrides: Any) -> dict[str, Any]:
    base = {
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "shop.example",
        "PATH_INFO": "/cart",
        "QUERY_STRING": "a=1",
        "REMOTE_ADDR": "10.0.0.9",
        "HTTP_USER_AGENT": "Mozilla/5.0",
        "HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9",
        "HTTP_REFERER": "https://search.example/",
        "HTTP_COOKIE": "x=1; ajs_anonymous_id=%22anon-7%22",
    }
    base.update(overrides)
    return base


def seen_by_app(middleware_options: dict[str, Any], env: dict[str, Any]) -> list[dict[str, Any]]:
    """The message a track in the app (and in its streamed body) would carry."""
    seen: list[dict[str, Any]] = []

    def track() -> None:
        data = _calls.build("track", {"event": "E"}, 1.0)
        # A refused message (no id at all) still shows what would have been sent.
        seen.append(json.loads(data) if isinstance(data, bytes) else data.messages[0])

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        track()
        yield b"a"
        track()

    response = AnalyticsMiddleware(app, **middleware_options)(env, lambda *a: None)
    assert b"a" == b"".join(response)
    response.close()  # type: ignore[attr-defined]
    assert {} == cdp_logging.get_context()  # never beyond the request
    return seen


class TestWSGI:
    def test_binds_who_and_where_while_the_app_and_its_body_run(self) -> None:
        """ip, userAgent, locale, page and the cookie id reach events, also while streaming."""
        seen = seen_by_app({"user_id": lambda env: 7}, environ())

        assert 2 == len(seen)
        for message in seen:
            context = message["context"]
            assert "10.0.0.9" == context["ip"]
            assert "Mozilla/5.0" == context["userAgent"]
            assert "de-DE" == context["locale"]
            assert {
                "path": "/cart",
                "url": "https://shop.example/cart?a=1",
                "search": "?a=1",
                "referrer": "https://search.example/",
            } == context["page"]
            assert "anon-7" == message["anonymousId"]
            assert "7" == message["userId"]

    def test_collect_ip_false_leaves_ip_out(self) -> None:
        """collect_ip=False: no context.ip at all."""
        (message, _) = seen_by_app({"collect_ip": False}, environ())

        assert "ip" not in message["context"]

    def test_forwarded_for_ignored_by_default_and_read_with_trusted_proxies(self) -> None:
        """X-Forwarded-For counts only with trusted_proxies; then the N-th from the right."""
        env = environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 1.2.3.4, 10.1.1.1")

        assert "10.0.0.9" == seen_by_app({}, env)[0]["context"]["ip"]
        assert "10.1.1.1" == seen_by_app({"trusted_proxies": 1}, env)[0]["context"]["ip"]
        assert "1.2.3.4" == seen_by_app({"trusted_proxies": 2}, env)[0]["context"]["ip"]

    @pytest.mark.parametrize(
        "overrides",
        [
            {"HTTP_COOKIE": "ajs_anonymous_id=%22unterminated"},
            {"HTTP_COOKIE": "ajs_anonymous_id=" + "x" * 70_000},
            {"HTTP_USER_AGENT": "u" * 65_536},
            {"HTTP_USER_AGENT": b"\xff\xfe bad".decode("latin-1")},
            {"HTTP_X_FORWARDED_FOR": "not-an-ip, ,,,\x00"},
            {"PATH_INFO": "/" + "p" * 70_000},
        ],
    )
    def test_bad_input_never_raises_and_stays_small(self, overrides: dict[str, Any]) -> None:
        """Malformed or huge headers are dropped or cut; messages stay under 32,000 bytes."""
        seen = seen_by_app(
            {"trusted_proxies": 1, "user_id": lambda env: 1 / 0}, environ(**overrides)
        )

        assert 2 == len(seen)
        for message in seen:
            assert len(json.dumps(message)) < 32_000
            assert "userId" not in message  # the raising callable is ignored
            assert len(message["context"].get("userAgent", "")) <= MAX_VALUE_CHARS

    def test_cookie_forms(self) -> None:
        """Plain and JSON-quoted cookies are read; a JSON non-string is dropped."""
        assert "a" == anonymous_id("ajs_anonymous_id=a", "ajs_anonymous_id")
        assert "a" == anonymous_id('ajs_anonymous_id="a"', "ajs_anonymous_id")
        assert anonymous_id("ajs_anonymous_id=%5B1%5D", "ajs_anonymous_id") == "[1]"
        assert anonymous_id("ajs_anonymous_id=%221%22x", "ajs_anonymous_id") is None

    def test_client_ip_falls_back_on_a_short_header(self) -> None:
        """Fewer hops than trusted proxies: the peer address, not a forgeable one."""
        assert "10.0.0.1" == client_ip("10.0.0.1", "1.2.3.4", 2)

    def test_no_bleed_under_a_threaded_server(self) -> None:
        """50 concurrent requests on a real threaded server: each event carries its own user."""
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIServer

        seen: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()

        def app(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            data = _calls.build("track", {"event": "E"}, 1.0)
            assert isinstance(data, bytes)
            with lock:
                seen.append((env["QUERY_STRING"], json.loads(data)))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        wrapped = AnalyticsMiddleware(app, user_id=lambda env: env["QUERY_STRING"][5:])
        with make_server(
            "127.0.0.1", 0, wrapped, server_class=Server, handler_class=Quiet
        ) as httpd:
            thread = threading.Thread(target=httpd.serve_forever, daemon=True)
            thread.start()
            url = f"http://127.0.0.1:{httpd.server_port}/p"
            workers = [
                threading.Thread(
                    target=requests.get, args=(f"{url}?user=u{n}",), kwargs={"timeout": 30}
                )
                for n in range(50)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=60)
            httpd.shutdown()
            thread.join(timeout=10)

        assert 50 == len(seen)
        for query, message in seen:
            assert query[5:] == message["userId"]
            assert "?" + query == message["context"]["page"]["search"]


class TestASGI:
    def test_binds_for_the_whole_app_call_including_streaming_and_restores(self) -> None:
        """Events before and during a streamed body carry the request; nothing is left after."""
        import asyncio

        from cdp_logging.asgi import AnalyticsMiddleware as ASGIMiddleware

        seen: list[dict[str, Any]] = []

        def track() -> None:
            data = _calls.build("track", {"event": "E"}, 1.0)
            seen.append(json.loads(data) if isinstance(data, bytes) else data.messages[0])

        async def app(scope: Any, receive: Any, send: Any) -> None:
            track()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            track()
            await send({"type": "http.response.body", "body": b""})

        async def send(message: Any) -> None:
            await asyncio.sleep(0)

        scope = {
            "type": "http",
            "scheme": "https",
            "path": "/cart",
            "query_string": b"a=1",
            "client": ("10.0.0.9", 5000),
            "headers": [
                (b"host", b"shop.example"),
                (b"user-agent", b"\xff\xfeUA"),
                (b"x-forwarded-for", b"1.2.3.4"),
                (b"cookie", b"ajs_anonymous_id=anon-7"),
            ],
        }
        middleware = ASGIMiddleware(app, user_id=lambda scope: 5, trusted_proxies=1)

        asyncio.run(middleware(scope, None, send))

        assert 2 == len(seen)
        for message in seen:
            assert "5" == message["userId"]
            assert "anon-7" == message["anonymousId"]
            assert "1.2.3.4" == message["context"]["ip"]
            assert "https://shop.example/cart?a=1" == message["context"]["page"]["url"]
            assert message["context"]["userAgent"].endswith("UA")
        assert {} == cdp_logging.get_context()


class TestDjango:
    def test_binds_the_request_and_the_authenticated_user_pk(self) -> None:
        """The Django middleware binds page, ip and the user's pk for the view only."""
        from .conftest import run_python

        done = run_python(
            """
            import json
            import django
            from django.conf import settings

            settings.configure(ALLOWED_HOSTS=["*"], CDP_TRUSTED_PROXIES=1)
            django.setup()
            from django.test import RequestFactory

            import cdp_logging
            from cdp_logging import _calls
            from cdp_logging.django import AnalyticsMiddleware

            class User:
                is_authenticated = True
                pk = 31

            def view(request):
                data = _calls.build("track", {"event": "E"}, 1.0)
                return json.loads(data)

            request = RequestFactory().get(
                "/cart?a=1", HTTP_X_FORWARDED_FOR="1.2.3.4", HTTP_USER_AGENT="UA",
                HTTP_COOKIE="ajs_anonymous_id=anon-1",
            )
            request.user = User()
            message = AnalyticsMiddleware(view)(request)
            print(json.dumps([message, cdp_logging.get_context()]))
            """
        )

        assert 0 == done.returncode, done.stderr
        message, after = json.loads(done.stdout)
        assert "31" == message["userId"]
        assert "anon-1" == message["anonymousId"]
        assert "1.2.3.4" == message["context"]["ip"]
        assert "UA" == message["context"]["userAgent"]
        assert "http://testserver/cart?a=1" == message["context"]["page"]["url"]
        assert {} == after
