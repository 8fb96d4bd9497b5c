"""A local collector that speaks the CDP batch protocol, for tests and the demo.

It imports nothing from the sender side of cdp_logging (only the protocol's rules), so
a bug there cannot hide a bug in the client.
"""

from __future__ import annotations

from ._faults import Fault, FaultPlan
from ._server import Collector
from ._store import RequestRecord

__all__ = ["Collector", "Fault", "FaultPlan", "RequestRecord"]
