"""Who holds a port: every listening socket with every process holding it, the
project's attribution and each holder's role, read through the platform reader.

A socket may be shared: a uvicorn supervisor and its workers (``--workers``,
``--reload``), a forked successor, a pre-fork server. Every holder is a row, and each
knows its supervisor (the top-most holder of the same socket).

One ``scan`` gives the rows as plain tuples, in order, with the facts of the processes
they name: ``listeners`` makes records of them, and ``list --json`` writes them out as
they are (``_reports.listeners_json``), so thousands of rows cost no record each. For
this project's servers only, only the processes that can be the project's have their
fd tables read (``_project_sockets``).
"""

from __future__ import annotations

from utils._common import Listener, ProcessFacts
from utils._platform import reader
from utils._project_policy import project_rule
from utils._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from utils._common import HeldSocket, Reader
    from utils._names import Role

    # A row: its sort key first (port, family, address, pid or 0), then the pid (None: a
    # holder the operating system does not name), listening, project, role, socket id.
    Row = tuple[int, str, str, int, int | None, bool, bool, Role, str]


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


class Scan(Record):
    """One look at the listening sockets: the rows in order, and the facts of the
    processes they name."""

    rows: list[Row]
    facts: dict[int, ProcessFacts]

    def listener(self, row: Row) -> Listener:
        """The record of one row."""
        port, family, address, _, pid, listening, project, role, socket_id = row
        found = self.facts.get(pid) if pid is not None else None
        if found is None:  # a holder the operating system does not name
            return Listener(
                port,
                address,
                family,
                pid,
                None,
                None,
                None,
                None,
                project,
                socket_id,
                None,
                listening,
                role,
            )
        supervisor = None
        if role == "worker" and found.ppid is not None:
            supervisor = self.facts[found.ppid].cmdline
        return Listener(
            port,
            address,
            family,
            pid,
            found.ppid,
            found.name,
            found.cmdline,
            found.user,
            project,
            socket_id,
            found,
            listening,
            role,
            supervisor,
        )

    def listeners(self) -> list[Listener]:
        """Every row as a record."""
        return [self.listener(row) for row in self.rows]


def scan(port: int | None = None, *, project_only: bool = False, bound: bool = False) -> Scan:
    """The rows of ``listeners`` (which see), as plain tuples."""
    system = reader()
    judge = project_rule()
    if project_only:
        sockets = _project_sockets(system, port, bound, judge)
    else:
        sockets = system.held_sockets(port, bound)
    read: dict[int, ProcessFacts | None] = {}
    for held in sockets:
        for pid in held[5]:
            if pid not in read:
                read[pid] = system.process_facts(pid)
    facts = {pid: found for pid, found in read.items() if found is not None}
    own = {pid: judge(found.cmdline, found.cwd) for pid, found in facts.items()}
    rows: list[Row] = []
    for socket_id, family, address, sock_port, listening, holders in sockets:
        if not holders:  # the operating system does not name them
            if not project_only:
                rows.append(
                    (sock_port, family, address, 0, None, listening, False, "server", socket_id)
                )
            continue
        if len(holders) == 1:  # the common case, spelled out: one process alone on it
            pid = holders[0]
            if pid in own and (own[pid] or not project_only):  # else: exited meanwhile
                rows.append(
                    (sock_port, family, address, pid, pid, listening, own[pid], "server", socket_id)
                )
            continue
        sharing = {pid for pid in holders if pid in facts}  # the others exited meanwhile
        for pid in sharing:
            project = own[pid] or own[supervisor_of(pid, sharing, facts)]
            if project or not project_only:
                role = _role(facts[pid], sharing)
                rows.append(
                    (sock_port, family, address, pid, pid, listening, project, role, socket_id)
                )
    rows.sort()
    return Scan(rows, facts)


def listeners(
    port: int | None = None, *, project_only: bool = False, bound: bool = False
) -> list[Listener]:
    """Every listening TCP socket (of ``port``) with every process that holds it, in
    order (port, family, address, pid); with ``bound``, also the sockets bound to the
    port without listening (where the operating system names them: Linux 6.5+ through
    netlink).

    A process counts as the project's when it runs the project's code, or when the
    top-most holder of the same socket (its supervisor) does.
    """
    return scan(port, project_only=project_only, bound=bound).listeners()


def _role(found: ProcessFacts, sharing: set[int]) -> Role:
    """A holder's role on the socket the processes ``sharing`` hold."""
    if found.ppid in sharing:
        return "worker"
    return "supervisor" if len(sharing) > 1 else "server"


def _project_sockets(
    system: Reader,
    port: int | None,
    bound: bool,
    judge: Callable[[Sequence[str], str | None], bool],
) -> list[HeldSocket]:
    """The sockets (with their holders) a row of the project's can come from, reading
    the fd tables of those processes only that can hold one, judged first by their
    program alone: the project's own processes; below them, the children of every
    holder found (a worker shares its supervisor's socket and counts through it); above
    them, their ancestors (a parent holding the same socket decides a holder's
    supervisor and role). Only the project's own processes can bring a socket in (any
    other's socket is the project's only when shared with one of them), so the kernel's
    socket tables are asked once, and not at all when none of them holds a socket.

    The rows are those of a scan of every process, but in one case: a process neither
    the project's nor related to one by descent that shares a project socket (one handed
    over a Unix socket) is not seen, so a holder alone with it reads "server", not
    "supervisor"."""
    own = {pid for pid, (cmdline, cwd) in system.programs().items() if judge(cmdline, cwd)}
    sockets = {held[0]: held for held in system.held_sockets(port, bound, own)}
    if not sockets:
        return []
    tree = system.parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in tree.items():
        children.setdefault(ppid, []).append(pid)
    above: set[int] = set()
    for pid in own:
        parent = tree.get(pid)
        while parent and parent not in own and parent not in above:
            above.add(parent)
            parent = tree.get(parent)
    scanned, below = set(own), set(own)
    holding = {pid for held in sockets.values() for pid in held[5]}
    while holding:
        kids = {child for pid in holding if pid in below for child in children.get(pid, ())}
        below |= kids
        nearby = (kids | above) - scanned
        scanned |= nearby
        holding = set()
        for socket_id, more in (system.which_hold(sockets, nearby) if nearby else {}).items():
            held = sockets[socket_id]
            sockets[socket_id] = (*held[:5], tuple(dict.fromkeys(held[5] + more)))
            holding.update(more)
    return list(sockets.values())


def project_ports() -> list[int]:
    """The ports this project's servers listen on, ascending (what ``cleanup`` with no
    port frees)."""
    return sorted({row.port for row in listeners(project_only=True)})
