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


def ensure(extras: str = "dev") -> Path:
    """Return the venv's python, creating the venv and installing the project if needed."""
    stamp = VENV / f".cdp-installed-{extras}"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python().exists():
        print(f"creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"installing cdp_logging[{extras}] into {VENV}", flush=True)
        target = f"{ROOT}[{extras}]" if extras else str(ROOT)
        subprocess.run(  # noqa: S603
            [
                str(python()),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-e",
                target,
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
