"""The Windows stopper's decisions (utils/_windows.py), on synthetic processes: when a
console may get Ctrl-Break, the order a tree is terminated in, and what each member's
outcome is called. Nothing here runs Windows: the console helper and TerminateProcess
are replaced by fakes that record what they were asked."""

from __future__ import annotations

import io
import subprocess
from typing import ClassVar

import pytest

from tests.unit.synthetic import FakeReader, facts
from utils import _windows
from utils._common import ProcessFacts
from utils._stop_rules import CleanupResult
from utils._windows import stop_method, tree_order

# ------------------------------------------------------------------ Ctrl-Break or not


@pytest.mark.parametrize(
    ("console", "shells", "method"),
    [
        ({10, 11}, set(), "ctrl-break"),  # only the tree being stopped lives there
        ({10, 11, 7}, {7}, "ctrl-break"),  # and the shell it runs under: the user's Ctrl-Break
        ({10, 11, 99}, set(), "terminate"),  # anything else would get it too
        ({10, 11, 99}, {7}, "terminate"),
        (None, set(), "terminate"),  # the console could not be read
        (set(), set(), "terminate"),
    ],
)
def test_ctrl_break_only_where_it_reaches_nothing_else(
    console: set[int] | None, shells: set[int], method: str
) -> None:
    assert stop_method({10, 11}, console, shells) == method


# ------------------------------------------------------------------ the tree's order


def test_a_tree_goes_top_most_first_then_level_by_level() -> None:
    parents = {11: 10, 12: 10, 21: 11, 22: 12, 31: 21, 50: 1}
    starts = {10: 1.0, 11: 2.0, 12: 2.5, 21: 3.0, 22: 3.5, 31: 4.0, 50: 0.5}
    assert tree_order(10, parents, starts) == [10, 11, 12, 21, 22, 31]


def test_a_child_older_than_its_parent_holds_a_reused_parent_pid() -> None:
    """Windows keeps a gone parent's pid as the child's ppid; a newer process may reuse
    that pid: the older "child" and its subtree are not the new process's tree."""
    parents = {11: 10, 12: 10, 13: 12}
    starts = {10: 5.0, 11: 6.0, 12: 1.0, 13: 2.0}  # 12 started before 10 existed
    assert tree_order(10, parents, starts) == [10, 11]


def test_a_member_of_unknown_age_is_left_out_and_cycles_end() -> None:
    assert tree_order(10, {11: 10, 10: 11, 12: 10}, {10: 1.0, 11: 2.0}) == [10, 11]


# ------------------------------------------------------------------ stop_groups


@pytest.fixture
def windows(fake_reader: FakeReader, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """A supervisor (10) with a worker (11) that has a child (12), and an unrelated
    process (50); terminate() ends a process in the fake, Ctrl-Break is recorded."""
    fake_reader.processes = {
        found.pid: found
        for found in (
            facts(10, 1, start_time=100.0),
            facts(11, 10, start_time=101.0),
            facts(12, 11, start_time=102.0),
            facts(50, 1, start_time=50.0),
        )
    }
    calls: dict[str, list[int]] = {"terminated": [], "ctrl_break": []}

    def terminate(found: ProcessFacts) -> str | None:
        calls["terminated"].append(found.pid)
        return None if fake_reader.processes.pop(found.pid, None) else "gone"

    def ctrl_break(root: ProcessFacts, _stopping: set[int]) -> bool:
        calls["ctrl_break"].append(root.pid)
        return False  # what the helper answers when the console holds anything else

    monkeypatch.setattr(_windows, "terminate", terminate)
    monkeypatch.setattr(_windows, "_ctrl_break", ctrl_break)
    return calls


def test_a_holders_tree_is_terminated_top_most_first_and_reported_killed(
    windows: dict[str, list[int]], fake_reader: FakeReader
) -> None:
    supervisor, worker = fake_reader.processes[10], fake_reader.processes[11]
    result = CleanupResult(port=8000)
    _windows.stop_groups({10: [supervisor, worker]}, 10.0, result, {})
    assert windows["ctrl_break"] == [10]  # tried, and not sent: forced
    assert windows["terminated"] == [10, 11, 12]  # the worker's child too, as taskkill /T
    assert [(o.pid, o.how) for o in result.stopped] == [(10, "killed"), (11, "killed")]
    assert 50 in fake_reader.processes  # outside the tree: untouched


def test_a_tree_that_exits_on_ctrl_break_is_terminated_not_killed(
    windows: dict[str, list[int]], fake_reader: FakeReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_break(root: ProcessFacts, _stopping: set[int]) -> bool:
        for pid in (10, 11, 12):  # uvicorn shuts down on Ctrl-Break, workers included
            fake_reader.processes.pop(pid)
        return True

    monkeypatch.setattr(_windows, "_ctrl_break", ctrl_break)
    supervisor = fake_reader.processes[10]
    result = CleanupResult(port=8000)
    _windows.stop_groups({10: [supervisor]}, 10.0, result, {})
    assert windows["terminated"] == []
    assert [(o.pid, o.how) for o in result.stopped] == [(10, "terminated")]


def test_a_holder_gone_before_the_stop_is_already_gone(
    windows: dict[str, list[int]], fake_reader: FakeReader
) -> None:
    gone = fake_reader.processes.pop(10)
    result = CleanupResult(port=8000)
    _windows.stop_groups({10: [gone]}, 10.0, result, {})
    assert windows == {"terminated": [], "ctrl_break": []}
    assert [(o.pid, o.how) for o in result.stopped] == [(10, "already gone")]


def test_access_denied_is_a_refusal(
    windows: dict[str, list[int]], fake_reader: FakeReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_windows, "terminate", lambda found: "denied")
    result = CleanupResult(port=8000)
    _windows.stop_groups({50: [fake_reader.processes[50]]}, 10.0, result, {})
    assert [(o.pid, o.how, o.reason) for o in result.refused] == [
        (50, "refused", "permission denied by the system")
    ]


# ------------------------------------------------------------------ the console helper


class FakeHelper:
    """The detached helper process: prints the console's pids, then reads its order."""

    pid = 900
    console = "10 11 900\n"
    ordered: ClassVar[list[str]] = []

    def __init__(self, args: list[str], **options: object) -> None:
        assert args[-1] == "10" and options["creationflags"] == _windows.DETACHED_PROCESS
        self.stdout = io.StringIO(self.console)
        self.stdin = self
        self.returncode: int | None = None

    def write(self, text: str) -> None:
        FakeHelper.ordered.append(text.strip())

    def close(self) -> None:
        self.returncode = 0

    def wait(self) -> int:
        return 0

    def poll(self) -> int | None:
        return self.returncode

    def kill(self) -> None:
        self.returncode = -9


@pytest.mark.parametrize(("console", "order"), [("10 11 900\n", "break"), ("10 11 77 900\n", "no")])
def test_the_helper_is_told_to_break_only_a_console_of_the_tree(
    monkeypatch: pytest.MonkeyPatch, fake_reader: FakeReader, console: str, order: str
) -> None:
    """The helper's own pid is on the console it attached to; anything else forbids it."""
    monkeypatch.setattr(subprocess, "Popen", FakeHelper)
    monkeypatch.setattr(FakeHelper, "console", console)
    monkeypatch.setattr(FakeHelper, "ordered", [])
    root = facts(10, 1, start_time=100.0)
    fake_reader.processes = {10: root}
    assert _windows._ctrl_break(root, {10, 11}) is (order == "break")
    assert FakeHelper.ordered == [order]
