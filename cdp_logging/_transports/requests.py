"""HTTP: one POST of one body, and what the answer means for a retry.

Kept apart from the sender (as httpx keeps transports pluggable) so that tests can
hand the client another ``Transport`` where a real socket cannot show a behaviour,
and so that everything that knows about requests, auth and gzip lives in one file.
"""

from __future__ import annotations

import base64
import email.utils
import gzip as gzip_module

# requests imports netrc lazily, inside the first request (get_netrc_auth). A fork at
# that moment copies the import lock held by our sender thread into the child, whose
# own first request then waits for it forever. Importing it here, before any thread
# exists, leaves nothing to import mid-request (checked: a first POST, with and without
# gzip, imports no other module). Why a fork copies held locks: the warning under
# https://docs.python.org/3/library/os.html#os.fork
import netrc  # noqa: F401
import os
import platform
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import requests

from .._core.secrets import Scrubber
from .._version import __version__
from .base import Response, TransportError
from .direct import DirectPost, direct_post, requests_unpatched

if TYPE_CHECKING:
    from .._core.network import OAuthSettings
    from .._core.options import Options
    from .oauth import TokenSource

__all__ = ["RequestsTransport", "http_transport", "parse_retry_after", "user_agent"]

_MAX_REASON_CHARS: Final = 300


def user_agent() -> str:
    return (
        f"cdp_logging/{__version__} (python {platform.python_version()}; "
        f"requests {requests.__version__})"
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date.

    Both forms are allowed (https://www.rfc-editor.org/rfc/rfc9110#field.retry-after);
    a date in the past means "now", and a value that is neither is ignored.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RequestsTransport:
    """POST over a ``requests.Session`` owned by this process.

    The session is rebuilt when the pid changes: a pooled connection or a lock copied
    from the parent by fork is shared with, or held by, a process we cannot see.
    """

    def __init__(
        self,
        endpoint: str,
        write_key: str,
        *,
        gzip: bool,
        proxies: Mapping[str, str] | None = None,
        verify: bool | str | None = None,
        headers: Mapping[str, str] | None = None,
        oauth: OAuthSettings | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._gzip = gzip
        self._proxies = dict(proxies) if proxies else None
        self._verify = verify
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        # An answer is cut for reports; scrubbed before the cut, or the cut could split
        # an echoed key and leave its head in plain sight.
        self._scrub = Scrubber(write_key)
        # The user's headers first, so that ours (auth, framing) are the ones that stay;
        # options refused the reserved names already.
        self._headers = {
            **(headers or {}),
            "Content-Type": "application/json",
            "Authorization": f"Basic {token}",
        }
        self._headers.setdefault("User-Agent", user_agent())
        if gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._tokens: TokenSource | None = None
        if oauth is not None:
            from .oauth import TokenSource

            self._tokens = TokenSource(oauth)
        self._session: requests.Session | None = None
        self._template: requests.PreparedRequest | None = None
        self._direct: DirectPost | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<RequestsTransport {self._endpoint} gzip={self._gzip}>"

    def _get_session(self) -> tuple[requests.Session, requests.PreparedRequest]:
        pid = os.getpid()
        if self._session is None or self._template is None or self._pid != pid:
            self._session = self._new_session()
            # Everything but the body is the same for every batch: prepare it once.
            # Session.post would merge settings, headers and hooks again per request,
            # about a third of the sender thread's time per batch (measured: ~0.3 of
            # ~0.8 ms of CPU) on a thread that competes with the app for the GIL.
            self._template = self._session.prepare_request(
                requests.Request("POST", self._endpoint, headers=self._headers, data=b"")
            )
            # The same POST through the session's own connection pool, where requests
            # would do nothing more per request (_transports.direct): ~0.5 M
            # instructions less per request, on the thread that competes for the GIL.
            self._direct = direct_post(self._session, self._template)
            self._pid = pid
        return self._session, self._template

    def _new_session(self) -> requests.Session:
        """A session that reads the environment once, not on every request.

        With ``trust_env`` on, requests consults ~/.netrc, the proxy variables and the CA
        bundle variables on every request. Worse than the cost (file-system calls on the
        sender thread, each a chance to lose the GIL to a busy caller), a ~/.netrc entry
        for the CDP's host replaces our Authorization header: every batch then gets 401.
        So: proxies and the CA bundle from the environment, read here; never netrc.
        """
        session = requests.Session()
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self._endpoint))
        if self._proxies:
            session.proxies.update(self._proxies)
        if self._verify is not None:
            session.verify = self._verify
            return session
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        # Only TLS needs it, and a path in `verify` costs a stat() per request even over
        # plain http (requests checks whether it is a directory), on the sender thread.
        tls = [self._endpoint, *session.proxies.values()]  # an https proxy needs it too
        if bundle and any(url.startswith("https:") for url in tls):
            session.verify = bundle
        return session

    def send(self, body: bytes, timeout: float) -> Response:
        data = gzip_module.compress(body, compresslevel=6) if self._gzip else body
        if self._tokens is not None:
            return self._send_with_token(data, timeout)
        session, template = self._get_session()
        return self._post(session, template, data, timeout, None)

    def _post(
        self,
        session: requests.Session,
        template: requests.PreparedRequest,
        data: bytes,
        timeout: float,
        bearer: str | None,
    ) -> Response:
        """One POST, direct where it can be, else through ``Session.send``."""
        direct = self._direct
        if direct is not None and not session.cookies and requests_unpatched():
            status, answer, headers = direct.post(data, timeout, bearer)
            if answer is None:  # a success with no cookie: nothing more to read
                retry_after = parse_retry_after(headers.get("Retry-After"))
                return Response(status=status, text="", retry_after=retry_after)
        else:
            answer = self._post_by_session(session, template, data, timeout, bearer)
        return self._answer(answer)

    def _post_by_session(
        self,
        session: requests.Session,
        template: requests.PreparedRequest,
        data: bytes,
        timeout: float,
        bearer: str | None,
    ) -> requests.Response:
        request = template.copy()
        request.body = data
        request.headers["Content-Length"] = str(len(data))
        if bearer is not None:
            request.headers["Authorization"] = f"Bearer {bearer}"
        if session.cookies:  # a load balancer's stickiness cookie, say: send it back
            request.prepare_cookies(session.cookies)
        try:
            # A redirected POST turns into a GET and loses the batch; report the new
            # location instead so the user can fix `host`.
            return session.send(request, timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise TransportError(f"{type(error).__name__}: {error}") from None

    def _send_with_token(self, data: bytes, timeout: float) -> Response:
        """POST with OAuth's Bearer token; after a 401, once more with a new token.

        A 401 can mean the token was revoked or expired early (a server's clock ahead
        of ours); a second 401 with a fresh token means the credentials or the scope,
        which no retry fixes, so it is reported as it came.
        """
        from .oauth import TokenRefused

        tokens = self._tokens
        assert tokens is not None
        session, template = self._get_session()
        deadline = time.monotonic() + timeout
        answer = None
        for _attempt in range(2):
            left = max(0.001, deadline - time.monotonic())
            try:
                token = tokens.token(session, left)
            except TokenRefused as refused:
                return refused.response
            left = max(0.001, deadline - time.monotonic())
            answer = self._post(session, template, data, left, token)
            if answer.status != 401:
                break
            tokens.invalidate(token)
        assert answer is not None
        return answer

    def _answer(self, answer: requests.Response) -> Response:
        text = self._scrub.cut(answer.text, _MAX_REASON_CHARS) if answer.status_code >= 300 else ""
        if 300 <= answer.status_code < 400:
            text = f"redirected to {answer.headers.get('Location', '?')}; set host to that URL"
        return Response(
            status=answer.status_code,
            text=text,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
        )

    def close(self) -> None:
        if self._session is not None and self._pid == os.getpid():
            self._session.close()
        self._session = None
        self._template = None
        self._direct = None


def http_transport(options: Options) -> RequestsTransport:
    """The built-in transport with every network option of *options*."""
    return RequestsTransport(
        options.endpoint,
        options.write_key,
        gzip=options.gzip,
        proxies=options.proxies,
        verify=options.verify,
        headers=options.headers,
        oauth=options.oauth,
    )
