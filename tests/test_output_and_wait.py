"""Output contract (JSON shapes, tables, colour) and the two discovery paths agreeing.

``wait`` is tested in test_wait.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    APPS,
    POSIX_SHELL,
    PROCFS,
    PTY,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    needs,
    pids_holding,
    run_cli,
    run_cli_on_terminal,
    run_cli_process,
    run_invoke,
)
from utils import port_manager

LISTENER_KEYS = {
    *("port", "address", "family", "pid", "ppid", "name", "cmdline", "user", "project"),
    *("state", "suspended", "role"),
}


def test_listener_rows_have_the_contract_keys(processes: Processes) -> None:
    port = fresh_port()
    server = processes.start([PYTHON, "-c", listener_script(), str(port)])
    deadline_poll(lambda: server.pid in pids_holding(port))
    for result in (run_cli("list", "--json"), run_invoke("ports.list", "--json")):
        assert result.returncode == 0
        rows = [row for row in json.loads(result.stdout) if row["port"] == port]
        assert len(rows) == 1
        row = rows[0]
        assert set(row) == LISTENER_KEYS
        assert row["pid"] == server.pid and row["ppid"] == os.getpid()
        assert row["family"] == "IPv4" and row["address"] == "127.0.0.1"
        assert row["cmdline"][:2] == [PYTHON, "-c"]
        assert row["project"] is True and isinstance(row["user"], str)


def test_list_without_all_hides_foreign_listeners_and_says_how_to_see_them(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    foreign = processes.start([PYTHON, "-c", listener_script(), str(port)], cwd=tmp_path)
    deadline_poll(lambda: foreign.pid in pids_holding(port))
    ours = run_cli("list", "--json")
    assert port not in {row["port"] for row in json.loads(ours.stdout)}
    everything = run_cli("list", "--all", "--json")
    assert foreign.pid in {row["pid"] for row in json.loads(everything.stdout)}
    human = run_cli("list")
    if human.stdout.startswith("PORT"):  # some other project server is running right now
        assert f" {foreign.pid} " not in human.stdout
    else:
        assert "Use --all to see every listener" in human.stdout


def test_human_table_is_aligned_and_plain_without_a_terminal(processes: Processes) -> None:
    port = fresh_port()
    server = processes.start([PYTHON, "-c", listener_script(), str(port)])
    deadline_poll(lambda: server.pid in pids_holding(port))
    result = run_cli("list", "--all")
    lines = result.stdout.splitlines()
    header = lines[0]
    assert header.split() == [
        "PORT",
        "ADDRESS",
        "FAMILY",
        "STATE",
        "PID",
        "PPID",
        "USER",
        "PROJECT",
        "COMMAND",
    ]
    ours = next(line for line in lines if f" {server.pid} " in line)
    assert ours.index(str(server.pid)) == header.index("PID")
    assert ours.index("python") >= header.index("COMMAND")
    assert "\033[" not in result.stdout


def _run_on_terminal(args: list[str], env: dict[str, str]) -> str:
    """What the CLI printed on a pseudo-terminal standing for its stdout."""
    return run_cli_on_terminal(args, env)[2]


@PTY
def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    port = str(fresh_port())
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    assert "\033[32m" in _run_on_terminal(["check", port], env)
    assert "\033[" not in _run_on_terminal(["check", port], {**env, "NO_COLOR": "1"})


def test_runs_as_a_module_too() -> None:
    port = str(fresh_port())
    result = subprocess.run(
        [PYTHON, "-m", "utils.port_manager", "check", port, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["port"] == int(port)


SPREAD_LISTENERS = """
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET6 if len(socks) % 2 else socket.AF_INET)
    s.bind(("::1" if len(socks) % 2 else "127.0.0.1", 0))
    s.listen()
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
sys.stdin.read()
"""


@PROCFS  # netlink and the /proc/net tables are Linux's
def test_every_discovery_path_agrees(processes: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    """netlink, the /proc/net text tables and psutil see the same rows, under some load."""
    port = fresh_port()
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", str(port), "--workers", "2"]
    )
    spread = [
        processes.start(
            [PYTHON, "-c", SPREAD_LISTENERS, "150"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for process in spread:
        assert process.stdout is not None
        assert len(process.stdout.readline().split()) == 150
    deadline_poll(lambda: len(pids_holding(port)) == 3)  # the supervisor and both workers
    ours = {member.pid for member in processes.tree(server.pid)} | {p.pid for p in spread}
    views = {}
    for reader in ("netlink", "procfs", "psutil"):
        monkeypatch.setenv("PORT_MANAGER_READER", reader)
        views[reader] = sorted(
            (
                row.port,
                row.address,
                row.family,
                row.pid,
                row.ppid,
                row.name,
                row.cmdline,
                row.user,
                row.project,
            )
            for row in port_manager.listeners()
            if row.pid in ours  # other test runs on this machine come and go meanwhile
        )
    assert views["netlink"] == views["procfs"] == views["psutil"]
    pids = {row[3] for row in views["netlink"]}
    assert server.pid in pids and {process.pid for process in spread} <= pids
    assert len(views["netlink"]) == 600 + 3  # the spread, plus the supervisor and two workers


# A foreign supervisor (an inline program working elsewhere) whose forked child moves into
# the repository: the child is the project's by its working directory, and a worker.
FOREIGN_PARENT_OF_A_PROJECT_CHILD = """
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
if os.fork() == 0:
    os.chdir(sys.argv[2])
while True: time.sleep(3600)
"""


@pytest.mark.parametrize("reader", ["netlink", "procfs", "psutil"])
def test_the_project_only_scan_gives_the_rows_of_the_whole_scan(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """The default list reads only the fd tables of processes that can be the project's:
    its rows must be the project's rows of a scan of every process, on every reader."""
    workers, from_elsewhere, foreign, mixed = (fresh_port() for _ in range(4))
    uvicorn = [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--workers", "2"]
    started = {
        workers: (processes.start([*uvicorn, "--port", str(workers)]), 3),
        from_elsewhere: (
            processes.start(
                [PYTHON, str(APPS / "listen.py"), str(from_elsewhere), "2"], cwd=tmp_path
            ),
            3,
        ),
        foreign: (
            processes.start([PYTHON, "-c", listener_script(), str(foreign)], cwd=tmp_path),
            1,
        ),
        mixed: (
            processes.start(
                [PYTHON, "-c", FOREIGN_PARENT_OF_A_PROJECT_CHILD, str(mixed), str(ROOT)],
                cwd=tmp_path,
            ),
            2,
        ),
    }
    for port, (_, count) in started.items():
        deadline_poll(lambda port=port, count=count: len(pids_holding(port)) == count)
    ours = {member.pid for server, _ in started.values() for member in processes.tree(server.pid)}
    monkeypatch.setenv("PORT_MANAGER_READER", reader)
    fast = [row for row in port_manager.listeners(project_only=True) if row.pid in ours]
    whole = [row for row in port_manager.listeners() if row.project and row.pid in ours]
    assert fast == whole
    roles = {port: sorted(row.role for row in fast if row.port == port) for port in started}
    assert roles == {
        workers: ["supervisor", "worker", "worker"],
        from_elsewhere: ["supervisor", "worker", "worker"],
        foreign: [],
        mixed: ["worker"],  # the child; its foreign parent is not the project's
    }


HUNG_TEST = """
import signal, time

def test_hangs():
    # The timer pytest-timeout armed from the configuration: bring it forward, so the
    # configured alarm (with pytest-timeout's own handler) fires now and not in minutes.
    armed = signal.getitimer(signal.ITIMER_REAL)[0]
    assert armed > 0, "no per-test timeout is armed"
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    time.sleep(600)
"""


def configured_timeout() -> float:
    """The per-test timeout pyproject.toml sets for pytest-timeout."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: coverage[toml] brings tomli
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as project:
        options = tomllib.load(project)["tool"]["pytest"]["ini_options"]
    assert "timeout" in options, "pyproject.toml sets no per-test timeout"
    # Left to pytest-timeout: SIGALRM here (what the hung test brings forward), a timer
    # thread on Windows, where "signal" would fail every test.
    assert "timeout_method" not in options, "the method must work on every platform"
    return float(options["timeout"])


@needs(hasattr(signal, "setitimer"), "SIGALRM, which the hung test brings forward")
def test_a_hung_test_fails_on_the_configured_timeout(tmp_path: Path) -> None:
    """A hung test run under the project's own configuration only (no --timeout): the
    timeout that fires is pyproject.toml's, reported with its value."""
    hung = tmp_path / "test_hung.py"
    hung.write_text(HUNG_TEST)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_TIMEOUT")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", str(hung), "-p", "no:cacheprovider"),
            *("-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert f"Timeout (>{configured_timeout()}s) from pytest-timeout" in result.stdout, result.stdout


@POSIX_SHELL
def test_output_into_a_closed_pipe_is_not_a_traceback(processes: Processes) -> None:
    """A table longer than a pipe's buffer, cut short by ``head``: no traceback."""
    many = processes.start(
        [PYTHON, "-c", SPREAD_LISTENERS, "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert many.stdout is not None
    assert len(many.stdout.readline().split()) == 1000
    pipeline = subprocess.run(
        ["bash", "-c", f"{PYTHON} utils/port_manager.py list --all | head -c 10 >/dev/null"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pipeline.stderr == ""


def test_a_short_answer_into_a_closed_pipe_is_a_no_without_a_word() -> None:
    """An answer still buffered at the end, for a reader already gone: the CLI flushes it
    before its quick exit, and a reader gone is a plain 1 (no "Exception ignored")."""
    reading, writing = os.pipe()
    os.close(reading)
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    try:
        result = subprocess.run(
            [PYTHON, "utils/port_manager.py", "check", str(fresh_port())],
            cwd=ROOT,
            stdout=writing,
            stderr=subprocess.PIPE,
            timeout=60,
            env=buffered,
        )
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (1, b"")


def test_help_names_every_command() -> None:
    result = run_cli_process("--help")
    assert result.returncode == 0
    for command in ("list", "check PORT [PORT ...]", "find", "cleanup [PORT ...]", "wait PORT"):
        assert f"python utils/port_manager.py {command}\n" in result.stdout
