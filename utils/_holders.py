"""Who holds a port: discovery through one platform reader, and the project's policy.

One public function, ``listeners()``, sits over per-platform readers (psutil's own
pattern): ``_procfs`` on Linux, ``_psutil_reader`` elsewhere. Setting the environment
variable ``PORT_MANAGER_READER`` to ``psutil`` or ``procfs`` forces one, which is how
the test suite runs over both paths on one machine.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from utils._facts import ProcessFacts, SocketHolding

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READER_VARIABLE = "PORT_MANAGER_READER"


def reader() -> ModuleType:
    """The platform reader in force (imported lazily: psutil costs start-up time)."""
    choice = os.environ.get(READER_VARIABLE, "").strip().lower()
    if choice not in ("", "procfs", "psutil"):
        from utils._values import InvalidValue

        raise InvalidValue(
            f"{READER_VARIABLE} {choice!r} is not valid: expected 'procfs', 'psutil' or unset"
        )
    if choice != "psutil" and sys.platform.startswith("linux"):
        from utils import _procfs

        if _procfs.available():
            return _procfs
    from utils import _psutil_reader

    return _psutil_reader


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts about a live process, or None once it is gone (a zombie counts as gone)."""
    facts: ProcessFacts | None = reader().process_facts(pid)
    return facts


def is_alive(facts: ProcessFacts) -> bool:
    """Whether the very process of ``facts`` still runs (a reused pid is not it)."""
    now = process_facts(facts.pid)
    return now is not None and not now.zombie and abs(now.start_time - facts.start_time) < 0.05


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _in_virtualenv(path: Path) -> bool:
    """Interpreters and console scripts of a venv inside the repository are not its code."""
    return any((parent / "pyvenv.cfg").exists() for parent in path.parents)


def runs_project_code(facts: ProcessFacts, root: Path = PROJECT_ROOT) -> bool:
    """A process of this project: it works inside the repository or runs a file of it."""
    if facts.cwd is not None and _inside(Path(facts.cwd), root):
        return True
    for argument in facts.cmdline[1:]:
        candidate = argument.rpartition("=")[2] if argument.startswith("-") else argument
        if not candidate or "\n" in candidate:
            continue
        path = Path(candidate)
        if not path.is_absolute():
            if facts.cwd is None:
                continue
            path = Path(facts.cwd) / path
        path = Path(os.path.normpath(path))
        if _inside(path, root) and not _in_virtualenv(path):
            return True
    return False


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket as held by one process (one row per socket and process)."""

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

    def as_dict(self) -> dict[str, Any]:
        """The listener row of the command contract (DESIGN.md)."""
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
        }


def top_holder(pid: int, holders: set[int], facts: dict[int, ProcessFacts]) -> int:
    """Walk up the parents of ``pid`` while they hold the same socket: the supervisor."""
    seen = {pid}
    while True:
        parent = facts[pid].ppid if pid in facts else None
        if parent is None or parent not in holders or parent in seen:
            return pid
        seen.add(parent)
        pid = parent


def listeners(port: int | None = None, *, project_only: bool = False) -> list[Listener]:
    """Every listening TCP socket (of ``port``) with every process that holds it.

    A process counts as the project's when it runs the project's code, or when the
    top-most holder of the same socket (its supervisor) does.
    """
    holdings: list[SocketHolding] = reader().listening(port)
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
    own_project = {pid: runs_project_code(found) for pid, found in facts.items()}
    rows: list[Listener] = []
    for holding in holdings:
        found = facts.get(holding.pid) if holding.pid is not None else None
        if holding.pid is not None and found is None:
            continue  # exited between the socket scan and the process lookup
        project = False
        if found is not None:
            root = top_holder(found.pid, holders_of[holding.socket_id], facts)
            project = own_project[found.pid] or own_project[root]
        if project_only and not project:
            continue
        rows.append(
            Listener(
                port=holding.port,
                address=holding.address,
                family=holding.family,
                pid=holding.pid,
                ppid=found.ppid if found else None,
                name=found.name if found else None,
                cmdline=found.cmdline if found else None,
                user=found.user if found else None,
                project=project,
                socket_id=holding.socket_id,
                facts=found,
            )
        )
    rows.sort(key=lambda row: (row.port, row.family, row.address, row.pid or 0))
    return rows
