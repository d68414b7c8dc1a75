"""cleanup against real processes: escalation, process trees, and the safety rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    APPS,
    POSIX_SIGNALS,
    PYTHON,
    STOPPED,
    Processes,
    deadline_poll,
    fresh_port,
    gone,
    listener_script,
    listening_socket,
    pids_holding,
    run_cli,
    run_cli_process,
    run_invoke,
)
from utils import port_manager


def start_listener(processes: Processes, port: int, **options: object) -> subprocess.Popen[bytes]:
    script = listener_script(**options)  # type: ignore[arg-type]
    process = processes.start([PYTHON, "-c", script, str(port)])
    deadline_poll(lambda: process.pid in pids_holding(port))
    return process


@POSIX_SIGNALS
def test_process_ignoring_sigterm_is_killed_after_grace(processes: Processes, reader: str) -> None:
    port = fresh_port()
    stubborn = start_listener(processes, port, ignore_term=True)
    result = run_cli("cleanup", str(port), "--grace", "0.5", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["freed"] is True
    assert document["stopped"] == [{"pid": stubborn.pid, "name": "python", "how": "killed"}] or (
        [(e["pid"], e["how"]) for e in document["stopped"]] == [(stubborn.pid, "killed")]
    )
    assert document["seconds"] >= 0.5
    assert stubborn.wait(timeout=5) == -9


def test_a_child_holding_the_socket_is_stopped(processes: Processes, reader: str) -> None:
    port = fresh_port()
    child_code = listener_script()
    parent = processes.start(
        [
            PYTHON,
            "-c",
            "import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-c', {child_code!r}, sys.argv[1]])",
            str(port),
        ]
    )
    deadline_poll(lambda: pids_holding(port))
    (child_pid,) = pids_holding(port)
    assert child_pid != parent.pid
    assert psutil.Process(child_pid).ppid() == parent.pid
    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 0, result.stdout
    document = json.loads(result.stdout)
    assert [(e["pid"], e["how"]) for e in document["stopped"]] == [(child_pid, STOPPED)]
    assert port_manager.check(port).free


def test_ipv6_and_ipv4_sockets_of_one_port_are_both_freed(processes: Processes) -> None:
    port = fresh_port()
    v6 = start_listener(processes, port, address="::1")
    v4 = start_listener(processes, port, address="127.0.0.1")
    listed = {(row.family, row.pid) for row in port_manager.listeners(port)}
    assert listed == {("IPv6", v6.pid), ("IPv4", v4.pid)}
    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 0
    assert {e["pid"] for e in json.loads(result.stdout)["stopped"]} == {v4.pid, v6.pid}


def _foreign_server(processes: Processes, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """A uvicorn server that is not this project's: its own copy of the app, its own cwd."""
    shutil.copy(APPS / "tiny.py", tmp_path / "foreign_app.py")
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "foreign_app:app", "--port", str(port)], cwd=tmp_path
    )
    deadline_poll(lambda: server.pid in pids_holding(port))
    return server


def test_foreign_server_is_refused_without_force(
    processes: Processes, tmp_path: Path, reader: str
) -> None:
    port = fresh_port()
    server = _foreign_server(processes, tmp_path, port)
    rows = port_manager.listeners(port)
    assert [row.project for row in rows] == [False]
    assert port_manager.listeners(port, project_only=True) == []

    result = run_cli("cleanup", str(port), "--json", "--grace", "1")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["freed"] is False
    assert document["stopped"] == []
    assert [(e["pid"], e["reason"]) for e in document["refused"]] == [
        (server.pid, "not a process of this project (use --force)")
    ]
    assert server.poll() is None
    assert server.pid in pids_holding(port)

    forced = run_cli("cleanup", str(port), "--force", "--json")
    assert forced.returncode == 0, forced.stdout
    assert [e["pid"] for e in json.loads(forced.stdout)["stopped"]] == [server.pid]
    assert server.wait(timeout=10) is not None


def test_dry_run_stops_nothing(processes: Processes) -> None:
    port = fresh_port()
    server = start_listener(processes, port)
    result = run_cli("cleanup", str(port), "--dry-run", "--json")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["dry_run"] is True
    assert document["freed"] is False
    assert [(e["pid"], e["how"]) for e in document["stopped"]] == [(server.pid, "would terminate")]
    human = run_cli("cleanup", str(port), "--dry-run")
    assert "would terminate" in human.stdout and "nothing was stopped" in human.stdout
    assert server.poll() is None
    assert pids_holding(port) == {server.pid}


def test_the_tool_never_signals_its_own_ancestors() -> None:
    """The test process holds the port and runs the CLI: it is refused, even with --force."""
    port = fresh_port()
    with listening_socket("127.0.0.1", port):
        result = run_cli_process("cleanup", str(port), "--force", "--json", "--grace", "0.2")
        assert result.returncode == 1
        document = json.loads(result.stdout)
        assert document["stopped"] == []
        assert [e["pid"] for e in document["refused"]] == [os.getpid()]
        assert "ancestor" in document["refused"][0]["reason"]
        assert pids_holding(port) == {os.getpid()}


def test_the_shell_between_invoke_and_the_tool_is_an_ancestor_too(processes: Processes) -> None:
    """A shell holding the socket starts the tool: the tool refuses its grandparent."""
    port = fresh_port()
    script = (
        "import socket, subprocess, sys\n"
        "s = socket.socket()\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
        "s.listen()\n"
        "cleanup = [sys.executable, sys.argv[2], 'cleanup', sys.argv[1], '--force', '--json']\n"
        "sys.exit(subprocess.run(cleanup).returncode)\n"
    )
    tool = str(Path(__file__).resolve().parent.parent / "utils" / "port_manager.py")
    result = subprocess.run(
        [PYTHON, "-c", script, str(port), tool], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "ancestor" in json.loads(result.stdout)["refused"][0]["reason"]


SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may sit in root's private home


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root and a system Python to start a process as another user",
)
def test_another_users_process_is_refused_without_force(processes: Processes) -> None:
    port = fresh_port()
    other = processes.start(
        [SYSTEM_PYTHON, "-c", listener_script(), str(port)], user="nobody", cwd="/"
    )
    deadline_poll(lambda: other.pid in pids_holding(port))
    result = run_cli("cleanup", str(port), "--json", "--grace", "1")
    assert result.returncode == 1
    (refusal,) = json.loads(result.stdout)["refused"]
    assert refusal["pid"] == other.pid and "owned by user nobody" in refusal["reason"]
    assert other.poll() is None
    forced = run_cli("cleanup", str(port), "--json", "--force")
    assert forced.returncode == 0
    assert other.wait(timeout=10) is not None


def test_cleanup_of_a_free_port_succeeds_after_the_settle_window() -> None:
    port = fresh_port()
    result = run_cli("cleanup", str(port), "--json", "--settle", "0.2")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["freed"] is True and document["stopped"] == [] and document["refused"] == []
    assert document["seconds"] >= 0.2


def test_a_holder_that_arrives_in_the_window_of_a_free_port_is_stopped(
    processes: Processes,
) -> None:
    """Free at the start is not freed: a crash-looping server may be between two starts."""
    port = fresh_port()
    late_listener = f"import time\ntime.sleep(0.4)\n{listener_script()}"
    late = processes.start([PYTHON, "-c", late_listener, str(port)])
    result = run_cli("cleanup", str(port), "--json", "--settle", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert [(e["pid"], e["how"]) for e in document["stopped"]] == [(late.pid, STOPPED)]


def test_invoke_cleanup_frees_a_project_server(processes: Processes) -> None:
    port = fresh_port()
    server = start_listener(processes, port)
    created = psutil.Process(server.pid).create_time()
    result = run_invoke("ports.cleanup", "--port", str(port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert STOPPED in result.stdout and f"Port {port} is free" in result.stdout
    deadline_poll(lambda: gone(server.pid, created))
