"""Django with the LOGGING setting, in one file.

Run it: ``python examples/django_app.py runserver --noreload 127.0.0.1:8000`` (stop it
with Ctrl-C: Django's development server installs no SIGTERM handler, and a process
ended by an unhandled SIGTERM runs no exit hooks; under gunicorn or uWSGI, which handle
it, the usual graceful stop delivers everything). Key and host from the environment.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="example-only",  # a runnable example, not a deployment
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "console": {"class": "logging.StreamHandler"},
            "cdp": {"class": "cdp_logging.AnalyticsHandler", "max_events_in_batch": 50},
        },
        "loggers": {
            "django": {"handlers": ["console"], "level": "INFO"},
            "accounts": {"handlers": ["cdp"], "level": "INFO"},
        },
    },
)

import logging  # noqa: E402 - after settings, as Django wants

log = logging.getLogger("accounts")


def sign_up(request: HttpRequest, user_id: str) -> JsonResponse:
    log.info("identify", extra={"cdp": {"user_id": user_id, "traits": {"plan": "trial"}}})
    log.info("track", extra={"user_id": user_id, "event": "Signed Up"})
    return JsonResponse({"user": user_id})


urlpatterns = [path("signup/<str:user_id>", sign_up)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
