"""cleanup where real machines are hostile: suspended servers, restarting supervisors,
successors forked on SIGTERM, foreign processes that mention the repository, symlinked
checkouts, command lines with terminal escapes, and sockets bound without listening."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.apps.tiny import lifespan_pids
from tests.conftest import (
    FORCED_READER,
    FORK,
    JOB_CONTROL,
    LINUX,
    LINUX_READER,
    POSIX_ARGV,
    POSIX_SHELL,
    PROCFS,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    gone,
    listener_script,
    needs,
    pids_holding,
    run_cli,
    run_invoke,
)
from utils import port_manager

UVICORN_MODES = {
    "single": ([], 1),
    "workers": (["--workers", "2"], 3),
    "reload": (["--reload", "--reload-dir", "tests/apps"], 2),
}


def _states(pids: list[int]) -> dict[int, str]:
    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found[pid] = psutil.Process(pid).status()
    return found


def stays_free(port: int, seconds: float = 1.0) -> bool:
    """Watch the port for ``seconds``: False as soon as anything holds it again."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not port_manager.check(port).free:
            return False
        time.sleep(0.02)  # an observation interval, not synchronisation
    return True


@pytest.mark.parametrize("mode", list(UVICORN_MODES))
@JOB_CONTROL
def test_a_suspended_server_shuts_down_gracefully(
    mode: str, processes: Processes, tmp_path: Path
) -> None:
    """Ctrl-Z stops the whole job: cleanup continues it, so SIGTERM is a graceful stop."""
    extra, holders_expected = UVICORN_MODES[mode]
    port = fresh_port()
    lifespan_log = tmp_path / "lifespan.log"
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", str(port), *extra],
        env={**os.environ, "TINY_LIFESPAN_LOG": str(lifespan_log)},
    )
    deadline_poll(lambda: len(pids_holding(port)) >= holders_expected)
    # A worker holds the inherited socket before its signal handlers exist: wait until
    # every process that serves has started its lifespan.
    serving = pids_holding(port) - {server.pid} or {server.pid}
    deadline_poll(lambda: serving <= lifespan_pids(lifespan_log, "startup"))
    tree = processes.tree(server.pid)

    os.killpg(server.pid, signal.SIGSTOP)  # what a terminal's Ctrl-Z does to the job
    members = [member.pid for member in tree]
    deadline_poll(lambda: set(_states(members).values()) == {psutil.STATUS_STOPPED})

    plan = run_cli("cleanup", str(port), "--dry-run", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = json.loads(plan.stdout)["stopped"]
    assert planned and all(entry["suspended"] for entry in planned)
    human_plan = run_cli("cleanup", str(port), "--dry-run")
    assert "was suspended" in human_plan.stdout
    listed = run_cli("list", "--all")
    assert "listening, suspended" in listed.stdout

    result = run_cli("cleanup", str(port), "--json", "--grace", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["freed"] is True
    assert {entry["how"] for entry in document["stopped"]} == {"terminated"}
    assert all(entry["suspended"] for entry in document["stopped"])
    # Continued at once: well before the second SIGTERM at grace/2 (5 s), which a
    # server left stopped would have needed.
    assert document["seconds"] < 4

    logged = lifespan_pids(lifespan_log, "shutdown")
    assert serving <= logged  # every worker ran its lifespan shutdown
    created = {member.pid: member.create_time() for member in tree}
    # Nothing of the tree is left, stopped or otherwise (the resource tracker included).
    deadline_poll(lambda: all(gone(pid, when) for pid, when in created.items()), timeout=10)


# A restart is seen only within the settle window (0.5 s by default: a shell loop restarts
# a holder within 0.05-0.2 s on a quiet machine). The suite runs two workers per core, so
# a restart here may take several times that: these tests give the window room.
SETTLE_UNDER_LOAD = ("--settle", "2")


def _loop(port: int, *, inner_cwd: Path | None = None) -> list[str]:
    """A shell loop that restarts a listener as soon as it exits (a supervisor in small)."""
    listener = f"{PYTHON} -c {_quoted(listener_script())} {port}"
    body = f"(cd {_quoted(str(inner_cwd))} && exec {listener})" if inner_cwd else listener
    return ["bash", "-c", f"while true; do {body}; done"]


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text)


@POSIX_SHELL
def test_a_restarting_loop_of_the_project_is_stopped_for_good(processes: Processes) -> None:
    port = fresh_port()
    loop = processes.start(_loop(port))  # cwd: the repository
    deadline_poll(lambda: pids_holding(port))

    result = run_cli("cleanup", str(port), "--json", *SETTLE_UNDER_LOAD)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["freed"] is True
    restarters = [e for e in document["stopped"] if e["role"] == "restarter"]
    assert [(e["pid"], e["how"]) for e in restarters] == [(loop.pid, "terminated")]
    assert loop.wait(timeout=10) is not None
    assert stays_free(port)


@POSIX_SHELL
def test_a_restarting_loop_from_outside_is_refused_and_named(
    processes: Processes, tmp_path: Path
) -> None:
    """The loop lives outside the repository but restarts one of the project's servers."""
    port = fresh_port()
    loop = processes.start(_loop(port, inner_cwd=ROOT), cwd=tmp_path)
    deadline_poll(lambda: pids_holding(port))

    result = run_cli("cleanup", str(port), "--json", *SETTLE_UNDER_LOAD)
    assert result.returncode == 1, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["freed"] is False
    (refusal,) = document["refused"]
    assert refusal["pid"] == loop.pid and refusal["role"] == "restarter"
    assert "restarts the holders" in refusal["reason"] and "use --force" in refusal["reason"]
    assert refusal["cmdline"][:2] == ["bash", "-c"]
    assert loop.poll() is None
    human = run_cli("cleanup", str(port), *SETTLE_UNDER_LOAD)
    assert human.returncode == 1 and f"{loop.pid}" in human.stdout and "restarter" in human.stdout

    forced = run_cli("cleanup", str(port), "--force", "--json", *SETTLE_UNDER_LOAD)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert loop.wait(timeout=10) is not None
    assert stays_free(port)


SUCCESSOR = """
import os, signal, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
def hand_over(signum, frame):
    if os.fork() == 0:  # the successor keeps the socket and ends on its own SIGTERM
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True:
            time.sleep(3600)
    os._exit(0)
signal.signal(signal.SIGTERM, hand_over)
while True:
    time.sleep(3600)
"""


@FORK
def test_a_successor_forked_on_sigterm_is_found_and_stopped(processes: Processes) -> None:
    for _ in range(3):  # the race it once lost was one run in five
        port = fresh_port()
        holder = processes.start([PYTHON, "-c", SUCCESSOR, str(port)])
        deadline_poll(lambda holder=holder, port=port: holder.pid in pids_holding(port))
        result = run_cli("cleanup", str(port), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        document = json.loads(result.stdout)
        assert document["refused"] == [], document
        stopped = [entry["pid"] for entry in document["stopped"]]
        assert stopped[0] == holder.pid and len(stopped) == 2  # the holder, then its successor
        assert stays_free(port, 0.5)


def test_a_foreign_process_that_mentions_the_repository_is_refused(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    server = processes.start(
        [PYTHON, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(ROOT), str(port)],
        cwd=tmp_path,
    )
    other = port_manager.find(start=port + 1)
    logger = processes.start(
        [PYTHON, "-c", listener_script(), str(other), f"--log={ROOT}/x.log"], cwd=tmp_path
    )
    deadline_poll(lambda: server.pid in pids_holding(port) and logger.pid in pids_holding(other))
    for number, process in ((port, server), (other, logger)):
        result = run_cli("cleanup", str(number), "--json")
        assert result.returncode == 1, result.stdout
        (refusal,) = json.loads(result.stdout)["refused"]
        assert refusal["pid"] == process.pid
        assert refusal["reason"] == "not a process of this project (use --force)"
        assert process.poll() is None


def test_the_cli_run_through_a_symlinked_checkout_knows_the_projects_server(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    server = processes.start([PYTHON, "-c", listener_script(), str(port)])  # cwd: ROOT
    deadline_poll(lambda: server.pid in pids_holding(port))
    link = tmp_path / "checkout"
    link.symlink_to(ROOT, target_is_directory=True)
    result = subprocess.run(
        [PYTHON, str(link / "utils" / "port_manager.py"), "cleanup", str(port), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [entry["pid"] for entry in json.loads(result.stdout)["stopped"]] == [server.pid]


HOSTILE = "\x1b]0;owned\x07\x1b[2J\rfake row\nPORT 1"
RAW_CONTROLS = ("\x1b", "\x07", "\r")


def _assert_no_raw_controls(text: str) -> None:
    assert not any(control in text for control in RAW_CONTROLS), repr(text)


@needs(
    LINUX and FORCED_READER != "psutil",
    "Linux: the holder renames itself through /proc/self/comm, and the reader must read "
    "its command line exactly (psutil on Linux reads it as text, turning \\r into \\n)",
)
def test_command_lines_with_terminal_escapes_are_shown_escaped(processes: Processes) -> None:
    port = fresh_port()
    renamer = "open('/proc/self/comm', 'w').write('\\x1b[31mred')\n"
    holder = processes.start([PYTHON, "-c", renamer + listener_script(), str(port), HOSTILE])
    deadline_poll(lambda: holder.pid in pids_holding(port))

    listed = run_cli("list", "--all")
    row_lines = [line for line in listed.stdout.splitlines() if str(holder.pid) in line]
    assert len(row_lines) == 1  # the newline did not make a second row
    assert "\\x1b]0;owned\\x07\\x1b[2J\\rfake row\\nPORT 1" in row_lines[0]
    _assert_no_raw_controls(listed.stdout)
    for human in (
        run_cli("check", str(port)),
        run_cli("cleanup", str(port), "--dry-run"),
        run_invoke("serve.dev", "--port", str(port), "--no-reload"),
    ):
        _assert_no_raw_controls(human.stdout + human.stderr)
        assert "\\x1b" in human.stdout + human.stderr
    busy = run_invoke("serve.dev", "--port", str(port), "--no-reload")
    assert busy.returncode == 1 and len(busy.stderr.splitlines()) == 1

    as_json = run_cli("list", "--all", "--json")
    (row,) = [row for row in json.loads(as_json.stdout) if row["pid"] == holder.pid]
    assert row["cmdline"][-1] == HOSTILE  # exact in JSON
    assert row["name"] == "\x1b[31mred"
    assert "\x1b" not in as_json.stdout  # and validly escaped there

    stopped = run_cli("cleanup", str(port))
    assert stopped.returncode == 0
    _assert_no_raw_controls(stopped.stdout)


def test_a_refused_cleanup_answers_at_once(processes: Processes, tmp_path: Path) -> None:
    port = fresh_port()
    foreign = processes.start([PYTHON, "-c", listener_script(), str(port)], cwd=tmp_path)
    deadline_poll(lambda: foreign.pid in pids_holding(port))
    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["refused"] and document["stopped"] == []
    assert document["seconds"] < 1.0  # no settle wait after a refusal (it once waited 2 s)


# Bound without SO_REUSEADDR to a port the kernel picks (so no TIME_WAIT leftover of an
# earlier test can be in the way), never listening; prints its port.
BOUND_ONLY = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    time.sleep(3600)
"""


def _kernel_names_bound_sockets() -> bool:
    if not LINUX:
        return False
    from utils import _linux  # (Linux's: it reads the clock ticks as it loads)

    if not _linux.available():
        return False
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        return any(not held[4] for held in _linux.held_sockets(port, bound=True))  # listening


def _start_bound_only(processes: Processes) -> tuple[subprocess.Popen[bytes], int]:
    holder = processes.start([PYTHON, "-c", BOUND_ONLY], stdout=subprocess.PIPE)
    assert holder.stdout is not None
    return holder, int(holder.stdout.readline())


@LINUX_READER
@pytest.mark.skipif(not _kernel_names_bound_sockets(), reason="needs Linux 6.5+ sock_diag")
def test_a_socket_bound_without_listening_is_named_and_freed(processes: Processes) -> None:
    holder, port = _start_bound_only(processes)
    checked = run_cli("check", str(port), "--json")
    assert checked.returncode == 1
    (row,) = json.loads(checked.stdout)["holders"]
    assert row["pid"] == holder.pid and row["state"] == "bound"
    human = run_cli("check", str(port))
    assert "bound" in human.stdout and "try as root" not in human.stdout
    assert run_cli("list", "--all", "--json").stdout.count(f'"pid": {holder.pid},') == 0

    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 0, result.stdout
    assert [entry["pid"] for entry in json.loads(result.stdout)["stopped"]] == [holder.pid]


@PROCFS
def test_an_unnamed_bound_socket_is_described_without_a_false_hint(
    processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The /proc/net tables list no bound-only sockets: say what is known, nothing more."""
    _holder, port = _start_bound_only(processes)
    monkeypatch.setenv("PORT_MANAGER_READER", "procfs")
    human = run_cli("check", str(port))
    assert human.returncode == 1
    assert "bound but not listening" in human.stdout
    assert "try as root" not in human.stdout and "netns" not in human.stdout
    cleaned = run_cli("cleanup", str(port))
    assert cleaned.returncode == 1
    assert "bound but not listening" in cleaned.stdout


@JOB_CONTROL
@POSIX_SHELL
def test_a_suspended_restarting_loop_is_continued_and_stopped(processes: Processes) -> None:
    """Ctrl-Z stopped the loop too: it is continued, shows itself as the restarter, goes."""
    port = fresh_port()
    loop = processes.start(_loop(port))
    deadline_poll(lambda: pids_holding(port))
    os.killpg(loop.pid, signal.SIGSTOP)
    deadline_poll(lambda: _states([loop.pid]) == {loop.pid: psutil.STATUS_STOPPED})
    result = run_cli("cleanup", str(port), "--json", *SETTLE_UNDER_LOAD)
    assert result.returncode == 0, result.stdout + result.stderr
    roles = {(e["pid"], e["role"]) for e in json.loads(result.stdout)["stopped"]}
    assert (loop.pid, "restarter") in roles
    assert loop.wait(timeout=10) is not None
    assert stays_free(port)


@POSIX_SHELL
def test_a_restarter_behind_a_fresh_shell_is_found(processes: Processes) -> None:
    """`while true; do sh -c '...'; done`: the holder's parent is new each time."""
    port = fresh_port()
    inner = _quoted(f"{PYTHON} -c {_quoted(listener_script())} {port}; true")
    loop = processes.start(["bash", "-c", f"while true; do sh -c {inner}; done"])
    deadline_poll(lambda: pids_holding(port))
    result = run_cli("cleanup", str(port), "--json", *SETTLE_UNDER_LOAD)
    assert result.returncode == 0, result.stdout + result.stderr
    roles = {(e["pid"], e["role"]) for e in json.loads(result.stdout)["stopped"]}
    assert (loop.pid, "restarter") in roles
    assert stays_free(port)


SUBREAPER = f"""
import ctypes, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans below come to us
subprocess.Popen([sys.executable, "-c", {SUCCESSOR!r}, sys.argv[1]])
while True:
    time.sleep(3600)
"""


@LINUX_READER  # psutil's socket ids cannot tell the successor's socket from a new one
@pytest.mark.skipif(not LINUX, reason="prctl is Linux's")
def test_a_subreaper_that_adopts_a_successor_is_not_its_restarter(processes: Processes) -> None:
    port = fresh_port()
    reaper = processes.start([PYTHON, "-c", SUBREAPER, str(port)])
    deadline_poll(lambda: pids_holding(port) - {reaper.pid})
    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["refused"] == []
    assert {entry["role"] for entry in document["stopped"]} == {"holder"}
    assert reaper.poll() is None  # the process manager lives on
    assert stays_free(port, 0.5)


def test_empty_arguments_stay_in_the_command_line(processes: Processes) -> None:
    port = fresh_port()
    holder = processes.start([PYTHON, "-c", listener_script(), str(port), "", "last"])
    deadline_poll(lambda: holder.pid in pids_holding(port))
    (row,) = [row for row in port_manager.listeners(port) if row.pid == holder.pid]
    assert row.cmdline is not None and row.cmdline[-2:] == ("", "last")


@POSIX_ARGV
def test_arguments_that_are_not_utf8_are_exact_in_json_and_escaped_for_people(
    processes: Processes,
) -> None:
    port = fresh_port()
    holder = subprocess.Popen(
        [PYTHON.encode(), b"-c", listener_script().encode(), str(port).encode(), b"a\xffb"],
        start_new_session=True,
        cwd=ROOT,
    )
    processes.started.append(holder)
    processes.remember(holder.pid)
    deadline_poll(lambda: holder.pid in pids_holding(port))
    (row,) = [r for r in json.loads(run_cli("list", "--all", "--json").stdout) if r["port"] == port]
    assert row["cmdline"][-1] == "a\udcffb"  # the byte, recoverable (surrogateescape)
    human = run_cli("list", "--all").stdout
    assert "a\\udcffb" in human
