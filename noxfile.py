"""Nox sessions: tests on every supported Python, lint, typecheck (and an opt-in bench).

    nox                       # default: tests (3.10-3.13), lint, typecheck
    nox -s tests              # the CI test command (see README)
    nox -s tests-3.12 -- -k cleanup -x
    nox -s lint typecheck
    nox -s bench -- ARGS      # not in the default list; runs `python -m benchmarks`

Interpreters are never downloaded: every Python listed below must already be installed
and discoverable (on PATH or via pyenv). A missing interpreter is an error, not a skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_PYTHON = "3.11"
REQUIREMENTS_DEV = "requirements-dev.txt"
# Everything that `mypy --strict` checks; kept in sync with [tool.mypy] files in pyproject.toml.
TYPED_TARGETS = ["utils", "backend", "tasks.py", "noxfile.py"]

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint", "typecheck"]

# Environment for every command run inside a session: never fetch an interpreter.
NO_DOWNLOADS = {"UV_PYTHON_DOWNLOADS": "never"}


def _install_dev(session: nox.Session) -> None:
    session.install("-r", REQUIREMENTS_DEV, env=NO_DOWNLOADS)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the pytest suite with coverage (extra arguments go to pytest)."""
    _install_dev(session)
    session.run(
        "pytest",
        "--cov",
        "--cov-report=term-missing:skip-covered",
        *session.posargs,
        env=NO_DOWNLOADS,
    )


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff, the YAML files and the Dockerfile (no changes)."""
    _install_dev(session)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")
    session.run("yamllint", "--strict", ".")  # configuration: .yamllint
    if sys.platform == "win32":
        session.warn("hadolint: no Windows build on PyPI; Dockerfile not linted")
    else:
        session.run("hadolint", "Dockerfile")


@nox.session(python=DEFAULT_PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check the library, backend, tasks and this file with mypy --strict."""
    _install_dev(session)
    session.run("mypy", "--strict", *session.posargs, *TYPED_TARGETS)


# NOT in nox.options.sessions: benchmarks are slow and noisy, run them on purpose only.
@nox.session(python=DEFAULT_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Opt-in: run `python -m benchmarks` (extra arguments are passed through)."""
    if not (ROOT / "benchmarks").is_dir():
        session.skip("no benchmarks/ package yet")
    _install_dev(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=NO_DOWNLOADS)
