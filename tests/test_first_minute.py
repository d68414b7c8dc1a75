"""The first minute as a user: ports typed as arguments, several at once; progress on a
terminal; workers labelled; --version, FORCE_COLOR, per-command help; the start line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import (
    PTY,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    pids_holding,
    run_cli,
    run_cli_on_terminal,
    run_cli_process,
    run_invoke,
)
from utils import __version__, port_manager


def _listeners(processes: Processes, count: int, **options: object) -> list[tuple[int, int]]:
    """``count`` project listeners on distinct fresh ports: (port, pid) each."""
    started = []
    port = fresh_port()
    for _ in range(count):
        port = port_manager.find(start=port + 1) if started else port
        holder = processes.start([PYTHON, "-c", listener_script(**options), str(port)])  # type: ignore[arg-type]
        deadline_poll(lambda holder=holder, port=port: holder.pid in pids_holding(port))
        started.append((port, holder.pid))
    return started


def test_ports_are_typed_as_arguments_several_at_once(processes: Processes) -> None:
    (held, pid), (other, other_pid) = _listeners(processes, 2)
    free = port_manager.find(start=other + 1)

    checked = run_cli("check", str(free), str(held), "--json")
    assert checked.returncode == 1  # one of them is held
    assert [(d["port"], d["free"]) for d in json.loads(checked.stdout)] == [
        (free, True),
        (held, False),
    ]
    assert run_invoke("ports.check", str(free)).returncode == 0
    assert run_invoke("ports.check", "--port", str(free)).returncode == 0  # still works
    single = run_invoke("ports.check", str(held), "--json")
    assert single.returncode == 1 and json.loads(single.stdout)["port"] == held  # one: an object

    plan = run_invoke("ports.cleanup", "--dry-run", "--json")  # no port: the project's
    assert plan.returncode == 0, plan.stderr
    planned = {(d["port"], e["pid"]) for d in json.loads(plan.stdout) for e in d["stopped"]}
    assert {(held, pid), (other, other_pid)} <= planned

    result = run_invoke("ports.cleanup", str(held), str(other), "--grace", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Port {held} is free" in result.stdout and f"Port {other} is free" in result.stdout
    assert pids_holding(held) == set() and pids_holding(other) == set()


def test_several_ports_exit_0_only_if_every_one_ends_free(
    processes: Processes, tmp_path: Path
) -> None:
    ((ours, _pid),) = _listeners(processes, 1)
    foreign_port = port_manager.find(start=ours + 1)
    foreign = processes.start([PYTHON, "-c", listener_script(), str(foreign_port)], cwd=tmp_path)
    deadline_poll(lambda: foreign.pid in pids_holding(foreign_port))
    result = run_cli("cleanup", str(ours), str(foreign_port), "--json")
    assert result.returncode == 1
    documents = json.loads(result.stdout)
    assert [(d["port"], d["freed"]) for d in documents] == [(ours, True), (foreign_port, False)]


def _stderr_on_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (status, stdout, what stderr showed)."""
    return run_cli_on_terminal(args, {**os.environ, "NO_COLOR": "1"}, terminal="stderr")


@PTY
def test_a_terminal_sees_progress_while_cleanup_and_wait_wait(processes: Processes) -> None:
    ((port, pid),) = _listeners(processes, 1, ignore_term=True)
    status, _out, shown = _stderr_on_terminal(["cleanup", str(port), "--grace", "1"])
    assert status == 0
    assert f"waiting for pid {pid}" in shown and "SIGKILL at 1 s" in shown
    assert "stays free" in shown
    assert shown.endswith("\r\033[K")  # the status line is cleared at the end

    free = port_manager.find(start=port + 1)
    status, _out, shown = _stderr_on_terminal(["wait", str(free), "--timeout", "0.5"])
    assert status == 1 and f"waiting for port {free} to accept connections" in shown

    quiet = run_cli("cleanup", str(free), "--json")  # piped, and --json: nothing extra
    assert quiet.stderr == ""
    status, _out, shown = _stderr_on_terminal(["cleanup", str(free), "--json"])
    assert shown == ""


def test_workers_are_labelled_by_role(processes: Processes) -> None:
    port = fresh_port()
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", str(port), "--workers", "2"]
    )
    deadline_poll(lambda: len(pids_holding(port)) >= 3)
    rows = [r for r in json.loads(run_cli("list", "--json").stdout) if r["port"] == port]
    roles = {r["pid"]: r["role"] for r in rows}
    assert roles.pop(server.pid) == "supervisor" and set(roles.values()) == {"worker"}
    assert all("--multiprocessing-fork" in r["cmdline"] for r in rows if r["role"] == "worker")
    ours = [line for line in run_cli("list").stdout.splitlines() if line.startswith(f"{port} ")]
    assert sum(f"uvicorn worker of {server.pid}" in line for line in ours) == 2
    assert not any("spawn_main" in line for line in ours)


def test_version_force_color_and_help_of_one_command() -> None:
    version = run_cli_process("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"portkeeper {__version__}"
    port = str(fresh_port())
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    forced = subprocess.run(
        [PYTHON, "utils/port_manager.py", "check", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "FORCE_COLOR": "1"},
    )
    assert "\033[32mfree\033[0m" in forced.stdout  # a pipe, and still colour
    both = subprocess.run(
        [PYTHON, "utils/port_manager.py", "check", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "FORCE_COLOR": "1", "NO_COLOR": "1"},
    )
    assert "\033[" not in both.stdout  # NO_COLOR wins
    helped = run_cli_process("cleanup", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: python utils/port_manager.py cleanup [PORT ...]")
    assert "--settle" in helped.stdout and "--http" not in helped.stdout


def test_production_refuses_find_port_with_its_reason() -> None:
    result = run_invoke("serve.prod", "--find-port")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --find-port is not valid in production")


def test_invoke_shows_the_declared_help() -> None:
    """``invoke --help serve.prod`` shows every flag's declared help (a real Invoke run)."""
    from backend.setting_specs import serve_flags
    from tests.unit.test_setting_specs import flat

    # Invoke pops each task's help as it builds the parser; tasks.py builds it once more
    # (ports as arguments) and must put the help back, or --help shows none.
    result = run_invoke("--help", "serve.prod")
    assert result.returncode == 0, result.stderr
    for text in serve_flags("prod").values():
        assert flat(text) in flat(result.stdout)
