"""The safety rules of stopping processes, the records of what happened to each, and the
interface of the platform's stopper.

Never pid 1 (on Windows the System processes), this tool or its ancestors; without
``--force`` only the user's own processes of this project. A server is a group (its
top-most holder and the workers sharing its socket) and is refused as a whole: nothing is
ever half stopped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from utils._common import Listener, ProcessFacts, command_text
from utils._holders import pids_by_socket, process_facts, supervisor_of

How = Literal["terminated", "killed", "already gone", "still running", "refused", "would terminate"]
StopRole = Literal["holder", "restarter"]  # a holder of the port, or a restarter of its holders
Progress = Callable[[str], None]
# Poll exits quickly: a server that is gone should be noticed within a few ms, not after
# a long back-off interval (the benchmark holds cleanup to "shutdown time + 100 ms").
POLL_CAP = 0.02


def quiet(_: str) -> None:
    """No progress to show."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one process: terminated, killed, already gone, or refused."""

    pid: int | None
    name: str | None
    how: How
    reason: str | None = None
    cmdline: tuple[str, ...] | None = None
    suspended: bool = False  # it was stopped (Ctrl-Z) when the cleanup found it
    role: StopRole = "holder"
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


def system_pids(platform: str = sys.platform) -> dict[int, str]:
    """The system's own processes, never stopped: init; on Windows the Idle and System
    processes (pids 0 and 4), as there is no pid 1."""
    if platform == "win32":
        never = "is never stopped"
        return {0: f"the System Idle Process {never}", 4: f"the System process {never}"}
    return {1: "pid 1 (init) is never stopped"}


def protected_pids() -> dict[int, str]:
    """Processes never to signal: the system's, this tool, and every ancestor of this tool."""
    protected = {**system_pids(), os.getpid(): "this tool's own process"}
    pid: int | None = os.getppid()
    while pid and pid not in protected:
        protected[pid] = "an ancestor of this tool (stopping it would stop the tool)"
        facts = process_facts(pid)
        pid = facts.ppid if facts else None
    return protected


class SafetyRules:
    """The safety rules, fixed for one cleanup."""

    def __init__(self, force: bool) -> None:
        self.force = force
        self.protected = protected_pids()
        self.uid = os.geteuid() if hasattr(os, "geteuid") else None
        self.user = None if self.uid is not None else _login_name()  # Windows: no uids

    def refusal(self, facts: ProcessFacts, project: bool) -> str | None:
        """Why ``facts`` may not be stopped, or None."""
        if facts.pid in self.protected:
            return self.protected[facts.pid]
        if self.force:
            return None
        if facts.uid is not None and self.uid is not None and facts.uid != self.uid:
            return f"owned by user {facts.user}, not by you (use --force)"
        if self.uid is None and not same_user(facts.user, self.user):
            return f"owned by user {facts.user}, not by you (use --force)"
        if not project:
            return "not a process of this project (use --force)"
        return None


def _login_name() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return None


def same_user(owner: str | None, me: str | None) -> bool:
    """Whether a process's owner (psutil on Windows says ``DOMAIN\\name``) is this user;
    an owner the system does not tell, or no name of our own, is not a difference."""
    if owner is None or me is None:
        return True
    return owner.rpartition("\\")[2].casefold() == me.rpartition("\\")[2].casefold()


def outcome_of(
    facts: ProcessFacts,
    how: How,
    reason: str | None = None,
    role: StopRole = "holder",
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


def identity(facts: ProcessFacts) -> Identity:
    return facts.pid, facts.start_time


Groups = dict[int, list[ProcessFacts]]  # top-most holder pid -> that holder and its workers
# stop_groups(groups, grace, result, roles, progress): stop every group, its top-most
# process first, within ``grace`` seconds where the platform can ask gracefully, and
# record what happened to each member in ``result``.
StopGroups = Callable[[Groups, float, "CleanupResult", dict[int, StopRole], Progress], None]


class Stopper(Protocol):
    """What every platform's stopper module provides (``_signals`` on POSIX, ``_windows``
    on Windows), chosen once by ``_platform.stopper()``."""

    @property
    def stop_groups(self) -> StopGroups: ...


def record(
    result: CleanupResult, groups: Groups, how: dict[int, How], roles: dict[int, StopRole]
) -> None:
    """Every member's outcome into ``result``: refused by the system, or how it ended."""
    for members in groups.values():
        for member in members:
            role = roles.get(member.pid, "holder")
            if how[member.pid] == "refused":
                denied = "permission denied by the system"
                result.refused.append(outcome_of(member, "refused", denied, role, members[0]))
            else:
                ended = outcome_of(member, how[member.pid], role=role, root=members[0])
                result.stopped.append(ended)


class Grouping(NamedTuple):
    groups: Groups
    project: dict[int, bool]  # holder pid -> the project's (its own code or its supervisor's)
    unnamed: list[Listener]  # rows whose holder the system does not name
    sockets: dict[int, set[str]]  # group root -> the sockets its members hold


def group_holders(rows: list[Listener]) -> Grouping:
    """Holders under their top-most holder. A worker that is the top holder of a socket of
    its own is folded into its supervisor's group: one server, one SIGTERM each."""
    facts = {row.pid: row.facts for row in rows if row.pid is not None and row.facts}
    sharing = pids_by_socket(rows)
    groups: Groups = {}
    project: dict[int, bool] = {}
    unnamed: list[Listener] = []
    sockets: dict[int, set[str]] = {}
    for row in rows:
        if row.pid is None or row.facts is None:
            unnamed.append(row)
            continue
        root = supervisor_of(row.pid, sharing[row.socket_id], facts)
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


def refusals(groups: Groups, project: dict[int, bool], rules: SafetyRules) -> list[Outcome]:
    """Refusals of whole groups: a server is never half stopped."""
    refused: list[Outcome] = []
    for root, members in groups.items():
        reasons = {m.pid: rules.refusal(m, project.get(m.pid, False)) for m in members}
        if not any(reasons.values()):
            continue
        for member in members:
            reason = reasons[member.pid] or f"its supervisor pid {root} was refused"
            refused.append(outcome_of(member, "refused", reason, root=members[0]))
    return refused
