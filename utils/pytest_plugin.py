"""pytest plugin: race-free ports for tests, and a check that no test leaves a server
listening.

Load it with ``pytest -p utils.pytest_plugin`` (installed, it registers itself as a
pytest11 entry point of the same name). It gives:

- ``free_port``: an ``int`` port free when handed out and handed to no other test, of
  this run (any pytest-xdist worker) or of another run of this user at the same time: a
  port is claimed by creating its file in one per-user directory (``O_EXCL``, atomic).
- ``reserved_socket``: a bound, listening, inheritable socket on 127.0.0.1 (the race-free
  way: pass it to the server under test, e.g. uvicorn ``fd=``/``sockets=``).
- a leak check: after each test (its fixtures torn down, even when a teardown fails), a
  listening TCP socket that appeared during the test and is held by a process the test
  started (a descendant of the test process, or one whose inherited environment says it
  was started during this test, of this run and worker: a double-forked daemon too)
  fails the test with port, pid and command; those processes, from the top-most one the
  test started (a restart loop included), are stopped with the port manager's safety
  rules, and nothing else. ``@pytest.mark.allow_listeners`` opts a test out,
  ``--no-listener-check`` a run. Processes and sockets of fixtures wider than a function
  (a session's database server) are theirs, not leaks. The session summary lists what
  was stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from utils import port_manager
from utils._test_runs import (
    RUN_VARIABLE,
    PortRegistry,
    ancestors,
    free_port_for_this_run,
    run_registry,
    started_during,
    started_in_this_run,
)

__all__ = [
    "PortRegistry",
    "free_port",
    "free_port_for_this_run",
    "reserved_socket",
]

MARKER = "allow_listeners"
OPTION = "--no-listener-check"
_STOPPED_PROPERTY = "portkeeper_stopped"
SETTLE_SECONDS = 1.0  # how long a new listener may take to go away after the teardown


def registry(config: pytest.Config) -> PortRegistry:
    found: PortRegistry | None = getattr(config, "_portkeeper_registry", None)
    if found is None:
        found = run_registry()
        config._portkeeper_registry = found  # type: ignore[attr-defined]
    return found


@pytest.fixture
def free_port(request: pytest.FixtureRequest) -> int:
    """A port free now and handed to no other test of this run (xdist workers too)."""
    return registry(request.config).free_port()


@pytest.fixture
def reserved_socket(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    """A bound, listening, inheritable socket on 127.0.0.1, closed after the test."""
    from utils.port_manager import reserve

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


class LeakCheck:
    """Listening sockets before and after each test; what is new and the test's is a leak.

    "The test's" is decided per process: a descendant of this pytest process, or a
    process whose environment says it was started during this very test of this run and
    worker (``PYTEST_CURRENT_TEST``, ``PYTEST_XDIST_WORKER`` and the run id are inherited
    by every child, and survive a double fork that hands it to init or a subreaper).
    Processes started by fixtures wider than a function (and their children) are not.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.wider_sockets: set[str] = set()  # opened while a wider fixture was set up
        self.wider_pids: set[int] = set()  # started while a wider fixture was set up
        self.before: dict[str, int] = {}
        self.stopped: list[str] = []

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        if fixturedef.scope == "function":
            return (yield)
        from utils.port_manager import descendants

        sockets, pids = set(port_manager.socket_ports()), set(descendants(os.getpid()))
        try:
            return (yield)
        finally:
            self.wider_sockets |= set(port_manager.socket_ports()) - sockets
            self.wider_pids |= set(descendants(os.getpid())) - pids

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self.before = port_manager.socket_ports()
        return (yield)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        checking = item.get_closest_marker(MARKER) is None
        try:
            result = yield  # the fixtures are torn down: what still listens was left behind
        except BaseException:
            if checking:  # a teardown that failed is where leaks happen: stop them anyway
                self._check(item, report=False)
            raise
        if checking:
            self._check(item, report=True)
        return result

    def _new_sockets(self) -> dict[str, int]:
        now = port_manager.socket_ports()
        skip = self.before.keys() | self.wider_sockets
        return {sid: port for sid, port in now.items() if sid not in skip}

    def _check(self, item: pytest.Item, *, report: bool) -> None:
        if not self._new_sockets():
            return
        leaked = self._leaked(item)
        # A process a fixture just killed may take a moment to die and close its socket:
        # only the test's sockets still listening after that moment count.
        end = time.monotonic() + SETTLE_SECONDS
        while leaked and time.monotonic() < end:
            time.sleep(0.02)
            leaked = self._leaked(item)
        if not leaked:
            return
        lines = [f"port {row.port}: pid {row.pid}: {row.command}" for row in leaked]
        stopped = f"{item.nodeid}: {self._stop(leaked)}"
        self.stopped.append(stopped)
        item.user_properties.append((_STOPPED_PROPERTY, stopped))
        if report:
            pytest.fail(
                f"{item.nodeid} left {len(lines)} listening socket(s) behind: "
                + "; ".join(lines)
                + f" ({stopped})",
                pytrace=False,
            )

    def _leaked(self, item: pytest.Item) -> list[Any]:
        """The holders of new sockets that this test started."""
        from utils.port_manager import listeners, process_tree

        new = self._new_sockets()
        tree = process_tree()
        leaked = []
        for port in sorted(set(new.values())):
            for row in listeners(port, bound=False):
                if row.socket_id in new and row.pid is not None and self._ours(row.pid, item, tree):
                    leaked.append(row)
        return leaked

    def _ours(self, pid: int, item: pytest.Item, tree: dict[int, int]) -> bool:
        """Started by this test: below this process or marked by its environment, and not
        by a wider fixture."""
        chain = ancestors(pid, tree)
        if self.wider_pids & {pid, *chain}:
            return False
        return os.getpid() in chain or started_during(pid, item.nodeid)

    def _stop(self, leaked: list[Any]) -> str:
        """Stop what the test started around each leaked socket: from the top-most of its
        ancestors the test started (a restart loop, a shell) down, never anything else."""
        from utils.port_manager import process_facts, process_tree, stop_processes

        tree = process_tree()
        groups: dict[int, list[Any]] = {}
        for row in leaked:
            top = row.pid
            for ancestor in ancestors(row.pid, tree):
                if ancestor == os.getpid() or not started_in_this_run(ancestor, tree):
                    break
                top = ancestor
            facts = process_facts(top)
            if facts is None:
                continue
            group = groups.setdefault(top, [facts])
            if row.facts is not None and all(member.pid != row.pid for member in group):
                group.append(row.facts)  # the holder goes too, not only its restarter
        result = stop_processes(groups, force=True, grace=2.0)
        said = [f"stopped pid {o.pid} ({o.how})" for o in result.stopped]
        said += [f"pid {o.pid} refused: {o.reason}" for o in result.refused]
        return "; ".join(said) or "nothing left to stop"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect what workers stopped (their reports reach the controller)."""
        if report.when != "teardown" or getattr(self.config, "workerinput", None) is not None:
            return
        for name, value in report.user_properties:
            if name == _STOPPED_PROPERTY and value not in self.stopped:
                self.stopped.append(str(value))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stopped:
            terminalreporter.section("portkeeper: leaked listeners stopped")
            for line in self.stopped:
                terminalreporter.line(line)


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
        os.environ[RUN_VARIABLE] = f"{uuid.uuid4().hex}:{os.getpid()}"
        config._portkeeper_owner = True  # type: ignore[attr-defined]
    config.addinivalue_line(
        "markers", f"{MARKER}: this test may leave listening sockets (no leak check)"
    )
    if not config.getoption(OPTION):
        config.pluginmanager.register(LeakCheck(config), "portkeeper-leak-check")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The process that began the run (the xdist controller, or the only process) gives
    back the run's ports."""
    if getattr(config, "_portkeeper_owner", False):
        with contextlib.suppress(OSError, RuntimeError):
            run_registry().release_all()
        os.environ.pop(RUN_VARIABLE, None)
