"""Worker processes for the concurrency tests (importable by ``multiprocessing`` spawn)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from backend.services.integrations.errors import RefreshError, RefreshFailed
from backend.services.integrations.keys import KeyRing
from backend.services.integrations.records import TokenSet
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService

PHASES = ("fail", "succeed")  # first every refresh fails, then it succeeds


def wait_for_arrivals(arrived: Path, count: int, timeout: float = 30.0) -> None:
    """Poll (short growing intervals, with a deadline) until ``count`` workers arrived.

    Not imported from tests.conftest: a worker imports only what it needs, so the
    processes start quickly.
    """
    end = time.monotonic() + timeout
    interval = 0.005
    while len(os.listdir(arrived)) < count:
        if time.monotonic() > end:
            raise TimeoutError(f"only {len(os.listdir(arrived))} of {count} workers arrived")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def ask_for_a_valid_token(
    url: str, key: bytes, barrier: Any, workdir: str, workers: int, results: Any
) -> None:
    """In each phase: wait at the barrier with the others, then call get_valid at once.

    The refresh function appends ``PHASE PID ACCESS-TOKEN-IT-GOT`` to ``calls`` (so the
    test counts the calls) and holds on until every worker has announced, in
    ``arrived-PHASE``, that get_valid found the token stale and is about to wait for the
    lock: the others really are waiting while the refresh runs.
    """
    service = UnifiedTokenService(TokenStore(url, timeout=30), KeyRing([key]))
    calls = Path(workdir, "refresh-calls")
    phase = PHASES[0]
    write = service.store.write

    @contextlib.contextmanager
    def announced_write() -> Any:
        Path(workdir, f"arrived-{phase}", str(os.getpid())).touch()
        with write() as conn:
            yield conn

    service.store.write = announced_write  # type: ignore[method-assign]

    def refresh_in(phase: str) -> Any:
        def refresh(current: TokenSet) -> TokenSet:
            with open(calls, "a", encoding="utf-8") as log:
                log.write(f"{phase} {os.getpid()} {current.access_token}\n")
            wait_for_arrivals(Path(workdir, f"arrived-{phase}"), workers)
            if phase == "fail":
                raise RefreshError(f"invalid_grant from the refresh in pid {os.getpid()}")
            return TokenSet.expiring_in(f"new-access-{os.getpid()}", 3600, current.refresh_token)

        return refresh

    try:
        service.ping()  # connect and import everything before the start line
        for phase in PHASES:
            barrier.wait(timeout=60)
            try:
                outcome = service.get_valid("alice", "github", refresh_in(phase)).access_token
            except RefreshFailed as failure:
                outcome = f"failed: {failure.reason}"
            results.put((phase, os.getpid(), outcome))
    except Exception as error:  # reported to the test instead of dying silently
        results.put(("error", os.getpid(), f"{type(error).__name__}: {error}"))
    finally:
        service.close()
