"""The comparisons of the issue, each measured in one alternating series.

Scenario names (for ``--only``): ``list``, ``check``, ``invoke``, ``cleanup``, ``serve``,
``plugin``.
Every port comes from ``utils.port_manager.find()``; every process started here is
stopped (by pid) before the scenario returns, even on error or Ctrl-C.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import procinfo, servers
from benchmarks.load import ListenerLoad
from benchmarks.results import Comparison, Measured, Target
from benchmarks.timing import Sample, Spawner, Trial, alternate

SCENARIOS = ("list", "check", "invoke", "cleanup", "serve", "plugin")
PLUGIN_TESTS = 200  # trivial tests per run: the leak check's cost per test is the diff / 200
PLUGIN_BUDGET_PER_TEST = 0.003  # "a few milliseconds per test" (issue 13)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SKIPPED = "skipped (not installed)"
TARGET_LOAD = 5000
CHECK_LIMITS = {"held": 1.5, "free": 2.0}  # check PORT vs fuser: a free port needs no scan
PORTS_FROM = 20000  # free_port(): below Linux's ephemeral range (32768 and up)
UVICORN_WORKERS = 3
READY_TIMEOUT = 90.0
SETTLE_SECONDS = 0.3  # after the workers answer, before the clock starts


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def find_tool(name: str) -> str | None:
    """The path of a system tool (also looking in the sbin directories), else None."""
    return shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)


def free_port() -> int:
    """A free port, from the library under test (as the issue asks), searched from a
    start of this run's own: test suites and servers on a shared machine crowd 8000."""
    from utils.port_manager import find

    return find(PORTS_FROM + os.getpid() % 10000)


@dataclass
class Context:
    """What every scenario needs: the interpreter, the repository, the run counts."""

    root: Path
    runs: int
    spawner: Spawner
    warmup: int = 1
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def port_manager(self, *args: str) -> list[str]:
        return [self.python, str(self.root / "utils" / "port_manager.py"), *args]

    def trial(self, argv: Sequence[str]) -> Trial:
        """A trial that runs ``argv`` from the repository root as a whole process."""
        return lambda: self.spawner.run(argv, cwd=self.root)


def _show(argv: Sequence[str], ctx: Context) -> str:
    """A command as a person would type it from the repository root."""
    shown = ["python" if arg == ctx.python else arg for arg in argv]
    return " ".join(
        os.path.relpath(a, ctx.root) if a.startswith(str(ctx.root)) else a for a in shown
    )


def _measure(
    comparison: Comparison,
    ctx: Context,
    commands: Sequence[tuple[Measured, Trial | None]],
) -> Comparison:
    """Alternate the trials that exist; a missing tool's row is marked skipped."""
    present = [(measured, trial) for measured, trial in commands if trial is not None]
    for measured, trial in commands:
        if trial is None:
            comparison.skipped.append(f"{measured.command}: {SKIPPED}")
    comparison.started_at = _now()
    samples = alternate([trial for _, trial in present], ctx.runs, ctx.warmup)
    for (measured, _), series in zip(present, samples, strict=True):
        measured.samples = series
    comparison.baselines = [m for m, trial in commands[1:] if trial is not None]
    return comparison


def _expect(comparison: Comparison, measured: Measured, statuses: set[int]) -> None:
    unexpected = set(measured.statuses) - statuses
    if unexpected:
        comparison.notes.append(
            f"{measured.label} exited with {sorted(unexpected)} (expected {sorted(statuses)})"
        )


def _condition(load: ListenerLoad) -> str:
    return (
        f"{load.listeners} listeners / {len(load.children)} processes "
        f"({procinfo.listener_count()} listening on the machine)"
    )


def compare_list(ctx: Context, load: ListenerLoad) -> list[Comparison]:
    """``list --all --json`` vs ``ss -ltnp``, ``lsof`` and a naive psutil script; the
    default ``list`` (this project's servers: the load is not the project's) vs ``ss``."""
    ss, lsof = find_tool("ss"), find_tool("lsof")
    subject_argv = ctx.port_manager("list", "--all", "--json")
    psutil_argv = [ctx.python, str(ctx.root / "benchmarks" / "psutil_listeners.py")]
    commands: list[tuple[Measured, Trial | None]] = [
        (Measured("list --all --json", _show(subject_argv, ctx)), ctx.trial(subject_argv)),
        (Measured("ss -ltnp", "ss -ltnp"), ctx.trial([ss, "-ltnp"]) if ss else None),
        (
            Measured("lsof", "lsof -nP -iTCP -sTCP:LISTEN"),
            ctx.trial([lsof, "-nP", "-iTCP", "-sTCP:LISTEN"]) if lsof else None,
        ),
        (Measured("psutil script", _show(psutil_argv, ctx)), ctx.trial(psutil_argv)),
    ]
    at_target = load.listeners == TARGET_LOAD
    comparison = Comparison(
        "list",
        "list --all --json vs ss / lsof / psutil",
        _condition(load),
        commands[0][0],
        targets=[Target("ratio", 1.0, "ss -ltnp"), Target("peak", 30.0)] if at_target else [],
    )
    _measure(comparison, ctx, commands)
    _expect(comparison, comparison.subject, {0})
    return [comparison, _compare_default_list(ctx, load, ss)]


def _compare_default_list(ctx: Context, load: ListenerLoad, ss: str | None) -> Comparison:
    """The default ``list``: only the processes that can be the project's have their fd
    tables read, so it should take a fraction of a scan of everything."""
    subject_argv = ctx.port_manager("list")
    commands: list[tuple[Measured, Trial | None]] = [
        (Measured("list (this project's)", _show(subject_argv, ctx)), ctx.trial(subject_argv)),
        (Measured("ss -ltnp", "ss -ltnp"), ctx.trial([ss, "-ltnp"]) if ss else None),
    ]
    comparison = Comparison(
        "list",
        "list (this project's servers) vs ss -ltnp",
        _condition(load),
        commands[0][0],
        targets=[Target("ratio", 0.5, "ss -ltnp")] if load.listeners == TARGET_LOAD else [],
    )
    _measure(comparison, ctx, commands)
    _expect(comparison, comparison.subject, {0})
    return comparison


def compare_check(ctx: Context, load: ListenerLoad) -> list[Comparison]:
    """``check PORT`` vs ``fuser PORT/tcp``, on a port the load holds and on a free one."""
    fuser = find_tool("fuser")
    cases: list[tuple[str, int, int]] = []  # (kind, port, expected check status)
    if load.held_port is not None:
        cases.append(("held", load.held_port, 1))
    cases.append(("free", free_port(), 0))
    comparisons = []
    for kind, port, expected in cases:
        limit = CHECK_LIMITS[kind]
        subject_argv = ctx.port_manager("check", str(port))
        commands: list[tuple[Measured, Trial | None]] = [
            (Measured(f"check {kind} port", _show(subject_argv, ctx)), ctx.trial(subject_argv)),
            (
                Measured("fuser PORT/tcp", f"fuser {port}/tcp"),
                ctx.trial([fuser, f"{port}/tcp"]) if fuser else None,
            ),
        ]
        comparison = Comparison(
            "check",
            f"check PORT ({kind}) vs fuser PORT/tcp",
            _condition(load),
            commands[0][0],
            targets=[Target("ratio", limit, "fuser PORT/tcp")],
        )
        _measure(comparison, ctx, commands)
        _expect(comparison, comparison.subject, {expected})
        comparisons.append(comparison)
    return comparisons


def compare_invoke(ctx: Context) -> list[Comparison]:
    """``invoke ports.check --port P`` vs ``invoke --version``, P free and P held here."""
    comparisons = []
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would
        holder.bind(("127.0.0.1", free_port()))
        holder.listen(8)
        held = int(holder.getsockname()[1])
        for kind, port, expected in (("free", free_port(), 0), ("held", held, 1)):
            subject_argv = [ctx.python, "-m", "invoke", "ports.check", "--port", str(port)]
            version_argv = [ctx.python, "-m", "invoke", "--version"]
            commands: list[tuple[Measured, Trial | None]] = [
                (
                    Measured(f"invoke ports.check ({kind})", _show(subject_argv, ctx)),
                    ctx.trial(subject_argv),
                ),
                (Measured("invoke --version", _show(version_argv, ctx)), ctx.trial(version_argv)),
            ]
            comparison = Comparison(
                "invoke",
                f"invoke ports.check --port P ({kind}) vs invoke --version",
                f"{procinfo.listener_count()} listening on the machine",
                commands[0][0],
                targets=[Target("diff", 0.060, "invoke --version")],
            )
            _measure(comparison, ctx, commands)
            _expect(comparison, comparison.subject, {expected})
            comparisons.append(comparison)
    finally:
        holder.close()
    return comparisons


def compare_plugin(ctx: Context) -> Comparison:
    """A suite of trivial tests run by pytest with the port plugin (leak check on) vs
    without it: the leak check's cost, PLUGIN_TESTS times over."""
    with tempfile.TemporaryDirectory() as suite:
        Path(suite, "test_trivial.py").write_text(
            "import pytest\n\n"
            f"@pytest.mark.parametrize('n', range({PLUGIN_TESTS}))\n"
            "def test_trivial(n):\n    assert n >= 0\n",
            encoding="utf-8",
        )
        env = {**ctx.env, "PYTHONPATH": str(ctx.root)}
        base = [ctx.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trivial.py"]
        with_plugin = [*base, "-p", "utils.pytest_plugin"]
        commands: list[tuple[Measured, Trial | None]] = [
            (
                Measured("pytest with the plugin", " ".join(["pytest", *with_plugin[3:]])),
                lambda: ctx.spawner.run(with_plugin, cwd=suite, env=env),
            ),
            (
                Measured("pytest without it", " ".join(["pytest", *base[3:]])),
                lambda: ctx.spawner.run(base, cwd=suite, env=env),
            ),
        ]
        comparison = Comparison(
            "plugin",
            f"{PLUGIN_TESTS} trivial tests with the leak check vs without",
            f"{procinfo.listener_count()} listening on the machine",
            commands[0][0],
            targets=[Target("diff", PLUGIN_TESTS * PLUGIN_BUDGET_PER_TEST, "pytest without it")],
        )
        _measure(comparison, ctx, commands)
        _expect(comparison, comparison.subject, {0})
    return comparison


def _lingering(server: servers.ServerTree, grace: float = 2.0) -> list[str]:
    """Members of a stopped server still alive after ``grace`` seconds (pid and command).

    uvicorn's multiprocessing resource tracker exits a few ms after the supervisor,
    so only what outlives the grace period counts.
    """
    deadline = time.monotonic() + grace
    while server.leftovers() and time.monotonic() < deadline:
        time.sleep(0.02)
    return [f"{pid} {procinfo.command(pid)}" for pid in server.leftovers()]


class _TinyServers:
    """Start a fresh ``uvicorn tests.apps.tiny:app --workers 3`` per run, ready to be stopped."""

    def __init__(self, ctx: Context, comparison: Comparison) -> None:
        self.ctx = ctx
        self.comparison = comparison
        self.graceful: dict[str, list[int]] = {}

    def run(self, label: str, stop: Callable[[servers.ServerTree, int], Sample]) -> Sample:
        """Start a server, wait until every process holds the port, time ``stop``."""
        port = free_port()
        with tempfile.TemporaryDirectory() as scratch:
            log = Path(scratch) / "shutdown.log"
            argv = [self.ctx.python, "-m", "uvicorn", "tests.apps.tiny:app"]
            argv += ["--port", str(port), "--workers", str(UVICORN_WORKERS)]
            env = {**self.ctx.env, "TINY_LIFESPAN_LOG": str(log)}
            with servers.ServerTree(argv, cwd=self.ctx.root, env=env) as server:
                ready = servers.wait_holders(port, server, UVICORN_WORKERS + 1, READY_TIMEOUT)
                if not ready or not servers.http_ok(port, "/", 10.0):
                    raise RuntimeError(f"uvicorn --workers did not start:\n{server.output()}")
                time.sleep(SETTLE_SECONDS)
                server.remember()
                sample = stop(server, port)
                try:
                    server.process.wait(10.0)
                except subprocess.TimeoutExpired:
                    self.comparison.notes.append(f"{label}: the supervisor outlived the stop")
                    raise
                left = _lingering(server)
                if left:
                    self.comparison.notes.append(f"{label}: still running 2 s after: {left}")
            lines = log.read_text().splitlines() if log.exists() else []
        shutdowns = [line for line in lines if line.startswith("shutdown ")]
        self.graceful.setdefault(label, []).append(len(shutdowns))
        return sample


def compare_cleanup(ctx: Context) -> Comparison:
    """``cleanup PORT`` of a uvicorn --workers 3 server vs SIGTERM to its supervisor."""
    cleanup_cmd = _show(ctx.port_manager("cleanup", "PORT"), ctx)
    subject = Measured("cleanup", f"{cleanup_cmd} (until it exits and the port binds)")
    baseline = Measured(
        "SIGTERM to supervisor", "os.kill(supervisor, SIGTERM), poll a test bind until it binds"
    )
    comparison = Comparison(
        "cleanup",
        f"cleanup of uvicorn --workers {UVICORN_WORKERS} vs SIGTERM to its supervisor",
        f"{procinfo.listener_count()} listening on the machine",
        subject,
        targets=[Target("diff", 0.100, baseline.label)],
    )
    tiny = _TinyServers(ctx, comparison)

    def by_cleanup(server: servers.ServerTree, port: int) -> Sample:
        start = time.perf_counter()
        done = ctx.spawner.run(ctx.port_manager("cleanup", str(port)), cwd=ctx.root)
        if not servers.wait_bindable(port, 30.0):
            raise RuntimeError(f"port {port} still not bindable 30 s after cleanup exited")
        return Sample(time.perf_counter() - start, done.peak_rss_kib, done.status)

    def by_sigterm(server: servers.ServerTree, port: int) -> Sample:
        start = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)  # our own, unreaped child
        if not servers.wait_bindable(port, 30.0):
            raise RuntimeError(f"port {port} still not bindable 30 s after SIGTERM")
        return Sample(time.perf_counter() - start)

    commands: list[tuple[Measured, Trial | None]] = [
        (subject, lambda: tiny.run(subject.label, by_cleanup)),
        (baseline, lambda: tiny.run(baseline.label, by_sigterm)),
    ]
    _measure(comparison, ctx, commands)
    _expect(comparison, subject, {0})
    comparison.extra["graceful_worker_shutdowns_per_run_incl_warmup"] = tiny.graceful
    for label, counts in tiny.graceful.items():
        if any(count < UVICORN_WORKERS for count in counts):
            comparison.notes.append(
                f"{label}: some workers skipped their shutdown (lifespan logs {counts})"
            )
    return comparison


def _first_health(
    ctx: Context, argv_for: Callable[[int | str], list[str]], notes: list[str]
) -> Sample:
    """Start a server, time until ``/health`` first answers 2xx, stop it, wait for the port."""
    port = free_port()
    start = time.perf_counter()
    with servers.ServerTree(argv_for(port), cwd=ctx.root, env=ctx.env) as server:
        if not servers.wait_http_ok(port, "/health", READY_TIMEOUT, server):
            raise RuntimeError(f"{_show(server.argv, ctx)} never answered:\n{server.output()}")
        elapsed = time.perf_counter() - start
        killed = server.stop()
        if killed:
            notes.append(f"{_show(argv_for('P'), ctx)}: SIGTERM did not stop {killed}")
    servers.wait_bindable(port, 30.0)  # untimed: the next run starts on a clean machine
    return Sample(elapsed)


def compare_serve(ctx: Context) -> Comparison:
    """``invoke serve.dev`` vs bare ``uvicorn --reload``, ``python -m backend --dev`` (the
    same start without Invoke) and ``fastapi dev`` on the same app: time until the first
    200 on /health. Every one reloads on changes under ``backend/``."""

    def dev(port: int | str) -> list[str]:
        return [ctx.python, "-m", "invoke", "serve.dev", "--port", str(port)]

    def bare(port: int | str) -> list[str]:
        argv = [ctx.python, "-m", "uvicorn", "backend.app:create_app", "--factory"]
        return [*argv, "--reload", "--reload-dir", "backend", "--port", str(port)]

    def module(port: int | str) -> list[str]:
        return [ctx.python, "-m", "backend", "--dev", "--port", str(port)]

    def fastapi_dev(port: int | str) -> list[str]:
        # The app object named in pyproject.toml ([tool.fastapi]), on 127.0.0.1.
        return [ctx.python, "-m", "fastapi", "dev", "--reload-dir", "backend", "--port", str(port)]

    starts = [
        (Measured("invoke serve.dev", _show(dev("P"), ctx)), dev),
        (Measured("bare uvicorn --reload", _show(bare("P"), ctx)), bare),
        (Measured("python -m backend --dev", _show(module("P"), ctx)), module),
        (Measured("fastapi dev", _show(fastapi_dev("P"), ctx)), fastapi_dev),
    ]
    comparison = Comparison(
        "serve",
        "serve.dev vs bare uvicorn --reload, python -m backend and fastapi dev: "
        "start until the first 200 on /health",
        f"{procinfo.listener_count()} listening on the machine",
        starts[0][0],
        targets=[
            Target("ratio", 1.1, "bare uvicorn --reload"),
            Target("ratio", 1.0, "fastapi dev"),  # faster than fastapi dev
        ],
    )

    def trial(argv_for: Callable[[int | str], list[str]]) -> Trial:
        return lambda: _first_health(ctx, argv_for, comparison.notes)

    return _measure(comparison, ctx, [(measured, trial(argv)) for measured, argv in starts])
