"""Several worker processes ask for the same expired token at the same moment.

Real processes (multiprocessing, spawn), a barrier so they ask together, and a refresh
function that records each call in a file. First every refresh fails, then it succeeds:
each time the refresh runs exactly once and every worker gets the one outcome.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backend.services.integrations.records import TokenSet
from tests.tokens.conftest import ServiceFactory, new_key
from tests.tokens.workers import PHASES, ask_for_a_valid_token

WORKERS = 5


def run_workers(url: str, key: bytes, workdir: Path) -> dict[str, dict[int, str]]:
    """Start the workers and collect {phase: {pid: outcome}}; kill any left at the end."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    for phase in PHASES:
        (workdir / f"arrived-{phase}").mkdir()
    processes = [
        context.Process(
            target=ask_for_a_valid_token,
            args=(url, key, barrier, str(workdir), WORKERS, results),
        )
        for _ in range(WORKERS)
    ]
    outcomes: dict[str, dict[int, str]] = defaultdict(dict)
    try:
        for process in processes:
            process.start()
        for _ in range(WORKERS * len(PHASES)):
            phase, pid, outcome = results.get(timeout=90)
            assert phase != "error", f"worker {pid} failed: {outcome}"
            outcomes[phase][pid] = outcome
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
    except queue.Empty:
        pytest.fail(f"not every worker answered: {dict(outcomes)}")
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        results.close()
    return outcomes


def test_concurrent_get_valid_from_several_processes_refreshes_exactly_once(
    make_service: ServiceFactory, store_url: str, tmp_path: Path
) -> None:
    key = new_key()
    service = make_service(key)
    expired = datetime.now(timezone.utc) - timedelta(seconds=1)
    service.save("alice", "github", TokenSet("old-access", "the-refresh-token", expired))

    outcomes = run_workers(store_url, key, tmp_path)

    calls = [line.split() for line in (tmp_path / "refresh-calls").read_text().splitlines()]
    failed = [pid for phase, pid, _ in calls if phase == "fail"]
    succeeded = [(pid, got) for phase, pid, got in calls if phase == "succeed"]
    # A failing refresh ran once; every worker got its error, none asked the provider again.
    assert len(failed) == 1, f"the failing refresh ran {len(failed)} times: {calls}"
    reason = f"failed: invalid_grant from the refresh in pid {failed[0]}"
    assert outcomes["fail"] == dict.fromkeys(outcomes["fail"], reason)
    assert len(outcomes["fail"]) == WORKERS
    # The old token was kept: the next refresh got it. It ran once; everyone got its token.
    assert len(succeeded) == 1, f"the refresh ran {len(succeeded)} times: {calls}"
    winner, seen = succeeded[0]
    assert seen == "old-access"
    assert outcomes["succeed"] == dict.fromkeys(outcomes["succeed"], f"new-access-{winner}")
    assert len(outcomes["succeed"]) == WORKERS
    stored = service.get("alice", "github")
    assert stored.access_token == f"new-access-{winner}"
    assert stored.refresh_token == "the-refresh-token"
