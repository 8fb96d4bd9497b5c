"""ASGI middleware: bind who and where for one request, and never beyond it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._context import BOUND, bind_context
from ._report import warn
from ._request import request_fields

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
        if type(trusted_proxies) is not int or trusted_proxies < 0:
            raise ValueError(f"trusted_proxies must be an int >= 0, got {trusted_proxies!r}")
        self.app = app
        self._user_id = user_id
        self._collect_ip = collect_ip
        self._cookie = anonymous_id_cookie
        self._trusted = trusted_proxies

    def _fields(self, scope: Scope) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        try:
            headers: dict[str, bytes] = {}
            for name, value in scope.get("headers") or ():
                key = bytes(name).decode("latin-1").lower()
                headers[key] = headers[key] + b", " + value if key in headers else bytes(value)
            client = scope.get("client")
            host = headers.get("host", b"").decode("latin-1", "replace")
            raw_query = scope.get("query_string", b"")
            fields = request_fields(
                scheme=str(scope.get("scheme", "http")),
                host=host,
                path=str(scope.get("root_path", "")) + str(scope.get("path", "")),
                query=raw_query.decode("latin-1", "replace"),
                headers=headers,
                peer=str(client[0]) if client else None,
                collect_ip=self._collect_ip,
                trusted_proxies=self._trusted,
                cookie_name=self._cookie,
            )
        except Exception as error:  # noqa: BLE001 - bad input never raises into the app
            warn(f"AnalyticsMiddleware could not read the request: {type(error).__name__}")
        if self._user_id is not None:
            try:
                user = self._user_id(scope)
                if user is not None:
                    fields["user_id"] = user
            except Exception as error:  # noqa: BLE001
                warn(f"AnalyticsMiddleware user_id callable raised {type(error).__name__}")
        return fields

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan: no request to describe
            return
        fields = self._fields(scope)
        try:
            token = bind_context(**fields)
        except TypeError as error:  # a user_id of a type no id can be
            warn(f"AnalyticsMiddleware could not bind: {error}")
            fields.pop("user_id", None)
            token = bind_context(**fields)
        try:
            await self.app(scope, receive, send)
        finally:
            BOUND.reset(token)
