"""The listener load: N listening sockets on 127.0.0.1 spread over P child processes.

Each child binds its share on OS-assigned ports, reports them on stdout, then waits for
EOF on stdin, so the load also disappears when the harness dies. Teardown closes the
pipes, waits, and kills (by pid) any child still there.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from benchmarks.timing import shielded

START_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0

# Run with -I -S: no site-packages, nothing but sockets. Raises RLIMIT_NOFILE if needed.
CHILD_CODE = """\
import resource, socket, sys
count = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = count + 64
if soft != resource.RLIM_INFINITY and soft < need:
    limit = need if hard == resource.RLIM_INFINITY else min(need, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
socks = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    socks.append(s)
try:
    sys.stdout.write(" ".join(str(s.getsockname()[1]) for s in socks) + "\\n")
    sys.stdout.flush()
    sys.stdin.read()
except (BrokenPipeError, OSError):  # the harness went away or is tearing down
    import os
    os._exit(0)
"""


def shares(listeners: int, processes: int) -> list[int]:
    """How many sockets each child binds: as even as possible, no empty child."""
    if listeners <= 0:
        return []
    count = max(1, min(processes, listeners))
    base, extra = divmod(listeners, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


@dataclass
class ListenerLoad:
    """A context manager holding ``listeners`` sockets in up to ``processes`` children."""

    listeners: int
    processes: int
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    workdir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> ListenerLoad:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def held_port(self) -> int | None:
        """A port held by one of the load's processes (None without a load)."""
        return self.ports[0] if self.ports else None

    def _start(self) -> None:
        # The script lives outside this repository (the load is not "ours") and is run
        # from a file so that each child's command line is short, like a real server's.
        self.workdir = tempfile.TemporaryDirectory(prefix="listener-load-")
        script = Path(self.workdir.name) / "listeners.py"
        script.write_text(CHILD_CODE, encoding="utf-8")
        for count in shares(self.listeners, self.processes):
            self.children.append(
                subprocess.Popen(
                    [sys.executable, "-I", "-S", str(script), str(count)],
                    cwd=self.workdir.name,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    start_new_session=True,  # Ctrl-C reaches the harness, which tears down
                )
            )
        self._collect_ports()

    def _collect_ports(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            for child in self.children:
                assert child.stdout is not None
                selector.register(child.stdout, selectors.EVENT_READ, child)
            waiting = len(self.children)
            while waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the listener load did not start in {START_TIMEOUT:g} s")
                for key, _ in selector.select(remaining):
                    child = key.data
                    line = child.stdout.readline()
                    if not line.endswith(b"\n"):
                        raise RuntimeError(
                            f"load process {child.pid} exited before binding its sockets"
                        )
                    self.ports.extend(int(port) for port in line.split())
                    selector.unregister(key.fileobj)
                    waiting -= 1
        if len(self.ports) != self.listeners:
            raise RuntimeError(f"load bound {len(self.ports)} sockets, not {self.listeners}")

    def stop(self) -> None:
        """Close every child's stdin, wait for them, kill (by pid) any that stay."""
        with shielded():
            for child in self.children:
                for stream in (child.stdin, child.stdout):
                    if stream is not None:
                        stream.close()
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in self.children:
                try:
                    child.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()  # Popen signals only its own, unreaped child
                    child.wait()
            self.children.clear()
            if self.workdir is not None:
                self.workdir.cleanup()
                self.workdir = None
