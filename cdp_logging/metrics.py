"""Delivery metrics for Prometheus: is analytics getting through, and how far behind is it.

``register_prometheus()`` adds one collector to a ``prometheus_client`` registry; each
scrape reads every cdp_logging client in the process at that moment (the handler's,
the processor's, direct ``Analytics`` ones), so nothing is counted twice and nothing
runs on the logging call's path. A client's counters are its ``stats()``; the queue
age comes from marks its sender thread keeps (see ``_delivery.age`` for what exactly
it measures).

Every series carries ``client`` (a number given to each client when it is made, in
this process) and ``host`` (where it sends, without any user:password), so a client
that goes away takes its series with it rather than making a process-wide sum go
down, which Prometheus would read as a counter reset.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ._core.errors import CODES
from ._core.process import clients

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["CdpCollector", "register_prometheus"]

EXTRA_HINT: Final = "pip install 'cdp_logging[prometheus]'"
LABELS: Final = ("client", "host")
# Reasons a message was not delivered that are not error codes: a before_send hook
# dropped it, or the client was made with send=False. Listed with the codes, so that
# "every reason" is one metric and an alert rule can leave out the intended ones.
NOT_ERRORS: Final = ("filtered", "not_sent")

_registered: weakref.WeakKeyDictionary[Any, CdpCollector] = weakref.WeakKeyDictionary()
_registering = threading.Lock()


def _prometheus() -> Any:
    try:
        import prometheus_client.metrics_core as core
    except ImportError as error:
        raise ImportError(
            f"cdp_logging.metrics.register_prometheus needs prometheus_client, an optional "
            f"extra: {EXTRA_HINT}"
        ) from error
    return core


def _host(url: str) -> str:
    """The host URL as a label: a user:password in it stays out of every scrape."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


class CdpCollector:
    """A ``prometheus_client`` custom collector over every client in this process.

    .. versionadded:: 0.2.0
    """

    def __init__(self) -> None:
        self._core = _prometheus()

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading any client: the registry checks them
        against its other collectors' when this one is registered."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        delivered, failed, queued, age = self._families()
        for number, client in clients():
            try:
                stats = client.stats()
                oldest = client._sender.oldest_age()
                host = _host(client.options.host)
            except Exception:  # noqa: BLE001, S112 - a scrape never fails for one client
                continue
            labels = [str(number), host]
            delivered.add_metric(labels, stats["delivered"])
            errors: dict[str, int] = {code: 0 for code in (*sorted(CODES), *NOT_ERRORS)}
            errors.update(stats["errors"])
            errors["not_sent"] = stats.get("not_sent", 0)
            errors["filtered"] = stats.get("filtered", 0)
            for code, count in errors.items():
                failed.add_metric([*labels, code], count)
            queued.add_metric(labels, stats["pending"])
            age.add_metric(labels, oldest)
        yield from (delivered, failed, queued, age)

    def _families(self) -> tuple[Any, Any, Any, Any]:
        core = self._core
        return (
            core.CounterMetricFamily(
                "cdp_messages_delivered",
                "Messages the CDP accepted (a 2xx answer to the batch that held them).",
                labels=LABELS,
            ),
            core.CounterMetricFamily(
                "cdp_messages_failed",
                "Messages not delivered, by reason: every error code, plus filtered "
                "(dropped by before_send) and not_sent (send=False).",
                labels=(*LABELS, "code"),
            ),
            core.GaugeMetricFamily(
                "cdp_queue_messages",
                "Messages waiting to be delivered: queued, or in a request being sent or retried.",
                labels=LABELS,
            ),
            core.GaugeMetricFamily(
                "cdp_queue_oldest_age_seconds",
                "How long the oldest message waiting to be delivered has waited (an upper "
                "bound, within one batch interval); 0 when none waits.",
                labels=LABELS,
            ),
        )


def register_prometheus(registry: CollectorRegistry | None = None) -> CdpCollector:
    """Expose every cdp_logging client's delivery on *registry* (default: the global one).

    Registering on the same registry again returns the collector already there (and
    registers it again if it was unregistered). The
    registry is read only when scraped: ``prometheus_client.start_http_server``, or
    ``generate_latest(registry)`` from a web framework's route.

    Raises:
        ImportError: prometheus_client is not installed (``cdp_logging[prometheus]``).

    .. versionadded:: 0.2.0
    """
    _prometheus()
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    with _registering:
        collector = _registered.get(registry) or CdpCollector()
        try:
            registry.register(collector)
        except ValueError:  # its names are taken: by this collector, or by another one
            if _registered.get(registry) is not collector:
                raise
        _registered[registry] = collector
        return collector
