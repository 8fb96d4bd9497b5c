"""A user's test of their tracking: the checkout is asserted with the cdp_messages fixture.

Run with ``pytest examples/test_flask_app.py``; the fixture comes with the package.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("CDP_WRITE_KEY", "test-key")  # never used: nothing is sent

from flask_app import app


def test_checkout_is_tracked(cdp_messages: list[dict[str, Any]]) -> None:
    """Completing a checkout tracks Order Completed with the total, for the user and
    the page the middleware bound."""
    response = app.test_client().post("/checkout/u-42?total=39.95")

    assert 200 == response.status_code
    [message] = cdp_messages
    assert "track" == message["type"]
    assert "u-42" == message["userId"]
    assert "Order Completed" == message["event"]
    assert {"total": 39.95} == message["properties"]
    assert "/checkout/u-42" == message["context"]["page"]["path"]
    assert "?total=39.95" == message["context"]["page"]["search"]
