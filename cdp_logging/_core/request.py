"""Who and where, from one request's headers: shared by the WSGI, ASGI and Django middleware.

Headers come from the client, so everything here is untrusted: nothing raises, and
every value is cut to a documented length so the bound context stays far inside the
protocol's 32,000 bytes per message (the rule is in the docs, "Who and where: request context").
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from . import serialise as _json
from .context import Bound, bind_context
from .report import warn

__all__ = [
    "MAX_COOKIE_CHARS",
    "MAX_VALUE_CHARS",
    "RequestReader",
    "anonymous_id",
    "bind_request",
    "client_ip",
]

# The longest any one header-derived value may be, in characters and in bytes of its
# JSON text; longer ones are cut to this.
MAX_VALUE_CHARS: Final = 1000
# An analytics.js anonymous id is a UUID; a cookie longer than this is not one: dropped.
MAX_COOKIE_CHARS: Final = 200


def _clip(value: str) -> str:
    """At most MAX_VALUE_CHARS characters, and at most as many bytes once in JSON.

    Characters cost more than a byte each in the message: UTF-8 takes up to 4, and a
    control character is written as a 6-byte ``\\u`` escape. Cutting by characters
    alone, a request with every header full of them would bind over 32,000 bytes.
    """
    value = value[:MAX_VALUE_CHARS]
    if len(_json.dumps(value)) - 2 <= MAX_VALUE_CHARS:
        return value  # the usual case: printable ASCII, one byte a character
    kept: list[str] = []
    size = 0
    for char in value:
        size += len(_json.dumps(char)) - 2
        if size > MAX_VALUE_CHARS:
            break
        kept.append(char)
    return "".join(kept)


def _text(raw: bytes | str | None) -> str:
    """Header text: bytes that are not UTF-8 are replaced, never raised on."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        # WSGI gives latin-1-decoded str (PEP 3333): recover the bytes, read as UTF-8.
        raw = raw.encode("latin-1", "replace")
    return raw[: MAX_VALUE_CHARS * 4].decode("utf-8", "replace")


def anonymous_id(cookie_header: str, name: str) -> str | None:
    """The named cookie's value, plain or JSON-quoted as analytics.js writes it."""
    for part in cookie_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if not sep or key != name:
            continue
        value = unquote(value.strip())
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                return None
            if not isinstance(value, str):
                return None
        if not value or len(value) > MAX_COOKIE_CHARS or not value.isprintable():
            return None
        return value
    return None


def client_ip(peer: str | None, forwarded_for: str, trusted_proxies: int) -> str | None:
    """The peer's address, or the N-th address from the right of X-Forwarded-For.

    With N trusted proxies, each appended the address it saw; the N-th from the right
    is the one the outermost trusted proxy saw. Anything that is not an IP address, or
    a header shorter than N, falls back to the peer address; a peer that is not an IP
    address either (Starlette's test client says ``"testclient"``, a Unix socket has a
    path) gives no ``ip`` at all, since the CDP would geolocate the text as one.
    """
    if trusted_proxies > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if len(hops) >= trusted_proxies:
            candidate = hops[-trusted_proxies]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    if not peer:
        return None
    try:
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None


@dataclass(frozen=True)
class RequestReader:
    """What one middleware collects, checked once when the middleware is made.

    The WSGI, ASGI and Django middleware differ only in where a request's parts come
    from; this holds the choices they share, so each passes its parts and nothing else.
    *setting* names the option in the error a bad ``trusted_proxies`` raises (Django
    reads it from ``CDP_TRUSTED_PROXIES``).
    """

    collect_ip: bool = True
    anonymous_id_cookie: str | None = "ajs_anonymous_id"
    trusted_proxies: int = 0
    setting: str = "trusted_proxies"

    def __post_init__(self) -> None:
        if type(self.trusted_proxies) is not int or self.trusted_proxies < 0:
            raise ValueError(f"{self.setting} must be an int >= 0, got {self.trusted_proxies!r}")

    def fields(
        self,
        *,
        scheme: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, bytes | str],
        peer: str | None,
    ) -> dict[str, Any]:
        """``bind_context`` keywords for one request. *headers*: lower-case names."""
        context: dict[str, Any] = {}
        if self.collect_ip:
            ip = client_ip(peer, _text(headers.get("x-forwarded-for")), self.trusted_proxies)
            if ip:
                context["ip"] = ip
        for header, key in (("user-agent", "userAgent"), ("accept-language", "locale")):
            value = _text(headers.get(header))
            if value:
                if key == "locale":
                    value = value.split(",")[0].split(";")[0].strip()
                context[key] = _clip(value)
        search = "?" + query if query else ""
        page = {
            "path": _clip(path),
            "url": _clip(f"{scheme}://{host}{path}{search}"),
            "search": _clip(search),
        }
        referrer = _text(headers.get("referer"))
        if referrer:
            page["referrer"] = _clip(referrer)
        context["page"] = page
        fields: dict[str, Any] = {"context": context}
        if self.anonymous_id_cookie:
            found = anonymous_id(_text(headers.get("cookie")), self.anonymous_id_cookie)
            if found:
                fields["anonymous_id"] = found
        return fields

    def environ_fields(
        self, environ: Mapping[str, Any], *, path: str, scheme: str
    ) -> dict[str, Any]:
        """The same, from a WSGI environ (Django's ``request.META`` is one)."""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        return self.fields(
            scheme=scheme,
            host=_text(environ.get("HTTP_HOST") or environ.get("SERVER_NAME")),
            path=path,
            query=_text(environ.get("QUERY_STRING")),
            headers=headers,
            peer=environ.get("REMOTE_ADDR"),
        )


def bind_request(
    read: Callable[[], dict[str, Any]], user_id: Callable[[], object] | None
) -> contextvars.Token[Bound | None] | None:
    """Bind what *read* finds, then the id *user_id* returns; never raise into the app.

    The two are bound apart so that a request whose headers cannot be read still gets
    its user, and a ``user_id`` callable that raises (or returns something no id can
    be) still leaves the request's where. Returns the token of the first bind, which
    restores the state before both (ASGI resets it; WSGI and Django run the request
    in a copied context instead), or None when nothing was bound.
    """
    token = None
    try:
        token = bind_context(**read())
    except Exception as error:  # noqa: BLE001 - bad input never raises into the app
        warn(f"AnalyticsMiddleware could not read the request: {type(error).__name__}")
    if user_id is not None:
        try:
            user = user_id()
            if user is not None:
                user_token = bind_context(user_id=user)
                if token is None:
                    token = user_token
        except Exception as error:  # noqa: BLE001
            warn(f"AnalyticsMiddleware user_id callable raised {type(error).__name__}")
    return token
