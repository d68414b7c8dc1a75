"""The Windows stopper (``_stop_rules.Stopper``; ``_signals`` is the POSIX one).

Windows has no signals: ``os.kill(pid, SIGTERM)`` is TerminateProcess, which ends one
process at once and leaves its children running (a uvicorn supervisor's workers would
keep the port). So a holder goes with its whole tree, as ``taskkill /T /F`` ends it: the
top-most process first, so no supervisor replaces a worker, then its descendants level
by level, then any child it started meanwhile.

The one graceful stop Windows has for a console program is a console control event,
and it cannot be aimed: Windows does not say which process leads a console process
group, and GenerateConsoleCtrlEvent sent to a pid that leads none reaches every process
of the console, this tool and its shell included. So Ctrl-Break goes to the holder's
console as a whole - what the user's own Ctrl-Break in that window does, which uvicorn
answers with a graceful shutdown - and only when nothing else lives there: every process
attached to it is being stopped, or is an interactive shell the holder runs under
(``stop_method``). Anything else, or a console that cannot be read, is terminated at
once and reported as ``killed``: forced, as there was no graceful way.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Collection
from typing import Literal

from utils import _stop_rules as rules
from utils._common import ProcessFacts, poll_until
from utils._holders import descendants, is_alive
from utils._platform import reader
from utils._stop_rules import POLL_CAP, CleanupResult, Groups, How, Progress, StopRole

StopMethod = Literal["ctrl-break", "terminate"]
# Interactive shells take a console's Ctrl-Break as the user's own key press while a
# program runs in front of them: sharing the holder's console with them is no obstacle.
SHELLS = frozenset({"cmd.exe", "powershell.exe", "pwsh.exe"})
DETACHED_PROCESS = 0x00000008  # the helper starts without a console, so it can attach one
HELPER_TIMEOUT = 5.0
# Run detached: attach to the console of the pid in argv[1], print the pids attached to
# it, and send Ctrl-Break to all of them (itself immune) only when told "break".
CONSOLE_HELPER = r"""
import ctypes, sys
kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
if not kernel32.AttachConsole(int(sys.argv[1])):
    sys.exit(3)
immune = ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)(lambda event: 1)
kernel32.SetConsoleCtrlHandler(immune, 1)
pids = (ctypes.c_uint32 * 4096)()
count = kernel32.GetConsoleProcessList(pids, 4096)
print(" ".join(str(pids[i]) for i in range(min(count, 4096))), flush=True)
if sys.stdin.readline().strip() == "break":
    sys.exit(0 if kernel32.GenerateConsoleCtrlEvent(1, 0) else 4)
"""


def stop_method(
    stopping: Collection[int], console: Collection[int] | None, shells: Collection[int]
) -> StopMethod:
    """How to stop a holder whose console holds ``console`` (None: not readable).

    Ctrl-Break reaches every process of that console, so it is sent only when each of
    them is being stopped (``stopping``) or is a shell the holder runs under
    (``shells``); otherwise the tree is terminated."""
    if not console:
        return "terminate"
    others = set(console) - set(stopping) - set(shells)
    return "terminate" if others else "ctrl-break"


def tree_order(root: int, parents: dict[int, int], start_times: dict[int, float]) -> list[int]:
    """``root``, then its descendants level by level: the order ``taskkill /T`` ends them.

    Windows keeps a child's parent pid after the parent has gone, and pids are reused: a
    "child" that started before its parent belongs to an older process that once had
    the pid, so it and its own children are left out (psutil's ``children()`` rule)."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    order = [root]
    for pid in order:
        for child in sorted(children.get(pid, [])):
            born, parent_born = start_times.get(child), start_times.get(pid)
            if child in order or born is None or parent_born is None or born < parent_born:
                continue
            order.append(child)
    return order


def _tree(root: ProcessFacts) -> list[ProcessFacts]:
    """The live processes of ``root``'s tree, in ``tree_order`` (root first)."""
    parents = reader().parents()
    found = {root.pid: root}
    for pid in descendants(root.pid, parents):
        facts = reader().process_facts(pid)
        if facts is not None:
            found[pid] = facts
    starts = {pid: facts.start_time for pid, facts in found.items()}
    return [found[pid] for pid in tree_order(root.pid, parents, starts)]


def _shells_above(facts: ProcessFacts) -> set[int]:
    """The interactive shells among ``facts``'s ancestors (each older than its child)."""
    shells: set[int] = set()
    child = facts
    while child.ppid:
        parent = reader().process_facts(child.ppid)
        if parent is None or parent.start_time > child.start_time or parent.pid in shells:
            break
        if parent.name.lower() in SHELLS:
            shells.add(parent.pid)
        child = parent
    return shells


def _ctrl_break(root: ProcessFacts, stopping: set[int]) -> bool:
    """Send Ctrl-Break to ``root``'s console if ``stop_method`` allows it: whether sent."""
    helper = subprocess.Popen(
        [sys.executable, "-c", CONSOLE_HELPER, str(root.pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        creationflags=DETACHED_PROCESS,
        text=True,
    )
    watchdog = threading.Timer(HELPER_TIMEOUT, helper.kill)
    watchdog.start()
    try:
        assert helper.stdout is not None
        assert helper.stdin is not None
        line = helper.stdout.readline()
        console = {int(pid) for pid in line.split() if pid.isdigit()} - {helper.pid}
        method = stop_method(stopping, console or None, _shells_above(root))
        helper.stdin.write("break\n" if method == "ctrl-break" else "no\n")
        helper.stdin.close()
        return method == "ctrl-break" and helper.wait() == 0
    except (OSError, ValueError):
        return False
    finally:
        watchdog.cancel()
        if helper.poll() is None:
            helper.kill()
            helper.wait()


def terminate(facts: ProcessFacts) -> str | None:
    """TerminateProcess exactly this process: None if done, else 'gone' or 'denied'.

    psutil opens a handle to the pid and checks its start time before terminating
    through that handle, so a newer process that reuses the pid is never hit."""
    import psutil

    try:
        process = psutil.Process(facts.pid)
        if abs(process.create_time() - facts.start_time) >= 0.05:
            return "gone"
        process.kill()
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:
        return "denied"
    return None


def stop_groups(
    groups: Groups,
    grace: float,
    result: CleanupResult,
    roles: dict[int, StopRole],
    progress: Progress = rules.quiet,
) -> None:
    """Ctrl-Break where ``stop_method`` allows it and wait up to ``grace``; then terminate
    what is left of every tree, top-most first; record what happened to each member."""
    start = time.monotonic()
    protected = rules.protected_pids()
    members = [member for group in groups.values() for member in group]
    how: dict[int, How] = {m.pid: "already gone" for m in members if not is_alive(m)}
    trees = {root: _tree(group[0]) for root, group in groups.items() if group[0].pid not in how}
    broken: list[ProcessFacts] = []
    for root, tree in trees.items():
        stopping = {facts.pid for facts in tree} | {m.pid for m in groups[root]}
        if _ctrl_break(groups[root][0], stopping):
            broken += tree

    def waiting() -> bool:
        living = [facts for facts in broken if is_alive(facts)]
        if living:
            elapsed = time.monotonic() - start
            progress(
                f"port {result.port}: waiting for pid {living[0].pid} ({living[0].name}) to "
                f"exit after Ctrl-Break: {elapsed:.1f} s, terminated at {grace:g} s"
            )
        return bool(living)

    poll_until(lambda: not waiting(), start + grace, max_interval=POLL_CAP)
    forced: set[int] = set()
    for root, tree in trees.items():
        again = _tree(tree[0]) if is_alive(tree[0]) else []
        for facts in [*tree, *again, *groups[root]]:
            if facts.pid in protected or facts.pid in forced or not is_alive(facts):
                continue
            failed = terminate(facts)
            if failed is None:
                forced.add(facts.pid)
            elif failed == "denied":
                how.setdefault(facts.pid, "refused")
    ending = [member for member in members if member.pid not in how]
    settled = time.monotonic() + 5
    poll_until(lambda: not any(map(is_alive, ending)), settled, max_interval=POLL_CAP)
    for member in members:
        if member.pid not in how:
            alive = is_alive(member)
            how[member.pid] = (
                "still running" if alive else "killed" if member.pid in forced else "terminated"
            )
    rules.record(result, groups, how, roles)
