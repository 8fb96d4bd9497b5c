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
    # Every event tracked during a request carries its user, ip, user agent and page. A
    # real app lists it after AuthenticationMiddleware and leaves CDP_USER_ID out: the
    # user is then request.user.pk. This one-file example has no database, so a cookie
    # stands in for the session.
    MIDDLEWARE=["cdp_logging.django.AnalyticsMiddleware"],
    CDP_USER_ID=f"{__name__}.current_user",
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


def current_user(request: HttpRequest) -> str | None:
    """CDP_USER_ID: who is asking (a real app's default is request.user.pk)."""
    user = request.COOKIES.get("user")
    return str(user) if user else None


def sign_up(request: HttpRequest, user_id: str) -> JsonResponse:
    # The user is new in this request, so these calls name it themselves.
    log.info("identify", extra={"cdp": {"user_id": user_id, "traits": {"plan": "trial"}}})
    log.info("track", extra={"user_id": user_id, "event": "Signed Up"})
    return JsonResponse({"user": user_id})


def plans(request: HttpRequest) -> JsonResponse:
    # No user_id here: the middleware bound it, with the page, for this request.
    log.info("track", extra={"cdp": {"event": "Plans Viewed"}})
    return JsonResponse({"plans": ["trial", "pro"]})


urlpatterns = [path("signup/<str:user_id>", sign_up), path("plans", plans)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
