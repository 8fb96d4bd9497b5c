"""Assert on tracking without a network: ``capture_messages`` and the pytest fixture.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from ._core import capture as _capture

__all__ = ["CapturedMessages", "capture_messages"]

# Keyword spellings of assert_tracked, as the logging call takes them -> wire keys.
_WIRE: Final = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "previous_id": "previousId",
    "group_id": "groupId",
    "message_id": "messageId",
}
# What most often explains an empty capture: there was nothing in the process to accept
# the message, or the record never reached it.
_NOTHING_CAPTURED: Final = (
    " (nothing was captured at all: is an AnalyticsHandler, AnalyticsProcessor or Analytics"
    " client set up in this process, and does the logger's level let the record through?)"
)
# Members compared as a subset: a test names the properties it cares about.
_BAGS: Final = frozenset({"properties", "traits", "context", "integrations"})


class CapturedMessages(list[dict[str, Any]]):
    """The captured wire messages, in call order, with an assertion that reads well.

    .. versionadded:: 0.2.0
    """

    def assert_tracked(self, event: str, **fields: Any) -> dict[str, Any]:
        """Assert that a track *event* was captured, with *fields*; return that message.

        The first captured track named *event* is compared: each of *fields* (in the
        logging call's spelling, ``user_id``, or the wire's, ``userId``) must equal its
        member, except ``properties``, ``traits``, ``context`` and ``integrations``,
        whose given keys must match (others may be there). The failure says what was
        tracked instead.

        >>> cdp_messages.assert_tracked("Order Completed", user_id="u1",
        ...                             properties={"revenue": 39.95})
        """
        tracked = [m for m in list(self) if m.get("type") == "track"]
        message = next((m for m in tracked if m.get("event") == event), None)
        if message is None:
            names = sorted({str(m.get("event")) for m in tracked})
            seen = ", ".join(json.dumps(n) for n in names) if names else "no track at all"
            hint = "" if list(self) else _NOTHING_CAPTURED
            raise AssertionError(
                f"no track {json.dumps(event)} was captured; tracked: {seen}{hint}"
            )
        wrong = [
            problem
            for key, expected in fields.items()
            if (problem := _mismatch(message, _WIRE.get(key, key), expected)) is not None
        ]
        if wrong:
            raise AssertionError(
                f"track {json.dumps(event)} was captured, but "
                + "; ".join(wrong)
                + f"\nthe message: {json.dumps(message, default=str, sort_keys=True)}"
            )
        return message


def _mismatch(message: Mapping[str, Any], wire: str, expected: object) -> str | None:
    if wire not in message:
        return f"it has no {wire} (expected {expected!r})"
    actual = message[wire]
    if wire in _BAGS and isinstance(expected, Mapping) and isinstance(actual, Mapping):
        missing = [key for key in expected if key not in actual]
        differ = [key for key in expected if key in actual and actual[key] != expected[key]]
        parts = [f"{wire}.{key} is absent (expected {expected[key]!r})" for key in missing]
        parts += [f"{wire}.{key} is {actual[key]!r}, expected {expected[key]!r}" for key in differ]
        return "; ".join(parts) or None
    if actual != expected:
        return f"{wire} is {actual!r}, expected {expected!r}"
    return None


@contextlib.contextmanager
def capture_messages() -> Iterator[CapturedMessages]:
    """Collect every wire message any client in the process accepts during the block.

    The list receives, in call order, the parsed JSON of the bytes that would have been
    sent; those messages are never sent, not even after the block. Invalid messages are
    still refused and reported to ``on_error`` and do not appear. Captures may be nested
    and both the inner and the outer list see a message. A call's Future resolves with
    the captured message, as if it had been delivered.

    >>> with capture_messages() as messages:
    ...     log.info("track", extra={"user_id": "u1", "event": "Signed Up"})
    >>> messages.assert_tracked("Signed Up", user_id="u1")

    .. versionchanged:: 0.2.0 The list is a ``CapturedMessages``, with ``assert_tracked``.
    """
    sink = CapturedMessages()
    _capture.start(sink)
    try:
        yield sink
    finally:
        _capture.stop(sink)
