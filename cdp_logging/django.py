"""Django middleware: bind who and where for one request, and never beyond it.

Add ``"cdp_logging.django.AnalyticsMiddleware"`` to ``MIDDLEWARE`` after
``AuthenticationMiddleware``, so ``request.user`` is there to read.
Settings (all optional): ``CDP_USER_ID`` (a dotted path to ``request -> str | None``;
default: the authenticated user's pk), ``CDP_COLLECT_IP`` (default True),
``CDP_ANONYMOUS_ID_COOKIE`` (default ``"ajs_anonymous_id"``), ``CDP_TRUSTED_PROXIES``
(default 0).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from ._core.request import RequestReader, bind_request

__all__ = ["AnalyticsMiddleware", "authenticated_user_pk"]


def authenticated_user_pk(request: Any) -> object:
    """The default ``user_id``: the pk of ``request.user`` when authenticated."""
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk
    return None


class AnalyticsMiddleware:
    """Run each request in a copy of the context with its who and where bound.

    Sync only: under ASGI, Django adapts it, and each request still runs in its own
    copied context, so nothing bound outlives the request.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings
        from django.utils.module_loading import import_string

        self.get_response = get_response
        path = getattr(settings, "CDP_USER_ID", None)
        self._user_id: Callable[[Any], object] = (
            import_string(path) if path else authenticated_user_pk
        )
        self._reader = RequestReader(
            bool(getattr(settings, "CDP_COLLECT_IP", True)),
            getattr(settings, "CDP_ANONYMOUS_ID_COOKIE", "ajs_anonymous_id"),
            int(getattr(settings, "CDP_TRUSTED_PROXIES", 0)),
            setting="CDP_TRUSTED_PROXIES",
        )

    def _bind(self, request: Any) -> None:
        meta = request.META
        user_id = self._user_id
        bind_request(
            lambda: self._reader.environ_fields(
                meta,
                path=str(request.path),
                scheme=str(meta.get("wsgi.url_scheme", request.scheme or "http")),
            ),
            lambda: user_id(request),
        )

    def __call__(self, request: Any) -> Any:
        def run() -> Any:
            self._bind(request)
            return self.get_response(request)

        return contextvars.copy_context().run(run)
