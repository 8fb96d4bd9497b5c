"""Who and where, from one request's headers: shared by the WSGI and ASGI middleware.

Headers come from the client, so everything here is untrusted: nothing raises, and
every value is cut to a documented length so the bound context stays far inside the
protocol's 32,000 bytes per message (the rule is in README, "Who and where").
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["MAX_COOKIE_CHARS", "MAX_VALUE_CHARS", "anonymous_id", "client_ip", "request_fields"]

# The longest any one header-derived value may be; longer ones are cut to this.
MAX_VALUE_CHARS: Final = 1000
# An analytics.js anonymous id is a UUID; a cookie longer than this is not one: dropped.
MAX_COOKIE_CHARS: Final = 200


def _clip(value: str) -> str:
    return value[:MAX_VALUE_CHARS]


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
    a header shorter than N, falls back to the peer address.
    """
    if trusted_proxies > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        if len(hops) >= trusted_proxies:
            candidate = hops[-trusted_proxies]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return peer or None


def request_fields(
    *,
    scheme: str,
    host: str,
    path: str,
    query: str,
    headers: Mapping[str, bytes | str],
    peer: str | None,
    collect_ip: bool,
    trusted_proxies: int,
    cookie_name: str | None,
) -> dict[str, Any]:
    """``bind_context`` keywords for one request. *headers*: lower-case names."""
    context: dict[str, Any] = {}
    if collect_ip:
        ip = client_ip(peer, _text(headers.get("x-forwarded-for")), trusted_proxies)
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
    if cookie_name:
        found = anonymous_id(_text(headers.get("cookie")), cookie_name)
        if found:
            fields["anonymous_id"] = found
    return fields
