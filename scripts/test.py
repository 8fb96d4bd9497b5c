"""The whole check: lint, types, the docs, then every test.

Usage: python3 scripts/test.py [pytest args]

On a fresh Debian machine as root it installs what the tests need and pip cannot
(chromium for the browser tests, redis-server for the fleet buffer's, curl for the HTTP
APIs' own examples, Node.js and npm for the Node SDKs); elsewhere it names exactly what
is missing and how to get it.
``.ci/run`` runs this same command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from _bootstrap import ROOT, ensure, run

# command the tests run -> the Debian package that provides it
SYSTEM_TOOLS = {
    "chromium": "chromium",
    "redis-server": "redis-server",
    "curl": "curl",
    "node": "nodejs",
    "npm": "npm",
}


def ensure_system_tools() -> None:
    missing = sorted({pkg for command, pkg in SYSTEM_TOOLS.items() if not shutil.which(command)})
    if not missing:
        return
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_install:
        sys.exit(
            "the tests need these programs, which pip cannot install: "
            f"{', '.join(missing)}.\nOn Debian or Ubuntu: "
            f"sudo apt-get install -y {' '.join(missing)}"
        )
    print(f"installing Debian's {' '.join(missing)} for the tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = shutil.which("apt-get") or "apt-get"
    subprocess.run([apt, "update", "-qq"], check=True, env=env)  # noqa: S603
    subprocess.run(  # noqa: S603
        [apt, "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL
    )


def main() -> None:
    ensure_system_tools()
    py = ensure("dev")
    run(py, "-m", "ruff", "check", ".")
    run(py, "-m", "ruff", "format", "--check", ".")
    run(py, "-m", "mypy")
    run(py, ROOT / "scripts" / "docs.py")
    # One worker per core, a test file per worker at a time (loadfile): files keep their
    # module fixtures (a browser, a server) and their order, and most tests wait on
    # sockets and child processes, so two workers on two cores halve the wall time.
    run(py, "-m", "pytest", "-n", "auto", "--dist", "loadfile", *(sys.argv[1:] or ["-q"]))


if __name__ == "__main__":
    main()
