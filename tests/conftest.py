"""Fixtures that start real processes and always stop every one of them.

Processes are started in their own session and remembered with their whole tree; at
teardown every remembered process still running is killed by pid (never by name),
so a failing test leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from utils import port_manager
from utils.pytest_plugin import free_port_for_this_run

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"

# ------------------------------------------------------------------ platforms
#
# The suite runs on Linux (here and in CI), macOS and Windows (CI only: the jobs
# tests-macos and tests-windows). A test that needs what a platform lacks is skipped
# there, and only there, by one of these markers: the reason shows in the summary (-ra).
LINUX = sys.platform.startswith("linux")
WINDOWS = sys.platform == "win32"
# The reader a run forces (the nox session tests_generic forces psutil), else "".
FORCED_READER = os.environ.get("PORT_MANAGER_READER", "").strip().lower()


def needs(available: bool, facility: str) -> pytest.MarkDecorator:
    """Skip where ``facility`` is missing, saying so."""
    return pytest.mark.skipif(not available, reason=f"needs {facility}")


POSIX_SIGNALS = needs(
    not WINDOWS, "POSIX signals: SIGTERM asks a process to stop, Windows can only terminate it"
)
JOB_CONTROL = needs(not WINDOWS, "POSIX job control (SIGSTOP and SIGCONT to a process group)")
FORK = needs(hasattr(os, "fork"), "os.fork (POSIX)")
PTY = needs(not WINDOWS, "a pseudo-terminal (the pty module is POSIX's)")
POSIX_SHELL = needs(not WINDOWS, "bash and sh running the processes (Windows has no POSIX shell)")
POSIX_ARGV = needs(not WINDOWS, "POSIX command lines, which are bytes (Windows's are text)")
PROCFS = needs(LINUX, "Linux's /proc")
LINUX_READER = needs(
    LINUX and FORCED_READER != "psutil",
    "the Linux reader (netlink or /proc): socket inodes, and bound-only sockets on 6.5+",
)
# How a holder the tool stops ends: gracefully on POSIX (SIGTERM); on Windows a process
# that shares this suite's console cannot be asked, so it is terminated (utils/_windows.py).
STOPPED = "killed" if WINDOWS else "terminated"


def deadline_poll(condition: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll ``condition`` with short growing intervals until truthy; fail at the deadline."""
    end = time.monotonic() + timeout
    interval = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def fresh_port() -> int:
    """A port free right now and handed to no other test of this run (also across xdist
    workers): the project's own pytest plugin (utils/pytest_plugin.py) hands it out, from
    below the kernel's ephemeral range, so listeners on port 0 cannot take it."""
    return free_port_for_this_run()


# Under coverage (``patch = ["subprocess"]``) every Python started inherits this variable
# and measures itself: about 0.17 s of CPU per start, for nothing in a helper that runs
# none of the project's code.
COVERAGE_VARIABLE = "COVERAGE_PROCESS_CONFIG"


def imports_project(code: str) -> bool:
    """Whether a ``python -c`` program imports the project (or a server of it)."""
    return any(name in code for name in ("utils", "backend", "uvicorn", "tasks"))


def without_coverage(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variable that makes a Python child measure coverage."""
    return {name: value for name, value in env.items() if name != COVERAGE_VARIABLE}


class Processes:
    """Starts processes and remembers them (and their descendants) for teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.known: dict[int, float] = {}  # pid -> create time of every tree member seen

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``args`` in a session of its own; a ``python -c`` helper that does not run
        the project's code (a listener, a restart loop) starts without coverage."""
        if args[:2] == [PYTHON, "-c"] and not imports_project(args[2]):
            env = kwargs.get("env")
            kwargs["env"] = without_coverage(env if isinstance(env, dict) else os.environ)
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        process = subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.started.append(process)
        self.remember(process.pid)
        return process

    def remember(self, pid: int) -> None:
        """Record ``pid`` and all its current descendants."""
        try:
            root = psutil.Process(pid)
            for member in [root, *root.children(recursive=True)]:
                self.known[member.pid] = member.create_time()
        except psutil.Error:
            pass

    def tree(self, pid: int) -> list[psutil.Process]:
        self.remember(pid)
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    def stop_all(self) -> None:
        for process in self.started:
            self.remember(process.pid)
        for pid, created in self.known.items():
            try:
                member = psutil.Process(pid)
                if abs(member.create_time() - created) < 0.01:
                    member.kill()
            except psutil.Error:
                pass
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


@pytest.fixture
def processes() -> Iterator[Processes]:
    tracker = Processes()
    try:
        yield tracker
    finally:
        tracker.stop_all()


def _readers() -> list[str]:
    if FORCED_READER:
        return [FORCED_READER]
    return ["netlink", "psutil"] if LINUX else ["psutil"]


@pytest.fixture(params=_readers())
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test over the Linux fast path (netlink) and the generic one (psutil); over
    psutil alone elsewhere, and over the reader PORT_MANAGER_READER forces if set.

    The third path, the /proc/net text tables, is held equal to both in
    test_output_and_wait.py::test_every_discovery_path_agrees; the nox session
    tests_generic runs every holder and cleanup test over psutil.
    """
    monkeypatch.setenv("PORT_MANAGER_READER", request.param)
    return str(request.param)


PORT_CLI = str(ROOT / "utils" / "port_manager.py")


def _quiet(env: dict[str, str] | None) -> dict[str, str]:
    """``env``, else this process's environment without colour."""
    return env if env is not None else {**os.environ, "NO_COLOR": "1"}


def _run_here(
    argv: list[str], main: Callable[[], object], env: dict[str, str] | None
) -> subprocess.CompletedProcess[str]:
    """Run a front end's entry point in this process as the command ``argv`` would run
    (see ``as_a_command``): its status, stdout and stderr, as ``subprocess.run`` gives them."""
    status = 0
    with as_a_command(_quiet(env), argv) as (out, err):
        try:
            returned = main()
            status = returned if isinstance(returned, int) else 0
        except SystemExit as leaving:
            status = exit_status(leaving)
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def _run_process(
    command: list[str], env: dict[str, str] | None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``command`` in a process of its own, from the repository root."""
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_quiet(env)
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as ``python utils/port_manager.py ARGS`` runs it, called in this process:
    the same parser, commands, output and exit status, without starting a Python per
    call (under coverage each start costs about 0.17 s of CPU, which made the suite
    slow). What only a process shows - imports at start-up, the program name in help,
    signals, terminals, closed pipes - is tested through ``run_cli_process``. A hung call
    is bounded by pytest-timeout."""
    from utils import port_cli

    return _run_here([PORT_CLI, *args], lambda: port_cli.main(list(args)), None)


def run_cli_process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python utils/port_manager.py ARGS`` as a user would run it, in a process of its own."""
    return _run_process([sys.executable, PORT_CLI, *args], None, timeout)


@contextlib.contextmanager
def as_a_command(env: dict[str, str], argv: list[str]) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """This process as the command ``argv`` run from the repository root in ``env``: that
    exact environment and ``sys.argv``, the root as working directory, stdout and stderr
    captured; all restored. A server must never start here: serving raises at once, so a
    start that should have been refused fails its test instead of hanging it."""
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    sys.argv = argv
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _serving_refused(),
        ):
            yield out, err
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _serving_refused() -> Iterator[None]:
    """``backend.server.serve_on`` (where every start begins serving) raises meanwhile."""
    from backend import server

    def refuse(*_: object, **__: object) -> int:
        raise AssertionError("a start run in the test process began serving")

    saved = server.serve_on
    server.serve_on = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        server.serve_on = saved


def exit_status(leaving: SystemExit) -> int:
    return leaving.code if isinstance(leaving.code, int) else 0 if leaving.code is None else 1


def run_invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``invoke ARGS`` from the repository root (in ``env``, else this one without colour),
    run by Invoke's own program in this process: Invoke loads tasks.py afresh for every
    run, as ``python -m invoke`` does, without a Python start per call (see ``run_cli``).
    ``run_invoke_process`` runs it in a process of its own."""
    import invoke.main

    argv = ["invoke", *args]
    return _run_here(argv, lambda: invoke.main.program.run(argv, exit=True), env)


def run_invoke_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``invoke ARGS`` in a process of its own, from the repository root."""
    return _run_process([sys.executable, "-m", "invoke", *args], env, timeout)


def run_backend(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m backend ARGS`` from the repository root (in ``env``, else this one
    without colour), its ``main`` run in this process: for input it must refuse before
    anything is bound (a start that would serve fails its test at once, ``as_a_command``).
    ``run_backend_process`` runs it in a process of its own."""
    from backend import __main__ as backend_main

    return _run_here(["python -m backend", *args], lambda: backend_main.main(list(args)), env)


def run_backend_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m backend ARGS`` in a process of its own, from the repository root."""
    return _run_process([sys.executable, "-m", "backend", *args], env)


def pids_holding(port: int) -> set[int]:
    return {row.pid for row in port_manager.listeners(port) if row.pid is not None}


def gone(pid: int, created: float) -> bool:
    """True when that very process has exited (a zombie counts as exited)."""
    try:
        member = psutil.Process(pid)
        return member.create_time() != created or member.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


PYTHON = sys.executable


def listener_script(
    address: str = "127.0.0.1", *, v6only: bool = True, ignore_term: bool = False
) -> str:
    """Python source of a process that listens on address:argv[1] until it is stopped."""
    family = "socket.AF_INET6" if ":" in address else "socket.AF_INET"
    lines = [
        "import signal, socket, sys, time",
        f"s = socket.socket({family})",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
    ]
    if ":" in address:
        lines.append(f"s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, {int(v6only)})")
    if ignore_term:
        lines.append("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    lines += [
        f"s.bind(({address!r}, int(sys.argv[1])))",
        "s.listen()",
        "while True: time.sleep(3600)",
    ]
    return "\n".join(lines)


def listening_socket(address: str, port: int, *, v6only: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.bind((address, port))
    sock.listen()
    return sock


def run_cli_on_terminal(
    args: list[str], env: dict[str, str], terminal: str = "stdout"
) -> tuple[int, str, str]:
    """Run the CLI with ``terminal`` ("stdout" or "stderr") on a pseudo-terminal and the
    other stream on a pipe: (status, what the pipe got, what the terminal showed)."""
    import pty

    leader, follower = pty.openpty()
    try:
        on_terminal = terminal == "stdout"
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "utils" / "port_manager.py"), *args],
            stdout=follower if on_terminal else subprocess.PIPE,
            stderr=subprocess.PIPE if on_terminal else follower,
            env=env,
            cwd=ROOT,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        piped = process.stderr if on_terminal else process.stdout
        other = piped.read().decode() if piped is not None else ""
        return process.wait(timeout=60), other, b"".join(chunks).decode()
    finally:
        os.close(leader)
