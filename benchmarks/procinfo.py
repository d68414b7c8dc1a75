"""Small Linux procfs helpers for the harness: process trees, socket holders, exact signals.

Independent of ``utils/`` on purpose: the instrument should not depend on the code it measures.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

_TCP_LISTEN = "0A"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks (with pid, identifies a process), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    after = stat[stat.rindex(")") + 2 :].split()
    if after[0] in ("Z", "X"):
        return None  # a zombie has let go of everything
    return int(after[19])


def command(pid: int, limit: int = 80) -> str:
    """The command line of ``pid`` (shortened), or "?" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def tree(root: int) -> dict[int, int]:
    """``root`` and all its live descendants, as pid -> start ticks."""
    parents = _parents()
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    found: dict[int, int] = {}
    for pid in members:
        ticks = start_ticks(pid)
        if ticks is not None:
            found[pid] = ticks
    return found


def alive(pid: int, ticks: int) -> bool:
    """Whether the very process (pid and start time) still runs."""
    return start_ticks(pid) == ticks


def signal_exact(pid: int, ticks: int, sig: signal.Signals) -> bool:
    """Signal ``pid`` only if it is still the process that started at ``ticks``."""
    pidfd: int | None = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = None
    try:
        if not alive(pid, ticks):
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return True


def listening_inodes(port: int | None = None) -> set[int]:
    """Kernel inodes of listening TCP sockets (of ``port``, if given)."""
    wanted = f"{port:04X}" if port is not None else None
    inodes: set[int] = set()
    for path in _TABLES:
        try:
            with open(path, encoding="ascii") as table:
                next(table, None)
                for line in table:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _TCP_LISTEN:
                        continue
                    if wanted is None or fields[1].rpartition(":")[2] == wanted:
                        inodes.add(int(fields[9]))
        except FileNotFoundError:
            continue
    return inodes


def listener_count() -> int:
    """How many listening TCP sockets this machine (network namespace) has right now."""
    return len(listening_inodes())


def holders(port: int, pids: Iterable[int]) -> set[int]:
    """Which of ``pids`` hold a listening socket of ``port``."""
    inodes = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    found: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        found.add(pid)
                        break
    return found
