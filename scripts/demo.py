"""The demo: an app tracks six calls by logging, exits, and we show what arrived."""

from __future__ import annotations

from _bootstrap import ROOT, ensure, run


def main() -> None:
    py = ensure("")
    run(py, ROOT / "examples" / "run_demo.py")


if __name__ == "__main__":
    main()
