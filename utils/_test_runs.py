"""A test run's identity and what belongs to it: the ports it claimed (what makes
``free_port`` unique across pytest-xdist workers and concurrent runs of the user) and
the processes it started. No pytest here: the plugin (``utils/pytest_plugin.py``) and
``tests/conftest.py`` share it.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile

_CLAIMS_PER_CALL = 2000  # candidates tried before giving up on finding a port


def _ephemeral_floor() -> int:
    """The first port the kernel hands out for port 0: fixtures stay below it, so a
    test that binds port 0 cannot take the port another test was given."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range: macOS and Windows


class PortRegistry:
    """Ports claimed by the test runs of this user on this machine.

    One directory per user holds a file per claimed port, naming the run that holds it
    and that run's first process. Creating the file (``O_EXCL``) is the claim, so two
    workers of a run, or two runs at once, never get the same port. A claim is released
    when its run ends; the claim of a run whose first process is gone (killed by a CI
    timeout) is stale and is taken over.
    """

    def __init__(self, directory: str, run: str) -> None:
        self.directory = directory
        self.run = run
        os.makedirs(directory, mode=0o700, exist_ok=True)
        floor = _ephemeral_floor()
        self.low = 10000 if floor > 12000 else 1024
        self.high = max(self.low + 1, floor - 1)

    def claim(self, port: int) -> bool:
        """Whether this run may have ``port``: nobody else (alive) holds its claim."""
        path = os.path.join(self.directory, str(port))
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if not self._stale(path):
                return False
            fresh = f"{path}.{os.getpid()}"
            with open(fresh, "w", encoding="ascii") as claim:
                claim.write(self.run)
            os.replace(fresh, path)  # atomic: the last of two takers wins the file...
            with open(path, encoding="ascii") as claim:
                return claim.read() == self.run  # ...and only it takes the port
        with os.fdopen(descriptor, "w", encoding="ascii") as claim:
            claim.write(self.run)
        return True

    def _stale(self, path: str) -> bool:
        try:
            with open(path, encoding="ascii") as claim:
                owner = claim.read()
        except OSError:
            return False
        pid = owner.rpartition(":")[2]
        if owner == self.run or not pid.isdigit():
            return False
        import psutil  # not os.kill(pid, 0): on Windows that terminates the process

        return not psutil.pid_exists(int(pid))

    def release_all(self) -> None:
        """Give back every port this run claimed (at the end of the run)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    with open(path, encoding="ascii") as claim:
                        mine = claim.read() == self.run
                    if mine:
                        os.remove(path)

    def free_port(self) -> int:
        """A port no test run was given, free on every local address now."""
        from utils._binding import LOCAL_ADDRESSES, quick_free

        span = self.high - self.low
        start = random.randrange(span)
        for offset in range(min(span, _CLAIMS_PER_CALL)):
            port = self.low + (start + offset) % span
            if self.claim(port) and quick_free(port, LOCAL_ADDRESSES):
                return port
        raise RuntimeError(f"no free port found in {self.low}-{self.high}")


# The run's id ("uuid:pid" of its first process), set by the first pytest process of a
# run (the xdist controller, or the only process): xdist workers, and pytest runs
# started by the tests, inherit it.
RUN_VARIABLE = "PORTKEEPER_TEST_RUN"


def _registry_directory() -> str:
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"portkeeper-ports-{user}")


def run_registry() -> PortRegistry:
    if RUN_VARIABLE not in os.environ:
        raise RuntimeError("utils.pytest_plugin is not loaded (pytest -p utils.pytest_plugin)")
    return PortRegistry(_registry_directory(), os.environ[RUN_VARIABLE])


def free_port_for_this_run() -> int:
    """``free_port`` without a fixture: for helpers that need several ports per test."""
    return run_registry().free_port()


def ancestors(pid: int, tree: dict[int, int]) -> list[int]:
    """The parents of ``pid`` up to the root, nearest first (``tree``: pid -> parent)."""
    chain: list[int] = []
    while pid in tree and tree[pid] not in chain and tree[pid] > 0:
        pid = tree[pid]
        chain.append(pid)
    return chain


def _environment(pid: int) -> dict[str, str]:
    try:
        import psutil

        return dict(psutil.Process(pid).environ())
    except Exception:  # gone, or not ours to read: not provably the test's
        return {}


def _same_run_and_worker(env: dict[str, str]) -> bool:
    """The environment a process inherited names this run and this xdist worker."""
    return all(
        env.get(name) == os.environ.get(name) for name in (RUN_VARIABLE, "PYTEST_XDIST_WORKER")
    )


def started_during(pid: int, nodeid: str) -> bool:
    """Whether ``pid`` was started during the test ``nodeid`` of this run and worker."""
    env = _environment(pid)
    current = env.get("PYTEST_CURRENT_TEST", "")
    return _same_run_and_worker(env) and current.rsplit(" (", 1)[0] == nodeid


def started_in_this_run(pid: int, tree: dict[int, int]) -> bool:
    """A process of this pytest process's tree, or started in this run and worker."""
    return os.getpid() in ancestors(pid, tree) or _same_run_and_worker(_environment(pid))
