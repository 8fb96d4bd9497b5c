"""The whole check: lint, types, then every test. Usage: python3 scripts/test.py [pytest args]"""

from __future__ import annotations

import sys

from _bootstrap import ensure, run


def main() -> None:
    py = ensure("dev")
    run(py, "-m", "ruff", "check", ".")
    run(py, "-m", "ruff", "format", "--check", ".")
    run(py, "-m", "mypy")
    run(py, "-m", "pytest", *(sys.argv[1:] or ["-q"]))


if __name__ == "__main__":
    main()
