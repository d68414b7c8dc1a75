"""Real uvicorn servers (single process, --reload, --workers 3): list and cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.apps.tiny import lifespan_pids
from tests.conftest import (
    PYTHON,
    STOPPED,
    WINDOWS,
    Processes,
    deadline_poll,
    fresh_port,
    gone,
    pids_holding,
    run_cli,
)

MODES = {
    "single": ([], 1),
    "reload": (["--reload", "--reload-dir", "tests/apps"], 2),
    "workers": (["--workers", "3"], 4),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_list_shows_every_holder_and_cleanup_frees_gracefully(
    mode: str, reader: str, processes: Processes, tmp_path: Path
) -> None:
    extra, holders_expected = MODES[mode]
    port = fresh_port()
    lifespan_log = tmp_path / "lifespan.log"
    server = processes.start(
        [PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", str(port), *extra],
        env={**__import__("os").environ, "TINY_LIFESPAN_LOG": str(lifespan_log)},
    )
    deadline_poll(lambda: len(pids_holding(port)) >= holders_expected)
    # A worker holds the inherited socket before its signal handlers exist: wait until
    # every process that serves has started its lifespan.
    serving = pids_holding(port) - {server.pid} or {server.pid}
    deadline_poll(lambda: serving <= lifespan_pids(lifespan_log, "startup"))
    tree = processes.tree(server.pid)

    listed = run_cli("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["port"] == port]
    listed_pids = {row["pid"] for row in rows}
    assert server.pid in listed_pids
    assert len(listed_pids) == holders_expected
    assert listed_pids <= {member.pid for member in tree}
    assert all(row["project"] for row in rows)

    result = run_cli("cleanup", str(port), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["freed"] is True
    assert document["refused"] == []
    assert {entry["pid"] for entry in document["stopped"]} == listed_pids
    assert {entry["how"] for entry in document["stopped"]} == {STOPPED}

    if not WINDOWS:  # graceful: every process that served the app ran its lifespan shutdown
        assert serving <= lifespan_pids(lifespan_log, "shutdown")
    # Nothing of the tree is left (the multiprocessing helpers included).
    created = {member.pid: member.create_time() for member in tree}
    deadline_poll(lambda: all(gone(pid, when) for pid, when in created.items()), timeout=10)
    assert run_cli("check", str(port)).returncode == 0
