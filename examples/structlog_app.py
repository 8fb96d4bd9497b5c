"""Tracking with structlog, natively: AnalyticsProcessor before the renderer.

Run it with CDP_WRITE_KEY and CDP_HOST set (the demo collector works:
``python -m cdp_logging.collector`` then CDP_HOST=http://127.0.0.1:8765).
The processor owns its sender, so events are delivered at exit with no flush().
"""

from __future__ import annotations

import structlog

from cdp_logging import AnalyticsProcessor
from cdp_logging.payloads import identify_payload


def configure() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # After the processors that enrich the event, before the renderer.
            # after="strip" keeps traits and properties out of the log output.
            AnalyticsProcessor(max_events_in_batch=20, after="strip"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


def main() -> None:
    configure()
    log = structlog.get_logger()
    log.info("identify", cdp=identify_payload(user_id="u1", traits={"plan": "pro"}))
    log.info("track", user_id="u1", event_name="Played Song", properties={"plays": 3})
    log.info("page", cdp={"user_id": "u1", "name": "Docs"})
    log.info("an ordinary line", request_id="r-1")


if __name__ == "__main__":
    main()
