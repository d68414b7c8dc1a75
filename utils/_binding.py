"""Whether a port can be bound, the first free one, and reserving one without a race.

"Free" means what a server needs: a socket bound the way a server binds could take the
address now. That is a test bind, not a look at the socket tables, so TIME_WAIT leftovers
do not count as busy and sockets of other network namespaces or hidden owners still do.

How a server binds differs per platform (``bind_options``): ``SO_REUSEADDR`` on POSIX
(TIME_WAIT does not block), ``SO_EXCLUSIVEADDRUSE`` on Windows, where ``SO_REUSEADDR``
lets a bind succeed on a port another socket holds. On BSD and macOS a specific address
binds next to another socket's wildcard of the same port, so a test of one address tests
its family's wildcard too (``with_wildcards``).
"""

from __future__ import annotations

# _socket, the C module under ``socket``: a test bind needs none of the wrapper, whose
# enums cost a quarter of a ``check`` (``reserve`` hands out a real ``socket.socket``).
import _socket
import errno
import sys

from utils._records import Record
from utils._values import DEFAULT_PORT, resolve_host, shown
from utils.errors import InvalidValue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import socket
    from typing import Any

    from utils._common import Listener

LOCAL_ADDRESSES = ("0.0.0.0", "::", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::")
_UNAVAILABLE = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
PLATFORM = sys.platform  # what the decisions below default to (tests pass another)
WSAEACCES = 10013  # Windows: the port is held exclusively, or reserved by the system
# Where a specific address binds beside another socket's wildcard of the same port.
BSD_PLATFORMS = ("darwin", "freebsd", "openbsd", "netbsd", "dragonfly")


class AddressStatus(Record):
    """The result of one test bind."""

    address: str
    free: bool
    reason: str | None = None  # why not: "in use", "permission denied", "unavailable"

    @property
    def available(self) -> bool:
        """False when the address does not exist here (IPv6 off, not a local address)."""
        return self.reason != "unavailable"


class PortStatus(Record):
    """Whether ``port`` is free on every address checked, and who blocks it if not."""

    port: int
    host: str | None
    addresses: tuple[AddressStatus, ...]
    holders: tuple[Listener, ...] = ()

    @property
    def free(self) -> bool:
        return all(status.free for status in self.addresses if status.available)

    def as_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "host": self.host,
            "free": self.free,
            "addresses": [
                {"address": status.address, "free": status.free, "reason": status.reason}
                for status in self.addresses
            ],
            "holders": [holder.as_dict() for holder in self.holders],
        }


def _family(address: str) -> int:
    return _socket.AF_INET6 if ":" in address else _socket.AF_INET


def bind_options(platform: str | None = None) -> tuple[str, ...]:
    """The ``SOL_SOCKET`` options (set to 1) of a server's bind, and so of a test bind:
    ``SO_EXCLUSIVEADDRUSE`` on Windows (with ``SO_REUSEADDR`` a bind there succeeds on a
    port in use), ``SO_REUSEADDR`` elsewhere (a TIME_WAIT leftover blocks no server)."""
    return ("SO_EXCLUSIVEADDRUSE",) if (platform or PLATFORM) == "win32" else ("SO_REUSEADDR",)


def _set_bind_options(sock: socket.socket | _socket.socket) -> None:
    for name in bind_options():
        sock.setsockopt(_socket.SOL_SOCKET, getattr(_socket, name), 1)


def with_wildcards(addresses: tuple[str, ...], platform: str | None = None) -> tuple[str, ...]:
    """The addresses a test must bind to answer for ``addresses``: on BSD and macOS each
    specific address brings its family's wildcard, which it would bind beside."""
    if not (platform or PLATFORM).startswith(BSD_PLATFORMS):
        return addresses
    extra = [WILDCARDS[_family(a) == _socket.AF_INET6] for a in addresses if a not in WILDCARDS]
    return tuple(dict.fromkeys((*addresses, *extra)))


def _reason(error: OSError, platform: str | None = None) -> str:
    if error.errno in _UNAVAILABLE:
        return "unavailable"
    windows_code = getattr(error, "winerror", None) or error.errno
    if (platform or PLATFORM) == "win32" and windows_code == WSAEACCES:
        return "in use"  # no privileged ports there: held exclusively or by the system
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EADDRINUSE:
        return "in use"
    return error.strerror or str(error)


def probe(address: str, port: int) -> AddressStatus:
    """Test-bind ``address``:``port`` the way a server would, and let go at once."""
    try:
        sock = _socket.socket(_family(address), _socket.SOCK_STREAM)
    except OSError as error:
        return AddressStatus(address, False, _reason(error))
    try:
        _set_bind_options(sock)
        if sock.family == _socket.AF_INET6:
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except OSError as error:
        return AddressStatus(address, False, _reason(error))
    finally:
        sock.close()
    return AddressStatus(address, True)


def conflicts(listener: Listener, address: str) -> bool:
    """Whether ``listener`` can be what keeps ``address`` from binding its port."""
    address = address.partition("%")[0]  # the kernel's tables carry no link-local zone
    if listener.address == address or listener.address in WILDCARDS or address in WILDCARDS:
        same_family = _family(listener.address) == _family(address)
        return same_family or listener.address == "::"  # "::" may be dual-stack
    return listener.address == f"::ffff:{address}"


def addresses_for(host: str | None) -> tuple[str, ...]:
    """The addresses to test: every local one, or those of ``host`` - which must be an
    address of this machine (a test bind of another machine's address proves nothing)."""
    if host is None:
        return LOCAL_ADDRESSES
    addresses = resolve_host(host)
    local = tuple(address for address in addresses if probe(address, 0).available)
    if not local:
        raise InvalidValue(
            f"host {shown(host)} is not valid: expected an address of this machine "
            f"(it resolves to {', '.join(addresses)})"
        )
    return local


def _probes(port: int, addresses: tuple[str, ...]) -> tuple[AddressStatus, ...]:
    return tuple(probe(address, port) for address in with_wildcards(addresses))


def check(port: int, host: str | None = None) -> PortStatus:
    """Test-bind ``port`` on ``host``'s addresses (default: every local address)."""
    statuses = _probes(port, addresses_for(host))
    busy = [status.address for status in statuses if status.available and not status.free]
    if not busy:  # the test binds answer: no process is looked at
        return PortStatus(port, host, statuses)
    from utils._holders import listeners  # only a held port needs the scan

    blockers = tuple(
        row
        for row in listeners(port, bound=True)
        if any(conflicts(row, address) for address in busy)
    )
    return PortStatus(port, host, statuses, blockers)


def quick_free(port: int, addresses: tuple[str, ...]) -> bool:
    """``check(...).free`` without naming holders: the test binds alone."""
    return PortStatus(port, None, _probes(port, addresses)).free


def free_for_servers(port: int) -> bool:
    """Nothing holds ``port``: every local address binds, or is refused only for want of
    privilege (a port below 1024 for a normal user is not held by anyone)."""
    return all(
        status.free or status.reason == "permission denied"
        for status in _probes(port, LOCAL_ADDRESSES)
        if status.available
    )


def find(start: int = DEFAULT_PORT, host: str | None = None) -> int:
    """The first port at or above ``start`` that is free on ``host``, else one the OS picks."""
    addresses = addresses_for(host)  # resolved once: a bad host fails before the scan
    for port in range(start, 65536):
        if quick_free(port, addresses):
            return port
    sock = _socket.socket(_family(addresses[0]), _socket.SOCK_STREAM)
    try:
        sock.bind((addresses[0], 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


class PortInUse(Exception):
    """Binding failed because the port is held; ``status`` names the holders."""

    def __init__(self, status: PortStatus) -> None:
        self.status = status
        super().__init__(f"port {status.port} is in use")


def _bind_listening(address: str, port: int, backlog: int) -> socket.socket:
    import socket  # a real socket.socket for the server (the test binds use _socket)

    beside = with_wildcards((address,))[1:]  # BSD: a wildcard another socket holds
    if port and beside and not quick_free(port, beside):
        raise OSError(errno.EADDRINUSE, f"port {port} is in use")
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        _set_bind_options(sock)
        sock.bind((address, port))
        # Two SO_REUSEADDR sockets may both bind (Linux); only one can listen: listen decides.
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def reserve(
    port: int = DEFAULT_PORT, host: str = "127.0.0.1", *, search: bool = False, backlog: int = 2048
) -> socket.socket:
    """Bind and listen on ``host``:``port`` and hand back that socket, so no one can take it.

    With ``search``, move on to the first port that is free on every local address and
    can be taken on ``host``, falling back to one the OS assigns. Without it, a held
    port raises ``PortInUse`` naming its holders.
    """
    address = addresses_for(host)[0]
    if not search:
        try:
            return _bind_listening(address, port, backlog)
        except OSError as error:
            if _reason(error) == "in use":  # Windows: WSAEACCES too
                raise PortInUse(check(port, host)) from None
            raise
    for candidate in range(port, 65536):
        if not quick_free(candidate, LOCAL_ADDRESSES):
            continue
        try:
            return _bind_listening(address, candidate, backlog)
        except OSError as error:
            if _reason(error) != "in use":
                raise
    return _bind_listening(address, 0, backlog)
