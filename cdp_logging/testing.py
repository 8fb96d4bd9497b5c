"""Assert on tracking without a network: ``capture_messages`` and the pytest fixture.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._core import capture as _capture

__all__ = ["capture_messages"]


@contextlib.contextmanager
def capture_messages() -> Iterator[list[dict[str, Any]]]:
    """Collect every wire message any client in the process accepts during the block.

    The list receives, in call order, the parsed JSON of the bytes that would have been
    sent; those messages are never sent, not even after the block. Invalid messages are
    still refused and reported to ``on_error`` and do not appear. Captures may be nested
    and both the inner and the outer list see a message. A call's Future resolves with
    the captured message, as if it had been delivered.

    >>> with capture_messages() as messages:
    ...     log.info("track", extra={"user_id": "u1", "event": "Signed Up"})
    >>> messages[0]["event"]
    'Signed Up'
    """
    sink: list[dict[str, Any]] = []
    _capture.start(sink)
    try:
        yield sink
    finally:
        _capture.stop(sink)
