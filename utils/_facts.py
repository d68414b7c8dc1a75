"""Plain records shared by the platform readers and the public API.

The readers return these small, platform-neutral facts; ``port_manager`` turns them
into the public ``Listener`` rows. NamedTuples rather than dataclasses: importing
``dataclasses`` (and with it ``inspect``) costs more start-up time than a whole
``check`` is allowed, and thousands of rows are built per ``list``.
"""

from __future__ import annotations

from typing import NamedTuple


class SocketHolding(NamedTuple):
    """One process (or an unknown one) holding one listening TCP socket."""

    socket_id: str  # stable per socket: the kernel inode, or family/address/port
    family: str  # "IPv4" or "IPv6"
    address: str
    port: int
    pid: int | None  # None when the operating system hides the owner
    listening: bool = True  # False: bound to the port but never listening


class ProcessFacts(NamedTuple):
    """What the safety rules and the output need to know about one process."""

    pid: int
    ppid: int | None
    name: str
    cmdline: tuple[str, ...]
    uid: int | None
    user: str | None
    cwd: str | None  # None when the operating system will not tell
    start_time: float  # with pid, identifies the process (pids are reused)
    zombie: bool
    stopped: bool = False  # suspended (SIGSTOP, Ctrl-Z): a SIGTERM waits until SIGCONT
    pgid: int | None = None  # its process group: the job a terminal stops with Ctrl-Z
