"""The network options: ``proxies``, ``verify``, ``headers`` and ``oauth``, validated.

They configure the built-in requests transport (``_transports/requests.py``,
``_transports/oauth.py``); here they are only checked and frozen, at construction, so
a typo is a ValueError naming the option rather than a failed batch minutes later in
the sender thread.
"""

from __future__ import annotations

import importlib.util
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DEFAULT_AUTH_SERVER",
    "DEFAULT_SCOPE",
    "RESERVED_HEADERS",
    "OAuthSettings",
    "parse_headers",
    "parse_oauth",
    "parse_proxies",
    "parse_verify",
]

DEFAULT_AUTH_SERVER: Final = "https://oauth2.segment.io"
DEFAULT_SCOPE: Final = "tracking_api:write"
# Ours, lower-cased: auth (the write key, or oauth's Bearer token) and the body's framing,
# which a replaced value would break for every batch.
RESERVED_HEADERS: Final = frozenset(
    {"authorization", "content-type", "content-encoding", "content-length"}
)
# RFC 9110's token: what a header name may be (requests refuses others at every request).
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OAUTH_KEYS: Final = ("client_id", "client_key", "key_id", "auth_server", "scope")


@dataclass(frozen=True)
class OAuthSettings:
    """Segment's OAuth 2.0 client credentials; ``client_key`` never in a repr."""

    client_id: str
    client_key: str = field(repr=False)  # PEM text, or the path of a PEM file
    key_id: str
    auth_server: str = DEFAULT_AUTH_SERVER
    scope: str = DEFAULT_SCOPE

    @property
    def key_is_path(self) -> bool:
        return "-----BEGIN" not in self.client_key


def _url(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def parse_proxies(value: object) -> dict[str, str] | None:
    """A mapping as requests takes it: scheme (or scheme://host) to proxy URL."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"proxies must be a mapping such as {{'https': URL}}, got {value!r}")
    proxies: dict[str, str] = {}
    for key, url in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"proxies keys are schemes such as 'https', got {key!r}")
        # The URL may carry a password: errors name the key, not the value.
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"proxies[{key!r}] must be a proxy URL such as http://HOST:PORT")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError(f"proxies[{key!r}] is not a valid URL") from None
        if not parts.hostname:
            raise ValueError(f"proxies[{key!r}] has no host")
        proxies[key] = url
    return proxies


def parse_verify(value: object) -> bool | str | None:
    """True, False, or the path of a CA bundle (a file or an OpenSSL hashed directory)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        if os.path.exists(value):
            return value
        raise ValueError(
            f"verify must be true, false or a CA bundle path; {value!r} does not exist"
        )
    raise ValueError(f"verify must be true, false or a CA bundle path, got {value!r}")


def parse_headers(value: object) -> dict[str, str] | None:
    """Extra HTTP headers; never ours (auth and framing)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"headers must be a mapping of names to values, got {value!r}")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or not isinstance(text, str):
            raise ValueError(f"headers must map names to text values, got {name!r}")
        if name.strip().lower() in RESERVED_HEADERS:
            raise ValueError(
                f"headers cannot replace {name!r}: the library sets it (auth and the body's "
                "framing); use oauth= for Segment's OAuth"
            )
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not a valid header name")
        if any(c in text for c in "\r\n\0") or text != text.strip():
            raise ValueError(
                f"headers[{name!r}] must not hold line breaks or begin or end with spaces"
            )
        headers[name] = text
    return headers


def parse_oauth(value: object) -> OAuthSettings | None:
    """The ``oauth`` mapping, checked now; the key itself is read by the transport."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("oauth must be a mapping with client_id, client_key and key_id")
    unknown = sorted(str(key) for key in value if key not in _OAUTH_KEYS)
    if unknown:
        raise ValueError(f"oauth has unknown key(s) {unknown}; keys are {', '.join(_OAUTH_KEYS)}")
    for key in ("client_id", "client_key", "key_id"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ValueError(f"oauth needs {key} (a non-empty string)")
    scope = value.get("scope", DEFAULT_SCOPE)
    if not isinstance(scope, str) or not scope:
        raise ValueError(f"oauth scope must be a non-empty string, got {scope!r}")
    missing = [name for name in ("jwt", "cryptography") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            "oauth needs the oauth extra (PyJWT and cryptography, to sign the assertion): "
            "pip install 'cdp_logging[oauth]'"
        )
    settings = OAuthSettings(
        client_id=value["client_id"],
        client_key=value["client_key"],
        key_id=value["key_id"],
        auth_server=_url("oauth auth_server", value.get("auth_server", DEFAULT_AUTH_SERVER)),
        scope=scope,
    )
    if settings.key_is_path and not os.path.isfile(settings.client_key):
        raise ValueError(
            "oauth client_key must be a PEM private key, or the path of a file holding one; "
            "it is neither (no such file)"
        )
    return settings
