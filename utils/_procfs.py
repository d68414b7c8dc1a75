"""Linux reader: the kernel's own socket tables and ``/proc/<pid>`` entries.

Written by hand instead of using psutil because psutil reports one pid per socket
(a uvicorn supervisor and its workers share one), and because reading only the
listening rows and the fd links we need is several times faster than psutil's
full connection table on a machine with thousands of sockets.
"""

from __future__ import annotations

import os
import socket

from utils._facts import ProcessFacts, SocketHolding

_TCP_LISTEN = "0A"
_TABLES = (("/proc/net/tcp", "IPv4"), ("/proc/net/tcp6", "IPv6"))
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def available() -> bool:
    """Whether this machine has the procfs tables this reader needs."""
    return os.path.exists("/proc/net/tcp") and os.path.isdir("/proc/self/fd")


def _decode_address(hex_address: str, family: str) -> str:
    # The kernel prints each 32-bit word in host (little-endian) byte order.
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if family == "IPv4":
        return socket.inet_ntop(socket.AF_INET, words)
    return socket.inet_ntop(socket.AF_INET6, words)


def _listening_sockets(port: int | None) -> dict[int, tuple[str, str, int]]:
    """Map inode -> (family, address, port) for every listening TCP socket."""
    wanted_port = f"{port:04X}" if port is not None else None
    found: dict[int, tuple[str, str, int]] = {}
    for path, family in _TABLES:
        try:
            with open(path, encoding="ascii") as table:
                next(table, None)  # header
                for line in table:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                        continue
                    address, _, hex_port = fields[1].partition(":")
                    if wanted_port is not None and hex_port != wanted_port:
                        continue
                    found[int(fields[9])] = (
                        family,
                        _decode_address(address, family),
                        int(hex_port, 16),
                    )
        except FileNotFoundError:  # IPv6 disabled in this kernel
            continue
    return found


def _pids_by_inode(inodes: set[int]) -> dict[int, list[int]]:
    """One pass over /proc/*/fd: which processes hold each of these socket inodes."""
    holders: dict[int, list[int]] = {}
    if not inodes:
        return holders
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        pid = int(entry.name)
        seen: set[int] = set()
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            inode = int(target[8:-1])
            if inode in inodes and inode not in seen:
                seen.add(inode)
                holders.setdefault(inode, []).append(pid)
    return holders


def listening(port: int | None = None) -> list[SocketHolding]:
    """Every listening TCP socket (of ``port``, if given) with every process holding it."""
    sockets = _listening_sockets(port)
    holders = _pids_by_inode(set(sockets))
    rows: list[SocketHolding] = []
    for inode, (family, address, sock_port) in sockets.items():
        socket_id = f"inode:{inode}"
        pids: list[int | None] = list(holders.get(inode, [])) or [None]
        rows.extend(SocketHolding(socket_id, family, address, sock_port, pid) for pid in pids)
    return rows


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts about ``pid`` from /proc, or None when it no longer exists."""
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/stat", "rb") as stat_file:
            stat = stat_file.read().decode(errors="replace")
        uid = os.stat(base).st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself contain spaces or parentheses.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    after = stat[stat.rindex(")") + 2 :].split()
    state, ppid, start_ticks = after[0], int(after[1]), int(after[19])
    try:
        with open(f"{base}/cmdline", "rb") as cmdline_file:
            raw = cmdline_file.read()
        cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
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
    )
