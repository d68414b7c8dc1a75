"""Free a port: stop its holders gracefully, escalate only when needed, verify it stays free.

The order matters for servers whose socket is shared by a supervisor and its workers
(uvicorn ``--reload`` / ``--workers``): killing a worker makes the supervisor spawn a
new one, so the top-most holder is asked first and shuts its workers down itself.

The world is not still while this runs:

- A suspended holder (Ctrl-Z stops a whole foreground job) keeps SIGTERM pending until it
  is continued, so every stopped process of the tree being stopped, holder or not, gets
  SIGCONT right after the SIGTERM and shuts down gracefully instead of being killed.
- A supervisor outside the holders (a shell loop, watchexec, supervisord) may start a new
  holder a moment after the old one went. The port counts as freed only once it stayed
  free through a settle window; a new holder whose parent also started a holder that was
  stopped names that parent as the restarter, which is stopped too when the safety rules
  allow it and otherwise refused by name.
- A holder may exit, or hand its socket to a successor, between the socket scan and the
  process scan: an unnamed holder is looked for again before it is called hidden.
"""

from __future__ import annotations

import time

from utils._binding import free_for_servers
from utils._common import Listener, ProcessFacts
from utils._holders import listeners, process_facts
from utils._platform import reader, stopper
from utils._project_policy import is_project_process
from utils._stop_rules import (
    POLL_CAP,
    CleanupResult,
    Grouping,
    Groups,
    Identity,
    Outcome,
    Progress,
    SafetyRules,
    StopRole,
    group_holders,
    identity,
    outcome_of,
    quiet,
    refusals,
)
from utils._values import DEFAULT_GRACE_SECONDS, DEFAULT_SETTLE_SECONDS

MAX_ROUNDS = 4  # stop, settle, and look again: holders, then their restarter, then verify
# How long a socket without a named holder is scanned again before it is "hidden": a
# holder handing its socket to another process (fork, SCM_RIGHTS) is briefly invisible.
RESCAN_SECONDS = 0.3
HIDDEN_HOLDER = "the operating system does not say which process holds this socket"


class History:
    """What earlier rounds stopped: to tell a restarted holder from a successor."""

    def __init__(self) -> None:
        self.handled: set[Identity] = set()  # every process signalled so far
        self.newest_start = 0.0  # the latest start time among them
        self.ancestors: dict[Identity, ProcessFacts] = {}  # their parents and grandparents
        self.sockets: set[str] = set()  # the sockets they held

    def record(self, groups: Groups, sockets: dict[int, set[str]]) -> None:
        for root, members in groups.items():
            self.sockets |= sockets.get(root, set())
            for member in members:
                self.handled.add(identity(member))
                self.newest_start = max(self.newest_start, member.start_time)
                ancestor: ProcessFacts | None = member
                for _ in range(2):
                    ppid = ancestor.ppid if ancestor else None
                    ancestor = process_facts(ppid) if ppid else None
                    if ancestor is not None:
                        self.ancestors[identity(ancestor)] = ancestor

    def successor(self, holder: ProcessFacts, sockets: set[str]) -> bool:
        """Whether ``holder`` took over from a stopped holder rather than being restarted:
        it holds a socket a stopped holder held (a fork keeps the socket) where socket
        ids tell sockets apart; with psutil's ids (address and port, which a new socket
        shares), it was started by a stopped holder that is still exiting."""
        if reader().unique_socket_ids:
            return bool(sockets & self.sockets)
        parent = process_facts(holder.ppid) if holder.ppid else None
        return parent is not None and identity(parent) in self.handled

    def restarter_of(self, holder: ProcessFacts) -> ProcessFacts | None:
        """The process that started both ``holder`` and a stopped one: its parent, or its
        grandparent through a parent started after the stop (``sh -c`` in a loop)."""
        child, parent = holder, process_facts(holder.ppid) if holder.ppid else None
        for _ in range(2):
            if parent is None or parent.pid == 1:
                return None  # orphans are adopted by init: init restarts nothing of ours
            if parent.start_time > child.start_time:
                return None  # Windows keeps a gone parent's pid, which a newer one reused
            if identity(parent) in self.ancestors:
                return parent
            if parent.start_time <= self.newest_start:
                return None  # an older process that started none of the stopped ones
            child, parent = parent, process_facts(parent.ppid) if parent.ppid else None
        return None


def _restarters(
    grouping: Grouping, history: History, rules: SafetyRules, port: int
) -> tuple[list[ProcessFacts], list[Outcome]]:
    """The processes that started both a holder already stopped and one of these new
    holders: those the rules let us stop, and the refused ones. A successor of a stopped
    holder (``History.successor``) is not a restart."""
    allowed: list[ProcessFacts] = []
    refused: list[Outcome] = []
    for root, members in grouping.groups.items():
        if history.successor(members[0], grouping.sockets.get(root, set())):
            continue
        parent = history.restarter_of(members[0])
        if parent is None or parent in allowed or any(o.pid == parent.pid for o in refused):
            continue
        reason = rules.refusal(parent, is_project_process(parent))
        if reason is None:
            allowed.append(parent)
        else:
            why = f"it restarts the holders of port {port}; {reason}"
            refused.append(outcome_of(parent, "refused", why, role="restarter"))
    return allowed, refused


def _scan(port: int) -> list[Listener]:
    """The holders of ``port`` (listening or only bound), scanned again while one is
    unnamed: a holder that forks a successor and exits between the socket scan and the
    process scan leaves a socket without a visible holder for a moment."""
    end = time.monotonic() + RESCAN_SECONDS
    rows = listeners(port, bound=True)
    while any(row.pid is None for row in rows) and time.monotonic() < end:
        time.sleep(POLL_CAP)
        rows = listeners(port, bound=True)
    if any(not row.listening for row in rows) and free_for_servers(port):
        # Bound-only sockets with SO_REUSEADDR keep no server out: not holders.
        rows = [row for row in rows if row.listening]
    return rows


def _settle(port: int, window: float, progress: Progress = quiet) -> tuple[list[Listener], bool]:
    """Watch the port for ``window`` seconds: (holders seen, whether it can be bound).

    Test binds are cheap, so they are the poll; a scan runs when a bind fails, and once
    at the end.
    """
    end = time.monotonic() + window
    while True:
        if not free_for_servers(port):
            rows = _scan(port)
            if rows:
                return rows, False
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        progress(
            f"port {port}: making sure it stays free ({window - remaining:.1f} of {window:g} s)"
        )
        time.sleep(min(POLL_CAP, remaining))
    rows = _scan(port)
    return rows, not rows and free_for_servers(port)


def cleanup(
    port: int,
    *,
    force: bool = False,
    grace: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    settle: float = DEFAULT_SETTLE_SECONDS,
    progress: Progress = quiet,
) -> CleanupResult:
    """Stop whatever holds ``port`` (within the safety rules) and verify it stays free.

    All or nothing per round: when any holder (or a restarter) is refused, nothing more
    is stopped and the answer comes at once, naming the refusals.
    """
    start = time.monotonic()
    result = CleanupResult(port=port, dry_run=dry_run)
    rules = SafetyRules(force)
    history = History()
    rows, freed = _scan(port), False
    if not rows and not dry_run:
        # Free now is not yet freed: a crash-looping server may be between two starts.
        rows, freed = _settle(port, settle, progress)
    for _ in range(MAX_ROUNDS):
        if not rows:
            break
        grouping = group_holders(rows)
        groups = grouping.groups
        refused = [Outcome(None, None, "refused", HIDDEN_HOLDER) for _ in grouping.unnamed[:1]]
        refused += refusals(groups, grouping.project, rules)
        fresh = {
            root: members
            for root, members in groups.items()
            if identity(members[0]) not in history.handled
        }
        restarters, refused_restarters = _restarters(
            grouping._replace(groups=fresh), history, rules, port
        )
        refused += refused_restarters
        if refused or dry_run:
            result.refused.extend(refused)
            if dry_run and not refused:
                result.stopped.extend(
                    outcome_of(member, "would terminate", root=members[0])
                    for members in groups.values()
                    for member in members
                )
            break
        if not fresh:
            break  # only processes already signalled, still holding on: not freed
        history.record(fresh, grouping.sockets)
        # A restarter goes first, so it cannot replace the holders stopped after it.
        order: Groups = {parent.pid: [parent] for parent in restarters} | fresh
        history.handled.update(identity(parent) for parent in restarters)
        roles: dict[int, StopRole] = {parent.pid: "restarter" for parent in restarters}
        stopper().stop_groups(order, grace, result, roles, progress)
        rows, freed = _settle(port, settle, progress)
    result.freed = freed and not (dry_run or result.refused or rows)
    if not result.freed and not dry_run:
        result.still_held = rows or _scan(port)
    result.seconds = time.monotonic() - start
    return result


def stop_processes(
    groups: dict[int, list[ProcessFacts]],
    *,
    force: bool = False,
    grace: float = DEFAULT_GRACE_SECONDS,
) -> CleanupResult:
    """Stop these process groups (top-most process first, then the rest of each group,
    every stopped process of their trees continued) under the safety rules, all or
    nothing: for callers that know exactly which processes must go (the pytest plugin's
    leaked servers), where ``cleanup(port)`` would stop every holder of the port.
    ``result.port`` is 0; ``freed`` says whether every one of them went."""
    result = CleanupResult(port=0)
    rules = SafetyRules(force)
    members = [member for group in groups.values() for member in group]
    project = {member.pid: is_project_process(member) for member in members}
    result.refused.extend(refusals(groups, project, rules))
    if not result.refused:
        stopper().stop_groups(groups, grace, result, {}, quiet)
    result.freed = not result.refused and all(
        outcome.how in ("terminated", "killed", "already gone") for outcome in result.stopped
    )
    return result
