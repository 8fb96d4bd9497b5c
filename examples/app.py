"""A small application that tracks by logging, configured with dictConfig.

It never calls flush(): logging.shutdown() at interpreter exit delivers what is queued.
The write key and host come from CDP_WRITE_KEY and CDP_HOST.
"""

from __future__ import annotations

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "cdp": {"class": "cdp_logging.AnalyticsHandler", "max_events_in_batch": 20},
    },
    "root": {"handlers": ["console", "cdp"], "level": "INFO"},
}


def main() -> None:
    logging.config.dictConfig(LOGGING)
    log = logging.getLogger("shop")
    log.info("app started")  # an ordinary line: printed, not tracked
    log.info(
        "identify",
        extra={
            "cdp": {"user_id": "019mr8mf4r", "traits": {"email": "ada@example.com", "plan": "pro"}}
        },
    )
    log.info(
        "track",
        extra={
            "cdp": {
                "user_id": "019mr8mf4r",
                "event": "Purchased an Item",
                "properties": {"revenue": 39.95, "sku": "B-17"},
            }
        },
    )
    log.info("track", extra={"user_id": "019mr8mf4r", "event": "Played Song"})  # flat form
    log.info("page", extra={"cdp": {"anonymous_id": "a-1", "name": "Docs", "category": "Help"}})
    log.info("screen", extra={"cdp": {"user_id": "019mr8mf4r", "name": "Home"}})
    log.info(
        "group",
        extra={"cdp": {"user_id": "019mr8mf4r", "group_id": "acme", "traits": {"seats": 12}}},
    )
    log.info("alias", extra={"cdp": {"previous_id": "a-1", "user_id": "019mr8mf4r"}})
    log.info("app finished; exiting without flush()")


if __name__ == "__main__":
    main()
