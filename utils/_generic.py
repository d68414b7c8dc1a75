"""The generic reader, over psutil: every system without Linux's procfs tables.

psutil's system-wide ``net_connections()`` names one pid per socket and needs root on
macOS, so holders are collected per process (which works for the user's own
processes without privileges); sockets seen only system-wide get an unknown owner.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

from utils._common import ProcessFacts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator

    from utils._common import HeldSocket, Program

_FAMILIES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
# psutil names no socket: its id is family, address and port, which a new socket on the
# same address shares with the old one.
unique_socket_ids = False


def available() -> bool:
    return True


def _socket_id(family: str, address: str, port: int) -> str:
    return f"{family} {address} {port}"


def _listening_of(connections: list[Any], bound: bool) -> list[tuple[str, str, int, bool]]:
    """(family, address, port, listening) of the listening sockets, and with ``bound``
    of the bound-only ones (CLOSE with a local port: only some systems report them)."""
    rows = []
    for conn in connections:
        if not conn.laddr:
            continue
        listens = conn.status == psutil.CONN_LISTEN
        if not listens and not (bound and conn.status == psutil.CONN_CLOSE and conn.laddr.port):
            continue
        family = _FAMILIES.get(conn.family)
        if family is not None:
            rows.append((family, conn.laddr.ip, conn.laddr.port, listens))
    return rows


def socket_ports() -> dict[str, int]:
    """socket id -> port of every listening TCP socket the system shows."""
    return {socket_id: port for socket_id, _, _, port, _, _ in held_sockets(None)}


def _processes(pids: Collection[int] | None) -> Iterator[psutil.Process]:
    if pids is None:
        yield from psutil.process_iter()
        return
    for pid in pids:
        try:
            yield psutil.Process(pid)
        except psutil.Error:  # gone meanwhile
            continue


def which_hold(socket_ids: Collection[str], pids: Collection[int]) -> dict[str, tuple[int, ...]]:
    """socket id -> which of ``pids`` hold it, of the sockets ``socket_ids`` (of an
    earlier ``held_sockets``): these processes' connections alone."""
    found: dict[str, tuple[int, ...]] = {}
    for process in _processes(pids):
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        for family, address, sock_port, _ in _listening_of(connections, bound=True):
            socket_id = _socket_id(family, address, sock_port)
            holders = found.get(socket_id, ())
            if socket_id in socket_ids and process.pid not in holders:
                found[socket_id] = (*holders, process.pid)
    return found


def held_sockets(
    port: int | None = None, bound: bool = False, pids: Collection[int] | None = None
) -> list[HeldSocket]:
    """Every listening TCP socket (of ``port``, if given) with every process holding it;
    with ``bound``, also the bound-only sockets the system reports. With ``pids``, only
    these processes are asked, and only the sockets they hold are reported."""
    found: dict[str, tuple[str, str, int, bool, list[int]]] = {}
    new: tuple[str, str, int, bool, list[int]]
    for process in _processes(pids):
        try:
            connections = process.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        for family, address, sock_port, listens in _listening_of(connections, bound):
            if port is None or sock_port == port:
                new = (family, address, sock_port, listens, [])
                holders = found.setdefault(_socket_id(family, address, sock_port), new)[4]
                if process.pid not in holders:
                    holders.append(process.pid)
    if pids is None:  # sockets no process of ours shows: holders unknown
        try:
            system_wide = psutil.net_connections(kind="tcp")
        except (psutil.Error, OSError):  # macOS without root
            system_wide = []
        for family, address, sock_port, listens in _listening_of(system_wide, bound):
            if port is None or sock_port == port:
                new = (family, address, sock_port, listens, [])
                found.setdefault(_socket_id(family, address, sock_port), new)
    return [
        (socket_id, family, address, sock_port, listens, tuple(holders))
        for socket_id, (family, address, sock_port, listens, holders) in found.items()
    ]


def parents() -> dict[int, int]:
    """pid -> parent pid of every process the system shows."""
    found: dict[int, int] = {}
    for process in psutil.process_iter(["ppid"]):
        ppid = process.info.get("ppid")
        if isinstance(ppid, int):
            found[process.pid] = ppid
    return found


def programs() -> dict[int, Program]:
    """pid -> (command line, working directory) of every process the system shows (()
    and None where it will not tell)."""
    return {
        process.pid: (tuple(process.info["cmdline"] or ()), process.info["cwd"])
        for process in psutil.process_iter(["cmdline", "cwd"])
    }


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts about ``pid`` through psutil, or None when it no longer exists."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            start_time = process.create_time()
            ppid = process.ppid()
            name = process.name()
            status = process.status()
            try:
                uid: int | None = process.uids().real
            except (psutil.AccessDenied, AttributeError):
                uid = None
            try:
                user: str | None = process.username()
            except (psutil.AccessDenied, KeyError):
                user = str(uid) if uid is not None else None
            try:
                cmdline = tuple(process.cmdline())
            except psutil.AccessDenied:
                cmdline = ()
            try:
                cwd: str | None = process.cwd()
            except psutil.AccessDenied:
                cwd = None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None
    zombie = status == psutil.STATUS_ZOMBIE
    stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    return ProcessFacts(
        pid, ppid or None, name, cmdline, uid, user, cwd, start_time, zombie, stopped, _pgid(pid)
    )


def _pgid(pid: int) -> int | None:
    getpgid = getattr(os, "getpgid", None)  # POSIX only
    try:
        return int(getpgid(pid)) if getpgid is not None else None
    except OSError:
        return None
