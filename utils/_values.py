"""Validation of user-supplied values, shared by every front end.

Invoke hands flag values over as strings and argparse is told to do the same, so every
caller converts through these functions and bad input always reads the same way.
"""

from __future__ import annotations

import math


class InvalidValue(ValueError):
    """A malformed user value; ``str()`` is one line naming the value and what is allowed."""


def parse_port(value: object, what: str = "port") -> int:
    """An integer 1-65535, from an int or its decimal text."""
    text = str(value).strip() if value is not None else ""
    if (
        isinstance(value, bool)
        or not (text.isascii() and text.isdigit())
        or not 1 <= int(text) <= 65535
    ):
        raise InvalidValue(f"{what} {value!r} is not valid: expected an integer from 1 to 65535")
    return int(text)


def parse_seconds(value: object, what: str) -> float:
    """A finite, non-negative number of seconds, from a number or its text."""
    try:
        seconds = float(str(value).strip()) if not isinstance(value, bool) else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValue(f"{what} {value!r} is not valid: expected a number of seconds >= 0")
    return seconds


def resolve_host(host: str) -> tuple[str, ...]:
    """The IP addresses ``host`` names, IPv4 first; InvalidValue if it names none."""
    if not host.strip():
        raise InvalidValue(f"host {host!r} is not valid: expected a hostname or an IP address")
    import socket

    try:
        infos = socket.getaddrinfo(host.strip(), None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidValue(
            f"host {host!r} cannot be resolved ({error}): expected a hostname or an IP address"
        ) from None
    addresses: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for info_family, _, _, _, sockaddr in infos:
            address = str(sockaddr[0]).split("%")[0]
            if info_family == family and address not in addresses:
                addresses.append(address)
    return tuple(addresses)
