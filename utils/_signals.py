"""The POSIX stopper (``_stop_rules.Stopper``; ``_windows`` is Windows's): signals through
pidfds, suspended processes continued, SIGTERM to the top-most holders first, escalation
to SIGKILL only at the grace's end."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from utils._common import ProcessFacts, poll_until
from utils._holders import descendants, is_alive, process_facts, process_tree
from utils._stop_rules import (
    POLL_CAP,
    CleanupResult,
    Groups,
    How,
    Progress,
    StopRole,
    quiet,
    record,
)

# How long a SIGKILLed process may take to be reaped before it counts as "still running".
KILLED_EXIT_SECONDS = 5.0


def send(facts: ProcessFacts, sig: signal.Signals) -> str | None:
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


def continue_stopped(roots: list[ProcessFacts], members: list[ProcessFacts]) -> None:
    """SIGCONT every stopped process of the trees being stopped, holders or not (a
    multiprocessing resource tracker left stopped would stay so forever)."""
    if not hasattr(signal, "SIGCONT"):
        return
    seen: set[int] = set()
    candidates = [*members]
    tree = process_tree() if roots else {}  # one scan of the process table for every root
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
            send(now, signal.SIGCONT)
            if now.pgid:
                jobs.add(now.pgid)
    # Ctrl-Z stopped the whole job: a loop that restarts the server, a `| tee`. Continue
    # it too, so nothing is left stopped and a restarter shows itself in the settle window.
    own_job = os.getpgrp()
    for job in jobs - {0, 1, own_job}:
        with contextlib.suppress(OSError):
            os.killpg(job, signal.SIGCONT)


def stop_groups(
    groups: Groups,
    grace: float,
    result: CleanupResult,
    roles: dict[int, StopRole],
    progress: Progress = quiet,
) -> None:
    """SIGTERM the top-most holders (and continue what is suspended), then lingering
    workers, then SIGKILL after ``grace``; record what happened to each."""
    start = time.monotonic()
    roots = [members[0] for members in groups.values()]
    targets = [member for members in groups.values() for member in members]
    how: dict[int, How] = {}
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
            outcome = send(member, sig)
            if outcome is None:
                signalled.add(member.pid)
            elif outcome == "denied":
                how[member.pid] = "refused"
            elif member.pid not in signalled:
                how[member.pid] = "already gone"

    deliver(roots, signal.SIGTERM)
    continue_stopped(roots, targets)
    poll_until(lambda: not alive(), start + grace / 2, max_interval=POLL_CAP)
    lingering = alive()
    deliver(lingering, signal.SIGTERM)
    continue_stopped([], lingering)
    poll_until(lambda: not alive(), start + grace, max_interval=POLL_CAP)
    lingering = alive()
    deliver(lingering, signal.SIGKILL)
    poll_until(lambda: not alive(), time.monotonic() + KILLED_EXIT_SECONDS, max_interval=POLL_CAP)
    for member in targets:
        if member.pid in how:
            pass
        elif is_alive(member):
            how[member.pid] = "still running"
        elif member in lingering:
            how[member.pid] = "killed"
        else:
            how[member.pid] = "terminated"
    record(result, groups, how, roles)
