#!/usr/bin/env python3
"""The project's Pythons as pyproject.toml says them, for .ci/run and the GitHub workflow.

pyproject.toml writes them once: every supported version is a classifier
``Programming Language :: Python :: 3.X`` (noxfile.py reads the same ones with
``nox.project.python_versions``), and ``[tool.portkeeper.dev] python`` is the one that runs the
tooling. .ci/run needs them before anything is installed, so only the standard library is used
(tomllib; on Python 3.10 its backport tomli, which nox itself requires there).

    python3 .ci/pythons.py versions   # 3.10 3.11 3.12 3.13
    python3 .ci/pythons.py default    # 3.11
    python3 .ci/pythons.py github     # versions=[...] and default=..., for $GITHUB_OUTPUT
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
CLASSIFIER = "Programming Language :: Python :: "
USAGE = "usage: .ci/pythons.py versions|default|github"


class ConfigError(Exception):
    """pyproject.toml does not say the Pythons the way this script reads them."""


def load(path: Path = PYPROJECT) -> dict[str, Any]:
    """Parse pyproject.toml (tomllib from 3.11, tomli before)."""
    try:
        toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    except ModuleNotFoundError as exc:
        raise ConfigError("reading pyproject.toml needs Python 3.11+ (or tomli installed)") from exc
    try:
        data: dict[str, Any] = toml.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return data


def versions(pyproject: dict[str, Any]) -> list[str]:
    """Every ``3.X`` of the classifiers, oldest first (as nox.project.python_versions sorts)."""
    found = [
        classifier.removeprefix(CLASSIFIER)
        for classifier in pyproject.get("project", {}).get("classifiers", [])
        if classifier.startswith(CLASSIFIER + "3.")
    ]
    if not found:
        raise ConfigError(f"no '{CLASSIFIER}3.X' classifier in [project] classifiers")
    return sorted(found, key=lambda version: tuple(int(part) for part in version.split(".")))


def default(pyproject: dict[str, Any]) -> str:
    """The Python that runs the tooling; it must be one of the supported versions."""
    python = pyproject.get("tool", {}).get("portkeeper", {}).get("dev", {}).get("python")
    if not isinstance(python, str):
        raise ConfigError("no [tool.portkeeper.dev] python (the Python that runs the tooling)")
    if python not in versions(pyproject):
        raise ConfigError(
            f"[tool.portkeeper.dev] python = {python!r} is not a supported version "
            f"({' '.join(versions(pyproject))})"
        )
    return python


def main(argv: list[str]) -> int:
    """Print what was asked for; one ``error:`` line and exit 2 on bad input or config."""
    if len(argv) != 1 or argv[0] not in {"versions", "default", "github"}:
        print(f"error: {USAGE}", file=sys.stderr)
        return 2
    try:
        pyproject = load()
        supported, tooling = versions(pyproject), default(pyproject)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if argv[0] == "versions":
        print(" ".join(supported))
    elif argv[0] == "default":
        print(tooling)
    else:
        print(f"versions={json.dumps(supported)}")
        print(f"default={tooling}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
