"""The pytest plugin (utils/pytest_plugin.py) as its users meet it: a test module run by
``pytest -p utils.pytest_plugin``, alone and under pytest-xdist (-n 2)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    FORK,
    POSIX_SHELL,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    pids_holding,
)
from utils import port_manager

USER_TESTS = textwrap.dedent(
    """
    import os, socket, subprocess, sys, time
    import pytest

    LOG = os.environ["PORT_LOG"]

    def record(port):
        # O_EXCL: a port handed out twice in this run fails here.
        os.close(os.open(os.path.join(LOG, str(port)), os.O_CREAT | os.O_EXCL))

    @pytest.fixture(scope="session")
    def session_server():
        from utils.pytest_plugin import free_port_for_this_run
        port = free_port_for_this_run()
        child = listen_in_a_child(port)
        yield port
        child.kill()
        child.wait()

    # First: a session server outlives the test that started it (not its last user).
    def test_a_session_server_is_no_leak(session_server):
        socket.create_connection(("127.0.0.1", session_server), timeout=5).close()

    @pytest.mark.parametrize("n", range(12))
    def test_free_port_is_ours_alone(free_port, n):
        record(free_port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", free_port))

    def test_reserved_socket_is_listening(reserved_socket):
        record(reserved_socket.getsockname()[1])
        with socket.create_connection(reserved_socket.getsockname(), timeout=5):
            pass

    def listen_in_a_child(port):
        code = ("import socket, time; s = socket.socket(); "
                f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)")
        child = subprocess.Popen([sys.executable, "-c", code])
        with open(os.path.join(LOG, f"child-{child.pid}"), "w") as f:
            f.write(str(port))
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return child
            except OSError:
                time.sleep(0.01)
        raise AssertionError("the child never listened")

    def test_a_server_left_running(free_port):
        listen_in_a_child(free_port)

    @pytest.mark.allow_listeners
    def test_allowed_to_leave_one(free_port):
        listen_in_a_child(free_port)

    """
)


@pytest.fixture
def user_suite(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "ports"
    log.mkdir()
    monkeypatch.setenv("PORT_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_user=USER_TESTS)
    return log


def _children(log: Path) -> dict[int, int]:
    """pid -> port of every server the user suite started."""
    return {
        int(path.name.split("-", 1)[1]): int(path.read_text())
        for path in log.glob("child-*")
        if path.read_text()
    }


def _stop(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist -n 2"])
def test_fixtures_and_leak_check_as_a_user_meets_them(
    pytester: pytest.Pytester, user_suite: Path, workers: list[str]
) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "utils.pytest_plugin", *workers, "-p", "no:cacheprovider"
    )
    children = _children(user_suite)
    try:
        result.assert_outcomes(passed=16, errors=1)
        ports = [int(path.name) for path in user_suite.iterdir() if path.name.isdigit()]
        assert len(ports) == 13  # twelve free ports and a reserved one: all distinct
        output = result.stdout.str()
        leaked = [pid for pid, port in children.items() if f"pid {pid}:" in output]
        assert len(leaked) == 1
        (leaked_pid,) = leaked
        assert f"port {children[leaked_pid]}: pid {leaked_pid}: " in output
        assert "test_a_server_left_running left 1 listening socket(s) behind" in output
        assert "portkeeper: leaked listeners stopped" in output  # the session summary
        assert not psutil.pid_exists(leaked_pid) or (
            psutil.Process(leaked_pid).status() == psutil.STATUS_ZOMBIE
        )
        assert port_manager.check(children[leaked_pid]).free
        allowed = [pid for pid in children if pid != leaked_pid and psutil.pid_exists(pid)]
        assert len(allowed) == 1  # the opted-out one is left alone (and stopped below)
    finally:
        _stop(list(children))


def test_the_check_can_be_turned_off_for_a_run(pytester: pytest.Pytester, user_suite: Path) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "utils.pytest_plugin", "--no-listener-check", "-k", "left_running"
    )
    children = _children(user_suite)
    try:
        result.assert_outcomes(passed=1, deselected=15)
        assert "listening socket(s) behind" not in result.stdout.str()
        deadline_poll(lambda: all(psutil.pid_exists(pid) for pid in children), timeout=5)
    finally:
        _stop(list(children))


def test_a_port_is_claimed_once_across_workers_and_runs(tmp_path: Path) -> None:
    from utils.pytest_plugin import PortRegistry

    run = f"run-a:{os.getpid()}"  # a live first process
    worker_1, worker_2 = PortRegistry(str(tmp_path), run), PortRegistry(str(tmp_path), run)
    other_run = PortRegistry(str(tmp_path), f"run-b:{os.getpid()}")
    assert worker_1.claim(20001) is True
    assert worker_2.claim(20001) is False and other_run.claim(20001) is False
    handed = {worker_1.free_port() for _ in range(20)} | {other_run.free_port() for _ in range(20)}
    assert len(handed) == 40

    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    crashed = PortRegistry(str(tmp_path), f"run-c:{dead.pid}")  # its first process is gone
    assert crashed.claim(20002) is True
    assert worker_1.claim(20002) is True  # a stale claim is taken over
    worker_1.release_all()
    assert other_run.claim(20001) is True  # given back at the end of the run


@POSIX_SHELL  # .ci/port-hygiene is a bash script
def test_ci_port_hygiene_names_stops_and_fails_on_a_leftover(
    processes: Processes, tmp_path: Path
) -> None:
    """`.ci/port-hygiene` in a copy of the checkout (so it can only see the copy's servers)."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "utils", checkout / "utils", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / ".ci", checkout / ".ci")
    (checkout / "pyproject.toml").write_text("")
    hygiene = [str(checkout / ".ci" / "port-hygiene"), PYTHON]
    clean = subprocess.run(hygiene, capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stderr
    port = fresh_port()
    server = processes.start([PYTHON, "-c", listener_script(), str(port)], cwd=checkout)
    deadline_poll(lambda: server.pid in pids_holding(port))
    dirty = subprocess.run(hygiene, capture_output=True, text=True, timeout=60)
    assert dirty.returncode == 1
    assert "left servers of this project listening" in dirty.stderr
    assert f" {server.pid} " in dirty.stderr and "terminated" in dirty.stderr
    assert server.wait(timeout=10) is not None


HOSTILE_TESTS = textwrap.dedent(
    """
    import os, socket, subprocess, sys, time
    import pytest

    LOG = os.environ["PORT_LOG"]
    SERVE = ("import socket, sys, time; s = socket.socket(socket.AF_INET6 if ':' in sys.argv[2] "
             "else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
             "s.bind((sys.argv[2], int(sys.argv[1]))); s.listen(); time.sleep(600)")

    def wait_listening(port, host="127.0.0.1"):
        for _ in range(500):
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        raise AssertionError("never listened")

    def note(name, pid):
        with open(os.path.join(LOG, name), "w") as f:
            f.write(str(pid))

    def test_a_double_forked_daemon(free_port):
        code = ("import os, subprocess, sys\\n"
                "if os.fork() == 0:\\n"
                "    os.setsid()\\n"
                f"    p = subprocess.Popen("
                f"[sys.executable, '-c', {SERVE!r}, '{free_port}', '127.0.0.1'])\\n"
                f"    open({os.path.join(LOG, 'daemon')!r}, 'w').write(str(p.pid))\\n"
                "    os._exit(0)\\n")
        subprocess.run([sys.executable, "-c", code], check=True)
        wait_listening(free_port)

    def test_a_restart_loop(free_port):
        loop = subprocess.Popen(["bash", "-c",
            f"while true; do {sys.executable} -c \\"$0\\" {free_port} 127.0.0.1; done", SERVE])
        note("loop", loop.pid)
        wait_listening(free_port)

    @pytest.fixture
    def careless_server(free_port):
        child = subprocess.Popen([sys.executable, "-c", SERVE, str(free_port), "127.0.0.1"])
        note("careless", child.pid)
        wait_listening(free_port)
        yield
        raise RuntimeError("teardown broke before stopping the server")

    def test_a_teardown_that_raises(careless_server):
        pass

    def test_beside_a_server_started_before_the_run():
        port = int(os.environ["SHARED_PORT"])
        child = subprocess.Popen([sys.executable, "-c", SERVE, str(port), "::1"])
        note("beside", child.pid)
        wait_listening(port, "::1")
    """
)


@FORK
@POSIX_SHELL
def test_daemons_loops_broken_teardowns_and_neighbours(
    pytester: pytest.Pytester,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: Processes,
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    shared = fresh_port()
    neighbour = processes.start([PYTHON, "-c", listener_script(), str(shared)])  # a project server
    deadline_poll(lambda: neighbour.pid in pids_holding(shared))
    monkeypatch.setenv("PORT_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("SHARED_PORT", str(shared))
    pytester.makepyfile(test_hostile=HOSTILE_TESTS)
    result = pytester.runpytest_subprocess("-p", "utils.pytest_plugin", "-p", "no:cacheprovider")
    started = {path.name: int(path.read_text()) for path in log.iterdir() if path.read_text()}
    try:
        result.assert_outcomes(passed=4, errors=4)
        output = result.stdout.str()
        for name in ("daemon", "loop", "careless", "beside"):
            assert name in started, output
            deadline_poll(
                lambda name=name: (
                    not psutil.pid_exists(started[name])
                    or psutil.Process(started[name]).status() == psutil.STATUS_ZOMBIE
                ),
                timeout=10,
            )
        assert "teardown broke" in output
        assert neighbour.poll() is None  # the server from before the run was left alone
        assert neighbour.pid in pids_holding(shared)
        # Nothing the user suite started is left: no holder of a loop, no daemon.
        deadline_poll(lambda: not _started_by_suite(log), timeout=10)
    finally:
        _stop([*started.values(), *_started_by_suite(log)])


def _started_by_suite(log: Path) -> list[int]:
    """Live processes whose environment names this user suite's log directory."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("PORT_LOG") == str(log) and process.status() != "zombie":
                found.append(process.pid)
    return found


@FORK
def test_an_innocent_test_beside_another_workers_daemon(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under -n 2, one worker's test runs a daemon for a while; the other's is not blamed."""
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setenv("PORT_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(
        test_pair=HOSTILE_TESTS.split("def test_a_double_forked_daemon")[0]
        + textwrap.dedent(
            """
            def test_uses_a_daemon_then_stops_it(free_port):
                code = ("import os, subprocess, sys\\n"
                        "if os.fork() == 0:\\n"
                        f"    p = subprocess.Popen("
                        f"[sys.executable, '-c', {SERVE!r}, '{free_port}', '127.0.0.1'])\\n"
                        f"    open({os.path.join(LOG, 'daemon')!r}, 'w').write(str(p.pid))\\n"
                        "    os._exit(0)\\n")
                subprocess.run([sys.executable, "-c", code], check=True)
                wait_listening(free_port)
                time.sleep(2)  # the other worker's test runs meanwhile
                pid = int(open(os.path.join(LOG, "daemon")).read())
                os.kill(pid, 9)

            def test_innocent():
                time.sleep(1)
            """
        )
    )
    result = pytester.runpytest_subprocess(
        "-p", "utils.pytest_plugin", "-n", "2", "-p", "no:cacheprovider"
    )
    started = [int(path.read_text()) for path in log.iterdir() if path.read_text()]
    try:
        result.assert_outcomes(passed=2)
    finally:
        _stop(started)
