"""``python -m cdp_logging``: the ``cdp-logging`` command, for when scripts are not on PATH."""

from __future__ import annotations

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
