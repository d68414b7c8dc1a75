"""Validation of user-supplied values, shared by every front end.

Invoke hands flag values over as strings, and so does the CLI's parser, so every caller
converts through these functions and bad input always reads the same way: one line
naming the value (shortened and escaped when it is long or strange) and what is allowed.
Each range is written once, here.
"""

from __future__ import annotations

from utils.errors import InvalidValue

DEFAULT_GRACE_SECONDS = 5.0  # cleanup: SIGTERM, then SIGKILL after this
# How long a freed port must stay free. Shell loops and process managers restart a
# holder within 0.05-0.2 s; a successful cleanup spends this long making sure.
DEFAULT_SETTLE_SECONDS = 0.5
DEFAULT_WAIT_SECONDS = 30.0
PORT_RANGE = (1, 65535)
# The backend's port and the first port `find` tries: the one default port of the project
# (the deployment files repeat it; tests/test_deployment.py holds them equal).
DEFAULT_PORT = 8000
WORKERS_RANGE = (1, 64)
# Upper bounds of durations: a typo such as 1e300 is an error, not a wait of ages.
MAX_GRACE_SECONDS = 600.0
MAX_SETTLE_SECONDS = 60.0
MAX_WAIT_SECONDS = 86400.0
_SHOWN_CHARACTERS = 40  # a value longer than this is shown cut, with its length


def shown(value: object) -> str:
    """``repr(value)`` for a message: one line, at most about 40 characters of the value."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARACTERS:
        return f"{value[:_SHOWN_CHARACTERS]!r}... ({len(value)} characters)"
    return repr(value)


def parse_int(value: object, what: str, low: int, high: int) -> int:
    """An integer from ``low`` to ``high``, from an int or its plain decimal text.

    Text must be digits only: no sign, no spaces or newlines around it, no underscores.
    Its length is checked before ``int()``, whose digit limit would otherwise raise on
    a value of some thousands of digits.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        number = None
    if number is None or not low <= number <= high:
        raise InvalidValue(
            f"{what} {shown(value)} is not valid: expected an integer from {low} to {high}"
        )
    return number


def parse_port(value: object, what: str = "port") -> int:
    """A TCP port, an integer 1-65535."""
    return parse_int(value, what, *PORT_RANGE)


def _is_decimal(text: str) -> bool:
    """Digits with at most one decimal point: no sign, exponent, spaces or ``nan``."""
    whole, _, fraction = text.partition(".")
    digits = whole + fraction
    return bool(digits) and digits.isascii() and digits.isdigit() and len(text) <= 20


def parse_seconds(value: object, what: str, maximum: float) -> float:
    """A number of seconds from 0 to ``maximum``, from a number or its decimal text."""
    seconds: float | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, (int, float)) or (isinstance(value, str) and _is_decimal(value)):
        seconds = float(value)
    if seconds is None or not 0 <= seconds <= maximum:  # NaN fails the comparison too
        raise InvalidValue(
            f"{what} {shown(value)} is not valid: expected a number of seconds "
            f"from 0 to {maximum:g}"
        )
    return seconds


def parse_http_path(value: str) -> str:
    """A request path: '/' then printable ASCII without spaces (percent-encode the rest)."""
    if not (
        value.startswith("/")
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and len(value) <= 2048
    ):
        raise InvalidValue(
            f"--http {shown(value)} is not valid: expected a path starting with '/', "
            "of printable ASCII characters without spaces (percent-encode others)"
        )
    return value


def _unmapped(address: str) -> str:
    """An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is its IPv4 address."""
    lowered = address.lower()
    if lowered.startswith("::ffff:") and "." in lowered:
        return lowered[len("::ffff:") :]
    return address


def resolve_host(host: str) -> tuple[str, ...]:
    """The IP addresses ``host`` names, IPv4 first; InvalidValue if it names none."""
    if not host.strip() or not host.isprintable():
        raise InvalidValue(f"host {shown(host)} is not valid: expected a hostname or an IP address")
    import socket

    try:
        infos = socket.getaddrinfo(host.strip(), None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as error:
        raise InvalidValue(
            f"host {shown(host)} cannot be resolved ({error}): expected a hostname or an IP address"
        ) from None
    addresses: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for info_family, _, _, _, sockaddr in infos:
            address = _unmapped(str(sockaddr[0]))  # a link-local zone (%eth0) is kept
            if info_family == family and address not in addresses:
                addresses.append(address)
    addresses.sort(key=lambda address: ":" in address)  # mapped ones joined IPv4
    return tuple(addresses)
