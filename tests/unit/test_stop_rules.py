"""The safety rules of stopping (utils/_stop_rules.py), on synthetic processes: never pid
1, this tool or its ancestors; without --force only the user's own processes of this
project; a server is one group (supervisor and workers), refused as a whole."""

from __future__ import annotations

import os

import pytest

from tests.unit.synthetic import MY_UID, MY_USER, OTHER_UID, FakeReader, facts, row
from utils._stop_rules import (
    CleanupResult,
    Outcome,
    SafetyRules,
    group_holders,
    outcome_of,
    protected_pids,
    refusals,
    system_pids,
)

ME = os.getpid()
UVICORN = ("python3", "-m", "uvicorn", "app:app")


@pytest.fixture
def ancestry(fake_reader: FakeReader) -> FakeReader:
    """This process's parent and grandparent as the reader sees them, then init."""
    parent, grandparent = os.getppid(), 900_001
    fake_reader.processes = {
        parent: facts(parent, grandparent),
        grandparent: facts(grandparent, 1),
    }
    return fake_reader


# ------------------------------------------------------------------ who may be stopped


def test_init_the_tool_and_its_ancestors_are_protected(ancestry: FakeReader) -> None:
    protected = protected_pids()
    assert protected == {
        **system_pids(),  # pid 1 (init); Windows's System processes there
        ME: "this tool's own process",
        os.getppid(): "an ancestor of this tool (stopping it would stop the tool)",
        900_001: "an ancestor of this tool (stopping it would stop the tool)",
    }


@pytest.mark.parametrize("force", [False, True])
def test_protected_processes_are_refused_even_with_force(ancestry: FakeReader, force: bool) -> None:
    rules = SafetyRules(force)
    for system, reason in system_pids().items():
        assert rules.refusal(facts(system, None, uid=0), True) == reason
    assert rules.refusal(facts(ME, uid=MY_UID, user=MY_USER), True) == "this tool's own process"
    assert "ancestor" in (rules.refusal(facts(900_001, uid=MY_UID, user=MY_USER), True) or "")


def test_another_users_process_needs_force(ancestry: FakeReader) -> None:
    theirs = facts(500, uid=OTHER_UID, user="mallory")
    assert SafetyRules(False).refusal(theirs, True) == (
        "owned by user mallory, not by you (use --force)"
    )
    assert SafetyRules(True).refusal(theirs, True) is None


def test_a_process_that_is_not_the_projects_needs_force(ancestry: FakeReader) -> None:
    foreign = facts(500, uid=MY_UID, user=MY_USER)
    assert SafetyRules(False).refusal(foreign, False) == (
        "not a process of this project (use --force)"
    )
    assert SafetyRules(True).refusal(foreign, False) is None


def test_the_users_own_project_process_may_be_stopped(ancestry: FakeReader) -> None:
    assert SafetyRules(False).refusal(facts(500, uid=MY_UID, user=MY_USER), True) is None
    assert SafetyRules(False).refusal(facts(501, uid=None, user=None), True) is None  # not told


# ------------------------------------------------------------------ groups


def test_workers_fold_into_their_supervisors_group() -> None:
    supervisor = facts(100, 1, cmdline=UVICORN)
    one, two = facts(101, 100), facts(102, 100)
    rows = [
        row(supervisor, socket_id="s", project=True),
        row(one, socket_id="s", project=True),
        row(two, socket_id="s", project=True),
    ]
    grouping = group_holders(rows)
    assert {root: [m.pid for m in members] for root, members in grouping.groups.items()} == {
        100: [100, 101, 102]
    }
    assert grouping.project == {100: True, 101: True, 102: True}
    assert grouping.sockets == {100: {"s"}}
    assert grouping.unnamed == []


def test_a_worker_with_a_socket_of_its_own_stays_in_its_supervisors_group() -> None:
    """A worker is the top holder of a private socket (a second port): one server still."""
    supervisor = facts(100, 1, cmdline=UVICORN)
    worker = facts(101, 100)
    rows = [
        row(supervisor, socket_id="shared"),
        row(worker, socket_id="shared"),
        row(worker, port=9000, socket_id="private"),
    ]
    grouping = group_holders(rows)
    assert {root: [m.pid for m in members] for root, members in grouping.groups.items()} == {
        100: [100, 101]
    }
    assert grouping.sockets == {100: {"shared", "private"}}


def test_separate_servers_are_separate_groups_and_unnamed_holders_are_kept_aside() -> None:
    hidden = row(None, socket_id="h")
    rows = [row(facts(100), socket_id="a"), row(facts(200), socket_id="b"), hidden]
    grouping = group_holders(rows)
    assert sorted(grouping.groups) == [100, 200]
    assert grouping.unnamed == [hidden]


def test_a_process_is_the_projects_if_any_of_its_rows_says_so() -> None:
    server = facts(100)
    grouping = group_holders(
        [row(server, socket_id="a", project=False), row(server, socket_id="b", project=True)]
    )
    assert grouping.project == {100: True}
    assert [m.pid for m in grouping.groups[100]] == [100]  # one member, however many sockets


# ------------------------------------------------------------------ refusals


def test_a_server_is_refused_as_a_whole(ancestry: FakeReader) -> None:
    """One worker of another user: the supervisor and the other worker are refused too."""
    supervisor = facts(100, 1, cmdline=UVICORN, uid=MY_UID, user=MY_USER)
    ok_worker = facts(101, 100, uid=MY_UID, user=MY_USER)
    theirs = facts(102, 100, uid=OTHER_UID, user="mallory")
    groups = {100: [supervisor, ok_worker, theirs]}
    project = {100: True, 101: True, 102: True}
    refused = refusals(groups, project, SafetyRules(False))
    assert [(o.pid, o.how, o.reason, o.worker_of) for o in refused] == [
        (100, "refused", "its supervisor pid 100 was refused", None),
        (101, "refused", "its supervisor pid 100 was refused", 100),
        (102, "refused", "owned by user mallory, not by you (use --force)", 100),
    ]
    assert refused[1].supervisor_cmdline == UVICORN
    assert refused[1].command == "uvicorn worker of 100"


def test_only_the_refused_group_is_refused(ancestry: FakeReader) -> None:
    groups = {
        100: [facts(100, uid=MY_UID, user=MY_USER)],
        200: [facts(200, uid=MY_UID, user=MY_USER)],
    }
    refused = refusals(groups, {100: True, 200: False}, SafetyRules(False))
    assert [(o.pid, o.reason) for o in refused] == [
        (200, "not a process of this project (use --force)")
    ]
    assert refusals(groups, {100: True, 200: True}, SafetyRules(False)) == []
    assert refusals(groups, {}, SafetyRules(True)) == []


# ------------------------------------------------------------------ records


def test_an_outcome_carries_the_reason_only_when_refused() -> None:
    stopped = outcome_of(facts(7, cmdline=("a",), stopped=True), "terminated")
    assert stopped.as_dict() == {
        "pid": 7,
        "name": "python3",
        "how": "terminated",
        "role": "holder",
        "worker_of": None,
        "suspended": True,
        "cmdline": ["a"],
    }
    refused = Outcome(8, "x", "refused", "because")
    assert refused.as_dict()["reason"] == "because" and "how" not in refused.as_dict()


def test_a_cleanup_result_rounds_its_seconds() -> None:
    result = CleanupResult(8000, freed=True, seconds=0.123456)
    assert result.as_dict() == {
        "port": 8000,
        "freed": True,
        "seconds": 0.123,
        "dry_run": False,
        "stopped": [],
        "refused": [],
        "still_held": [],
    }
