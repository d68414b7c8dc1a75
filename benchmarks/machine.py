"""What the numbers were measured on: machine, interpreter, packages and tool versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("psutil", "uvicorn", "fastapi", "invoke", "watchfiles")
TOOLS = {"ss": ["-V"], "lsof": ["-v"], "fuser": ["-V"]}


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_total_mib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _version_line(path: str, flag: str) -> str | None:
    try:
        done = subprocess.run([path, flag], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    revision = [line for line in lines if "revision" in line and "latest" not in line]
    found = revision or lines
    return found[0] if found else None


def machine_info(tools: dict[str, str | None]) -> dict[str, Any]:
    """Platform, Python, CPUs, memory, load average, package and tool versions."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_total_mib": memory_total_mib(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": packages,
        "tools": {
            name: (_version_line(path, TOOLS[name][0]) if path else None)
            for name, path in tools.items()
        },
        "port_manager_reader": os.environ.get("PORT_MANAGER_READER") or "default",
    }


def summary(info: dict[str, Any]) -> str:
    """One line: platform, Python, CPUs, memory."""
    memory = info.get("memory_total_mib")
    shown_memory = f", {memory / 1024:.1f} GiB RAM" if memory else ""
    return (
        f"{info['platform']}, {info['python']}, {info['cpu_count']} CPUs "
        f"({info['cpu_model'] or 'unknown model'}){shown_memory}"
    )


def precompile(root: Path) -> None:
    """Byte-compile the package measured, as an installed one is: with
    PYTHONDONTWRITEBYTECODE set (some CI and container images) every run would otherwise
    compile the modules it imports, and the compiler's time would count as the command's."""
    import compileall

    compileall.compile_dir(root / "utils", quiet=1)
