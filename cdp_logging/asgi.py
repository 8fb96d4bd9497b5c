"""ASGI middleware: bind who and where for one request, and never beyond it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._core.context import BOUND
from ._core.request import RequestReader, _text, bind_request

__all__ = ["AnalyticsMiddleware"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


class AnalyticsMiddleware:
    """Wrap an ASGI app so every event tracked while a request runs carries its context.

    The fields are bound around the whole ``await app(...)``, which covers a streamed
    body and anything the app awaits, and the state before is restored after it.
    Tasks the app starts inherit them, as they inherit every context variable.

    Args are those of ``cdp_logging.wsgi.AnalyticsMiddleware``, with ``user_id`` a
    ``scope -> str | None`` callable.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_id: Callable[[Scope], object] | None = None,
        collect_ip: bool = True,
        anonymous_id_cookie: str | None = "ajs_anonymous_id",
        trusted_proxies: int = 0,
    ) -> None:
        self.app = app
        self._user_id = user_id
        self._reader = RequestReader(collect_ip, anonymous_id_cookie, trusted_proxies)

    def _fields(self, scope: Scope) -> dict[str, Any]:
        headers: dict[str, bytes] = {}
        for name, value in scope.get("headers") or ():
            key = bytes(name).decode("latin-1").lower()
            headers[key] = headers[key] + b", " + value if key in headers else bytes(value)
        client = scope.get("client")
        return self._reader.fields(
            scheme=str(scope.get("scheme", "http")),
            host=_text(headers.get("host")),
            path=str(scope.get("root_path", "")) + str(scope.get("path", "")),
            query=_text(scope.get("query_string")),
            headers=headers,
            peer=str(client[0]) if client else None,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan: no request to describe
            return
        user_id = self._user_id
        token = bind_request(
            lambda: self._fields(scope), None if user_id is None else lambda: user_id(scope)
        )
        try:
            await self.app(scope, receive, send)
        finally:
            if token is not None:
                BOUND.reset(token)
