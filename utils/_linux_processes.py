"""Linux: what ``/proc`` says about processes - which of them hold which sockets (one pass
over their fd tables), the process tree, each process's program and its facts.

Part of the Linux reader (``_linux`` re-exports what the reader interface names). Small
files are read with ``os.open``/``os.read``: a buffered ``open()`` costs more than the
system calls themselves, and a scan reads hundreds of them.
"""

from __future__ import annotations

import os

from utils._common import ProcessFacts

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from utils._common import Program

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CHUNK = 1 << 16


def _read(path: str) -> bytes:
    """A whole /proc file (OSError once the process is gone); a short read is its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = chunk = os.read(fd, _CHUNK)
        while len(chunk) == _CHUNK:  # a command line longer than one chunk
            chunk = os.read(fd, _CHUNK)
            data += chunk
        return data
    finally:
        os.close(fd)


def _stat_fields(base: str) -> tuple[str, list[bytes]]:
    """The command name and the fields after it of /proc/PID/stat (state, ppid, pgrp, ...).
    The name is in parentheses and may itself hold spaces or parentheses."""
    stat = _read(f"{base}/stat")
    end = stat.rindex(b")")
    name = stat[stat.index(b"(") + 1 : end].decode(errors="surrogateescape")
    return name, stat[end + 2 :].split()


def _cmdline(base: str) -> tuple[str, ...]:
    """The arguments, NUL-terminated: only the final terminator is dropped, so an empty
    argument stays an (empty) argument. Bytes that are not UTF-8 survive as surrogates:
    exact in JSON (\\udcff), escaped for people like any other non-printable character."""
    try:
        raw = _read(f"{base}/cmdline")
    except OSError:
        return ()
    text = raw.decode(errors="surrogateescape")
    return tuple((text[:-1] if text.endswith("\0") else text).split("\0")) if text else ()


def _cwd(base: str) -> str | None:
    try:
        return os.readlink(f"{base}/cwd")
    except OSError:
        return None


def _socket_inode(link: str) -> int | None:
    """N of an fd link ``socket:[N]``, None for any other file."""
    return int(link[8:-1]) if link.startswith("socket:[") else None


def socket_holders(
    pids: Iterable[int] | None, wanted: dict[str, int] | None
) -> dict[int, tuple[int, ...]]:
    """inode -> the processes holding it, from one pass over the fd tables of ``pids``
    (None: of every process): of the sockets ``wanted`` names by their link text
    (``"socket:[N]" -> N``), or of every socket (None).

    Each fd directory is opened once and its links read relative to it (``dir_fd``),
    which spares the kernel a path walk per link. Processes without files (kernel
    threads, zombies) cost one open and one empty listing.
    """
    names = os.listdir("/proc") if pids is None else [str(pid) for pid in pids]
    match: Callable[[str], int | None] = wanted.get if wanted is not None else _socket_inode
    readlink, listdir, open_dir, close = os.readlink, os.listdir, os.open, os.close
    flags = os.O_RDONLY | os.O_DIRECTORY
    holders: dict[int, tuple[int, ...]] = {}
    for name in names:
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
        for fd in fds:
            try:
                inode = match(readlink(fd, dir_fd=fd_dir))
            except OSError:  # closed meanwhile
                continue
            if inode is not None:
                found = holders.get(inode)
                if found is None:
                    holders[inode] = (pid,)
                elif found[-1] != pid:  # not the same socket on two fds of one process
                    holders[inode] = (*found, pid)
        close(fd_dir)
    return holders


def parents() -> dict[int, int]:
    """pid -> parent pid of every process: the process trees, from one pass over /proc."""
    found: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = _read(f"/proc/{name}/stat")
        except OSError:  # exited meanwhile
            continue
        found[int(name)] = int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])
    return found


def programs() -> dict[int, Program]:
    """pid -> (command line, working directory) of every process: what the project rule
    needs, read for every process before any fd table (``list`` of the project's
    servers). A process gone meanwhile reads as ((), None): no program of anyone's."""
    return {
        int(name): (_cmdline(f"/proc/{name}"), _cwd(f"/proc/{name}"))
        for name in os.listdir("/proc")
        if name.isdigit()
    }


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
        name, after = _stat_fields(base)
        uid = os.stat(base).st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid, pgid, start_ticks = after[0], int(after[1]), int(after[2]), int(after[19])
    return ProcessFacts(
        pid=pid,
        ppid=ppid or None,
        name=name,
        cmdline=_cmdline(base),
        uid=uid,
        user=_user_name(uid),
        cwd=_cwd(base),
        start_time=start_ticks / _CLOCK_TICKS,
        zombie=state in (b"Z", b"X"),
        stopped=state in (b"T", b"t"),
        pgid=pgid,
    )
