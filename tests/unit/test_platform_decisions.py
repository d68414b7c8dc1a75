"""What differs per platform, decided by functions that take the platform's name, so the
Windows and macOS decisions are tested here on Linux without pretending to run there:
the bind options, the wildcard a BSD test bind adds, what a failed bind means, which
stopper runs, the system's own processes, and who "you" are where there are no uids."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.unit.synthetic import FakeReader, facts, row
from utils import _binding, _holders, _platform, _stop_rules
from utils._binding import AddressStatus, PortInUse, bind_options, with_wildcards
from utils._stop_rules import SafetyRules, same_user, system_pids

# ------------------------------------------------------------------ test binds


@pytest.mark.parametrize(
    ("platform", "options"),
    [
        ("linux", ("SO_REUSEADDR",)),
        ("darwin", ("SO_REUSEADDR",)),
        ("freebsd14", ("SO_REUSEADDR",)),
        # SO_REUSEADDR there lets a bind succeed on a port another socket holds.
        ("win32", ("SO_EXCLUSIVEADDRUSE",)),
    ],
)
def test_a_server_bind_uses_the_platforms_options(platform: str, options: tuple[str, ...]) -> None:
    assert bind_options(platform) == options


@pytest.mark.parametrize(
    ("platform", "asked", "tested"),
    [
        ("linux", ("127.0.0.1",), ("127.0.0.1",)),
        ("win32", ("127.0.0.1",), ("127.0.0.1",)),
        ("darwin", ("127.0.0.1",), ("127.0.0.1", "0.0.0.0")),
        ("darwin", ("::1",), ("::1", "::")),
        ("freebsd14", ("127.0.0.1", "::1"), ("127.0.0.1", "::1", "0.0.0.0", "::")),
        ("darwin", ("0.0.0.0",), ("0.0.0.0",)),  # a wildcard brings nothing more
        ("darwin", _binding.LOCAL_ADDRESSES, _binding.LOCAL_ADDRESSES),  # no duplicates
    ],
)
def test_a_bsd_test_bind_also_tests_the_wildcard_it_would_bind_beside(
    platform: str, asked: tuple[str, ...], tested: tuple[str, ...]
) -> None:
    assert with_wildcards(asked, platform) == tested


@pytest.mark.parametrize(
    ("platform", "error", "reason"),
    [
        ("win32", OSError(10013, "forbidden by its access permissions"), "in use"),
        ("linux", OSError(errno.EACCES, "Permission denied"), "permission denied"),
        ("win32", OSError(errno.EADDRINUSE, "in use"), "in use"),
        ("linux", OSError(10013, "no such errno here"), "no such errno here"),
    ],
)
def test_a_refused_bind_on_windows_is_a_held_port(
    platform: str, error: OSError, reason: str
) -> None:
    """Windows has no privileged ports: WSAEACCES means held exclusively or reserved."""
    assert _binding._reason(error, platform) == reason


@pytest.fixture
def on_macos(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The platform is macOS and these addresses (filled by the test) hold port 8000."""
    busy: set[str] = set()
    monkeypatch.setattr(_binding, "PLATFORM", "darwin")

    def probe(address: str, port: int) -> AddressStatus:
        held = port == 8000 and address in busy
        return AddressStatus(address, not held, "in use" if held else None)

    monkeypatch.setattr(_binding, "probe", probe)
    monkeypatch.setattr(_holders, "listeners", lambda *_a, **_k: [])
    return busy


def test_check_of_a_loopback_port_on_macos_sees_a_wildcard_listener(on_macos: set[str]) -> None:
    on_macos.add("0.0.0.0")
    status = _binding.check(8000, "127.0.0.1")
    assert not status.free
    assert [(s.address, s.free) for s in status.addresses] == [
        ("127.0.0.1", True),
        ("0.0.0.0", False),
    ]
    assert _binding.find(8000, "127.0.0.1") == 8001


def test_reserve_on_macos_refuses_a_port_whose_wildcard_is_held(on_macos: set[str]) -> None:
    on_macos.add("0.0.0.0")
    with pytest.raises(PortInUse):
        _binding.reserve(8000, "127.0.0.1")


# ------------------------------------------------------------------ stopping


@pytest.mark.parametrize(
    ("platform", "stopper"),
    [("linux", "posix"), ("darwin", "posix"), ("freebsd14", "posix"), ("win32", "windows")],
)
def test_each_platform_gets_its_stopper(platform: str, stopper: str) -> None:
    assert _platform.stopper_name(platform) == stopper


def test_the_stopper_in_force_is_this_platforms() -> None:
    from utils import _signals

    assert _platform.stopper() is _signals  # the suite runs on POSIX


def test_the_systems_own_processes_are_never_stopped() -> None:
    assert set(system_pids("linux")) == set(system_pids("darwin")) == {1}
    assert set(system_pids("win32")) == {0, 4}  # System Idle and System: no pid 1 there


@pytest.mark.parametrize(
    ("owner", "me", "same"),
    [
        ("WORKSTATION\\alice", "alice", True),  # psutil's Windows owner carries the domain
        ("WORKSTATION\\Alice", "alice", True),  # Windows names are case-insensitive
        ("WORKSTATION\\bob", "alice", False),
        (None, "alice", True),  # not told: no difference to act on
        ("bob", None, True),
    ],
)
def test_owners_are_compared_by_name_without_the_domain(
    owner: str | None, me: str | None, same: bool
) -> None:
    assert same_user(owner, me) is same


def test_without_uids_another_users_process_needs_force(
    fake_reader: FakeReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no uids: the owner's name decides, as the uid does on POSIX."""
    monkeypatch.delattr(os, "geteuid", raising=False)
    monkeypatch.setattr(_stop_rules, "_login_name", lambda: "alice")
    rules = SafetyRules(False)
    theirs = facts(500, uid=None, user="WORKSTATION\\bob")
    assert rules.refusal(theirs, True) == "owned by user WORKSTATION\\bob, not by you (use --force)"
    assert rules.refusal(facts(501, uid=None, user="WORKSTATION\\alice"), True) is None
    assert SafetyRules(True).refusal(theirs, True) is None


def test_a_row_of_the_records_is_platform_neutral() -> None:
    """The Windows stopper reads the same records as the POSIX one."""
    holder = row(facts(10))
    assert holder.facts is not None and holder.facts.pgid is None


def test_a_claim_is_checked_without_os_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.kill(pid, 0)`` asks whether a POSIX process lives; on Windows it terminates
    it: the port registry asks psutil whether another run's first process lives."""
    import psutil

    from utils._test_runs import PortRegistry

    def kill(pid: int, sig: int) -> None:
        raise AssertionError("os.kill(pid, 0) would terminate pid on Windows")

    monkeypatch.setattr(os, "kill", kill)
    # psutil's own POSIX implementation is os.kill(pid, 0): a fake stands in for it.
    monkeypatch.setattr(psutil, "pid_exists", lambda pid: pid != 666)
    live = PortRegistry(str(tmp_path), f"run-a:{os.getpid()}")
    assert live.claim(20001)
    assert not PortRegistry(str(tmp_path), "run-b:1").claim(20001)  # its owner lives
    gone = PortRegistry(str(tmp_path), "run-c:666")
    assert gone.claim(20002)
    assert PortRegistry(str(tmp_path), "run-d:1").claim(20002)  # a stale claim is taken over


def test_reserve_on_windows_takes_an_exclusively_held_port_for_a_held_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port another socket holds with SO_EXCLUSIVEADDRUSE refuses the bind with
    WSAEACCES there: reserve names its holders, and search moves on, as for EADDRINUSE."""
    monkeypatch.setattr(_binding, "PLATFORM", "win32")
    monkeypatch.setattr(_binding, "probe", lambda address, port: AddressStatus(address, True))
    monkeypatch.setattr(_holders, "listeners", lambda *_a, **_k: [])
    taken: list[int] = []

    def bind_listening(address: str, port: int, backlog: int) -> object:
        if port == 8000:
            raise OSError(10013, "forbidden by its access permissions")
        taken.append(port)
        return object()

    monkeypatch.setattr(_binding, "_bind_listening", bind_listening)
    with pytest.raises(PortInUse):
        _binding.reserve(8000)
    _binding.reserve(8000, search=True)
    assert taken == [8001]
