"""structlog routed into stdlib logging: the stdlib AnalyticsHandler does the sending.

Use this when structlog renders through logging's handlers (ProcessorFormatter). Put
the AnalyticsHandler in logging's config and no AnalyticsProcessor in structlog's chain:
one of the two, never both, or every event is sent twice.
"""

from __future__ import annotations

import logging.config

import structlog

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": structlog.dev.ConsoleRenderer(colors=False),
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "cdp": {"class": "cdp_logging.AnalyticsHandler"},
    },
    "root": {"handlers": ["console", "cdp"], "level": "INFO"},
}


def configure() -> None:
    logging.config.dictConfig(LOGGING)
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def main() -> None:
    configure()
    log = structlog.get_logger("shop")
    log.info("track", cdp={"user_id": "u1", "event": "Purchased an Item"})
    log.info("page", user_id="u1", name="Checkout")  # flat form works on this route too


if __name__ == "__main__":
    main()
