"""Where a dev start spends its time until the first 200 on ``/health``.

    python -m benchmarks.start_profile [--runs 7] [--top 15]

Starts each command of the ``serve`` benchmark ``--runs`` times, one after the other, with a
probe (a ``sitecustomize`` module on ``PYTHONPATH``, in every process of the tree) that
notes, by an audit hook, when each process started and when a few modules began to import
and the port was bound; prints the median of each milestone, in ms since the command
was started. Then runs ``invoke serve.dev`` once with ``-X importtime`` and lists what the
supervisor imports before uvicorn spawns its worker, and what the worker imports, by
cumulative time. Every process started is stopped by pid (``servers.ServerTree``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import servers
from benchmarks.scenarios import READY_TIMEOUT, free_port

ROOT = servers.repo_root()
STARTS = {
    "invoke serve.dev": ["-m", "invoke", "serve.dev", "--port", "{port}"],
    "python -m backend --dev": ["-m", "backend", "--dev", "--port", "{port}"],
    "bare uvicorn --reload": [
        *("-m", "uvicorn", "backend.app:create_app", "--factory", "--reload"),
        *("--reload-dir", "backend", "--port", "{port}"),
    ],
    "fastapi dev": ["-m", "fastapi", "dev", "--reload-dir", "backend", "--port", "{port}"],
}
MODULES = ("invoke", "backend.server", "pydantic", "uvicorn", "fastapi", "backend.app")
PROBE = """\
import os, sys, time
_path = os.environ.get("START_PROFILE_LOG")
if _path:
    _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    _role = "worker" if "--multiprocessing-fork" in sys.argv else (
        "helper" if sys.argv[:1] == ["-c"] else "supervisor")
    _seen = set()

    def _note(what):
        os.write(_fd, f"{time.monotonic():.6f} {_role} {what}\\n".encode())

    def _hook(event, args):
        if event == "import" and args[0] in MODULES and args[0] not in _seen:
            _seen.add(args[0])
            _note("imports " + args[0])
        elif event == "socket.bind" and "bind" not in _seen:
            _seen.add("bind")
            _note("binds its port")

    if _role != "helper":
        _note("Python started")
        sys.addaudithook(_hook)
"""


def _argv(template: list[str], port: int) -> list[str]:
    return [sys.executable, *(part.format(port=port) for part in template)]


def timeline(template: list[str], probe_dir: Path) -> dict[str, float]:
    """One start: milestone -> ms since the command was started (to the first 200)."""
    log = probe_dir / "milestones.log"
    log.unlink(missing_ok=True)
    path = os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "START_PROFILE_LOG": str(log)}
    port = free_port()
    start = time.monotonic()
    with servers.ServerTree(_argv(template, port), cwd=ROOT, env=env) as server:
        if not servers.wait_http_ok(port, "/health", READY_TIMEOUT, server):
            raise RuntimeError(f"{template} never answered:\n{server.output()}")
        answered = time.monotonic()
    servers.wait_bindable(port, 30.0)
    milestones: dict[str, float] = {}
    for line in log.read_text().splitlines():
        stamp, role, what = line.split(" ", 2)
        if float(stamp) <= answered:
            milestones.setdefault(f"{role} {what}", (float(stamp) - start) * 1000)
    milestones["first 200 on /health"] = (answered - start) * 1000
    return milestones


def timelines(runs: int) -> str:
    """The median of each milestone of every start, runs alternated."""
    found: dict[str, dict[str, list[float]]] = {name: {} for name in STARTS}
    with tempfile.TemporaryDirectory() as scratch:
        probe_dir = Path(scratch)
        (probe_dir / "sitecustomize.py").write_text(f"MODULES = {MODULES!r}\n{PROBE}")
        for _ in range(runs):
            for name, template in STARTS.items():
                for milestone, ms in timeline(template, probe_dir).items():
                    found[name].setdefault(milestone, []).append(ms)
    parts = [f"ms since the command started, median of {runs} runs (min), load {_load()}"]
    for name, milestones in found.items():
        rows = sorted((statistics.median(v), min(v), k) for k, v in milestones.items())
        parts.append(f"\n{name}")
        parts += [f"  {median:7.1f} ({low:6.1f})  {what}" for median, low, what in rows]
    return "\n".join(parts)


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _imports(lines: list[str], top: int) -> list[str]:
    rows: list[tuple[int, int, str]] = []
    for line in lines:
        if line.startswith("import time:") and "[us]" not in line:
            self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
            if len(name) - len(name.lstrip()) <= 3:  # top-level and one level down
                rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    total = sum(cumulative for cumulative, _, name in rows if not name.startswith("  "))
    rows.sort(reverse=True)
    shown = [f"  {c / 1000:8.1f} {s / 1000:7.1f}  {name}" for c, s, name in rows[:top]]
    return [f"  {total / 1000:.1f} ms in total; cumulative ms, own ms, module:", *shown]


def import_times(top: int) -> str:
    """``-X importtime`` of ``invoke serve.dev``: the supervisor's imports before the worker
    is spawned, then the worker's (split where uvicorn logs that its reloader started)."""
    port = free_port()
    argv = [sys.executable, "-X", "importtime", *_argv(STARTS["invoke serve.dev"], port)[1:]]
    with servers.ServerTree(argv, cwd=ROOT, env=dict(os.environ)) as server:
        if not servers.wait_http_ok(port, "/health", READY_TIMEOUT, server):
            raise RuntimeError(f"invoke serve.dev never answered:\n{server.output()}")
        lines = server.output(limit=10**7).splitlines()
    servers.wait_bindable(port, 30.0)
    split = next((i for i, line in enumerate(lines) if "Started reloader" in line), len(lines))
    return "\n".join(
        [
            "invoke serve.dev -X importtime: the supervisor, before it spawns the worker",
            *_imports(lines[:split], top),
            "the worker (and multiprocessing's resource tracker), until the first 200",
            *_imports(lines[split:], top),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.start_profile", description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    print(timelines(args.runs))
    print()
    print(import_times(args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
