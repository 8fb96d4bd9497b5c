"""The benchmark: cdp_logging beside the reference SDK and the logging floor, in one run.

Usage: python3 scripts/bench.py [options of benchmarks/run.py]  (installs the reference SDK
into .venv-bench, then runs benchmarks/run.py; --help lists the options)
"""

from __future__ import annotations

import os
import sys

import _bootstrap


def main() -> None:
    _bootstrap.VENV = _bootstrap.ROOT / ".venv-bench"
    py = _bootstrap.ensure("bench")
    run = str(_bootstrap.ROOT / "benchmarks" / "run.py")
    os.execv(str(py), [str(py), run, *sys.argv[1:]])  # noqa: S606 - our own interpreter


if __name__ == "__main__":
    main()
