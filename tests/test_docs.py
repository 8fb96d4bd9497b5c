"""Every ```python block of the documentation runs, against the project's own collector.

A page's blocks run in order in one fresh interpreter, as a reader pasting them in turn
would, with ``CDP_HOST`` and ``CDP_WRITE_KEY`` in the environment (a collector on
127.0.0.1), in a folder holding the example tracking plan, with examples/ importable
(its generated module); the interpreter then exits, so logging's shutdown delivers.
The page passes when the interpreter exits 0 and the collector took every message it
was sent. A block that cannot run on its own (a settings file, a fragment of a larger
app) is fenced as ``{code-block} python`` instead, which Sphinx shows the same way;
the docs are written so that such blocks are the exception.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from cdp_logging.collector import Collector

from .conftest import ROOT, WRITE_KEY, run_python

DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def pages_with_code() -> list[Path]:
    return sorted(page for page in DOCS.glob("*.md") if BLOCK.search(page.read_text()))


def test_the_docs_have_examples_to_run() -> None:
    """If the fence convention changed, nothing below would run: that must fail here."""
    assert len(pages_with_code()) >= 8


@pytest.mark.parametrize("page", pages_with_code(), ids=lambda page: page.name)
def test_every_example_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    blocks = BLOCK.findall(page.read_text())
    shutil.copy(ROOT / "examples" / "tracking-plan.json", tmp_path)
    preamble = (
        "import os, sys\n"
        f"os.chdir({str(tmp_path)!r})\n"
        f"sys.path.insert(0, {str(ROOT / 'examples')!r})\n"
    )
    code = preamble + "\n".join(
        f"# --- block {n} of {page.name}\n{block}" for n, block in enumerate(blocks, 1)
    )
    with Collector() as collector:  # any key: the examples use their own, as readers do
        done = run_python(
            code,
            env={
                "CDP_HOST": collector.url,
                "CDP_WRITE_KEY": WRITE_KEY,
                # A safety net: an example that names another host gets a dead proxy,
                # never the internet.
                "HTTP_PROXY": "http://127.0.0.1:9",
                "HTTPS_PROXY": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost",
            },
            timeout=120,
        )
        assert 0 == done.returncode, f"{page.name}:\n{done.stderr}"
        refused = [event for event in collector.events() if not event.accepted or event.problems]
        assert [] == refused
    print(done.stdout, file=sys.stdout)
