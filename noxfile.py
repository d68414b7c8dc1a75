"""Nox sessions: tests on every supported Python, lint, typecheck (and an opt-in bench).

    nox                       # the default sessions: tests (each Python), tests_generic,
                              # lint, typecheck
    nox -s tests              # the CI test command (see README)
    nox -s tests-3.12 -- -k cleanup -x
    nox -s tests_generic      # the holder and cleanup tests again, through psutil
    nox -s lint typecheck
    nox -s bench -- ARGS      # not a default session; runs `python -m benchmarks`

The Pythons come from pyproject.toml, where they are written once: the tests run on every
`Programming Language :: Python :: 3.X` classifier, the other sessions on
`[tool.portkeeper.dev] python`. Interpreters are never downloaded: each must already be
installed and discoverable (on PATH or via pyenv). A missing interpreter is an error, not a skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)  # from the classifiers
DEFAULT_PYTHON: str = PYPROJECT["tool"]["portkeeper"]["dev"]["python"]
REQUIREMENTS_DEV = "requirements-dev.txt"

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
nox.options.reuse_venv = "yes"

# Environment for every command run inside a session: never fetch an interpreter.
NO_DOWNLOADS = {"UV_PYTHON_DOWNLOADS": "never"}


def _install_dev(session: nox.Session) -> None:
    session.install("-r", REQUIREMENTS_DEV, env=NO_DOWNLOADS)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the pytest suite with coverage, two workers per core (extra arguments go to pytest)."""
    _install_dev(session)
    session.run(
        "pytest",
        # Two workers per core (pytest-xdist): the tests are independent by design (ports
        # from the plugin's registry, processes stopped by pid) and much of their time is
        # waiting on the servers and processes they start. Measured on 2 cores, nox -s
        # tests-3.11: 133 s with 2 workers, 92 s with 4, 103 s with 6; work stealing
        # (an idle worker takes queued tests from a busy one) 84 s with 4.
        f"--numprocesses={2 * (os.cpu_count() or 1)}",
        "--dist=worksteal",
        "--cov",
        "--cov-report=term-missing:skip-covered",
        *session.posargs,
        env=NO_DOWNLOADS,
    )


# The tests of finding and stopping holders. On Linux `nox -s tests` runs them through the
# fast reader (netlink and /proc) - a few of them through psutil too; this session runs
# all of them through psutil, the reader macOS and Windows use, so the generic path is
# tested on every change where the Linux one is (README, "Platforms and testing").
HOLDER_TESTS = (
    "tests/test_cleanup.py",
    "tests/test_cleanup_real_world.py",
    "tests/test_check_find_reserve.py",
    "tests/test_uvicorn.py",
)


@nox.session(python=DEFAULT_PYTHON)
def tests_generic(session: nox.Session) -> None:
    """The holder and cleanup tests through the generic reader (PORT_MANAGER_READER=psutil)."""
    if not sys.platform.startswith("linux"):
        session.skip("psutil is this system's only reader: nox -s tests runs these tests so")
    _install_dev(session)
    reader = {**NO_DOWNLOADS, "PORT_MANAGER_READER": "psutil"}
    session.run("pytest", "--numprocesses=auto", *HOLDER_TESTS, *session.posargs, env=reader)


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
    """Type-check with mypy --strict what [tool.mypy] files lists (extra arguments go to mypy)."""
    _install_dev(session)
    session.run("mypy", "--strict", *session.posargs)


# Not a default session: benchmarks are slow and noisy, run them on purpose only.
@nox.session(python=DEFAULT_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Opt-in: run `python -m benchmarks` (extra arguments are passed through)."""
    _install_dev(session)
    session.run("python", "-m", "benchmarks", *session.posargs, env=NO_DOWNLOADS)
