"""Who holds a port: discovery through one platform reader, and the project's policy.

One public function, ``listeners()``, sits over per-platform readers (psutil's own
pattern): ``_linux`` (netlink sock_diag, or the /proc/net text tables) on Linux,
``_psutil_reader`` elsewhere. The environment variable ``PORT_MANAGER_READER``
(``netlink``, ``procfs`` or ``psutil``) forces one, which is how the test suite runs
over every path on one machine.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

from utils._facts import ProcessFacts, SocketHolding
from utils._project import PROJECT_ROOT, program_label, runs_project_code

READER_VARIABLE = "PORT_MANAGER_READER"
READERS = ("netlink", "procfs", "psutil")


def reader_name() -> str:
    """The reader in force: the variable's choice, else the fastest this platform has."""
    choice = os.environ.get(READER_VARIABLE, "").strip().lower()
    if choice and choice not in READERS:
        from utils._values import InvalidValue

        raise InvalidValue(
            f"{READER_VARIABLE} {choice!r} is not valid: expected one of "
            f"{', '.join(READERS)}, or unset"
        )
    if choice:
        return choice
    if sys.platform.startswith("linux"):
        from utils import _linux

        if _linux.available():
            return "netlink"
    return "psutil"


def listening(port: int | None, bound: bool = False) -> list[SocketHolding]:
    """Raw (socket, pid) pairs from the reader in force (psutil is imported only if used)."""
    name = reader_name()
    if name == "psutil":
        from utils import _psutil_reader

        return _psutil_reader.listening(port, bound)
    from utils import _linux

    return _linux.listening(port, source=name, bound=bound)


def listening_socket_ids() -> dict[str, int]:
    """socket id -> port of every listening TCP socket, without looking for holders: the
    cheap question (one netlink dump on Linux) the pytest plugin asks around each test."""
    if reader_name() == "psutil":
        return {row.socket_id: row.port for row in listening(None)}
    from utils import _linux

    found = _linux.listening_sockets(None, reader_name())
    return {f"inode:{inode}": entry[2] for inode, entry in found.items()}


def parents() -> dict[int, int]:
    """pid -> parent pid of every visible process, from the reader in force."""
    if reader_name() == "psutil":
        from utils import _psutil_reader

        return _psutil_reader.parents()
    from utils import _linux

    return _linux.parents()


def descendants(pid: int, tree: dict[int, int] | None = None) -> list[int]:
    """Every process below ``pid`` in the process tree (``tree``: a ``parents()`` map
    already read, so several roots cost one scan), parents before their children."""
    children: dict[int, list[int]] = {}
    for child, parent in (parents() if tree is None else tree).items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        member = queue.pop(0)
        if member not in found and member != pid:
            found.append(member)
            queue.extend(children.get(member, []))
    return found


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts about a live process, or None once it is gone."""
    if reader_name() == "psutil":
        from utils import _psutil_reader

        return _psutil_reader.process_facts(pid)
    from utils import _linux

    return _linux.process_facts(pid)


def is_alive(facts: ProcessFacts) -> bool:
    """Whether the very process of ``facts`` still runs (a reused pid or a zombie is not)."""
    now = process_facts(facts.pid)
    return now is not None and not now.zombie and abs(now.start_time - facts.start_time) < 0.05


def is_project_process(facts: ProcessFacts) -> bool:
    """The project rule (``utils/_project.py``) applied to one process."""
    return runs_project_code(facts.cmdline, facts.cwd, PROJECT_ROOT)


class Listener(NamedTuple):
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
    # "server" (holds the socket alone), "supervisor" (shares it with its children) or
    # "worker" (shares its parent's socket: uvicorn --workers/--reload, gunicorn, ...)
    role: str = "server"
    supervisor_cmdline: tuple[str, ...] | None = None  # a worker's supervisor's

    @property
    def suspended(self) -> bool:
        """The holder is stopped (Ctrl-Z, SIGSTOP): it answers nothing until continued."""
        return self.facts is not None and self.facts.stopped

    @property
    def state(self) -> str:
        """'listening' or 'bound' (bound to the port, never listening)."""
        return "listening" if self.listening else "bound"

    @property
    def command(self) -> str:
        """The command line as a shell would read it, escaped for a terminal (see
        ``render.printable``), or what stands in for it; a worker by its role
        (``uvicorn worker of 8633``): its own command line is multiprocessing's."""
        worker_of = self.ppid if self.role == "worker" else None
        return command_text(self.cmdline, self.name, worker_of, self.supervisor_cmdline)

    def as_dict(self) -> dict[str, Any]:
        """The listener row of the JSON contract (docs/contract.md, "JSON shapes")."""
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
    from utils.render import printable

    if worker_of is not None:
        return printable(f"{program_label(supervisor_cmdline or ())} worker of {worker_of}".strip())
    if cmdline:
        import shlex  # only tables and messages need it

        return printable(shlex.join(cmdline))
    return printable(f"[{name}]") if name else "(hidden by the operating system)"


def top_holder(pid: int, holders: set[int], facts: dict[int, ProcessFacts]) -> int:
    """Walk up the parents of ``pid`` while they hold the same socket: the supervisor."""
    seen = {pid}
    while True:
        parent = facts[pid].ppid if pid in facts else None
        if parent is None or parent not in holders or parent in seen:
            return pid
        seen.add(parent)
        pid = parent


def listeners(
    port: int | None = None, *, project_only: bool = False, bound: bool = False
) -> list[Listener]:
    """Every listening TCP socket (of ``port``) with every process that holds it; with
    ``bound``, also the sockets bound to the port without listening (where the
    operating system names them: Linux 6.5+ through netlink).

    A process counts as the project's when it runs the project's code, or when the
    top-most holder of the same socket (its supervisor) does.
    """
    holdings = listening(port, bound)
    facts: dict[int, ProcessFacts] = {}
    for holding in holdings:
        if holding.pid is not None and holding.pid not in facts:
            found = process_facts(holding.pid)
            if found is not None:
                facts[holding.pid] = found
    holders_of: dict[str, set[int]] = {}
    for holding in holdings:
        if holding.pid in facts:
            holders_of.setdefault(holding.socket_id, set()).add(holding.pid)
    own_project = {pid: is_project_process(found) for pid, found in facts.items()}
    rows: list[Listener] = []
    for holding in holdings:
        found = facts.get(holding.pid) if holding.pid is not None else None
        if holding.pid is not None and found is None:
            continue  # exited between the socket scan and the process lookup
        project, role, supervisor = False, "server", None
        if found is not None:
            sharing = holders_of[holding.socket_id]
            root = top_holder(found.pid, sharing, facts)
            project = own_project[found.pid] or own_project[root]
            if found.ppid in sharing:
                role, supervisor = "worker", facts[found.ppid].cmdline
            elif len(sharing) > 1:
                role = "supervisor"
        if project_only and not project:
            continue
        rows.append(
            Listener(
                holding.port,
                holding.address,
                holding.family,
                holding.pid,
                found.ppid if found else None,
                found.name if found else None,
                found.cmdline if found else None,
                found.user if found else None,
                project,
                holding.socket_id,
                found,
                holding.listening,
                role,
                supervisor,
            )
        )
    rows.sort(key=lambda row: (row.port, row.family, row.address, row.pid or 0))
    return rows


def project_ports() -> list[int]:
    """The ports this project's servers listen on, ascending (what ``cleanup`` with no
    port frees)."""
    return sorted({row.port for row in listeners(project_only=True)})
