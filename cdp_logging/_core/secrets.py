"""Keeping the write key out of every text we show: reports, exceptions, stderr.

Text we did not write (a server's answer, an exception's message) may carry the key,
plain or as the Basic-auth token made of it. Two rules make scrubbing safe:

* Scrub before cutting. A server's answer is cut to a few hundred characters for a
  report; cutting first can split the key and leave its head, which no longer matches,
  in plain sight. ``Scrubber.cut`` scrubs the whole text, cuts, and then removes what is
  left at the cut that could be the beginning of a secret (4 characters or more).
* Scrub tokens, not substrings. A short key ("write", "k") is a piece of ordinary words;
  replacing it wherever it occurs turned "write_key" into "***_key". The key is replaced
  where it stands as a token: not inside a run of letters, digits and underscores.
"""

from __future__ import annotations

import base64
import re
from typing import Final

__all__ = ["MIN_PREFIX_CHARS", "Scrubber"]

# The shortest head of a secret left at a cut that is removed: three characters of a
# random key say nothing, and removing every 1-3 character tail would eat ordinary words.
MIN_PREFIX_CHARS: Final = 4
# What may continue a word: a secret next to one of these is part of that word.
_WORD: Final = "A-Za-z0-9_"


class Scrubber:
    """Replace the write key, and its Basic-auth token, where they stand as tokens.

    Callable as ``scrub(text) -> text``; ``cut(text, limit)`` scrubs, then cuts.
    """

    __slots__ = ("_pattern", "_placeholder", "_secrets")

    def __init__(self, write_key: str, *others: str) -> None:
        token = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        # No key (send=False without one): nothing to hide, and no empty pattern.
        keys = (write_key, token) if write_key else ()
        # *others*: other secrets of the configuration (a proxy URL's password). One of
        # under 4 characters is left alone: "x" would be scrubbed out of every text.
        self._secrets = keys + tuple(other for other in others if len(other) >= 4)
        # Texts pass through here more than once (an error's reason, then its stderr
        # line): the placeholder must not itself hold a secret, or a test key such as
        # "write" would turn "<write key>" into "<*** key>" on the second pass.
        candidates = ("<write key>", "***", "[hidden]")
        self._placeholder = next(
            (p for p in candidates if not any(s in p for s in self._secrets)), ""
        )
        # Longest first, so the token is not half replaced by a key that is part of it.
        alternatives = "|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True))
        self._pattern = re.compile(f"(?<![{_WORD}])(?:{alternatives})(?![{_WORD}])")

    def __call__(self, text: str) -> str:
        if not self._secrets or not any(secret in text for secret in self._secrets):
            return text  # the usual case: one substring test per secret
        return self._pattern.sub(self._placeholder, text)

    def cut(self, text: str, limit: int) -> str:
        """*text* scrubbed, then cut to *limit* characters, with no secret's head at the cut.

        A head is removed whether or not it stands as a token: at a cut nobody can tell
        what followed it.
        """
        text = self(text)
        if len(text) <= limit:
            return text
        text = text[:limit]
        removed = False
        cut = True
        while cut:  # bounded: each pass shortens the text or ends the loop
            cut = False
            for secret in self._secrets:
                for size in range(min(len(secret), len(text)), MIN_PREFIX_CHARS - 1, -1):
                    if text.endswith(secret[:size]):
                        text, cut, removed = text[: len(text) - size], True, True
                        break
        return text + self._placeholder if removed else text
