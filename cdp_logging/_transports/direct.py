"""The POST of a batch through the connection pool that requests itself would use.

``requests.Session.send`` costs ~1.2 M instructions per request (callgrind, a 100-message
body to a local server); the same request through the urllib3 pool under the session's
adapter costs ~0.65 M. The difference is request and response objects built, hooks
dispatched, cookies parsed twice and URLs parsed again, per batch, on the sender
thread, which competes with the application for the GIL. urllib3 is requests' own
dependency (always installed with it), and the pool, its TLS settings (``verify``,
``cert``) and its retries come from the session's adapter exactly as
``HTTPAdapter.send`` gets them, so the request on the wire is the same.

Only where requests would do nothing more for this request does it take this path,
decided once per session: requests' own ``HTTPAdapter`` for the endpoint, no proxy for
it, no session auth or response hooks, and requests 2.32.2 or later (which has the
adapter's ``get_connection_with_tls_context``). The ``verify`` option reaches the pool as
it reaches it through ``Session.send``, the ``headers`` option is in the fixed headers,
and OAuth's Bearer token replaces the Authorization header per request. Everything else
(a proxy, a mounted adapter, a session holding cookies to send, requests patched or
wrapped by the application: ``requests_unpatched``) goes through ``Session.send`` as
before. An answer that is not a success, or that sets a cookie, is
turned into a ``requests.Response`` by the adapter, so its text and cookies are read
exactly as requests reads them.

urllib3 is imported directly: requests depends on it (every requests since 2.0 installs
it), and this path only hands requests' own pool what ``HTTPAdapter.send`` hands it.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Final

import requests
import requests.adapters
import requests.sessions
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import extract_cookies_to_jar
from requests.utils import select_proxy
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)

from .base import TransportError

__all__ = ["DirectPost", "direct_post", "requests_unpatched"]


def _requests_name(error: BaseException) -> str:
    """The name of the exception requests would have raised for *error* (adapters.py)."""
    if isinstance(error, MaxRetryError):
        reason = error.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return "ConnectTimeout"
        if isinstance(reason, ResponseError):
            return "RetryError"
        if isinstance(reason, ProxyError):
            return "ProxyError"
        if isinstance(reason, SSLError):
            return "SSLError"
        return "ConnectionError"
    if isinstance(error, ProxyError):
        return "ProxyError"
    if isinstance(error, SSLError):
        return "SSLError"
    if isinstance(error, ReadTimeoutError):
        return "ReadTimeout"
    if isinstance(error, (ClosedPoolError, ProtocolError, OSError)):
        return "ConnectionError"
    if isinstance(error, DecodeError):
        return "ContentDecodingError"
    return type(error).__name__


def _body_name(error: BaseException) -> str:
    """The same, for a failure while reading the body (requests' ``iter_content``)."""
    if isinstance(error, ProtocolError):
        return "ChunkedEncodingError"
    if isinstance(error, DecodeError):
        return "ContentDecodingError"
    if isinstance(error, ReadTimeoutError):
        return "ConnectionError"
    return _requests_name(error)


# Where requests' own Session.send, Session.get_adapter and HTTPAdapter.send are written.
_REQUESTS_FILES: Final = frozenset({requests.sessions.__file__, requests.adapters.__file__})
# The three functions last looked at, and whether all three were requests' own.
_last_seen: tuple[object, object, object, bool] = (None, None, None, False)


def _own(function: object) -> bool:
    return type(function) is FunctionType and function.__code__.co_filename in _REQUESTS_FILES


def requests_unpatched() -> bool:
    """Whether nothing has replaced or wrapped the functions the direct path skips.

    responses and requests-mock replace ``HTTPAdapter.send`` or ``Session.send`` and
    ``get_adapter`` for a test, and OpenTelemetry's, ddtrace's and other
    instrumentations wrap ``Session.send``: the application patched requests to see
    (or stop) every request, ours included, so a batch then goes through
    ``Session.send`` as before. Checked per batch, because a patch may come after the
    session was made (a test that starts responses with a client already running); the
    answer is kept for the functions last seen, so the usual batch pays three
    attribute reads.
    """
    global _last_seen
    send = requests.Session.send
    get_adapter = requests.Session.get_adapter
    adapter_send = HTTPAdapter.send
    seen_send, seen_get_adapter, seen_adapter_send, verdict = _last_seen
    if send is seen_send and get_adapter is seen_get_adapter and adapter_send is seen_adapter_send:
        return verdict
    verdict = _own(send) and _own(get_adapter) and _own(adapter_send)
    _last_seen = (send, get_adapter, adapter_send, verdict)
    return verdict


# What a failed request raises here: urllib3's errors, and the OSErrors it lets through.
FAILURES: Final = (urllib3.exceptions.HTTPError, OSError)


class DirectPost:
    """One endpoint's pool and the request's fixed parts, taken from a session."""

    def __init__(
        self,
        session: requests.Session,
        template: requests.PreparedRequest,
        adapter: HTTPAdapter,
        pool: Any,
    ) -> None:
        self._session = session
        self._template = template
        self._adapter = adapter
        self._pool = pool
        self._path = adapter.request_url(template, {})
        self._headers = dict(template.headers)
        self._retries = adapter.max_retries

    def post(
        self, data: bytes, timeout: float, bearer: str | None = None
    ) -> tuple[int, requests.Response | None, Any]:
        """Send *data*; the status, and requests' Response when it must be read as requests does.

        *bearer* (OAuth's token) replaces the Basic Authorization header. Raises
        ``TransportError`` when there is no answer, in requests' words.
        """
        headers = self._headers.copy()
        headers["Content-Length"] = str(len(data))
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            answer = self._pool.urlopen(
                "POST",
                self._path,
                body=data,
                headers=headers,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self._retries,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                chunked=False,
            )
        except FAILURES as error:
            raise TransportError(f"{_requests_name(error)}: {error}") from None
        status: int = answer.status
        if status < 300 and "Set-Cookie" not in answer.headers:
            try:
                answer.read(decode_content=True)  # the whole body, so the connection is reused
            except FAILURES as error:
                raise TransportError(f"{_body_name(error)}: {error}") from None
            finally:
                answer.release_conn()
            return status, None, answer.headers
        # Rare: build requests' Response, so its text, headers and cookies are read as
        # Session.send reads them (and the cookie is sent back, by the requests path).
        response = self._adapter.build_response(self._template, answer)
        extract_cookies_to_jar(self._session.cookies, self._template, answer)  # type: ignore[no-untyped-call]
        try:
            response.content  # noqa: B018 - read now, as Session.send does (stream=False)
        except requests.RequestException as error:
            raise TransportError(f"{type(error).__name__}: {error}") from None
        return status, response, response.headers


def direct_post(session: requests.Session, template: requests.PreparedRequest) -> DirectPost | None:
    """The direct path for this session's endpoint, or None where requests must send."""
    url = template.url
    if url is None or session.auth is not None or any(session.hooks.get("response", ())):
        return None
    adapter = session.get_adapter(url)
    if type(adapter) is not HTTPAdapter or select_proxy(url, session.proxies):
        return None
    connect = getattr(adapter, "get_connection_with_tls_context", None)
    if connect is None:  # requests before 2.32.2
        return None
    try:
        pool = connect(template, session.verify, proxies={}, cert=session.cert)
        adapter.cert_verify(pool, url, session.verify, session.cert)  # type: ignore[no-untyped-call]
        return DirectPost(session, template, adapter, pool)
    except Exception:  # noqa: BLE001 - whatever it is, requests' own path will report it
        return None
