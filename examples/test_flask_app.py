"""A user's test of their tracking: the checkout is asserted with the cdp_messages fixture.

Run with ``pytest examples/test_flask_app.py``; the fixture comes with the package. With
``--cdp-plan examples/tracking-plan.json`` a test that tracks an event breaking the plan
fails, and the run ends with the plan's coverage.
"""

from __future__ import annotations

import os

os.environ.setdefault("CDP_WRITE_KEY", "test-key")  # never used: nothing is sent

from flask_app import app

from cdp_logging.testing import CapturedMessages


def test_checkout_is_tracked(cdp_messages: CapturedMessages) -> None:
    """Completing a checkout tracks Order Completed with the total, for the user and
    the page the middleware bound."""
    response = app.test_client().post("/checkout/u-42?total=39.95")

    assert 200 == response.status_code
    message = cdp_messages.assert_tracked(
        "Order Completed", user_id="u-42", properties={"total": 39.95}
    )
    assert "/checkout/u-42" == message["context"]["page"]["path"]
    assert "?total=39.95" == message["context"]["page"]["search"]


def test_checkout_without_a_total_tracks_nothing(cdp_messages: CapturedMessages) -> None:
    assert 400 == app.test_client().post("/checkout/u-42").status_code
    assert [] == cdp_messages
