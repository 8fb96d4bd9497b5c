"""loguru: analytics records through a loguru sink, beside the application's own sinks.

The same two forms as with the standard library: a ``cdp`` mapping bound to the record,
or a call type as the message with the payload's keys as keyword arguments (loguru
puts them in ``extra``). Other records go only to the other sinks.

Run with CDP_WRITE_KEY and CDP_HOST set (``cdp-logging collect`` prints both). It
exits without ``logger.remove()``: what is queued is delivered at exit all the same.
"""

from __future__ import annotations

import sys

from loguru import logger

from cdp_logging.loguru import AnalyticsSink

logger.remove()  # loguru's default stderr sink: replaced by one with its own format
logger.add(sys.stderr, format="{level} {message} {extra}")
logger.add(AnalyticsSink(), level="INFO")

logger.bind(cdp={"user_id": "u1", "traits": {"email": "ada@example.com", "plan": "pro"}}).info(
    "identify"
)
logger.info("track", user_id="u1", event="Signed Up", properties={"plan": "pro"})
logger.info("an ordinary log line: not sent")
