"""The safety rules of stopping processes, and the records of what happened to each.

Never pid 1, this tool or its ancestors; without ``--force`` only the user's own
processes of this project. A server is a group (its top-most holder and the workers
sharing its socket) and is refused as a whole: nothing is ever half stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from utils._common import Listener, ProcessFacts, command_text
from utils._holders import pids_by_socket, supervisor_of
from utils._platform import reader

How = Literal["terminated", "killed", "already gone", "still running", "refused", "would terminate"]
StopRole = Literal["holder", "restarter"]  # a holder of the port, or a restarter of its holders


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


def protected_pids() -> dict[int, str]:
    """Processes never to signal: init, this tool, and every ancestor of this tool."""
    protected = {1: "pid 1 (init) is never stopped", os.getpid(): "this tool's own process"}
    pid: int | None = os.getppid()
    while pid and pid not in protected:
        protected[pid] = "an ancestor of this tool (stopping it would stop the tool)"
        facts = reader().process_facts(pid)
        pid = facts.ppid if facts else None
    return protected


class SafetyRules:
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
