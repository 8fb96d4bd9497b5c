"""Sphinx configuration: MyST pages, the API reference from the docstrings, furo.

Built by ``python3 scripts/docs.py`` with warnings as errors. No intersphinx: the build
must work with no network but the package index.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cdp_logging import __version__  # noqa: E402

project = "cdp_logging"
author = "the cdp_logging maintainers"
copyright = "2026, the cdp_logging maintainers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The docstrings use Google style (Args/Returns/Raises), as structlog's do.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"cdp_logging {version}"
html_static_path: list[str] = []
