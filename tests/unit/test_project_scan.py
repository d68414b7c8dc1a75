"""The default ``list`` reads the fd tables of the processes that can be the project's only
(utils/_holders.py, ``_project_sockets``): its rows must be those of a scan of every
process, filtered by the project rule, and it must leave everyone else's fd table alone.

Synthetic process trees (``fake_reader``): each scenario names a way a holder comes to
be the project's - its own program, its supervisor's - or not.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.synthetic import ELSEWHERE, SPAWN, FakeReader, facts, holding
from utils._common import ProcessFacts
from utils._holders import listeners
from utils._project_policy import PROJECT_ROOT

UVICORN = ("python3", "-m", "uvicorn", "app:app", "--workers", "2")
FOREIGN = ("python3", "-m", "http.server")


def _ours(pid: int, ppid: int = 1) -> ProcessFacts:
    return facts(pid, ppid, cmdline=UVICORN, cwd=PROJECT_ROOT)


def _foreign(pid: int, ppid: int = 1) -> ProcessFacts:
    return facts(pid, ppid, cmdline=FOREIGN, cwd=ELSEWHERE)


def _worker(pid: int, ppid: int) -> ProcessFacts:
    return facts(pid, ppid, cmdline=SPAWN, cwd=ELSEWHERE)


def _set(
    fake: FakeReader, processes: list[ProcessFacts], held: list[tuple[int | None, str]]
) -> None:
    """``held``: (pid, socket id) pairs; each socket has its own port."""
    fake.processes = {p.pid: p for p in [facts(1, None, cmdline=("/sbin/init",)), *processes]}
    ports = {
        socket_id: 8000 + index for index, socket_id in enumerate(dict.fromkeys(s for _, s in held))
    }
    fake.holdings = [holding(pid, ports[socket_id], socket_id=socket_id) for pid, socket_id in held]


def supervisor_with_workers_beside_foreign_servers(fake: FakeReader) -> None:
    """The project's uvicorn and its workers; a foreign server with a worker; a loner."""
    _set(
        fake,
        [
            _ours(100),
            _worker(101, 100),
            _worker(102, 100),
            _foreign(200),
            _worker(201, 200),
            _foreign(300),
        ],
        [(100, "s"), (101, "s"), (102, "s"), (200, "f"), (201, "f"), (300, "g")],
    )


def projects_worker_under_a_foreign_supervisor(fake: FakeReader) -> None:
    """A project process sharing its foreign parent's socket: the project's, as a worker."""
    _set(fake, [_foreign(200), _ours(201, 200)], [(200, "f"), (201, "f")])


def foreign_holder_above_a_project_supervisor(fake: FakeReader) -> None:
    """A foreign process above the project's holds the same socket: it is the supervisor,
    so the project process's own worker is not the project's."""
    _set(
        fake,
        [_foreign(50), _ours(100, 50), _worker(101, 100)],
        [(50, "s"), (100, "s"), (101, "s")],
    )


def workers_of_workers_and_sockets_of_their_own(fake: FakeReader) -> None:
    """Down a chain of holders of one socket every holder is the project's; a child's
    socket of its own, and its own children's, are not."""
    _set(
        fake,
        [_ours(100), _worker(110, 100), _worker(111, 110), _foreign(120, 100), _worker(121, 120)],
        [(100, "s"), (110, "s"), (111, "s"), (110, "t"), (120, "u"), (121, "u")],
    )


def hidden_and_vanished_holders(fake: FakeReader) -> None:
    """A socket nobody is named for, and a project socket whose second holder is gone."""
    _set(fake, [_ours(100)], [(None, "h"), (100, "s"), (999, "s")])


def no_project_server(fake: FakeReader) -> None:
    """Only foreign servers: the project's processes hold nothing."""
    _set(fake, [_ours(100), _foreign(200), _worker(201, 200)], [(200, "f"), (201, "f")])


SCENARIOS = [
    supervisor_with_workers_beside_foreign_servers,
    projects_worker_under_a_foreign_supervisor,
    foreign_holder_above_a_project_supervisor,
    workers_of_workers_and_sockets_of_their_own,
    hidden_and_vanished_holders,
    no_project_server,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
def test_the_projects_rows_are_those_of_the_whole_scan(
    fake_reader: FakeReader, scenario: Callable[[FakeReader], None]
) -> None:
    scenario(fake_reader)
    whole = [row for row in listeners() if row.project]
    assert listeners(project_only=True) == whole


def test_the_expected_rows_are_the_projects() -> None:
    """What the scenarios hold equal is worth holding: the rule's answers, spelled out."""
    expected = {
        supervisor_with_workers_beside_foreign_servers: [
            (100, "supervisor"),
            (101, "worker"),
            (102, "worker"),
        ],
        projects_worker_under_a_foreign_supervisor: [(201, "worker")],
        foreign_holder_above_a_project_supervisor: [(100, "worker")],
        workers_of_workers_and_sockets_of_their_own: [
            (100, "supervisor"),
            (110, "worker"),
            (111, "worker"),
        ],
        hidden_and_vanished_holders: [(100, "server")],
        no_project_server: [],
    }
    for scenario, rows in expected.items():
        fake = FakeReader()
        scenario(fake)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("utils._platform._chosen", lambda fake=fake: ("psutil", fake))
            assert [(r.pid, r.role) for r in listeners(project_only=True)] == rows, scenario


def test_unrelated_fd_tables_are_not_read(fake_reader: FakeReader) -> None:
    supervisor_with_workers_beside_foreign_servers(fake_reader)
    listeners(project_only=True)
    assert fake_reader.asked == [{100}]  # the sockets: the project's own processes only
    # who else holds them: the children of its holders and its ancestors (init), then none
    assert fake_reader.looked_at == [{1, 101, 102}]


def test_without_a_project_holder_one_look_is_all(fake_reader: FakeReader) -> None:
    no_project_server(fake_reader)
    assert listeners(project_only=True) == []
    assert (fake_reader.asked, fake_reader.looked_at) == ([{100}], [])
