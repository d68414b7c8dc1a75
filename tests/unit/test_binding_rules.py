"""Binding rules (utils/_binding.py): which listener can block which address, which
addresses a host means, and how ``check`` turns test binds into a verdict and holders.

The test binds themselves are replaced by synthetic results where the verdict is the
subject; ``addresses_for`` keeps its real bind of port 0, as that bind is its logic.
"""

from __future__ import annotations

import errno
import socket

import pytest

from tests.unit.synthetic import facts, row
from utils import _binding, _holders
from utils._binding import (
    LOCAL_ADDRESSES,
    AddressStatus,
    PortStatus,
    addresses_for,
    conflicts,
)
from utils.errors import InvalidValue


def _ipv6_here() -> bool:
    return _binding.probe("::1", 0).available


@pytest.mark.parametrize(
    ("listening_on", "checked", "blocks"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("0.0.0.0", "127.0.0.1", True),  # a wildcard listener blocks every address of its family
        ("0.0.0.0", "::1", False),
        ("0.0.0.0", "::", False),
        ("::", "::1", True),
        ("::", "127.0.0.1", True),  # "::" may be dual-stack
        ("::", "0.0.0.0", True),
        ("::1", "127.0.0.1", False),
        ("::1", "::", True),  # a wildcard bind is blocked by any listener of its family
        ("127.0.0.1", "0.0.0.0", True),
        ("127.0.0.1", "::", False),
        ("::ffff:127.0.0.1", "127.0.0.1", True),  # an IPv4-mapped listener
        ("::ffff:127.0.0.1", "127.0.0.2", False),
        ("fe80::1", "fe80::1%eth0", True),  # the kernel's tables carry no zone
        ("fe80::1", "fe80::2%eth0", False),
    ],
)
def test_which_listener_blocks_which_address(listening_on: str, checked: str, blocks: bool) -> None:
    assert conflicts(row(facts(10), address=listening_on), checked) is blocks


def test_every_local_address_without_a_host() -> None:
    assert addresses_for(None) == LOCAL_ADDRESSES == ("0.0.0.0", "::", "127.0.0.1", "::1")


def test_a_literal_local_address_is_itself() -> None:
    assert addresses_for("127.0.0.1") == ("127.0.0.1",)
    assert addresses_for("0.0.0.0") == ("0.0.0.0",)


def test_an_ipv4_mapped_host_is_tested_as_its_ipv4_address() -> None:
    assert addresses_for("::ffff:127.0.0.1") == ("127.0.0.1",)


@pytest.mark.skipif(not _ipv6_here(), reason="IPv6 is off on this machine")
def test_an_ipv6_literal_is_itself() -> None:
    assert addresses_for("::1") == ("::1",)


@pytest.mark.parametrize("host", ["192.0.2.1", "::ffff:192.0.2.1"])  # TEST-NET-1: never local
def test_an_address_of_another_machine_is_refused_by_name(host: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        addresses_for(host)
    assert str(raised.value) == (
        f"host {host!r} is not valid: expected an address of this machine "
        "(it resolves to 192.0.2.1)"
    )


# ------------------------------------------------------------------ verdicts


def test_a_port_is_free_when_every_available_address_binds() -> None:
    statuses = (
        AddressStatus("0.0.0.0", True),
        AddressStatus("::", False, "unavailable"),  # IPv6 off: not a reason to call it busy
    )
    assert PortStatus(8000, None, statuses).free
    busy = (*statuses, AddressStatus("127.0.0.1", False, "in use"))
    assert not PortStatus(8000, None, busy).free
    denied = (AddressStatus("0.0.0.0", False, "permission denied"),)
    assert not PortStatus(80, None, denied).free


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (errno.EADDRINUSE, "in use"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EADDRNOTAVAIL, "unavailable"),
        (errno.EAFNOSUPPORT, "unavailable"),
    ],
)
def test_a_failed_bind_is_named_by_its_reason(number: int, reason: str) -> None:
    assert _binding._reason(OSError(number, "text")) == reason


def test_check_names_only_the_listeners_that_block_a_busy_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """127.0.0.1 is busy and ::1 is free: the IPv6 listener on another address is no
    holder of the answer, the wildcard IPv4 one and the loopback one are."""
    busy = {"127.0.0.1", "0.0.0.0"}

    def probe(address: str, port: int) -> AddressStatus:
        return AddressStatus(address, address not in busy, "in use" if address in busy else None)

    wildcard = row(facts(11), address="0.0.0.0", socket_id="a")
    loopback = row(facts(12), address="127.0.0.1", socket_id="b")
    other_v6 = row(facts(13), address="::1", socket_id="c")
    asked: list[tuple[int | None, bool]] = []

    def listeners(port: int | None = None, *, bound: bool = False) -> list[object]:
        asked.append((port, bound))
        return [wildcard, loopback, other_v6]

    monkeypatch.setattr(_binding, "probe", probe)
    monkeypatch.setattr(_holders, "listeners", listeners)
    status = _binding.check(8000)
    assert not status.free
    assert status.holders == (wildcard, loopback)
    assert asked == [(8000, True)]  # bound-only sockets block a server too
    document = status.as_dict()
    assert document["free"] is False and [h["pid"] for h in document["holders"]] == [11, 12]
    assert document["addresses"][0] == {"address": "0.0.0.0", "free": False, "reason": "in use"}


def test_check_of_a_free_port_looks_for_no_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    def listeners(*_args: object, **_kwargs: object) -> list[object]:
        raise AssertionError("a free port needs no socket scan")

    monkeypatch.setattr(_binding, "probe", lambda address, port: AddressStatus(address, True))
    monkeypatch.setattr(_holders, "listeners", listeners)
    assert _binding.check(8000).holders == ()


def test_a_port_refused_only_for_privilege_is_free_for_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reasons = {"0.0.0.0": "permission denied", "::": "unavailable"}

    def probe(address: str, port: int) -> AddressStatus:
        reason = reasons.get(address)
        return AddressStatus(address, reason is None, reason)

    monkeypatch.setattr(_binding, "probe", probe)
    assert _binding.free_for_servers(80)
    reasons["127.0.0.1"] = "in use"
    assert not _binding.free_for_servers(80)


def test_a_test_bind_lets_go_at_once(free_port: int) -> None:
    """The probe binds the way a server would and closes: the port is free right after."""
    assert _binding.probe("127.0.0.1", free_port) == AddressStatus("127.0.0.1", True)
    with socket.socket() as again:
        again.bind(("127.0.0.1", free_port))
