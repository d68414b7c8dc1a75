"""Value parsing (utils/_values.py): every range, every malformed form, and how a bad
value is named in its one-line message."""

from __future__ import annotations

import pytest

from utils._values import (
    _unmapped,
    parse_http_path,
    parse_int,
    parse_port,
    parse_seconds,
    resolve_host,
    shown,
)
from utils.errors import InvalidValue

# ------------------------------------------------------------------ integers and ports


@pytest.mark.parametrize("good", ["1", "80", "08000", "65535", 1, 65535])
def test_ports_that_parse(good: object) -> None:
    assert parse_port(good) == int(str(good))


@pytest.mark.parametrize(
    "bad",
    ["0", "65536", " 80", "80\n", "+80", "-1", "8_0", "80.0", "0x50", "٨٠", "", "1" * 4301, True],
)
def test_ports_that_do_not(bad: object) -> None:
    with pytest.raises(InvalidValue, match="expected an integer from 1 to 65535"):
        parse_port(bad)


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "", " 80", "80\n", "65536"])
def test_a_bad_port_is_named_in_its_message(bad: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        parse_port(bad, "--start")
    assert str(raised.value).startswith(f"--start {bad!r} is not valid: ")


def test_a_huge_value_is_named_short_and_with_its_length() -> None:
    with pytest.raises(InvalidValue) as raised:
        parse_int("9" * 5000, "--workers", 1, 64)
    message = str(raised.value)
    assert len(message) < 150 and "(5000 characters)" in message and "\n" not in message
    assert message.startswith("--workers '" + "9" * 40 + "'... ")


def test_shown_escapes_what_it_names() -> None:
    assert shown("a\x1bb") == repr("a\x1bb") and "\x1b" not in shown("a\x1bb")
    assert shown("x" * 40) == repr("x" * 40)  # up to 40 characters: whole
    assert shown("x" * 41) == repr("x" * 40) + "... (41 characters)"
    assert shown(7) == "7"


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("2.5", 2.5), (".5", 0.5), ("5.", 5.0), (3, 3.0), (0.25, 0.25)],
)
def test_durations_that_parse(value: object, seconds: float) -> None:
    assert parse_seconds(value, "--grace", 600) == seconds


@pytest.mark.parametrize(
    "bad", ["-1", "nan", "inf", "1e3", "1e300", " 5", "", "..", "601", True, float("nan"), -0.5]
)
def test_durations_that_do_not(bad: object) -> None:
    with pytest.raises(InvalidValue, match="seconds from 0 to 600"):
        parse_seconds(bad, "--grace", 600)


def test_a_durations_maximum_is_its_own() -> None:
    assert parse_seconds("60", "--settle", 60) == 60.0
    with pytest.raises(InvalidValue, match=r"^--settle '60.5' is not valid: .* from 0 to 60$"):
        parse_seconds("60.5", "--settle", 60)


# ------------------------------------------------------------------ HTTP paths


@pytest.mark.parametrize("good", ["/", "/health", "/a%20b?x=1&y=2#top", "/" + "a" * 2047])
def test_http_paths_that_parse(good: str) -> None:
    assert parse_http_path(good) == good


@pytest.mark.parametrize("bad", ["health", "/\u00e9", "/a b", "/x\r\ny", "", "/" + "a" * 2048])
def test_http_paths_that_do_not_parse(bad: str) -> None:
    with pytest.raises(InvalidValue, match="printable ASCII"):
        parse_http_path(bad)


# ------------------------------------------------------------------ hosts


@pytest.mark.parametrize(
    ("address", "unmapped"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:10.1.2.3", "10.1.2.3"),  # the prefix in any case
        ("::ffff:7f00:1", "::ffff:7f00:1"),  # the hexadecimal form is left alone
        ("::1", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("64:ff9b::1.2.3.4", "64:ff9b::1.2.3.4"),  # NAT64 is no mapped address
    ],
)
def test_an_ipv4_mapped_address_is_its_ipv4_address(address: str, unmapped: str) -> None:
    assert _unmapped(address) == unmapped


def test_a_mapped_host_resolves_once_to_its_ipv4_address() -> None:
    assert resolve_host("::ffff:127.0.0.1") == ("127.0.0.1",)
    assert resolve_host("::FFFF:127.0.0.1") == ("127.0.0.1",)


def test_literal_addresses_resolve_to_themselves() -> None:
    assert resolve_host("127.0.0.1") == ("127.0.0.1",)
    assert resolve_host("::1") == ("::1",)
    assert resolve_host(" 127.0.0.1 ") == ("127.0.0.1",)  # surrounding spaces are not the host


@pytest.mark.parametrize("bad", ["", "   ", "bad\nhost", "a\x1bb"])
def test_hosts_that_are_not_names(bad: str) -> None:
    with pytest.raises(InvalidValue, match="expected a hostname or an IP address") as raised:
        resolve_host(bad)
    assert shown(bad) in str(raised.value)
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_name_that_cannot_be_encoded_is_refused_before_any_lookup() -> None:
    with pytest.raises(InvalidValue, match=r"cannot be resolved .*: expected a hostname"):
        resolve_host("a" * 64 + ".invalid")  # a label over 63 characters: IDNA refuses it
