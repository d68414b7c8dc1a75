"""Process identity (pid + start time), vanished processes, and owners the OS hides."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.conftest import (
    POSIX_SIGNALS,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    pids_holding,
)
from tests.test_cleanup import SYSTEM_PYTHON
from utils import _platform, _stop_rules
from utils.port_manager import process_facts

SLEEPER = [PYTHON, "-c", "import time; time.sleep(600)"]


def test_a_process_that_is_gone_is_reported_as_already_gone(processes: Processes) -> None:
    sleeper = processes.start(SLEEPER)
    facts = process_facts(sleeper.pid)
    assert facts is not None
    sleeper.kill()
    sleeper.wait(timeout=10)
    result = _stop_rules.CleanupResult(port=0)
    _platform.stopper().stop_groups({sleeper.pid: [facts]}, 1.0, result, {}, _stop_rules.quiet)
    assert [(o.pid, o.how) for o in result.stopped] == [(sleeper.pid, "already gone")]


@POSIX_SIGNALS
def test_a_reused_pid_is_never_signalled(processes: Processes) -> None:
    """Facts with the right pid but another start time stand for a process that is gone."""
    from utils import _signals

    target = processes.start(SLEEPER)
    facts = process_facts(target.pid)
    assert facts is not None
    impostor = facts._replace(start_time=facts.start_time - 100.0)
    assert _signals.send(impostor, signal.SIGTERM) == "gone"
    assert target.poll() is None  # the live process with that pid was not touched
    assert _signals.send(facts, signal.SIGTERM) is None
    assert target.wait(timeout=10) == -signal.SIGTERM


def _runs_as_nobody() -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import utils._linux"],
        cwd=ROOT,
        user="nobody",
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _runs_as_nobody(), reason="needs root, a system Python, a readable clone")
def test_an_owner_hidden_from_the_user_is_refused_with_a_message(processes: Processes) -> None:
    """Another user's process: an unprivileged user sees the socket but not its owner."""
    port = fresh_port()
    server = processes.start([SYSTEM_PYTHON, "-c", listener_script(), str(port)])
    deadline_poll(lambda: server.pid in pids_holding(port))

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYSTEM_PYTHON, str(ROOT / "utils" / "port_manager.py"), *args],
            cwd="/",
            user="nobody",
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": os.environ.get("PATH", ""), "NO_COLOR": "1"},
        )

    listed = as_nobody("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["port"] == port]
    assert [row["pid"] for row in rows] == [None]
    result = as_nobody("cleanup", str(port), "--force", "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (refusal,) = json.loads(result.stdout)["refused"]
    assert refusal["pid"] is None and "does not say" in refusal["reason"]
    assert server.poll() is None
