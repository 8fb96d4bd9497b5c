"""Make (once) and reuse a virtualenv with the project installed: python3 is all it needs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("CDP_VENV", ROOT / ".venv"))


def python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure(group: str = "dev") -> Path:
    """Return the venv's python, creating the venv and installing the project if needed.

    *group* names a requirements file in requirements/ (the tools of one chore: tests,
    benchmarks) installed beside the project, editable; "" installs the project alone.
    """
    requirements = ROOT / "requirements" / f"{group}.txt" if group else None
    stamp = VENV / f".cdp-installed-{group or 'project'}"
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + (requirements.read_bytes() if requirements is not None else b"")
    ).hexdigest()
    if not python().exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(
            f"installing cdp_logging{f' and requirements/{group}.txt' if group else ''} "
            f"into {VENV}",
            flush=True,
        )
        extra = ["-r", str(requirements)] if requirements is not None else []
        subprocess.run(  # noqa: S603
            [
                str(python()),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                str(ROOT),
                *extra,
            ],
            check=True,
        )
        stamp.write_text(wanted)
    return python()


def run(*command: str | Path) -> None:
    print("$", " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, check=False)  # noqa: S603
    if result.returncode:
        sys.exit(result.returncode)
