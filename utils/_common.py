"""What every platform reader and every command shares: the records, the reader
interface, and polling with a deadline.

psutil's shape: ``_platform`` picks one reader module per process (``_linux`` or
``_generic``), each with the same functions, and they all speak in these records.
NamedTuples rather than dataclasses: importing ``dataclasses`` (and with it
``inspect``) costs more start-up time than a whole ``check`` is allowed, and thousands
of rows are built per ``list``. Built without ``typing`` at run time (``_records``); the
names of enum-like values (``Role``, ...) are ``Literal`` types of ``_names``.
"""

from __future__ import annotations

import time

from utils._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any, Protocol

    from utils._names import Role, SocketState

# A listening (or bound-only) TCP socket with every process holding it, as a reader
# reports it: (socket id, family, address, port, listening, holder pids). The socket id
# is stable per socket (the kernel inode, or family/address/port); the family "IPv4" or
# "IPv6"; no holder pids: the operating system does not name the owner. Plain tuples,
# not records: a scan reports thousands.
HeldSocket = tuple[str, str, str, int, bool, tuple[int, ...]]
# What the project rule needs of a process, read cheaply for every process: (command
# line, working directory or None).
Program = tuple[tuple[str, ...], str | None]


class ProcessFacts(Record):
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


if TYPE_CHECKING:

    class Reader(Protocol):
        """What every platform module (``_linux``, ``_generic``) provides, with these very
        signatures: the one interface the rest of the package reads the system through."""

        # Whether a socket id names one socket for its whole life (a kernel inode), so a
        # new socket on the same address is told from a forked successor holding the old.
        unique_socket_ids: bool

        def available(self) -> bool:
            """Whether this system has what the reader needs."""
            ...

        def held_sockets(
            self, port: int | None = None, bound: bool = False, pids: Collection[int] | None = None
        ) -> list[HeldSocket]:
            """Every listening TCP socket (of ``port``) with every process holding it; with
            ``bound``, also the sockets bound without listening that the system names.
            With ``pids``, only these processes are looked at, and only the sockets they
            hold are reported."""
            ...

        def which_hold(
            self, socket_ids: Collection[str], pids: Collection[int]
        ) -> dict[str, tuple[int, ...]]:
            """socket id -> which of ``pids`` hold it, of the sockets ``socket_ids`` (of an
            earlier ``held_sockets``): their fd tables are read, the socket tables not."""
            ...

        def socket_ports(self) -> dict[str, int]:
            """socket id -> port of every listening TCP socket, holders not looked for."""
            ...

        def parents(self) -> dict[int, int]:
            """pid -> parent pid of every visible process."""
            ...

        def programs(self) -> dict[int, Program]:
            """pid -> (command line, working directory) of every visible process."""
            ...

        def process_facts(self, pid: int) -> ProcessFacts | None:
            """Facts about a live process, or None once it is gone."""
            ...


class Listener(Record):
    """One TCP socket holding a port, as held by one process (a row per socket and
    process): a listening socket, or (``listening`` False) one bound without listening."""

    port: int
    address: str
    family: str
    pid: int | None
    ppid: int | None
    name: str | None
    cmdline: tuple[str, ...] | None
    user: str | None
    project: bool
    socket_id: str
    facts: ProcessFacts | None
    listening: bool = True
    role: Role = "server"
    supervisor_cmdline: tuple[str, ...] | None = None  # a worker's supervisor's

    @property
    def suspended(self) -> bool:
        """The holder is stopped (Ctrl-Z, SIGSTOP): it answers nothing until continued."""
        return self.facts is not None and self.facts.stopped

    @property
    def state(self) -> SocketState:
        """Bound to the port and listening, or only bound."""
        return "listening" if self.listening else "bound"

    @property
    def command(self) -> str:
        """The command line as a shell would read it, escaped for a terminal, or what
        stands in for it; a worker by its role (``uvicorn worker of 8633``)."""
        worker_of = self.ppid if self.role == "worker" else None
        return command_text(self.cmdline, self.name, worker_of, self.supervisor_cmdline)

    def as_dict(self) -> dict[str, Any]:
        """The listener row of the JSON contract (docs/contract.md)."""
        return {
            "port": self.port,
            "address": self.address,
            "family": self.family,
            "pid": self.pid,
            "ppid": self.ppid,
            "name": self.name,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
            "user": self.user,
            "project": self.project,
            "state": self.state,
            "suspended": self.suspended,
            "role": self.role,
        }


def command_text(
    cmdline: tuple[str, ...] | None,
    name: str | None,
    worker_of: int | None = None,
    supervisor_cmdline: tuple[str, ...] | None = None,
) -> str:
    """A command line for people: shell-quoted and escaped, or what stands in for it; a
    worker by its role (``uvicorn worker of 8633``), as its own command line is only
    multiprocessing's boilerplate."""
    from utils._project_policy import program_label
    from utils.render import printable

    if worker_of is not None:
        return printable(f"{program_label(supervisor_cmdline or ())} worker of {worker_of}".strip())
    if cmdline:
        import shlex  # only tables and messages need it

        return printable(shlex.join(cmdline))
    return printable(f"[{name}]") if name else "(hidden by the operating system)"


def poll_until(
    condition: Callable[[], bool],
    deadline: float,
    first_interval: float = 0.005,
    max_interval: float = 0.2,
) -> bool:
    """Call ``condition`` until it is true (True) or ``time.monotonic()`` passes
    ``deadline`` (False): short, growing intervals, fast to notice and cheap to wait."""
    interval = first_interval
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.6, max_interval)
