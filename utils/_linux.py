"""Linux reader: the kernel's socket tables, then one pass over ``/proc/*/fd``.

Written by hand instead of using psutil: psutil reports one pid per socket (a uvicorn
supervisor and its workers share one) and builds the full connection table, while
this asks the kernel for listening sockets only. Sockets come from netlink
``sock_diag`` (what ``ss`` uses: the kernel filters by state and sends binary
records), falling back to parsing ``/proc/net/tcp{,6}`` where netlink is refused.
"""

from __future__ import annotations

import os
import struct
from socket import AF_INET, AF_INET6, inet_ntop

from utils._common import ProcessFacts, ReaderName, SocketHolding

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
# inet_diag_msg: family, state, timer, retrans, then the sockid (sport and dport
# big-endian, src[16], dst[16], if, cookie[2]), expires, rqueue, wqueue, uid, inode.
_MESSAGE = struct.Struct("=xB2x2s2x16s44xI")  # -> state, sport, src, inode
_FAMILY_NAMES: dict[int, str] = {int(AF_INET): "IPv4", int(AF_INET6): "IPv6"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


def _netlink_dump(family: int, port: int | None, found: Sockets, bound: bool) -> None:
    """Ask sock_diag for the listening (and with ``bound``, bound-only) TCP sockets of
    one address family."""
    import socket

    states = 1 << _TCP_LISTEN | ((1 << _TCP_BOUND_INACTIVE) if bound else 0)
    request = struct.pack("=BBBxI", family, _IPPROTO_TCP, 0, states) + bytes(48)
    header = _HEADER.pack(
        _HEADER.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0
    )
    name = _FAMILY_NAMES[family]
    width = 4 if family == AF_INET else 16
    addresses: dict[bytes, str] = {}  # most sockets share a few addresses: decode each once
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as link:
        link.sendall(header + request)
        buffer = bytearray(1 << 18)
        while True:
            size = link.recv_into(buffer)
            offset = 0
            while offset + _HEADER.size <= size:
                length, kind, _, _, _ = _HEADER.unpack_from(buffer, offset)
                if kind == _NLMSG_DONE:
                    return
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buffer, offset + 16)[0]
                    raise OSError(code, os.strerror(code))
                state, raw_port, source, inode = _MESSAGE.unpack_from(buffer, offset + _HEADER.size)
                sock_port = int.from_bytes(raw_port, "big")
                if (port is None or sock_port == port) and (
                    state == _TCP_LISTEN or (bound and state == _TCP_CLOSE and sock_port)
                ):
                    address = addresses.get(source)
                    if address is None:
                        address = addresses[source] = inet_ntop(family, source[:width])
                    found[inode] = (name, address, sock_port, state == _TCP_LISTEN)
                offset += (length + 3) & ~3
            if size == 0:
                return


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


def _socket_table(port: int | None, bound: bool = False) -> Sockets:
    """inode -> (family, address, port, listening) of every listening TCP socket (of
    ``port``), and with ``bound`` the bound-only ones netlink can name (the text tables
    cannot)."""
    found: Sockets = {}
    if _SOURCE[0] == "netlink":
        try:
            _netlink_dump(AF_INET, port, found, bound)
            _netlink_dump(AF_INET6, port, found, bound)
            return found
        except OSError:  # netlink refused (some sandboxes): read the text tables
            found.clear()
    _procfs_tables(port, found)
    return found


def _pids_by_inode(inodes: set[int]) -> dict[int, list[int]]:
    """One pass over /proc/*/fd: which processes hold each of these socket inodes.

    Each fd directory is opened once and its links read relative to it (``dir_fd``),
    which spares the kernel a path walk per link: about 10 % of the pass.
    """
    holders: dict[int, list[int]] = {}
    if not inodes:
        return holders
    links = {f"socket:[{inode}]": inode for inode in inodes}
    readlink, listdir, open_dir = os.readlink, os.listdir, os.open
    flags = os.O_RDONLY | os.O_DIRECTORY
    for name in listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd_dir = open_dir(f"/proc/{name}/fd", flags)
        except OSError:  # gone, or not ours to read
            continue
        try:
            fds = listdir(fd_dir)
        except OSError:
            fds = []
        pid = int(name)
        seen: set[int] = set()
        for fd in fds:
            try:
                inode = links.get(readlink(fd, dir_fd=fd_dir))
            except OSError:
                continue
            if inode is not None and inode not in seen:
                seen.add(inode)
                holders.setdefault(inode, []).append(pid)
        os.close(fd_dir)
    return holders


def socket_ports() -> dict[str, int]:
    """socket id -> port of every listening TCP socket, holders not looked for."""
    return {f"inode:{inode}": entry[2] for inode, entry in _socket_table(None).items()}


def socket_holdings(port: int | None = None, bound: bool = False) -> list[SocketHolding]:
    """Every listening TCP socket (of ``port``, if given) with every process holding it;
    with ``bound``, also the sockets bound to the port without listening."""
    sockets = _socket_table(port, bound)
    holders = _pids_by_inode(set(sockets))
    rows: list[SocketHolding] = []
    for inode, (family, address, sock_port, listens) in sockets.items():
        socket_id = f"inode:{inode}"
        pids: list[int | None] = list(holders.get(inode, [])) or [None]
        rows.extend(
            SocketHolding(socket_id, family, address, sock_port, pid, listens) for pid in pids
        )
    return rows


def parents() -> dict[int, int]:
    """pid -> parent pid of every process: the process trees, from one pass over /proc."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:  # exited meanwhile
            continue
        found[int(name)] = int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])
    return found


_USERS: dict[int, str] = {}


def _user_name(uid: int) -> str:
    if uid not in _USERS:
        import pwd

        try:
            _USERS[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _USERS[uid] = str(uid)
    return _USERS[uid]


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts about ``pid`` from /proc, or None when it no longer exists."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat", "rb") as stat_file:
            stat = stat_file.read().decode(errors="surrogateescape")
        uid = os.stat(base).st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    after = stat[stat.rindex(")") + 2 :].split()
    state, ppid, pgid, start_ticks = after[0], int(after[1]), int(after[2]), int(after[19])
    try:
        with open(f"{base}/cmdline", "rb") as cmdline_file:
            raw = cmdline_file.read()
        # NUL-terminated arguments: only the final terminator is dropped, so an empty
        # argument stays an (empty) argument.
        parts = raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b"\0")
        # Bytes that are not UTF-8 survive as surrogates: exact in JSON (\udcff), escaped
        # for people like any other non-printable character.
        cmdline = tuple(part.decode(errors="surrogateescape") for part in parts) if raw else ()
    except OSError:
        cmdline = ()
    try:
        cwd: str | None = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = None
    return ProcessFacts(
        pid=pid,
        ppid=ppid or None,
        name=name,
        cmdline=cmdline,
        uid=uid,
        user=_user_name(uid),
        cwd=cwd,
        start_time=start_ticks / _CLOCK_TICKS,
        zombie=state in ("Z", "X"),
        stopped=state in ("T", "t"),
        pgid=pgid,
    )
