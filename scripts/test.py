"""The whole check: lint, types, then every test. Usage: python3 scripts/test.py [pytest args]"""

from __future__ import annotations

import sys

from _bootstrap import ensure, run


def main() -> None:
    py = ensure("dev")
    run(py, "-m", "ruff", "check", ".")
    run(py, "-m", "ruff", "format", "--check", ".")
    run(py, "-m", "mypy")
    # One worker per core, a test file per worker at a time (loadfile): files keep their
    # module fixtures (a browser, a server) and their order, and most tests wait on
    # sockets and child processes, so two workers on two cores halve the wall time.
    run(py, "-m", "pytest", "-n", "auto", "--dist", "loadfile", *(sys.argv[1:] or ["-q"]))


if __name__ == "__main__":
    main()
