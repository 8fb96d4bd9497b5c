"""Build the documentation site into docs/_build/html, warnings as errors.

Usage: python3 scripts/docs.py  (installs Sphinx, MyST and furo into the dev venv first)
"""

from __future__ import annotations

import shutil

from _bootstrap import ROOT, ensure, run


def main() -> None:
    py = ensure("dev")
    out = ROOT / "docs" / "_build"
    shutil.rmtree(out, ignore_errors=True)  # a stale page must not hide a broken one
    run(
        py,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        ROOT / "docs",
        out / "html",
    )
    print(f"built {out / 'html' / 'index.html'}")


if __name__ == "__main__":
    main()
