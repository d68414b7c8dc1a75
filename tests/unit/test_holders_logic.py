"""Who holds a port, from synthetic sockets and processes (utils/_holders.py): every
holder a row, each worker's supervisor, roles, and the project's attribution - a worker
counts as the project's when the supervisor sharing its socket does.

The platform reader is a fake (``fake_reader``): what the kernel and /proc would say is
given here, so only the package's own logic is under test.
"""

from __future__ import annotations

from tests.unit.synthetic import ELSEWHERE, SPAWN, FakeReader, facts, holding, row
from utils._common import ProcessFacts
from utils._holders import (
    _role,
    descendants,
    is_alive,
    listeners,
    pids_by_socket,
    project_ports,
    supervisor_of,
)
from utils._project_policy import PROJECT_ROOT

UVICORN = ("python3", "-m", "uvicorn", "app:app", "--workers", "2")
FOREIGN = ("python3", "-m", "http.server")


def _ours(pid: int, ppid: int = 1, cmdline: tuple[str, ...] = UVICORN) -> ProcessFacts:
    """A process of this project: it works in the checkout."""
    return facts(pid, ppid, cmdline=cmdline, cwd=PROJECT_ROOT)


def _worker(pid: int, ppid: int) -> ProcessFacts:
    """A multiprocessing worker: its own command line and cwd name no project file."""
    return facts(pid, ppid, cmdline=SPAWN, cwd=ELSEWHERE)


# ------------------------------------------------------------------ supervisors and roles


def test_the_supervisor_is_the_top_most_holder_of_the_same_socket() -> None:
    family = {pid: facts(pid, ppid) for pid, ppid in [(10, 1), (11, 10), (12, 11), (13, 10)]}
    sharing = {10, 11, 12}  # 13 is a child of 10 that does not hold the socket
    assert supervisor_of(12, sharing, family) == 10
    assert supervisor_of(11, sharing, family) == 10
    assert supervisor_of(10, sharing, family) == 10
    assert supervisor_of(13, {13}, family) == 13  # its parent does not share its socket
    assert supervisor_of(99, sharing, family) == 99  # nothing known of it: its own


def test_a_parent_loop_ends_the_walk() -> None:
    looped = {1: facts(1, 2), 2: facts(2, 1)}  # only a reused pid could make this
    assert supervisor_of(1, {1, 2}, looped) in (1, 2)


def test_roles_on_a_socket() -> None:
    family = {10: facts(10, 1, cmdline=UVICORN), 11: facts(11, 10), 20: facts(20, 1)}
    assert _role(family[10], {10, 11}) == "supervisor"
    assert _role(family[11], {10, 11}) == "worker"
    assert _role(family[20], {20}) == "server"


def test_only_named_processes_share_a_socket() -> None:
    rows = [
        row(facts(10), socket_id="a"),
        row(facts(11, 10), socket_id="a"),
        row(None, socket_id="a"),  # the system does not name this holder
        row(facts(20), socket_id="b"),
    ]
    hidden_facts = row(None, socket_id="c", pid=30)  # a pid without facts (gone meanwhile)
    assert pids_by_socket([*rows, hidden_facts]) == {"a": {10, 11}, "b": {20}}


def test_descendants_come_parents_first_from_one_read_tree() -> None:
    tree = {2: 1, 3: 2, 4: 2, 5: 3, 9: 8}
    assert descendants(1, tree) == [2, 3, 4, 5]
    assert descendants(3, tree) == [5]
    assert descendants(5, tree) == []
    assert descendants(1, {1: 2, 2: 1}) == [2]  # a loop ends, and the root is never its own


# ------------------------------------------------------------------ rows and attribution


def test_a_worker_is_the_projects_when_its_supervisor_is(fake_reader: FakeReader) -> None:
    supervisor, one, two = _ours(100), _worker(101, 100), _worker(102, 100)
    fake_reader.processes = {p.pid: p for p in (supervisor, one, two)}
    fake_reader.holdings = [holding(pid, socket_id="s1") for pid in (100, 101, 102)]
    rows = listeners(8000)
    assert [(r.pid, r.role, r.project) for r in rows] == [
        (100, "supervisor", True),
        (101, "worker", True),
        (102, "worker", True),
    ]
    assert rows[1].supervisor_cmdline == UVICORN
    assert rows[1].command == "uvicorn worker of 100"
    assert rows[0].command == "python3 -m uvicorn app:app --workers 2"


def test_a_worker_of_a_foreign_supervisor_is_not_the_projects(fake_reader: FakeReader) -> None:
    supervisor = facts(200, 1, cmdline=FOREIGN)
    fake_reader.processes = {200: supervisor, 201: _worker(201, 200)}
    fake_reader.holdings = [holding(200, socket_id="s"), holding(201, socket_id="s")]
    assert [(r.pid, r.project) for r in listeners(8000)] == [(200, False), (201, False)]
    assert listeners(8000, project_only=True) == []


def test_a_projects_process_under_a_foreign_supervisor_does_not_make_it_the_projects(
    fake_reader: FakeReader,
) -> None:
    fake_reader.processes = {200: facts(200, 1, cmdline=FOREIGN), 201: _ours(201, 200)}
    fake_reader.holdings = [holding(200, socket_id="s"), holding(201, socket_id="s")]
    assert [(r.pid, r.project) for r in listeners(8000)] == [(200, False), (201, True)]


def test_a_child_with_a_socket_of_its_own_is_judged_on_its_own(fake_reader: FakeReader) -> None:
    """Attribution follows the shared socket, not parentage: a foreign program started by
    a project process, listening on its own socket, is not the project's."""
    fake_reader.processes = {100: _ours(100), 150: facts(150, 100, cmdline=FOREIGN)}
    fake_reader.holdings = [
        holding(100, 8000, socket_id="parent's"),
        holding(150, 8001, socket_id="child's"),
    ]
    rows = listeners()
    assert [(r.port, r.pid, r.role, r.project) for r in rows] == [
        (8000, 100, "server", True),
        (8001, 150, "server", False),
    ]
    assert project_ports() == [8000]


def test_a_hidden_holder_is_a_row_and_a_vanished_one_is_not(fake_reader: FakeReader) -> None:
    fake_reader.processes = {}
    fake_reader.holdings = [holding(None, socket_id="hidden"), holding(300, socket_id="gone")]
    (hidden,) = listeners(8000)
    assert (hidden.pid, hidden.project, hidden.role, hidden.facts) == (None, False, "server", None)
    assert hidden.command == "(hidden by the operating system)"


def test_bound_sockets_only_when_asked_and_rows_in_order(fake_reader: FakeReader) -> None:
    fake_reader.processes = {p: facts(p) for p in (1, 2, 3, 4)}
    fake_reader.holdings = [
        holding(4, 8001, socket_id="d"),
        holding(3, 8000, socket_id="c", address="::1"),
        holding(2, 8000, socket_id="b", listening=False),
        holding(1, 8000, socket_id="a", address="0.0.0.0"),
    ]
    assert [r.pid for r in listeners()] == [1, 3, 4]  # port, family, address, pid
    rows = listeners(8000, bound=True)
    assert [(r.pid, r.state) for r in rows] == [(1, "listening"), (2, "bound"), (3, "listening")]


def test_a_process_is_alive_only_with_its_start_time(fake_reader: FakeReader) -> None:
    then = facts(40, start_time=500.0)
    fake_reader.processes = {40: then}
    assert is_alive(then)
    fake_reader.processes = {40: then._replace(start_time=500.5)}  # the pid was reused
    assert not is_alive(then)
    fake_reader.processes = {40: then._replace(zombie=True)}
    assert not is_alive(then)
    fake_reader.processes = {}
    assert not is_alive(then)
