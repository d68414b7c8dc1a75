"""Timing primitives: whole processes timed with ``time.perf_counter``, peak RSS from
``os.wait4``, and A/B alternation so every comparison shares the same machine state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Sample:
    """One timed run: seconds, the peak RSS of the measured process (KiB), its exit status."""

    seconds: float
    peak_rss_kib: int | None = None
    status: int | None = None


@dataclass(frozen=True)
class Stats:
    """Minimum, median and maximum of a list of values."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(min(values), statistics.median(values), max(values))


Trial = Callable[[], Sample]


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while cleaning up; they are delivered right after."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# The spawner: a minimal interpreter (-I -S) that forks and times every measured command.
# Why not fork from the harness itself: on Linux a child's ru_maxrss starts at the RSS of
# the process it was forked from (the harness is 25+ MiB); a small spawner keeps that floor
# low (see ``Spawner.floor_kib``) so the peak RSS reported is the command's own above it.
SPAWNER_CODE = """\
import json, os, select, signal, sys, time
current = 0
def stop(signum, frame):
    if current:
        try:
            os.kill(current, signal.SIGKILL)
            os.waitpid(current, 0)
        except OSError:
            pass
    os._exit(1)
signal.signal(signal.SIGTERM, stop)
for line in sys.stdin:
    request = json.loads(line)
    argv, cwd, env = request["argv"], request["cwd"], request["env"]
    null = os.open(os.devnull, os.O_RDWR)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if cwd is not None:
                os.chdir(cwd)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            if env is None:
                os.execvp(argv[0], argv)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    current = pid
    os.close(null)
    pidfd = os.pidfd_open(pid)
    ready = select.poll()
    ready.register(pidfd, select.POLLIN)
    timed_out = not ready.poll(request["timeout"] * 1000)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    current = 0
    os.close(pidfd)
    answer = {"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "timed_out": timed_out,
              "status": os.waitstatus_to_exitcode(status)}
    sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
"""


class Spawner:
    """Runs commands as whole processes, timed with ``time.perf_counter`` around fork,
    exec and ``os.wait4``, which also yields the command's peak RSS (``ru_maxrss``).

    A context manager: the helper process is stopped (by pid) on exit, and it kills a
    command still running when it is stopped.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", SPAWNER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the harness, which stops the spawner
        )
        self.floor_kib = 0
        try:
            true = shutil.which("true")
            if true:
                self.floor_kib = max(self.run([true]).peak_rss_kib or 0 for _ in range(3))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Sample:
        """Run ``argv`` to completion (output discarded); raise on a timeout."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {
            "argv": list(argv),
            "cwd": None if cwd is None else os.fspath(cwd),
            "env": None if env is None else dict(env),
            "timeout": timeout,
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the spawner process died")
        answer = json.loads(line)
        if answer["timed_out"]:
            raise TimeoutError(f"{' '.join(argv)} did not finish within {timeout:g} s")
        return Sample(answer["seconds"], int(answer["maxrss_kib"]), int(answer["status"]))

    def close(self) -> None:
        """Stop the spawner (and any command it is running); by pid, never by name."""
        with shielded():
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10.0)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()


def alternate(trials: Sequence[Trial], runs: int, warmup: int = 1) -> list[list[Sample]]:
    """Warm each trial up, then run them in turn ``runs`` times: A B C, C B A, A B C, ...

    Alternating (and reversing every other round) spreads background noise and any
    order effect (caches, CPU frequency) evenly over all the commands compared.
    """
    for _ in range(warmup):
        for trial in trials:
            trial()
    samples: list[list[Sample]] = [[] for _ in trials]
    order = list(range(len(trials)))
    for run in range(runs):
        for index in order if run % 2 == 0 else reversed(order):
            samples[index].append(trials[index]())
    return samples
