"""Free a port: stop its holders gracefully, escalate only when needed, verify the result.

The order matters for servers whose socket is shared by a supervisor and its workers
(uvicorn ``--reload`` / ``--workers``): killing a worker makes the supervisor spawn a
new one, so the top-most holder is asked first and shuts its workers down itself.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from utils._binding import check
from utils._facts import ProcessFacts
from utils._holders import Listener, is_alive, listeners, process_facts, top_holder
from utils._polling import poll_until

MAX_ROUNDS = 3  # a supervisor outside the holders may respawn a worker; look again
# Poll exits quickly: a server that is gone should be noticed within a few ms, not after
# a long back-off interval (the benchmark holds cleanup to "shutdown time + 100 ms").
POLL_CAP = 0.02


@dataclass(frozen=True)
class Outcome:
    """What happened to one process: terminated, killed, already gone, or refused."""

    pid: int | None
    name: str | None
    how: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.how == "refused":
            return {"pid": self.pid, "name": self.name, "reason": self.reason}
        return {"pid": self.pid, "name": self.name, "how": self.how}


@dataclass
class CleanupResult:
    """The contract's cleanup result (DESIGN.md), plus the plan flag for ``--dry-run``."""

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


def _refusal(row: Listener, force: bool, protected: dict[int, str]) -> str | None:
    if row.pid is None or row.facts is None:
        return "the operating system does not say which process holds this socket"
    if row.pid in protected:
        return protected[row.pid]
    if not force and row.facts.uid is not None and row.facts.uid != os.geteuid():
        return f"owned by user {row.user}, not by you (use --force)"
    if not force and not row.project:
        return "not a process of this project (use --force)"
    return None


Groups = dict[int, list[ProcessFacts]]  # top-most holder pid -> that holder and its workers


def _plan(
    rows: list[Listener], force: bool, protected: dict[int, str]
) -> tuple[Groups, list[Outcome]]:
    """Group holders under their top-most holder and apply the safety rules per group:
    the groups to stop, and the refusals."""
    facts = {row.pid: row.facts for row in rows if row.pid is not None and row.facts}
    holders_of: dict[str, set[int]] = {}
    for row in rows:
        if row.pid is not None:
            holders_of.setdefault(row.socket_id, set()).add(row.pid)
    groups: Groups = {}
    reasons: dict[int, str] = {}
    refused: list[Outcome] = []
    for row in rows:
        reason = _refusal(row, force, protected)
        if row.pid is None or row.facts is None:
            refused.append(Outcome(None, None, "refused", reason))
            continue
        root = top_holder(row.pid, holders_of[row.socket_id], facts)
        members = groups.setdefault(root, [facts[root]])
        if all(member.pid != row.pid for member in members):
            members.append(row.facts)
        if reason is not None:
            reasons.setdefault(row.pid, reason)
    for root in list(groups):
        members = groups[root]
        if not any(member.pid in reasons for member in members):
            continue
        del groups[root]  # never stop half a server: refuse the whole group
        for member in members:
            reason = reasons.get(member.pid) or f"its supervisor pid {root} was refused"
            refused.append(Outcome(member.pid, member.name, "refused", reason))
    return groups, refused


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


def _stop_groups(groups: Groups, grace: float, result: CleanupResult) -> None:
    """SIGTERM the top-most holders, then lingering workers, then SIGKILL after ``grace``."""
    start = time.monotonic()
    targets = [member for members in groups.values() for member in members]
    how: dict[int, str] = {}
    signalled: set[int] = set()

    def alive() -> list[ProcessFacts]:
        return [member for member in targets if member.pid not in how and is_alive(member)]

    def deliver(members: list[ProcessFacts], sig: signal.Signals) -> None:
        for member in members:
            outcome = _send(member, sig)
            if outcome is None:
                signalled.add(member.pid)
            elif outcome == "denied":
                how[member.pid] = "refused"
            elif member.pid not in signalled:
                how[member.pid] = "already gone"

    deliver([member for member in targets if member.pid in groups], signal.SIGTERM)
    poll_until(lambda: not alive(), start + grace / 2, max_interval=POLL_CAP)
    deliver(alive(), signal.SIGTERM)
    poll_until(lambda: not alive(), start + grace, max_interval=POLL_CAP)
    lingering = alive()
    deliver(lingering, signal.SIGKILL)
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
        if how[member.pid] == "refused":
            result.refused.append(
                Outcome(member.pid, member.name, "refused", "permission denied by the system")
            )
        else:
            result.stopped.append(Outcome(member.pid, member.name, how[member.pid]))


def _port_is_free(port: int) -> bool:
    return check(port).free and not listeners(port)


def cleanup(
    port: int, *, force: bool = False, grace: float = 5.0, dry_run: bool = False
) -> CleanupResult:
    """Stop whatever holds ``port`` (within the safety rules) and verify it is free."""
    start = time.monotonic()
    result = CleanupResult(port=port, dry_run=dry_run)
    protected = protected_pids()
    handled: set[tuple[int, float]] = set()
    for _ in range(MAX_ROUNDS):
        rows = listeners(port)
        if not rows:
            break
        groups, refused = _plan(rows, force, protected)
        result.refused.extend(o for o in refused if o not in result.refused)
        fresh = {
            root: members
            for root, members in groups.items()
            if (members[0].pid, members[0].start_time) not in handled
        }
        if dry_run:
            result.stopped.extend(
                Outcome(member.pid, member.name, "would terminate")
                for members in fresh.values()
                for member in members
            )
            break
        if not fresh:
            break
        handled.update((m.pid, m.start_time) for members in fresh.values() for m in members)
        _stop_groups(fresh, grace, result)
        if result.refused:
            break
    settle = 0.0 if dry_run else 2.0
    result.freed = poll_until(
        lambda: _port_is_free(port), time.monotonic() + settle, max_interval=POLL_CAP
    )
    if not result.freed:
        result.still_held = listeners(port)
    result.seconds = time.monotonic() - start
    return result
