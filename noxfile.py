"""nox sessions for giants.

    nox -s tests            core + every package + integration, in one environment
    nox -s tests-<name>     one package (or ``core``) alone, with only its declared deps
    nox -s sim -- [NAME]    long simulation sweeps (GIANTS_SEEDS scales every sweep)
    nox -s lint             ruff
    nox -s typecheck        mypy (strict on giants.core)
    nox -s demo -- [NAME]   ``giants demo`` on real processes
    nox -s bench -- NAME    one system's benchmark table (``core`` for the core)
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "--import-mode=importlib", "-rfE"]


def _install_all(session: nox.Session) -> None:
    args = ["-e", "common[test]"]
    for name in PACKAGES:
        args += ["-e", f"packages/{name}[test]"]
    session.install(*args)
    if (ROOT / "integration" / "requirements.txt").exists():
        session.install("-r", "integration/requirements.txt")


def _test_dirs() -> list[str]:
    dirs = ["common/tests"]
    dirs += [f"packages/{n}/tests" for n in PACKAGES if (ROOT / "packages" / n / "tests").is_dir()]
    if any((ROOT / "integration").glob("test_*.py")):
        dirs.append("integration")
    return dirs


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Everything: core, every package, integration."""
    _install_all(session)
    session.run("pytest", *PYTEST_ARGS, *_test_dirs(), *session.posargs)


def _sibling_deps(name: str, seen: set[str] | None = None) -> list[str]:
    """The monorepo packages ``name`` declares (dependencies and its test extra),
    transitively: they are not on any index, so they install from their directories."""
    import tomllib

    seen = seen if seen is not None else {name}
    project = tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"]
    declared = list(project.get("dependencies", []))
    declared += project.get("optional-dependencies", {}).get("test", [])
    out = []
    for req in declared:
        dist = req.split(";")[0].strip().split("[")[0]
        for op in "<>=!~ ":
            dist = dist.split(op)[0]
        sibling = dist.removeprefix("giants-") if dist.startswith("giants-") else None
        if sibling and sibling in PACKAGES and sibling not in seen:
            seen.add(sibling)
            out += [sibling, *_sibling_deps(sibling, seen)]
    return out


def _package_session(name: str) -> None:
    path = "common" if name == "core" else f"packages/{name}"

    @nox.session(name=f"tests-{name}", python="3.11")
    def one(session: nox.Session) -> None:
        deps = ["-e", "common[test]"]
        if name != "core":
            for sibling in _sibling_deps(name):
                deps += ["-e", f"packages/{sibling}"]
            deps += ["-e", f"{path}[test]"]
        session.install(*deps)
        session.run("pytest", *PYTEST_ARGS, f"{path}/tests", *session.posargs)


for _name in ["core", *PACKAGES]:
    _package_session(_name)


@nox.session(python="3.11")
def sim(session: nox.Session) -> None:
    """Long seeded simulation sweeps: ``nox -s sim -- raft`` (default: all)."""
    _install_all(session)
    targets = [f"packages/{n}/tests" for n in session.posargs] or _test_dirs()
    env = {"GIANTS_SEEDS": os.environ.get("GIANTS_SEEDS", "1000")}
    session.run("pytest", *PYTEST_ARGS, "-m", "sim", *targets, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "common", "packages", "integration", "noxfile.py", "dev.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("mypy>=1.11", "-e", "common[test]")
    session.run("mypy", "--config-file", "mypy.ini", "-p", "giants.core")


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """``giants demo`` (all systems) or ``nox -s demo -- raft``."""
    _install_all(session)
    session.run("giants", "demo", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """``nox -s bench -- NAME``: run that system's benchmarks and print the table."""
    if not session.posargs:
        session.error(f"name a system: core, {', '.join(PACKAGES)}")
    name, *rest = session.posargs
    _install_all(session)
    bench_dir = ROOT / ("common" if name == "core" else f"packages/{name}") / "benchmarks"
    req = bench_dir / "requirements.txt"
    if req.exists():
        session.install("-r", str(req))
    scripts = sorted(bench_dir.glob("bench_*.py"))
    if not scripts:
        session.error(f"no benchmarks in {bench_dir}")
    for script in scripts:
        session.run("python", str(script), *rest)
