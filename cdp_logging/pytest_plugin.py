"""The pytest plugin (entry point ``pytest11``): the ``cdp_messages`` fixture.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .testing import capture_messages

__all__ = ["cdp_messages"]


@pytest.fixture
def cdp_messages() -> Iterator[list[dict[str, Any]]]:
    """The wire messages the code under test tracked, none of them sent."""
    with capture_messages() as messages:
        yield messages
