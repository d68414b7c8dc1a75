"""check, find and reserve against real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    PYTHON,
    Processes,
    deadline_poll,
    fresh_port,
    listening_socket,
    run_cli,
)
from utils import port_manager


@pytest.fixture
def port() -> int:
    return fresh_port()


def test_free_port_checks_free_on_every_local_address(port: int) -> None:
    result = run_cli("check", str(port), "--json")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["free"] is True
    assert {entry["address"] for entry in document["addresses"]} == {
        "0.0.0.0",
        "::",
        "127.0.0.1",
        "::1",
    }
    assert document["holders"] == []


def test_busy_port_names_this_process_as_holder(port: int, reader: str) -> None:
    with listening_socket("127.0.0.1", port):
        result = run_cli("check", str(port), "--json")
        assert result.returncode == 1
        document = json.loads(result.stdout)
        assert document["free"] is False
        assert [holder["pid"] for holder in document["holders"]] == [os.getpid()]
        human = run_cli("check", str(port))
        assert human.returncode == 1
        assert str(os.getpid()) in human.stdout and "not free" in human.stdout


def test_wildcard_listener_blocks_a_loopback_bind(port: int) -> None:
    with listening_socket("0.0.0.0", port):
        status = port_manager.check(port, "127.0.0.1")
        assert not status.free
        assert [holder.address for holder in status.holders] == ["0.0.0.0"]
        # An IPv6 bind is not blocked by an IPv4-only listener.
        assert port_manager.check(port, "::1").free


def test_ipv6_only_listener_on_loopback(port: int, reader: str) -> None:
    with listening_socket("::1", port):
        status = port_manager.check(port)
        assert not status.free
        assert [s.address for s in status.addresses if not s.free] == ["::", "::1"]
        assert [(h.family, h.address, h.pid) for h in status.holders] == [
            ("IPv6", "::1", os.getpid())
        ]
        assert port_manager.check(port, "127.0.0.1").free


def test_dual_stack_listener_blocks_ipv4_and_ipv6(port: int, reader: str) -> None:
    with listening_socket("::", port, v6only=False):
        for host in ("127.0.0.1", "::1", "0.0.0.0"):
            status = port_manager.check(port, host)
            assert not status.free, host
            assert [holder.pid for holder in status.holders] == [os.getpid()], host


def test_time_wait_alone_is_not_busy(port: int) -> None:
    with listening_socket("127.0.0.1", port) as server:
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.close()
    assert deadline_poll(lambda: "06" in _tcp_states(port))  # TIME_WAIT really exists
    assert port_manager.check(port).free
    assert run_cli("check", str(port)).returncode == 0


def _tcp_states(port: int) -> set[str]:
    states = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                states.add(fields[3])
    return states


def test_find_skips_busy_ports(port: int) -> None:
    with listening_socket("127.0.0.1", port):
        found = run_cli("find", "--start", str(port))
        assert found.returncode == 0
        chosen = int(found.stdout)
        assert chosen > port
        assert port_manager.check(chosen).free
        document = json.loads(run_cli("find", "--start", str(port), "--json").stdout)
        assert document == {"port": chosen, "start": port, "host": None}


def test_find_falls_back_to_an_os_assigned_port() -> None:
    last = 65535  # the top of the range: nothing at or above it is left to try
    holding = listening_socket("127.0.0.1", last) if port_manager.check(last).free else None
    with holding or contextlib.nullcontext():
        chosen = port_manager.find(last)
    assert chosen != last
    assert 1024 <= chosen < last


def test_reserve_holds_the_port_and_refuses_a_second_taker(port: int) -> None:
    with port_manager.reserve(port) as sock:
        assert sock.getsockname()[1] == port
        assert sock.get_inheritable()
        client = socket.create_connection(("127.0.0.1", port), timeout=2)  # it listens
        client.close()
        with pytest.raises(port_manager.PortInUse) as raised:
            port_manager.reserve(port)
        assert [holder.pid for holder in raised.value.status.holders] == [os.getpid()]
        with port_manager.reserve(port, search=True) as moved:
            assert moved.getsockname()[1] > port


RESERVER = """
import sys, time
from pathlib import Path
from utils import port_manager
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
sock = port_manager.reserve(int(sys.argv[1]), search=True)
print(sock.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_concurrent_reservations_never_share_a_port(
    port: int, processes: Processes, tmp_path: Path
) -> None:
    """Eight processes reserve from the same start port at the same moment."""
    go = tmp_path / "go"
    racers = [
        processes.start(
            [PYTHON, "-c", RESERVER, str(port), str(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    go.touch()
    ports = []
    for racer in racers:
        assert racer.stdout is not None
        line = racer.stdout.readline()
        assert line.strip().isdigit(), racer.stderr.read() if racer.stderr else ""
        ports.append(int(line))
    assert len(set(ports)) == 8
    assert min(ports) == port
