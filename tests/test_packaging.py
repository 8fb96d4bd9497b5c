"""Release hygiene: the sdist and the wheel build, render, install and ship no tests."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

from .conftest import ROOT

# What a user installs must hold the library alone, as the reference SDK's tests did not.
FORBIDDEN = ("tests/", "benchmarks/", "examples/", "conftest.py")


def run(*command: str | Path, cwd: Path = ROOT) -> None:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr


def test_sdist_and_wheel(tmp_path: Path) -> None:
    """Both artifacts build, pass twine check, carry no tests, and the wheel installs."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, ROOT)
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)

    with zipfile.ZipFile(wheel) as archive:
        wheel_names = archive.namelist()
    with tarfile.open(sdist) as archive:
        sdist_names = ["/".join(name.split("/")[1:]) for name in archive.getnames()]
    for name in wheel_names + sdist_names:
        assert not name.startswith(FORBIDDEN), name
        assert not name.endswith("conftest.py"), name
    assert any(name.endswith("LICENSE") for name in wheel_names)
    assert "cdp_logging/py.typed" in wheel_names

    clean = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(clean)
    python = clean / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    run(
        python,
        "-c",
        "import cdp_logging, cdp_logging.testing; print(cdp_logging.__version__)",
        cwd=tmp_path,
    )
