"""Servers started by the harness: start, wait until ready, stop the whole tree by pid.

A server tree (uvicorn supervisor or reloader and its workers) is remembered as
pid + start time while it runs; stopping sends SIGTERM to the process the harness
started, waits, and then kills any remembered member still alive. Nothing else is signalled.
"""

from __future__ import annotations

import errno
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from benchmarks import procinfo
from benchmarks.timing import shielded

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 15.0


class ServerTree:
    """One server started by the harness, with every process it spawned."""

    def __init__(
        self, argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str]
    ) -> None:
        self.argv = list(argv)
        # Its output, shown if it fails to start; closed by stop().
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops it in order
        )
        self.pid = self.process.pid
        self.known: dict[int, int] = {}
        self.remember()

    def __enter__(self) -> ServerTree:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def remember(self) -> dict[int, int]:
        """Record the current members of the tree (pid -> start ticks)."""
        if self.process.poll() is None:
            self.known.update(procinfo.tree(self.pid))
        return self.known

    def output(self, limit: int = 2000) -> str:
        """The tail of what the server printed."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    def running(self) -> bool:
        return self.process.poll() is None

    def leftovers(self) -> list[int]:
        """Remembered members still alive (after the root is gone)."""
        return [pid for pid, ticks in self.known.items() if procinfo.alive(pid, ticks)]

    def stop(self, timeout: float = STOP_TIMEOUT) -> list[int]:
        """SIGTERM the root, wait, then SIGKILL what is left; returns the pids killed."""
        killed: list[int] = []
        with shielded():
            self.remember()
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    killed.append(self.pid)
            deadline = time.monotonic() + timeout
            while self.leftovers() and time.monotonic() < deadline:
                time.sleep(0.02)
            for pid, ticks in self.known.items():
                if pid != self.pid and procinfo.signal_exact(pid, ticks, signal.SIGKILL):
                    killed.append(pid)
            self.log.close()
        return killed


def bindable(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host``:``port`` now (a test bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def wait_bindable(port: int, timeout: float, interval: float = 0.001) -> bool:
    """Poll the test bind until it succeeds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not bindable(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def http_ok(port: int, path: str, timeout: float) -> bool:
    """One GET: True on a 2xx answer, False on no connection or another status."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        return 200 <= connection.getresponse().status < 300
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_http_ok(
    port: int, path: str, timeout: float, server: ServerTree, interval: float = 0.005
) -> bool:
    """Poll ``path`` until it answers 2xx (True), the server exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A connection the kernel queues is answered once a worker is up: no busy loop then.
        if http_ok(port, path, max(0.05, deadline - time.monotonic())):
            return True
        if not server.running():
            return False
        time.sleep(interval)
    return False


def wait_holders(port: int, server: ServerTree, count: int, timeout: float) -> bool:
    """Wait until ``count`` processes of the server's tree hold a listening socket of ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            return False
        members = server.remember()
        live = [pid for pid, ticks in members.items() if procinfo.alive(pid, ticks)]
        if len(procinfo.holders(port, live)) >= count:
            return True
        time.sleep(0.02)
    return False


def repo_root() -> Path:
    """The repository root (the parent of this package)."""
    return Path(__file__).resolve().parent.parent
