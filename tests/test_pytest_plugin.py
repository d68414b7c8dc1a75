"""The pytest plugin (utils/pytest_plugin.py) as its users meet it: a test module run by
``pytest -p utils.pytest_plugin``, alone and under pytest-xdist (-n 2)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    holder_pids,
    listener_script,
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
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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


def test_a_port_is_claimed_once_per_run(tmp_path: Path) -> None:
    from utils.pytest_plugin import PortRegistry

    first, second = PortRegistry(str(tmp_path)), PortRegistry(str(tmp_path))  # two workers
    assert first.claim(20001) is True
    assert second.claim(20001) is False and first.claim(20001) is False
    handed = {first.free_port() for _ in range(20)} | {second.free_port() for _ in range(20)}
    assert len(handed) == 40


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
    deadline_poll(lambda: server.pid in holder_pids(port))
    dirty = subprocess.run(hygiene, capture_output=True, text=True, timeout=60)
    assert dirty.returncode == 1
    assert "left servers of this project listening" in dirty.stderr
    assert f" {server.pid} " in dirty.stderr and "terminated" in dirty.stderr
    assert server.wait(timeout=10) is not None
