"""Request middleware (issue #10): who and where bound for one request, never beyond it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import cdp_logging
from cdp_logging._core import calls as _calls
from cdp_logging._core.request import MAX_VALUE_CHARS, anonymous_id, client_ip
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

    def test_every_header_hostile_at_once_still_fits_one_message(self) -> None:
        """Control characters (6 bytes each in JSON) in every header and the URL: each
        value is cut to 1,000 bytes of JSON, so the event is accepted, not too large."""
        hostile = ("\x01" * 5000).encode().decode("latin-1")
        env = environ(
            HTTP_USER_AGENT=hostile,
            HTTP_ACCEPT_LANGUAGE=hostile,
            HTTP_REFERER=hostile,
            HTTP_HOST=hostile,
            PATH_INFO="/" + hostile,
            QUERY_STRING=hostile,
        )
        built: list[bytes | object] = []

        def app(env: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            built.append(_calls.build("track", {"event": "E"}, 1.0))
            start_response("200 OK", [])
            return [b""]

        b"".join(AnalyticsMiddleware(app, user_id=lambda env: "u")(env, lambda *a: None))

        [data] = built
        assert isinstance(data, bytes), data
        assert len(data) <= 32_000
        context = json.loads(data)["context"]
        values = [context["userAgent"], context["locale"], *context["page"].values()]
        assert 6 == len(values)
        for value in values:
            assert len(json.dumps(value, ensure_ascii=False).encode()) - 2 <= MAX_VALUE_CHARS

    def test_utf8_in_a_wsgi_path_and_query_is_read_as_utf8(self) -> None:
        """WSGI hands bytes decoded as latin-1 (PEP 3333); the page shows the real text."""
        raw = "/café".encode().decode("latin-1")
        (message, _) = seen_by_app({}, environ(PATH_INFO=raw, QUERY_STRING=raw[1:]))

        assert "/café" == message["context"]["page"]["path"]
        assert "https://shop.example/café?café" == message["context"]["page"]["url"]

    def test_cookie_forms(self) -> None:
        """Plain and JSON-quoted cookies are read; a JSON non-string is dropped."""
        assert "a" == anonymous_id("ajs_anonymous_id=a", "ajs_anonymous_id")
        assert "a" == anonymous_id('ajs_anonymous_id="a"', "ajs_anonymous_id")
        assert anonymous_id("ajs_anonymous_id=%5B1%5D", "ajs_anonymous_id") == "[1]"
        assert anonymous_id("ajs_anonymous_id=%221%22x", "ajs_anonymous_id") is None

    def test_client_ip_falls_back_on_a_short_header(self) -> None:
        """Fewer hops than trusted proxies: the peer address, not a forgeable one."""
        assert "10.0.0.1" == client_ip("10.0.0.1", "1.2.3.4", 2)

    def test_a_peer_that_is_not_an_address_gives_no_ip(self) -> None:
        """Starlette's test client's "testclient", a Unix socket's path: no ip at all."""
        assert client_ip("testclient", "", 0) is None
        assert client_ip("/run/app.sock", "", 0) is None
        assert "::1" == client_ip("::1", "", 0)

    def test_the_starlette_test_client_sends_no_ip(self) -> None:
        """The app under Starlette's TestClient: page context yes, "testclient" as ip no."""
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from starlette.testclient import TestClient

        from cdp_logging.asgi import AnalyticsMiddleware as ASGIMiddleware

        seen: list[dict[str, Any]] = []

        def home(request: Any) -> PlainTextResponse:
            built = _calls.build("track", {"event": "E", "user_id": "u"}, 1.0)
            assert isinstance(built, bytes)
            seen.append(json.loads(built))
            return PlainTextResponse("ok")

        app = ASGIMiddleware(Starlette(routes=[Route("/", home)]))
        with TestClient(app) as http:
            assert 200 == http.get("/?q=1").status_code
        assert "ip" not in seen[0]["context"]
        assert "?q=1" == seen[0]["context"]["page"]["search"]


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
            from cdp_logging._core import calls as _calls
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
