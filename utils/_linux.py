"""Linux reader: the kernel's socket tables, then one pass over ``/proc/*/fd``.

Written by hand instead of using psutil: psutil reports one pid per socket (a uvicorn
supervisor and its workers share one) and builds the full connection table, while
this asks the kernel for listening sockets only. Sockets come from netlink
``sock_diag`` (what ``ss`` uses: the kernel filters by state and sends binary
records), falling back to parsing ``/proc/net/tcp{,6}`` where netlink is refused. The
process side (fd tables, the process tree, programs and facts) is ``_linux_processes``.
"""

from __future__ import annotations

import os
import struct

# The C module under ``socket``: the wrapper's enums and selectors cost start-up time,
# and one netlink socket needs none of them.
from _socket import AF_INET, AF_INET6, AF_NETLINK, SOCK_RAW, inet_ntop, socket

from utils._linux_processes import parents, process_facts, programs, socket_holders

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from utils._common import HeldSocket
    from utils._names import ReaderName

# The reader interface (``_common.Reader``), the process side from ``_linux_processes``.
__all__ = [
    "available",
    "held_sockets",
    "parents",
    "process_facts",
    "programs",
    "select",
    "socket_ports",
    "unique_socket_ids",
    "which_hold",
]

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_CLOSE, _TCP_LISTEN = 7, 10
# A pseudo-state (Linux 6.5+): asking for it dumps sockets bound to a port but neither
# listening nor connected, which hold the port as surely as a listener. Older kernels
# ignore the bit, and such sockets stay unnamed there.
_TCP_BOUND_INACTIVE = 13
_IPPROTO_TCP = 6
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_KIND = struct.Struct("=IH")  # its length and type
# A socket's message: the header's length and type, then inet_diag_msg: family, state,
# timer, retrans, the sockid (sport and dport big-endian, src[16], dst[16], if,
# cookie[2]), expires, rqueue, wqueue, uid, inode; then its attributes.
_DIAG = "=IH10xxB2x2s2x16s44xI"  # -> length, type, state, sport, src, inode
_DIAG_SIZE = struct.calcsize(_DIAG)
_RUNS: dict[int, struct.Struct] = {}  # message length -> _DIAG padded to it
_FAMILY_NAMES: dict[int, str] = {int(AF_INET): "IPv4", int(AF_INET6): "IPv6"}
unique_socket_ids = True  # the kernel's socket inode

Sockets = dict[int, tuple[str, str, int, bool]]  # inode -> (family, address, port, listening)


_AVAILABLE: list[bool] = []  # asked once per process: every liveness poll consults it
_SOURCE: list[ReaderName] = ["netlink"]  # where sockets come from; "procfs" forced by tests


def select(source: ReaderName) -> None:
    """Read sockets through netlink (the default) or the /proc/net text tables."""
    _SOURCE[0] = source


def available() -> bool:
    """Whether this machine has the procfs entries this reader needs."""
    if not _AVAILABLE:
        _AVAILABLE.append(os.path.exists("/proc/net/tcp") and os.path.isdir("/proc/self/fd"))
    return _AVAILABLE[0]


def _netlink_dump(
    family: int, port: int | None, found: Sockets, bound: bool, wanted: set[int] | None
) -> None:
    """Ask sock_diag for the listening (and with ``bound``, bound-only) TCP sockets of
    one address family; with ``wanted``, of these inodes only."""
    states = 1 << _TCP_LISTEN | ((1 << _TCP_BOUND_INACTIVE) if bound else 0)
    request = struct.pack("=BBBxI", family, _IPPROTO_TCP, 0, states) + bytes(48)
    header = _HEADER.pack(
        _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
    )
    name = _FAMILY_NAMES[family]
    width = 4 if family == AF_INET else 16
    addresses: dict[bytes, str] = {}  # most sockets share a few addresses: decode each once
    link = socket(AF_NETLINK, SOCK_RAW, _NETLINK_SOCK_DIAG)
    try:
        link.sendall(header + request)
        for _, _, state, raw_port, source, inode in _messages(link):
            if wanted is not None and inode not in wanted:
                continue
            sock_port = raw_port[0] << 8 | raw_port[1]  # big-endian
            if (port is None or sock_port == port) and (
                state == _TCP_LISTEN or (bound and state == _TCP_CLOSE and sock_port)
            ):
                address = addresses.get(source)
                if address is None:
                    address = addresses[source] = inet_ntop(family, source[:width])
                found[inode] = (name, address, sock_port, state == _TCP_LISTEN)
    finally:
        link.close()


def _messages(link: socket) -> Iterator[tuple[int, int, int, bytes, bytes, int]]:
    """(length, type, state, port, source address, inode) of every socket a dump names.

    The kernel sends messages of one length as long as no extension is asked for, so
    each run of them is unpacked in one pass (``iter_unpack``, in C) rather than one
    message at a time: a fifth of a ``list --all`` at thousands of sockets otherwise.
    """
    buffer = bytearray(1 << 18)
    while size := link.recv_into(buffer):
        offset = 0
        while offset + _HEADER.size <= size:
            length, kind = _KIND.unpack_from(buffer, offset)
            if kind == _NLMSG_DONE:
                return
            if kind == _NLMSG_ERROR:
                code = -struct.unpack_from("=i", buffer, offset + _HEADER.size)[0]
                raise OSError(code, os.strerror(code))
            if length < _HEADER.size:  # no kernel sends it: read the text tables instead
                raise OSError(f"malformed netlink message of {length} bytes")
            stride = (length + 3) & ~3
            if kind != _SOCK_DIAG_BY_FAMILY or length < _DIAG_SIZE:
                offset += stride
                continue
            run = _RUNS.get(stride) or _RUNS.setdefault(
                stride, struct.Struct(f"{_DIAG}{stride - _DIAG_SIZE}x")
            )
            with memoryview(buffer)[offset : offset + (size - offset) // stride * stride] as view:
                for message in run.iter_unpack(view):
                    if message[0] != length or message[1] != kind:
                        break  # the run ends: read on one message at a time
                    yield message
                    offset += stride


def _decode_address(hex_address: str, family: int) -> str:
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    raw = bytes.fromhex(hex_address)
    return inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def _procfs_tables(port: int | None, found: Sockets) -> None:
    """The text tables: slower, but readable wherever /proc is."""
    wanted = f":{port:04X} " if port is not None else None
    for path, family in (("/proc/net/tcp", AF_INET), ("/proc/net/tcp6", AF_INET6)):
        try:
            with open(path, encoding="ascii") as table:
                next(table, None)  # header
                for line in table:
                    if wanted is not None and wanted not in line:
                        continue
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                        continue
                    address, _, hex_port = fields[1].partition(":")
                    if port is not None and int(hex_port, 16) != port:
                        continue
                    found[int(fields[9])] = (
                        _FAMILY_NAMES[family],
                        _decode_address(address, family),
                        int(hex_port, 16),
                        True,
                    )
        except FileNotFoundError:  # IPv6 disabled in this kernel
            continue


def _socket_table(port: int | None, bound: bool = False, wanted: set[int] | None = None) -> Sockets:
    """inode -> (family, address, port, listening) of every listening TCP socket (of
    ``port``; of the inodes ``wanted``), and with ``bound`` the bound-only ones netlink
    can name (the text tables cannot)."""
    found: Sockets = {}
    if _SOURCE[0] == "netlink":
        try:
            _netlink_dump(AF_INET, port, found, bound, wanted)
            _netlink_dump(AF_INET6, port, found, bound, wanted)
            return found
        except OSError:  # netlink refused (some sandboxes): read the text tables
            found.clear()
    _procfs_tables(port, found)
    return found


def socket_ports() -> dict[str, int]:
    """socket id -> port of every listening TCP socket, holders not looked for."""
    return {f"inode:{inode}": entry[2] for inode, entry in _socket_table(None).items()}


def which_hold(socket_ids: Collection[str], pids: Collection[int]) -> dict[str, tuple[int, ...]]:
    """socket id -> which of ``pids`` hold it, of the sockets ``socket_ids`` (inode ids of
    an earlier ``held_sockets``): their fd tables alone."""
    inodes = [int(socket_id.partition(":")[2]) for socket_id in socket_ids]
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    return {f"inode:{inode}": pids for inode, pids in socket_holders(pids, wanted).items()}


def held_sockets(
    port: int | None = None, bound: bool = False, pids: Collection[int] | None = None
) -> list[HeldSocket]:
    """Every listening TCP socket (of ``port``, if given) with every process holding it;
    with ``bound``, also the sockets bound to the port without listening. With ``pids``,
    only these processes' fd tables are read, and first: the kernel's tables are asked
    only when they hold a socket at all."""
    if pids is None:
        sockets = _socket_table(port, bound)
        wanted = {f"socket:[{inode}]": inode for inode in sockets}
        holders = socket_holders(None, wanted) if sockets else {}
    else:
        holders = socket_holders(pids, None)
        sockets = _socket_table(port, bound, set(holders)) if holders else {}
    return [
        (f"inode:{inode}", family, address, sock_port, listens, holders.get(inode, ()))
        for inode, (family, address, sock_port, listens) in sockets.items()
        if pids is None or inode in holders
    ]
