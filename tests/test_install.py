"""``pip install .`` / ``pipx install .``: the wheel, its metadata and the installed commands.

The wheel is built by pip as a user's ``pip install .`` builds it (build isolation: the
setuptools of ``[build-system]`` comes from the package index), from a copy of the working
tree so that the build's ``build/`` and ``*.egg-info`` never land in the checkout. It is
installed with ``--no-deps`` into a fresh virtualenv whose dependencies are this test
environment's site-packages (a ``.pth`` file): what is proved is the packaging of this
project (files, metadata, console script, ``python -m backend``), not PyPI's releases of
FastAPI. Every command of the installed copy runs outside the checkout, without
PYTHONPATH, so only the installed ``utils`` and ``backend`` can be imported.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, Processes, deadline_poll, fresh_port

# Top-level entries of the working tree a build never needs (environments, caches, VCS).
NOT_SOURCE = {"build", "dist", "venv", "env"}
SETTINGS = ("PORT", "HOST", "WEB_CONCURRENCY", "LOG_LEVEL", "APP_ENV", "TOKEN_ENCRYPTION_KEYS")


def copy_working_tree(destination: Path) -> Path:
    """The working tree as it is now (tracked or not), without environments and caches."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}
        if Path(directory) == ROOT:
            skipped |= {name for name in names if name.startswith(".") or name in NOT_SOURCE}
        return skipped

    shutil.copytree(ROOT, destination, ignore=ignore)
    return destination


def outside_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH, a virtualenv or backend settings of its own."""
    dropped = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV", *SETTINGS}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    return {**env, "NO_COLOR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def run(
    args: list[str | Path], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=outside_env(),
    )
    assert result.returncode == 0, (
        f"{args} exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def dependency_dirs() -> list[str]:
    """Where this environment's third-party packages live (never the checkout itself)."""
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    dirs.append(sysconfig.get_paths()["platlib"])
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    unique = dict.fromkeys(os.path.realpath(d) for d in dirs if os.path.isdir(d))
    return [d for d in unique if Path(d) != ROOT.resolve()]


def runtime_requirements() -> set[str]:
    """requirements.txt's requirements, spaces removed (the file has one per line)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {re.sub(r"\s+", "", line) for line in lines if line.strip() and not line.startswith("#")}


# The wheel and its venv take about 15 s of CPU to build: pytest-xdist's workers of one
# run share a single build (the first to claim it builds, the others wait for its result).
BUILD_SECONDS = 300.0


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built and installed into a fresh virtualenv, once per test run."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is a folder of the run's: their parent is the run's.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    done, failed = shared / "installed.json", shared / "installed.failed"
    try:
        os.close(os.open(shared / "installed.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another worker builds it: wait for its answer
        deadline_poll(lambda: done.exists() or failed.exists(), timeout=BUILD_SECONDS)
        assert not failed.exists(), failed.read_text()
        return {name: Path(path) for name, path in json.loads(done.read_text()).items()}
    try:
        paths = build_and_install(tmp_path_factory)
    except BaseException as error:
        failed.write_text(f"the shared build failed: {error!r}")
        raise
    done.write_text(json.dumps({name: str(path) for name, path in paths.items()}))
    return paths


def build_and_install(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the wheel and install it into a fresh virtualenv; paths of the results."""
    work = tmp_path_factory.mktemp("install")
    source = copy_working_tree(work / "source")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=work)  # with its own pip (ensurepip)
    bindir = Path(sysconfig.get_path("scripts", vars={"base": str(venv)}))
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    run([python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", work / "wheels", source], work)
    (wheel,) = (work / "wheels").glob("portkeeper-*.whl")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=work)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work)
    site_packages = Path(purelib.stdout.strip())
    (site_packages / "zz_test_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")
    elsewhere = work / "elsewhere"  # the working directory of every command: not the checkout
    elsewhere.mkdir()
    return {
        "source": source,
        "wheel": wheel,
        "venv": venv,
        "python": python,
        "bin": bindir,
        "site": site_packages,
        "cwd": elsewhere,
    }


def test_wheel_holds_utils_and_backend_only(installed: dict[str, Path]) -> None:
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        meta = wheel.read(metadata).decode()
        entry_points = metadata.replace("/METADATA", "/entry_points.txt")
        scripts = wheel.read(entry_points).decode() if entry_points in names else ""
    tops = {name.split("/")[0] for name in names}
    info = metadata.split("/")[0]
    assert tops == {"utils", "backend", info}, f"the wheel holds {sorted(tops)}"
    # Every module of the two packages, subpackages included (backend/services/...).
    source = installed["source"]
    expected = {
        path.relative_to(source).as_posix()
        for package in ("utils", "backend")
        for path in (source / package).rglob("*.py")
    }
    packed = {name for name in names if name.endswith(".py")}
    assert expected <= packed, f"missing from the wheel: {sorted(expected - packed)}"
    assert "backend/services/integrations/__init__.py" in packed
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    # The one version (utils.__version__, which the backend reports too).
    version = re.search(
        r"^__version__\s*=\s*[\"']([^\"']+)", (source / "utils/__init__.py").read_text(), re.M
    )
    assert version and f"\nVersion: {version.group(1)}\n" in meta
    # Runtime dependencies are requirements.txt, exactly; none of requirements-dev.txt's tools.
    requires = {
        re.sub(r"\s+", "", line.split(":", 1)[1])
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert requires == runtime_requirements()
    console = re.search(r"^portkeeper\s*=\s*utils\.port_cli:main\s*$", scripts, re.MULTILINE)
    assert console, f"no `portkeeper = utils.port_cli:main` console script: {scripts!r}"


def test_installed_copy_is_what_python_imports(installed: dict[str, Path]) -> None:
    assert ROOT.resolve() not in installed["cwd"].resolve().parents
    code = "import backend, utils, json; print(json.dumps([backend.__file__, utils.__file__]))"
    result = run([installed["python"], "-c", code], cwd=installed["cwd"])
    for where in json.loads(result.stdout):
        assert Path(where).resolve().is_relative_to(installed["site"].resolve()), where


def test_portkeeper_command_runs_outside_the_checkout(installed: dict[str, Path]) -> None:
    command = installed["bin"] / "portkeeper"
    assert command.is_file(), f"no console script in {installed['bin']}"
    usage = run([command, "--help"], cwd=installed["cwd"])
    assert "check" in usage.stdout and "cleanup" in usage.stdout, usage.stdout
    port = fresh_port()
    checked = run([command, "check", str(port)], cwd=installed["cwd"])  # exit 0: free
    assert str(port) in checked.stdout, checked.stdout


def test_installed_backend_serves_from_the_installed_package(
    installed: dict[str, Path], processes: Processes, tmp_path: Path
) -> None:
    python = installed["python"]
    usage = run([python, "-m", "backend", "--help"], cwd=installed["cwd"])
    assert "--production" in usage.stdout, usage.stdout
    port = fresh_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = processes.start(
            [str(python), "-m", "backend", "--dev", "--no-reload", "--port", str(port)],
            cwd=installed["cwd"],
            env=outside_env(DATA_DIR=str(tmp_path / "data")),
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def status(path: str) -> int | None:
        if server.poll() is not None:
            pytest.fail(
                f"the installed backend exited with {server.returncode}:\n{log.read_text()}"
            )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    deadline_poll(lambda: status("/health") == 200, timeout=30)
    assert status("/") == 307
