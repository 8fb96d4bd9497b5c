"""A serverless-style function (AWS Lambda and the like) that flushes per invocation.

Between invocations the runtime freezes the process, sender thread and all, and may
end it without running exit hooks. So each invocation delivers before it returns:
``@cdp_logging.flushing`` flushes every client when the function ends, bounded by its
timeout. Write key and host come from CDP_WRITE_KEY and CDP_HOST.
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any

import cdp_logging

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"cdp": {"class": "cdp_logging.AnalyticsHandler"}},
        "root": {"handlers": ["cdp"], "level": "INFO"},
    }
)
log = logging.getLogger("function")


@cdp_logging.flushing(timeout=2)
def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    log.info(
        "track",
        extra={
            "user_id": event["user_id"],
            "event": "Report Generated",
            "properties": {"pages": event.get("pages", 1)},
        },
    )
    return {"statusCode": 200}


if __name__ == "__main__":
    for n in range(3):
        print(handler({"user_id": f"user-{n}", "pages": n + 1}, None))
    # A frozen or killed runtime runs no exit hooks; os._exit shows none were needed.
    os._exit(0)
