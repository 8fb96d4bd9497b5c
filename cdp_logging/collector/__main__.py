"""``python -m cdp_logging.collector``: the ``collect`` command, in memory by default.

Kept as an alias of ``cdp-logging collect`` for the scripts and docs that already use
it; see :mod:`cdp_logging.collector._cli`.
"""

from __future__ import annotations

import sys

from ._cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
