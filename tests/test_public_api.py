"""The public surface: ``utils.port_manager`` is the API (cheap to import, every name
real), ``utils.errors`` the error contract, and imports flow one way."""

from __future__ import annotations

import ast
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT
from utils import port_manager

WORK_MODULES = (
    "utils._binding",
    "utils._holders",
    "utils._stopping",
    "utils._signals",
    "utils._windows",
    "utils._waiting",
    "utils._compat",
    "utils._linux",
    "utils._generic",
)


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in port_manager.__all__:
        assert getattr(port_manager, name) is not None, name
    assert set(port_manager.__all__) <= set(dir(port_manager))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_function"):
        port_manager.no_such_function  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_api_loads_none_of_the_work() -> None:
    """The values, records and defaults only: the rest loads on first use."""
    probe = "import sys, utils.port_manager as p; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(  # -S: no site hooks (coverage's own imports would show up)
        [PYTHON, "-S", "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(result.stdout.split())
    assert "utils.port_manager" in loaded
    assert not loaded & set(WORK_MODULES), loaded & set(WORK_MODULES)
    assert "socket" not in loaded and "psutil" not in loaded


def _utils_imports(path: str) -> set[str]:
    """The utils modules (and ``utils.NAME`` of ``from utils import NAME``) a file imports."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "utils":
            found.update(f"utils.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("utils", "backend")}


def test_imports_flow_one_way() -> None:
    """backend/ uses the port tools only through the API, the error contract and the
    renderer; utils/ never imports backend/ (the front ends sit above both)."""
    allowed = {"utils.port_manager", "utils.errors", "utils.render", "utils.__version__"}
    for path in sorted(ROOT.glob("backend/**/*.py")):
        relative = str(path.relative_to(ROOT))
        used = {name for name in _utils_imports(relative) if name.startswith("utils")}
        assert used <= allowed, f"{relative} imports {sorted(used - allowed)}"
        text = path.read_text(encoding="utf-8")
        for contract in ("InvalidValue", "EXIT_", "guarded", "error_line"):
            assert f"from utils.port_manager import {contract}" not in text, (relative, contract)
            assert not any(
                line.startswith("from utils.port_manager import") and contract in line
                for line in text.splitlines()
            ), (relative, contract)
    for path in sorted(ROOT.glob("utils/*.py")):
        relative = str(path.relative_to(ROOT))
        used = _utils_imports(relative)
        assert not any(name.startswith("backend") for name in used), relative
