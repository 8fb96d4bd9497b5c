"""WSGI middleware: bind who and where for one request, and never beyond it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._core.request import RequestReader, _text, bind_request

__all__ = ["AnalyticsMiddleware"]

Environ = dict[str, Any]
WSGIApp = Callable[[Environ, Callable[..., Any]], Iterable[bytes]]


class AnalyticsMiddleware:
    """Wrap a WSGI app so every event tracked while a request runs carries its context.

    The app, and the iteration of its response, run in a copy of the caller's
    ``contextvars`` context (as asyncio runs each task), so nothing bound by the
    request, by us or by the app, outlives it, even when a server never calls
    ``close()``.

    Args:
        app: The WSGI application.
        user_id: ``environ -> str | None``; one that raises is reported and ignored.
        collect_ip: False to leave ``context.ip`` out.
        anonymous_id_cookie: The cookie holding the anonymous id; None for none.
        trusted_proxies: How many proxies in front append to X-Forwarded-For; 0
            ignores the header.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        user_id: Callable[[Environ], object] | None = None,
        collect_ip: bool = True,
        anonymous_id_cookie: str | None = "ajs_anonymous_id",
        trusted_proxies: int = 0,
    ) -> None:
        self.app = app
        self._user_id = user_id
        self._reader = RequestReader(collect_ip, anonymous_id_cookie, trusted_proxies)

    def _bind(self, environ: Environ) -> None:
        user_id = self._user_id
        bind_request(
            lambda: self._reader.environ_fields(
                environ,
                # Latin-1-decoded bytes, as every WSGI string is: read them as UTF-8.
                # https://peps.python.org/pep-3333/#unicode-issues
                path=_text(str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))),
                scheme=str(environ.get("wsgi.url_scheme", "http")),
            ),
            None if user_id is None else lambda: user_id(environ),
        )

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        context = contextvars.copy_context()

        def run() -> Iterable[bytes]:
            self._bind(environ)
            return self.app(environ, start_response)

        return _Response(context, context.run(run))


class _Response:
    """The app's response iterable, consumed and closed inside the request's context."""

    def __init__(self, context: contextvars.Context, result: Iterable[bytes]) -> None:
        self._context = context
        self._result = result
        self._iterator: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._result)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            self._context.run(close)
