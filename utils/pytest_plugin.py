"""pytest plugin: race-free ports for tests, and a check that no test leaves a server
listening.

Load it with ``pytest -p utils.pytest_plugin`` (installed, it registers itself as the
``portkeeper`` pytest11 entry point). It gives:

- ``free_port``: an ``int`` port free when handed out and handed to no other test of the
  same run, in this process or another pytest-xdist worker. Workers share one directory
  per run; a port is claimed by creating its file there (``O_EXCL``), which is atomic.
- ``reserved_socket``: a bound, listening, inheritable socket on 127.0.0.1 (the race-free
  way: pass it to the server under test, e.g. uvicorn ``fd=``/``sockets=``).
- a leak check: after each test (its fixtures torn down), a listening TCP socket that
  appeared during the test and is held by a descendant of the test process (or by a
  process of the project started during the test that was orphaned) fails the test with
  port, pid and command; its holders are stopped with the port manager's safety rules.
  ``@pytest.mark.allow_listeners`` opts a test out, ``--no-listener-check`` a run.
  Sockets opened by fixtures wider than a function (a session's database server) are
  theirs, not leaks. The session summary lists what was stopped.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

MARKER = "allow_listeners"
OPTION = "--no-listener-check"
_STOPPED_PROPERTY = "portkeeper_stopped"
_CLAIMS_PER_CALL = 2000  # candidates tried before giving up on finding a port
SETTLE_SECONDS = 1.0  # how long a new listener may take to go away after the teardown


# --------------------------------------------------------------------------- ports


def _ephemeral_floor() -> int:
    """The first port the kernel hands out for port 0: fixtures stay below it, so a
    test that binds port 0 cannot take the port another test was given."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range: macOS and Windows


class PortRegistry:
    """Ports claimed in one test run, shared by every process of the run."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        floor = _ephemeral_floor()
        self.low = 10000 if floor > 12000 else 1024
        self.high = max(self.low + 1, floor - 1)

    def claim(self, port: int) -> bool:
        """Whether this caller is the first of the run to ask for ``port``."""
        try:
            os.close(os.open(os.path.join(self.directory, str(port)), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def free_port(self) -> int:
        """A port nobody in this run was given, free on every local address now."""
        from utils._binding import LOCAL_ADDRESSES, quick_free

        span = self.high - self.low
        start = random.randrange(span)  # two runs on one machine rarely meet
        for offset in range(min(span, _CLAIMS_PER_CALL)):
            port = self.low + (start + offset) % span
            if self.claim(port) and quick_free(port, LOCAL_ADDRESSES):
                return port
        raise RuntimeError(f"no free port found in {self.low}-{self.high}")


# The run's id, set by the first pytest process of a run (the xdist controller, or the
# only process): xdist workers, and pytest runs started by the tests, inherit it.
RUN_VARIABLE = "PORTKEEPER_TEST_RUN"


def _registry_directory() -> str:
    return os.path.join(tempfile.gettempdir(), f"portkeeper-ports-{os.environ[RUN_VARIABLE]}")


def free_port_for_this_run() -> int:
    """``free_port`` without a fixture: for helpers that need several ports per test."""
    if RUN_VARIABLE not in os.environ:
        raise RuntimeError(f"{__name__} is not loaded (pytest -p {__name__})")
    return PortRegistry(_registry_directory()).free_port()


def registry(config: pytest.Config) -> PortRegistry:
    found: PortRegistry | None = getattr(config, "_portkeeper_registry", None)
    if found is None:
        found = PortRegistry(_registry_directory())
        config._portkeeper_registry = found  # type: ignore[attr-defined]
    return found


@pytest.fixture
def free_port(request: pytest.FixtureRequest) -> int:
    """A port free now and handed to no other test of this run (xdist workers too)."""
    return registry(request.config).free_port()


@pytest.fixture
def reserved_socket(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    """A bound, listening, inheritable socket on 127.0.0.1, closed after the test."""
    from utils._binding import reserve

    ports = registry(request.config)
    while True:
        try:
            sock = reserve(ports.free_port(), "127.0.0.1")
            break
        except OSError:  # taken between the check and the bind by someone outside the run
            continue
    try:
        yield sock
    finally:
        sock.close()


# --------------------------------------------------------------------------- leak check


def _listening_ids() -> dict[str, int]:
    from utils._holders import listening_socket_ids

    return listening_socket_ids()


def _descends_from(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    seen = set()
    while pid in parents and pid not in seen:
        seen.add(pid)
        pid = parents[pid]
        if pid == ancestor:
            return True
    return False


class LeakCheck:
    """Listening sockets before and after each test; what is new and the test's is a leak."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.wider: set[str] = set()  # sockets opened by fixtures wider than a function
        self.before: dict[str, int] = {}
        self.started = 0.0
        self.stopped: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        if fixturedef.scope == "function":
            return (yield)
        before = set(_listening_ids())
        try:
            return (yield)
        finally:
            self.wider |= set(_listening_ids()) - before

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self.before = _listening_ids()
        self.started = time.time()
        return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        result = yield  # the fixtures are torn down: what still listens was left behind
        if item.get_closest_marker(MARKER) is None:
            self._check(item)
        return result

    def _new_sockets(self) -> dict[str, int]:
        now = _listening_ids()
        return {
            sid: port
            for sid, port in now.items()
            if sid not in self.before and sid not in self.wider
        }

    def _check(self, item: pytest.Item) -> None:
        new = self._new_sockets()
        if not new:
            return
        # A process killed by a fixture may take a moment to die and close its socket:
        # only what is still listening after that moment counts.
        end = time.monotonic() + SETTLE_SECONDS
        while new and time.monotonic() < end:
            time.sleep(0.02)
            new = self._new_sockets()
        if not new:
            return
        leaked = self._leaked(new)
        if not leaked:
            return
        lines = [f"port {row.port}: pid {row.pid}: {row.command}" for row in leaked]
        stopped = self._stop(sorted({row.port for row in leaked}), leaked)
        item.user_properties.append((_STOPPED_PROPERTY, stopped))
        pytest.fail(
            f"{item.nodeid} left {len(lines)} listening socket(s) behind: "
            + "; ".join(lines)
            + f" ({stopped})",
            pytrace=False,
        )

    def _leaked(self, new: dict[str, int]) -> list[Any]:
        """The holders of ``new`` sockets that this test started."""
        from utils._holders import listeners, parents

        tree = parents()
        me = os.getpid()
        leaked = []
        for port in sorted(set(new.values())):
            for row in listeners(port):
                if row.socket_id not in new or row.pid is None or row.facts is None:
                    continue
                mine = _descends_from(row.pid, me, tree)
                orphan = row.facts.ppid == 1 and row.project
                if mine or (orphan and _started_after(row.pid, self.started)):
                    leaked.append(row)
        return leaked

    def _stop(self, ports: list[int], leaked: list[Any]) -> str:
        """Stop the leaked holders through the port manager; say what happened."""
        from utils._stopping import cleanup

        ours = {row.pid for row in leaked}
        said = []
        for port in ports:
            from utils._holders import listeners

            holders = {row.pid for row in listeners(port, bound=True)}
            result = cleanup(port, force=holders <= ours, grace=2.0, settle=0.0)
            pids = ", ".join(str(outcome.pid) for outcome in result.stopped)
            state = "freed" if result.freed else "still held"
            said.append(f"port {port} {state}" + (f", stopped pid {pids}" if pids else ""))
        text = "; ".join(said)
        self.stopped.append(text)
        return text

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect what workers stopped (their reports reach the controller)."""
        if report.when != "teardown" or getattr(self.config, "workerinput", None) is not None:
            return
        for name, value in report.user_properties:
            if name == _STOPPED_PROPERTY and value not in self.stopped:
                self.stopped.append(f"{report.nodeid}: {value}")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stopped:
            terminalreporter.section("portkeeper: leaked listeners stopped")
            for line in self.stopped:
                terminalreporter.line(line)


def _started_after(pid: int, moment: float) -> bool:
    """Whether process ``pid`` started at or after ``moment`` (seconds since the epoch)."""
    try:
        import psutil

        return bool(psutil.Process(pid).create_time() >= moment - 0.01)
    except Exception:  # gone, or not ours to ask: not provably the test's
        return False


# --------------------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portkeeper", "ports for tests (portkeeper)")
    group.addoption(
        OPTION,
        action="store_true",
        default=False,
        help="do not fail tests that leave a listening socket behind",
    )


def pytest_configure(config: pytest.Config) -> None:
    if RUN_VARIABLE not in os.environ:
        os.environ[RUN_VARIABLE] = uuid.uuid4().hex
        config._portkeeper_owner = True  # type: ignore[attr-defined]
    config.addinivalue_line(
        "markers", f"{MARKER}: this test may leave listening sockets (no leak check)"
    )
    if not config.getoption(OPTION):
        config.pluginmanager.register(LeakCheck(config), "portkeeper-leak-check")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that began the run (the xdist controller, or the only process)
    removes the run's claims."""
    if getattr(config, "_portkeeper_owner", False):
        with contextlib.suppress(OSError, KeyError):
            shutil.rmtree(_registry_directory())
        os.environ.pop(RUN_VARIABLE, None)
