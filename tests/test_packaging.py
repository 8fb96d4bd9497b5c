"""Release hygiene: the sdist and the wheel build, render, install and ship no tests."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

from .conftest import ROOT

# What a user installs must hold the library alone, as the reference SDK's tests did not.
FORBIDDEN = ("tests/", "benchmarks/", "examples/", "conftest.py")


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_sdist_and_wheel(tmp_path: Path) -> None:
    """Both artifacts build, pass twine check, carry no tests, and the wheel installs."""
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, ROOT)
    # No deprecation on the way (the TOML-table license stops working in 2027).
    assert "Deprecat" not in built, built
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
    with zipfile.ZipFile(wheel) as archive:
        [metadata_name] = [name for name in wheel_names if name.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    assert "License-Expression: MIT" in metadata
    # Extras are for users: the tools for developing are requirement files.
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, flags=re.MULTILINE))
    assert {"fast", "redis", "loguru", "prometheus", "celery", "oauth"} <= extras
    assert not extras & {"dev", "bench", "test", "docs"}, extras
    # The long description is shown on the package index, where relative links break.
    description = metadata.split("\n\n", 1)[1]
    relative = [
        link
        for link in re.findall(r"\]\(([^)]+)\)", description)
        if not link.startswith(("https://", "http://", "#"))
    ]
    assert [] == relative

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
