"""Segment's OAuth 2.0 for its Tracking API: a token for a signed JWT assertion.

As Segment's own libraries do it: an RS256 JWT (``kid`` the key's id; ``iss`` and
``sub`` the client id, ``aud`` the auth server, a minute of validity and a fresh
``jti``) is posted to ``{auth_server}/token`` as a client-credentials grant with a
JWT-bearer client assertion (RFC 7523); the answer's ``access_token`` goes out as
``Authorization: Bearer`` on each batch. The token is renewed once half its lifetime
has passed (a token that expires between our check and the server's is then unlikely),
and at once after a 401. Everything here runs in the sender thread, inside one send's
timeout; the caller's thread never waits for a token.

The private key is parsed once at construction (a bad key fails there, with a
ValueError that does not quote it) and is never put in a repr, an error or stderr.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import requests

from .base import Response, TransportError

if TYPE_CHECKING:
    from .._core.network import OAuthSettings

__all__ = ["ASSERTION_TYPE", "TokenRefused", "TokenSource"]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The assertion's validity, and how far back iat goes for a server clock slightly ahead.
_ASSERTION_SECONDS: Final = 60
_CLOCK_SKEW_SECONDS: Final = 5
# When the answer says nothing about the lifetime: Segment's tokens last an hour.
_DEFAULT_EXPIRES_IN: Final = 3600.0
_MAX_REASON_CHARS: Final = 300


class TokenRefused(Exception):
    """The token server answered, but with no token; ``response`` is what to report."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.text)
        self.response = response


def _load_key(settings: OAuthSettings) -> Any:
    """The private key object; a ValueError naming the problem, never the key."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if settings.key_is_path:
        try:
            with open(settings.client_key, "rb") as file:
                pem = file.read()
        except OSError as error:
            raise ValueError(
                f"oauth client_key: cannot read {settings.client_key}: {error.strerror}"
            ) from None
    else:
        pem = settings.client_key.encode()
    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        # cryptography's messages describe the format, not the bytes; keep only the type.
        raise ValueError(
            f"oauth client_key is not an unencrypted PEM private key ({type(error).__name__})"
        ) from None


class TokenSource:
    """One client's access token: obtained, cached, renewed."""

    def __init__(self, settings: OAuthSettings) -> None:
        import jwt  # the oauth extra; parse_oauth checked it is installed

        self._jwt = jwt
        self._settings = settings
        self._key = _load_key(settings)
        self._endpoint = settings.auth_server + "/token"
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._token: str | None = None
        self._renew_at = 0.0

    def __repr__(self) -> str:
        return f"<TokenSource {self._endpoint} client_id={self._settings.client_id!r}>"

    def assertion(self) -> str:
        """A freshly signed client assertion (also what the tests decode)."""
        now = int(time.time())
        claims = {
            "iss": self._settings.client_id,
            "sub": self._settings.client_id,
            "aud": self._settings.auth_server,
            "iat": now - _CLOCK_SKEW_SECONDS,
            "exp": now + _ASSERTION_SECONDS - _CLOCK_SKEW_SECONDS,
            "jti": str(uuid.uuid4()),
        }
        signed: str = self._jwt.encode(
            claims, self._key, algorithm="RS256", headers={"kid": self._settings.key_id}
        )
        return signed

    def invalidate(self, token: str) -> None:
        """Forget *token* (refused with 401), unless another send already replaced it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def token(self, session: requests.Session, timeout: float) -> str:
        """The current token, asking the server for one when it is missing or half-spent.

        Raises:
            TransportError: no answer from the token server (retried like a batch).
            TokenRefused: an answer without a token.
        """
        if self._pid != os.getpid():
            # A fork while our sender thread held the lock (mid-request) copies it held
            # into the child, where no thread would ever release it.
            self._lock = threading.Lock()
            self._pid = os.getpid()
        with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            asked = time.monotonic()
            token, lifetime = self._request(session, timeout)
            self._token = token
            self._renew_at = asked + lifetime / 2
            return token

    def _request(self, session: requests.Session, timeout: float) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
            "scope": self._settings.scope,
        }
        try:
            answer = session.post(self._endpoint, data=form, timeout=timeout, allow_redirects=False)
        except requests.RequestException as error:
            raise TransportError(
                f"OAuth token request to {self._endpoint}: {type(error).__name__}: {error}"
            ) from None
        if answer.status_code != 200:
            text = f"OAuth token request to {self._endpoint} answered {answer.status_code}: "
            text += answer.text[:_MAX_REASON_CHARS]
            status = answer.status_code
            if status not in (408, 429) and status < 500:
                # The client's credentials (id, key, key id, scope) were refused: no
                # batch will pass until they are fixed, as with a refused write key.
                status = 401
            raise TokenRefused(Response(status=status, text=text))
        try:
            data = answer.json()
            token = data["access_token"]
            lifetime = float(data.get("expires_in", _DEFAULT_EXPIRES_IN))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TransportError(
                f"OAuth token request to {self._endpoint} answered 200 without an access_token"
            ) from None
        if not isinstance(token, str) or not token or lifetime <= 0:
            raise TransportError(
                f"OAuth token request to {self._endpoint} answered 200 without a usable token"
            )
        return token, lifetime
