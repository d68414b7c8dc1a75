"""Synthetic records for the unit tests: processes and sockets that exist only here, and a
platform reader that answers from them, so the rules are tested without a real process."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import NamedTuple

from utils._common import HeldSocket, Listener, ProcessFacts, Program
from utils._names import Role
from utils._stop_rules import _login_name

# A user id no test process runs as: "another user" without needing one.
OTHER_UID = 54321
# This user as a reader describes their processes: the uid (Windows has none) and the
# name, which the safety rules compare where there are no uids.
MY_UID = os.geteuid() if hasattr(os, "geteuid") else None
MY_USER = _login_name()
# A working directory outside any project: nothing resolves there as the project's code.
ELSEWHERE = "/"
SPAWN = ("python3", "-B", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()")


def facts(
    pid: int,
    ppid: int | None = 1,
    *,
    cmdline: tuple[str, ...] = ("python3", "-m", "http.server"),
    cwd: str | None = ELSEWHERE,
    uid: int | None = None,
    user: str | None = "someone",
    name: str = "python3",
    start_time: float = 1000.0,
    zombie: bool = False,
    stopped: bool = False,
) -> ProcessFacts:
    """A process as the platform reader would describe it."""
    return ProcessFacts(pid, ppid, name, cmdline, uid, user, cwd, start_time, zombie, stopped)


class Holding(NamedTuple):
    """One process (or an unknown one, None) holding one socket: a fake reader groups
    these by socket, as the kernel's tables and the fd tables would."""

    socket_id: str
    family: str
    address: str
    port: int
    pid: int | None
    listening: bool = True


def holding(
    pid: int | None,
    port: int = 8000,
    *,
    socket_id: str = "inode-1",
    address: str = "127.0.0.1",
    listening: bool = True,
) -> Holding:
    family = "IPv6" if ":" in address else "IPv4"
    return Holding(socket_id, family, address, port, pid, listening)


def row(
    found: ProcessFacts | None,
    *,
    port: int = 8000,
    address: str = "127.0.0.1",
    socket_id: str = "inode-1",
    project: bool = False,
    listening: bool = True,
    role: Role = "server",
    supervisor_cmdline: tuple[str, ...] | None = None,
    pid: int | None = None,
) -> Listener:
    """A listener row held by ``found`` (None: a holder the system does not name)."""
    family = "IPv6" if ":" in address else "IPv4"
    return Listener(
        port,
        address,
        family,
        found.pid if found is not None else pid,
        found.ppid if found is not None else None,
        found.name if found is not None else None,
        found.cmdline if found is not None else None,
        found.user if found is not None else None,
        project,
        socket_id,
        found,
        listening,
        role,
        supervisor_cmdline,
    )


class FakeReader:
    """A platform reader (``utils._common.Reader``) over synthetic sockets and processes."""

    unique_socket_ids = True

    def __init__(
        self,
        holdings: list[Holding] | None = None,
        processes: list[ProcessFacts] | None = None,
    ) -> None:
        self.holdings = list(holdings or [])
        self.processes = {found.pid: found for found in processes or []}
        self.asked: list[set[int] | None] = []  # the pids of each held_sockets (None: all)
        self.looked_at: list[set[int]] = []  # the pids of each which_hold

    def available(self) -> bool:
        return True

    def held_sockets(
        self, port: int | None = None, bound: bool = False, pids: Collection[int] | None = None
    ) -> list[HeldSocket]:
        self.asked.append(None if pids is None else set(pids))
        sockets: dict[str, tuple[Holding, list[int]]] = {}
        for held in self.holdings:
            if (port is None or held.port == port) and (bound or held.listening):
                holders = sockets.setdefault(held.socket_id, (held, []))[1]
                if held.pid is not None and (pids is None or held.pid in pids):
                    holders.append(held.pid)
        return [
            (held.socket_id, held.family, held.address, held.port, held.listening, tuple(named))
            for held, named in sockets.values()
            if pids is None or named
        ]

    def which_hold(
        self, socket_ids: Collection[str], pids: Collection[int]
    ) -> dict[str, tuple[int, ...]]:
        self.looked_at.append(set(pids))
        found: dict[str, tuple[int, ...]] = {}
        for held in self.holdings:
            if held.socket_id in socket_ids and held.pid in pids:
                found[held.socket_id] = (*found.get(held.socket_id, ()), held.pid)
        return found

    def socket_ports(self) -> dict[str, int]:
        return {held.socket_id: held.port for held in self.holdings if held.listening}

    def parents(self) -> dict[int, int]:
        return {
            found.pid: found.ppid for found in self.processes.values() if found.ppid is not None
        }

    def programs(self) -> dict[int, Program]:
        return {found.pid: (found.cmdline, found.cwd) for found in self.processes.values()}

    def process_facts(self, pid: int) -> ProcessFacts | None:
        return self.processes.get(pid)
