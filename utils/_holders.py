"""Who holds a port: every listening socket with every process holding it, the
project's attribution and each holder's role, read through the platform reader.

A socket may be shared: a uvicorn supervisor and its workers (``--workers``,
``--reload``), a forked successor, a pre-fork server. Every holder is a row, and each
knows its supervisor (the top-most holder of the same socket).
"""

from __future__ import annotations

from utils._common import Listener, ProcessFacts, Role
from utils._platform import reader
from utils._project_policy import is_project_process


def process_tree() -> dict[int, int]:
    """pid -> parent pid of every visible process: one scan, for several ``descendants``."""
    return reader().parents()


def process_facts(pid: int) -> ProcessFacts | None:
    """What the safety rules and the output know of ``pid``, or None once it is gone."""
    return reader().process_facts(pid)


def socket_ports() -> dict[str, int]:
    """socket id -> port of every listening TCP socket, holders not looked for: the
    cheap question (one netlink dump on Linux) the pytest plugin asks around each test."""
    return reader().socket_ports()


def descendants(pid: int, tree: dict[int, int] | None = None) -> list[int]:
    """Every process below ``pid`` in the process tree (``tree``: a ``parents()`` map
    already read, so several roots cost one scan), parents before their children."""
    children: dict[int, list[int]] = {}
    for child, parent in (process_tree() if tree is None else tree).items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        member = queue.pop(0)
        if member not in found and member != pid:
            found.append(member)
            queue.extend(children.get(member, []))
    return found


def is_alive(facts: ProcessFacts) -> bool:
    """Whether the very process of ``facts`` still runs (a reused pid or a zombie is not)."""
    now = process_facts(facts.pid)
    return now is not None and not now.zombie and abs(now.start_time - facts.start_time) < 0.05


def supervisor_of(pid: int, sharing: set[int], facts: dict[int, ProcessFacts]) -> int:
    """Walk up the parents of ``pid`` while they hold the same socket (``sharing``: the
    pids holding it): the top-most holder, which supervises the others."""
    seen = {pid}
    while True:
        parent = facts[pid].ppid if pid in facts else None
        if parent is None or parent not in sharing or parent in seen:
            return pid
        seen.add(parent)
        pid = parent


def pids_by_socket(rows: list[Listener]) -> dict[str, set[int]]:
    """socket id -> the named processes holding it."""
    sharing: dict[str, set[int]] = {}
    for row in rows:
        if row.pid is not None and row.facts is not None:
            sharing.setdefault(row.socket_id, set()).add(row.pid)
    return sharing


def listeners(
    port: int | None = None, *, project_only: bool = False, bound: bool = False
) -> list[Listener]:
    """Every listening TCP socket (of ``port``) with every process that holds it; with
    ``bound``, also the sockets bound to the port without listening (where the
    operating system names them: Linux 6.5+ through netlink).

    A process counts as the project's when it runs the project's code, or when the
    top-most holder of the same socket (its supervisor) does.
    """
    system = reader()
    holdings = system.socket_holdings(port, bound)
    facts: dict[int, ProcessFacts] = {}
    for holding in holdings:
        if holding.pid is not None and holding.pid not in facts:
            found = system.process_facts(holding.pid)
            if found is not None:
                facts[holding.pid] = found
    sharing_of: dict[str, set[int]] = {}
    for holding in holdings:
        if holding.pid in facts:
            sharing_of.setdefault(holding.socket_id, set()).add(holding.pid)
    own_project = {pid: is_project_process(found) for pid, found in facts.items()}
    rows: list[Listener] = []
    for holding in holdings:
        found = facts.get(holding.pid) if holding.pid is not None else None
        if holding.pid is not None and found is None:
            continue  # exited between the socket scan and the process lookup
        project, supervisor = False, None
        role: Role = "server"
        if found is not None:
            sharing = sharing_of[holding.socket_id]
            root = supervisor_of(found.pid, sharing, facts)
            project = own_project[found.pid] or own_project[root]
            role, supervisor = _role(found, sharing, facts)
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


def _role(
    found: ProcessFacts, sharing: set[int], facts: dict[int, ProcessFacts]
) -> tuple[Role, tuple[str, ...] | None]:
    """A holder's role on its socket, and a worker's supervisor's command line."""
    if found.ppid in sharing:
        return "worker", facts[found.ppid].cmdline
    return ("supervisor" if len(sharing) > 1 else "server"), None


def project_ports() -> list[int]:
    """The ports this project's servers listen on, ascending (what ``cleanup`` with no
    port frees)."""
    return sorted({row.port for row in listeners(project_only=True)})
