#!/usr/bin/env python3
"""Bootstrap for the two quick-start commands: ``python3 dev.py demo|tests|SESSION``.

Needs only Python 3.11+. Creates ``.venv-nox`` holding nox and uv (once), then runs
``nox -s SESSION -- ARGS``. Any nox session name works (``tests-raft``, ``bench``, ...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".venv-nox"
BIN = TOOLS / ("Scripts" if os.name == "nt" else "bin")


def ensure_tools() -> None:
    if (BIN / "nox").exists() and (BIN / "uv").exists():
        return
    print("dev.py: creating .venv-nox with nox and uv ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "nox>=2024.10.9", "uv>=0.4"], check=True)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - say so clearly on an older Python
        print("giants needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    session, rest = argv[0], argv[1:]
    ensure_tools()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "nox"), "-f", str(ROOT / "noxfile.py"), "-s", session]
    if rest:
        cmd += ["--", *rest]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
