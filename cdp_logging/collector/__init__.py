"""A local collector that speaks the Segment / Customer.io HTTP APIs and analytics.js's.

It serves the library's tests (on 127.0.0.1) and the demo. It imports nothing from
the sending side of cdp_logging, only the protocol's rules, so a bug in the client
cannot hide itself by being shared with the server that checks it.

``cdp-logging collect`` runs one from the command line (``python -m
cdp_logging.collector`` too), and ``GET /`` on it is a live viewer of what arrives.
"""

from __future__ import annotations

from ._collector import Collector
from ._faults import Fault, FaultKind, FaultPlan
from ._store import RequestRecord, StoredEvent

__all__ = ["Collector", "Fault", "FaultKind", "FaultPlan", "RequestRecord", "StoredEvent"]
