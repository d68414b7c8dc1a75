"""The original API, kept (``utils/_compat.py``): each function against real sockets and
processes - a held port, a free one, a foreign holder, a uvicorn server with workers."""

from __future__ import annotations

import logging
import math
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    PYTHON,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    listening_socket,
    pids_holding,
)
from utils import _compat, port_manager
from utils.port_manager import (
    DEFAULT_SETTLE_SECONDS,
    InvalidValue,
    cleanup_port,
    cleanup_port_if_needed,
    cleanup_project_ports,
    find_free_port,
    get_process_using_port,
    is_port_in_use,
    kill_process_on_port,
    list_project_ports,
    listeners,
    project_ports,
    wait_for_port_free,
)

COMPAT_NAMES = [
    "cleanup_port",
    "cleanup_port_if_needed",
    "cleanup_project_ports",
    "find_free_port",
    "get_process_using_port",
    "is_port_in_use",
    "kill_process_on_port",
    "list_project_ports",
    "wait_for_port_free",
]


def start_listener(
    processes: Processes, port: int, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A process listening on 127.0.0.1:``port``: the project's unless ``cwd`` is elsewhere."""
    args = [PYTHON, "-c", listener_script(), str(port)]
    process = processes.start(args, cwd=cwd) if cwd else processes.start(args)
    deadline_poll(lambda: process.pid in pids_holding(port))
    return process


def exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


def free_pair() -> int:
    """A port ``p`` such that ``p`` and ``p + 1`` are both free right now."""
    port = fresh_port()
    while not port_manager.check(port + 1).free:
        port = port_manager.find(start=port + 2)
    return port


def timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


def test_the_names_are_exported_by_the_facade() -> None:
    for name in COMPAT_NAMES:
        assert name in port_manager.__all__
        assert getattr(port_manager, name) is getattr(_compat, name)


def test_is_port_in_use_and_get_process_using_port(processes: Processes, reader: str) -> None:
    held = fresh_port()
    server = start_listener(processes, held)
    free = port_manager.find(start=held + 1)

    assert is_port_in_use(held) is True
    assert is_port_in_use(free) is False

    found = get_process_using_port(held)
    assert found == {
        "pid": server.pid,
        "name": psutil.Process(server.pid).name(),
        "command": shlex.join(psutil.Process(server.pid).cmdline()),
        "port": held,
    }
    assert shlex.split(found["command"])[-1] == str(held)  # one string, exact arguments
    assert get_process_using_port(free) is None


def test_get_process_using_port_names_the_uvicorn_supervisor(
    processes: Processes, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = fresh_port()
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", str(port), "--workers", "2"]
    )
    deadline_poll(lambda: len(pids_holding(port)) >= 3)
    workers = pids_holding(port) - {server.pid}
    assert len(workers) == 2

    found = get_process_using_port(port)
    assert found is not None
    assert found["pid"] == server.pid
    assert found["port"] == port
    assert found["command"] == shlex.join(psutil.Process(server.pid).cmdline())
    assert "--workers 2" in found["command"]
    assert is_port_in_use(port) is True

    # The supervisor is found through the process tree, not by coming first: with the
    # rows in the opposite order (a worker first) the answer is the same.
    monkeypatch.setattr(
        _compat, "listeners", lambda *args, **kwargs: listeners(*args, **kwargs)[::-1]
    )
    assert listeners(port, bound=True)[-1].pid != server.pid
    assert get_process_using_port(port) == found


def test_kill_process_on_port_stops_a_project_listener(processes: Processes) -> None:
    port = fresh_port()
    server = start_listener(processes, port)
    assert kill_process_on_port(port) is True
    deadline_poll(lambda: exited(server))
    assert port_manager.check(port).free
    # Nothing holds it now: nothing was killed.
    assert kill_process_on_port(port) is False


def test_a_foreign_holder_is_refused_without_force_and_stopped_with_it(
    processes: Processes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = fresh_port()
    foreign = start_listener(processes, port, cwd=tmp_path)
    assert [row.project for row in port_manager.listeners(port)] == [False]

    with caplog.at_level(logging.WARNING, logger="portkeeper"):
        assert kill_process_on_port(port) is False
    assert foreign.poll() is None
    assert pids_holding(port) == {foreign.pid}
    assert any(
        record.name == "portkeeper" and "not a process of this project" in record.getMessage()
        for record in caplog.records
    )
    assert cleanup_port(port) is False
    assert cleanup_port(port, wait=False) is False
    assert cleanup_port_if_needed(port) is False
    assert foreign.poll() is None
    assert get_process_using_port(port) is not None  # held, and still named

    assert kill_process_on_port(port, force=True) is True
    deadline_poll(lambda: exited(foreign))
    assert not is_port_in_use(port)


def test_cleanup_port_with_and_without_the_settle_window(processes: Processes) -> None:
    first = fresh_port()
    second = port_manager.find(start=first + 1)
    one = start_listener(processes, first)
    two = start_listener(processes, second)

    assert cleanup_port(first) is True
    assert exited(one)  # cleanup returns only once the holders are gone
    assert cleanup_port(second, wait=False) is True
    assert exited(two)
    assert port_manager.check(first).free and port_manager.check(second).free

    # A free port is freed too; wait=True watches it through the settle window,
    # wait=False checks it once.
    watched, watched_seconds = timed(lambda: cleanup_port(first))
    assert watched is True and watched_seconds >= DEFAULT_SETTLE_SECONDS
    once, once_seconds = timed(lambda: cleanup_port(first, wait=False))
    assert once is True and once_seconds < DEFAULT_SETTLE_SECONDS


def test_cleanup_port_if_needed(processes: Processes) -> None:
    port = fresh_port()
    # Free: True at once, without the settle window.
    answer, seconds = timed(lambda: cleanup_port_if_needed(port))
    assert answer is True and seconds < DEFAULT_SETTLE_SECONDS

    server = start_listener(processes, port)
    assert cleanup_port_if_needed(port) is True
    assert exited(server)
    assert port_manager.check(port).free


def test_wait_for_port_free(processes: Processes) -> None:
    port = fresh_port()
    assert wait_for_port_free(port, timeout=0) is True

    server = start_listener(processes, port)
    answer, seconds = timed(lambda: wait_for_port_free(port, timeout=0.3))
    assert answer is False and seconds >= 0.3
    assert server.poll() is None  # it only watches

    server.kill()
    assert wait_for_port_free(port, timeout=20) is True
    assert port_manager.check(port).free


def test_find_free_port_skips_held_ports_and_fails_when_all_are_held() -> None:
    start = free_pair()
    assert find_free_port(start, 1) == start
    with listening_socket("127.0.0.1", start):
        assert find_free_port(start, 2) == start + 1
        with listening_socket("127.0.0.1", start + 1), pytest.raises(RuntimeError) as raised:
            find_free_port(start, max_attempts=2)
        assert f"{start} to {start + 1}" in str(raised.value)
    assert find_free_port(start_port=start, max_attempts=2) == start


@pytest.mark.parametrize(
    ("start_port", "max_attempts"),
    [
        (0, 10),
        (-1, 10),
        (65536, 10),
        ("abc", 10),
        (80.5, 10),
        (True, 10),
        (None, 10),
        (8000, 0),
        (8000, -1),
        (8000, 65536),
        (8000, 1.5),
        (8000, False),
    ],
)
def test_find_free_port_validates_its_arguments(start_port: object, max_attempts: object) -> None:
    with pytest.raises(InvalidValue) as raised:
        find_free_port(start_port, max_attempts)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda port: is_port_in_use(0),
        lambda port: is_port_in_use("80 "),  # type: ignore[arg-type]
        lambda port: get_process_using_port(70000),
        lambda port: kill_process_on_port(port, force="no"),  # type: ignore[arg-type]
        lambda port: kill_process_on_port(-port),
        lambda port: wait_for_port_free(port, timeout=-1),
        lambda port: wait_for_port_free(port, timeout=math.nan),
        lambda port: wait_for_port_free(port, timeout=1e300),
        lambda port: cleanup_port(port, wait="no"),  # type: ignore[arg-type]
        lambda port: cleanup_port(port, force=1),  # type: ignore[arg-type]
        lambda port: cleanup_port_if_needed(port, force="yes"),  # type: ignore[arg-type]
        lambda port: cleanup_project_ports(force="true"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_raise_invalid_value_and_stop_nothing(
    processes: Processes, call: Callable[[int], object]
) -> None:
    port = fresh_port()
    server = start_listener(processes, port)
    with pytest.raises(InvalidValue):
        call(port)
    assert server.poll() is None
    assert pids_holding(port) == {server.pid}


def test_project_ports_are_listed_and_cleaned(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fresh_port()
    second = port_manager.find(start=first + 1)
    servers = [start_listener(processes, first), start_listener(processes, second)]
    other = port_manager.find(start=second + 1)
    foreign = start_listener(processes, other, cwd=tmp_path)

    listed = list_project_ports()
    assert {first, second} <= set(listed)
    assert other not in listed  # listening, but not the project's
    assert listed == sorted(set(listed))

    # Clean only this test's two ports: a project server of someone else (a developer's,
    # another test run's) must not be stopped by the test suite.
    monkeypatch.setattr(
        _compat, "project_ports", lambda: [p for p in project_ports() if p in (first, second)]
    )
    assert cleanup_project_ports() == 2
    assert all(exited(server) for server in servers)
    assert port_manager.check(first).free and port_manager.check(second).free
    assert foreign.poll() is None
    monkeypatch.undo()
    assert not {first, second} & set(list_project_ports())


def test_cleanup_project_ports_counts_only_freed_ports(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project port shared with a foreign holder is refused without force: not counted."""
    port = fresh_port()
    ours = start_listener(processes, port)
    foreign = processes.start([PYTHON, "-c", listener_script("::1"), str(port)], cwd=tmp_path)
    deadline_poll(lambda: foreign.pid in pids_holding(port))
    monkeypatch.setattr(_compat, "project_ports", lambda: [p for p in project_ports() if p == port])

    assert cleanup_project_ports() == 0
    assert ours.poll() is None and foreign.poll() is None
    assert cleanup_project_ports(force=True) == 1
    assert exited(ours) and exited(foreign)


def test_nothing_is_printed(
    processes: Processes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fresh_port()
    foreign = start_listener(processes, port, cwd=tmp_path)
    is_port_in_use(port)
    get_process_using_port(port)
    kill_process_on_port(port)
    cleanup_port(port, wait=False)
    wait_for_port_free(port, timeout=0)
    with pytest.raises(RuntimeError):
        find_free_port(port, 1)
    assert foreign.poll() is None
    assert capsys.readouterr() == ("", "")
