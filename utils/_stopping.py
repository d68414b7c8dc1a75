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

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from utils._binding import free_for_servers
from utils._facts import ProcessFacts
from utils._holders import (
    Listener,
    command_text,
    descendants,
    is_alive,
    is_project_process,
    listeners,
    parents,
    process_facts,
    top_holder,
)
from utils._polling import poll_until
from utils._values import DEFAULT_GRACE_SECONDS, DEFAULT_SETTLE_SECONDS

MAX_ROUNDS = 4  # stop, settle, and look again: holders, then their restarter, then verify
# Poll exits quickly: a server that is gone should be noticed within a few ms, not after
# a long back-off interval (the benchmark holds cleanup to "shutdown time + 100 ms").
POLL_CAP = 0.02
# How long a socket without a named holder is scanned again before it is "hidden": a
# holder handing its socket to another process (fork, SCM_RIGHTS) is briefly invisible.
RESCAN_SECONDS = 0.3
HIDDEN_HOLDER = "the operating system does not say which process holds this socket"


@dataclass(frozen=True)
class Outcome:
    """What happened to one process: terminated, killed, already gone, or refused."""

    pid: int | None
    name: str | None
    how: str
    reason: str | None = None
    cmdline: tuple[str, ...] | None = None
    suspended: bool = False  # it was stopped (Ctrl-Z) when the cleanup found it
    role: str = "holder"  # "holder" of the port, or "restarter" of its holders
    worker_of: int | None = None  # the supervisor pid of a worker sharing its socket
    supervisor_cmdline: tuple[str, ...] | None = None

    @property
    def command(self) -> str:
        """For people: escaped, a worker shown by its role."""
        return command_text(self.cmdline, self.name, self.worker_of, self.supervisor_cmdline)

    def as_dict(self) -> dict[str, Any]:
        result = "reason" if self.how == "refused" else "how"
        return {
            "pid": self.pid,
            "name": self.name,
            result: self.reason if self.how == "refused" else self.how,
            "role": self.role,
            "worker_of": self.worker_of,
            "suspended": self.suspended,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
        }


@dataclass
class CleanupResult:
    """The contract's cleanup result, plus the plan flag for ``--dry-run``."""

    port: int
    freed: bool = False
    seconds: float = 0.0
    dry_run: bool = False
    stopped: list[Outcome] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)
    still_held: list[Listener] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "freed": self.freed,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "stopped": [outcome.as_dict() for outcome in self.stopped],
            "refused": [outcome.as_dict() for outcome in self.refused],
            "still_held": [row.as_dict() for row in self.still_held],
        }


def protected_pids() -> dict[int, str]:
    """Processes never to signal: init, this tool, and every ancestor of this tool."""
    protected = {1: "pid 1 (init) is never stopped", os.getpid(): "this tool's own process"}
    pid: int | None = os.getppid()
    while pid and pid not in protected:
        protected[pid] = "an ancestor of this tool (stopping it would stop the tool)"
        facts = process_facts(pid)
        pid = facts.ppid if facts else None
    return protected


class _Rules:
    """The safety rules, fixed for one cleanup."""

    def __init__(self, force: bool) -> None:
        self.force = force
        self.protected = protected_pids()
        self.uid = os.geteuid() if hasattr(os, "geteuid") else None

    def refusal(self, facts: ProcessFacts, project: bool) -> str | None:
        """Why ``facts`` may not be stopped, or None."""
        if facts.pid in self.protected:
            return self.protected[facts.pid]
        if self.force:
            return None
        if facts.uid is not None and self.uid is not None and facts.uid != self.uid:
            return f"owned by user {facts.user}, not by you (use --force)"
        if not project:
            return "not a process of this project (use --force)"
        return None


def _outcome(
    facts: ProcessFacts,
    how: str,
    reason: str | None = None,
    role: str = "holder",
    root: ProcessFacts | None = None,
) -> Outcome:
    """What happened to ``facts``; ``root`` is its group's top-most holder."""
    worker = root is not None and root.pid != facts.pid
    return Outcome(
        facts.pid,
        facts.name,
        how,
        reason,
        facts.cmdline,
        facts.stopped,
        role,
        facts.ppid if worker else None,
        root.cmdline if worker and root is not None else None,
    )


Identity = tuple[int, float]  # pid and start time: a process, never a reused pid


def _identity(facts: ProcessFacts) -> Identity:
    return facts.pid, facts.start_time


Groups = dict[int, list[ProcessFacts]]  # top-most holder pid -> that holder and its workers


class Grouping(NamedTuple):
    groups: Groups
    project: dict[int, bool]  # holder pid -> the project's (its own code or its supervisor's)
    unnamed: list[Listener]  # rows whose holder the system does not name
    sockets: dict[int, set[str]]  # group root -> the sockets its members hold


def _group(rows: list[Listener]) -> Grouping:
    """Holders under their top-most holder. A worker that is the top holder of a socket of
    its own is folded into its supervisor's group: one server, one SIGTERM each."""
    facts = {row.pid: row.facts for row in rows if row.pid is not None and row.facts}
    holders_of: dict[str, set[int]] = {}
    for row in rows:
        if row.pid in facts:
            holders_of.setdefault(row.socket_id, set()).add(row.pid)
    groups: Groups = {}
    project: dict[int, bool] = {}
    unnamed: list[Listener] = []
    sockets: dict[int, set[str]] = {}
    for row in rows:
        if row.pid is None or row.facts is None:
            unnamed.append(row)
            continue
        root = top_holder(row.pid, holders_of[row.socket_id], facts)
        members = groups.setdefault(root, [facts[root]])
        if all(member.pid != row.pid for member in members):
            members.append(row.facts)
        project[row.pid] = project.get(row.pid, False) or row.project
        sockets.setdefault(root, set()).add(row.socket_id)
    for root in list(groups):
        owner = next((r for r, ms in groups.items() if r != root and _has(ms, root)), None)
        if owner is not None:
            groups[owner] += [m for m in groups.pop(root) if not _has(groups[owner], m.pid)]
            sockets[owner] |= sockets.pop(root)
    return Grouping(groups, project, unnamed, sockets)


def _has(members: list[ProcessFacts], pid: int) -> bool:
    return any(member.pid == pid for member in members)


def _refusals(groups: Groups, project: dict[int, bool], rules: _Rules) -> list[Outcome]:
    """Refusals of whole groups: a server is never half stopped."""
    refused: list[Outcome] = []
    for root, members in groups.items():
        reasons = {m.pid: rules.refusal(m, project.get(m.pid, False)) for m in members}
        if not any(reasons.values()):
            continue
        for member in members:
            reason = reasons[member.pid] or f"its supervisor pid {root} was refused"
            refused.append(_outcome(member, "refused", reason, root=members[0]))
    return refused


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
                self.handled.add(_identity(member))
                self.newest_start = max(self.newest_start, member.start_time)
                ancestor: ProcessFacts | None = member
                for _ in range(2):
                    ppid = ancestor.ppid if ancestor else None
                    ancestor = process_facts(ppid) if ppid else None
                    if ancestor is not None:
                        self.ancestors[_identity(ancestor)] = ancestor

    def restarter_of(self, holder: ProcessFacts) -> ProcessFacts | None:
        """The process that started both ``holder`` and a stopped one: its parent, or its
        grandparent through a parent started after the stop (``sh -c`` in a loop)."""
        parent = process_facts(holder.ppid) if holder.ppid else None
        for _ in range(2):
            if parent is None or parent.pid == 1:
                return None  # orphans are adopted by init: init restarts nothing of ours
            if _identity(parent) in self.ancestors:
                return parent
            if parent.start_time <= self.newest_start:
                return None  # an older process that started none of the stopped ones
            parent = process_facts(parent.ppid) if parent.ppid else None
        return None


def _restarters(
    grouping: Grouping, history: History, rules: _Rules, port: int
) -> tuple[list[ProcessFacts], list[Outcome]]:
    """The processes that started both a holder already stopped and one of these new
    holders: those the rules let us stop, and the refused ones. A holder of a socket that
    a stopped holder held is its successor (a fork keeps the socket), not a restart."""
    allowed: list[ProcessFacts] = []
    refused: list[Outcome] = []
    for root, members in grouping.groups.items():
        if grouping.sockets.get(root, set()) & history.sockets:
            continue
        parent = history.restarter_of(members[0])
        if parent is None or parent in allowed or any(o.pid == parent.pid for o in refused):
            continue
        reason = rules.refusal(parent, is_project_process(parent))
        if reason is None:
            allowed.append(parent)
        else:
            why = f"it restarts the holders of port {port}; {reason}"
            refused.append(_outcome(parent, "refused", why, role="restarter"))
    return allowed, refused


def _send(facts: ProcessFacts, sig: signal.Signals) -> str | None:
    """Signal exactly this process; None if sent, else 'gone' or 'denied'.

    On Linux a pidfd pins the process before its start time is compared, so the signal
    cannot reach a newer process that happens to reuse the pid; elsewhere the start time
    is compared just before ``kill``.
    """
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(facts.pid)
        except ProcessLookupError:
            return "gone"
        except OSError:  # kernel without pidfds: fall back to kill
            pidfd = None
    try:
        if not is_alive(facts):
            return "gone"
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(facts.pid, sig)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "denied"
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return None


def _continue_stopped(roots: list[ProcessFacts], members: list[ProcessFacts]) -> None:
    """SIGCONT every stopped process of the trees being stopped, holders or not (a
    multiprocessing resource tracker left stopped would stay so forever)."""
    if not hasattr(signal, "SIGCONT"):
        return
    seen: set[int] = set()
    candidates = [*members]
    tree = parents() if roots else {}  # one scan of the process table for every root
    for root in roots:
        candidates.extend(
            found
            for pid in descendants(root.pid, tree)
            if (found := process_facts(pid)) is not None
        )
    jobs: set[int] = set()
    for candidate in candidates:
        if candidate.pid in seen:
            continue
        seen.add(candidate.pid)
        now = process_facts(candidate.pid)
        if now is not None and now.stopped and now.start_time == candidate.start_time:
            _send(now, signal.SIGCONT)
            if now.pgid:
                jobs.add(now.pgid)
    # Ctrl-Z stopped the whole job: a loop that restarts the server, a `| tee`. Continue
    # it too, so nothing is left stopped and a restarter shows itself in the settle window.
    own_job = os.getpgrp()
    for job in jobs - {0, 1, own_job}:
        with contextlib.suppress(OSError):
            os.killpg(job, signal.SIGCONT)


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """No progress to show."""


def _stop_groups(
    groups: Groups,
    grace: float,
    result: CleanupResult,
    roles: dict[int, str],
    progress: Progress = _quiet,
) -> None:
    """SIGTERM the top-most holders (and continue what is suspended), then lingering
    workers, then SIGKILL after ``grace``; record what happened to each."""
    start = time.monotonic()
    roots = [members[0] for members in groups.values()]
    targets = [member for members in groups.values() for member in members]
    root_of = {member.pid: members[0] for members in groups.values() for member in members}
    how: dict[int, str] = {}
    signalled: set[int] = set()

    def alive() -> list[ProcessFacts]:
        living = [member for member in targets if member.pid not in how and is_alive(member)]
        if living:
            first = living[0]
            others = f" and {len(living) - 1} more" if len(living) > 1 else ""
            elapsed = time.monotonic() - start
            progress(
                f"port {result.port}: waiting for pid {first.pid} ({first.name}){others} "
                f"to exit: {elapsed:.1f} s, SIGKILL at {grace:g} s"
            )
        return living

    def deliver(members: list[ProcessFacts], sig: signal.Signals) -> None:
        for member in members:
            outcome = _send(member, sig)
            if outcome is None:
                signalled.add(member.pid)
            elif outcome == "denied":
                how[member.pid] = "refused"
            elif member.pid not in signalled:
                how[member.pid] = "already gone"

    deliver(roots, signal.SIGTERM)
    _continue_stopped(roots, targets)
    poll_until(lambda: not alive(), start + grace / 2, max_interval=POLL_CAP)
    lingering = alive()
    deliver(lingering, signal.SIGTERM)
    _continue_stopped([], lingering)
    poll_until(lambda: not alive(), start + grace, max_interval=POLL_CAP)
    lingering = alive()
    deliver(lingering, getattr(signal, "SIGKILL", signal.SIGTERM))
    poll_until(lambda: not alive(), time.monotonic() + 5, max_interval=POLL_CAP)
    for member in targets:
        if member.pid in how:
            pass
        elif is_alive(member):
            how[member.pid] = "still running"
        elif member in lingering:
            how[member.pid] = "killed"
        else:
            how[member.pid] = "terminated"
        role = roles.get(member.pid, "holder")
        if how[member.pid] == "refused":
            denied = "permission denied by the system"
            result.refused.append(_outcome(member, "refused", denied, role, root_of[member.pid]))
        else:
            outcome = _outcome(member, how[member.pid], role=role, root=root_of[member.pid])
            result.stopped.append(outcome)


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


def _settle(port: int, window: float, progress: Progress = _quiet) -> tuple[list[Listener], bool]:
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
    progress: Progress = _quiet,
) -> CleanupResult:
    """Stop whatever holds ``port`` (within the safety rules) and verify it stays free.

    All or nothing per round: when any holder (or a restarter) is refused, nothing more
    is stopped and the answer comes at once, naming the refusals.
    """
    start = time.monotonic()
    result = CleanupResult(port=port, dry_run=dry_run)
    rules = _Rules(force)
    history = History()
    rows, freed = _scan(port), False
    if not rows and not dry_run:
        # Free now is not yet freed: a crash-looping server may be between two starts.
        rows, freed = _settle(port, settle, progress)
    for _ in range(MAX_ROUNDS):
        if not rows:
            break
        grouping = _group(rows)
        groups = grouping.groups
        refused = [Outcome(None, None, "refused", HIDDEN_HOLDER) for _ in grouping.unnamed[:1]]
        refused += _refusals(groups, grouping.project, rules)
        fresh = {
            root: members
            for root, members in groups.items()
            if _identity(members[0]) not in history.handled
        }
        restarters, refused_restarters = _restarters(
            grouping._replace(groups=fresh), history, rules, port
        )
        refused += refused_restarters
        if refused or dry_run:
            result.refused.extend(refused)
            if dry_run and not refused:
                result.stopped.extend(
                    _outcome(member, "would terminate", root=members[0])
                    for members in groups.values()
                    for member in members
                )
            break
        if not fresh:
            break  # only processes already signalled, still holding on: not freed
        history.record(fresh, grouping.sockets)
        # A restarter goes first, so it cannot replace the holders stopped after it.
        order: Groups = {parent.pid: [parent] for parent in restarters} | fresh
        history.handled.update(_identity(parent) for parent in restarters)
        roles = {parent.pid: "restarter" for parent in restarters}
        _stop_groups(order, grace, result, roles, progress)
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
    rules = _Rules(force)
    members = [member for group in groups.values() for member in group]
    project = {member.pid: is_project_process(member) for member in members}
    result.refused.extend(_refusals(groups, project, rules))
    if not result.refused:
        _stop_groups(groups, grace, result, {})
    result.freed = not result.refused and all(
        outcome.how in ("terminated", "killed", "already gone") for outcome in result.stopped
    )
    return result
