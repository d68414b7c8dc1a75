"""serve.dev / serve.prod / python -m backend against real uvicorn servers."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import (
    POSIX_SIGNALS,
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    gone,
    listener_script,
    pids_holding,
    run_backend,
    run_invoke,
)
from utils import port_manager

INVOKE = [PYTHON, "-m", "invoke"]
BACKEND = [PYTHON, "-m", "backend"]
SETTINGS = (
    "PORT",
    "HOST",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "APP_ENV",
    "FORWARDED_ALLOW_IPS",
    "TOKEN_ENCRYPTION_KEYS",
    "DATABASE_URL",
)


PRODUCTION_KEY = "Wm9zMUtSZzNsY1hxN0xHbW5SeWJ4aDJQUnNjWTBWQkY="  # a test-only Fernet key


def front_end(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``INVOKE + args`` or ``BACKEND + args`` that must end before anything is served
    (bad input, a busy port, ``--cleanup-port`` alone): run in this process
    (``run_invoke``, ``run_backend``); a start that serves runs in a process of its own."""
    runner = run_invoke if command[: len(INVOKE)] == INVOKE else run_backend
    return runner(*command[len(INVOKE) :], env=env)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return {**env, "NO_COLOR": "1", **extra}


def production_env(**extra: str) -> dict[str, str]:
    return clean_env(TOKEN_ENCRYPTION_KEYS=PRODUCTION_KEY, **extra)


def read_url(process: subprocess.Popen[bytes], timeout: float = 60) -> str:
    """The URL from the start line ('Backend (...) running at URL ...'), read with a deadline.

    A thread reads the lines up to the start line and stops there (what follows stays in
    the pipe for the test): select() cannot wait on a pipe on Windows.
    """
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        for line in iter(stdout.readline, b""):
            lines.put(line)
            if b" running at " in line:
                return
        lines.put(b"")  # the end: the server exited

    threading.Thread(target=pump, daemon=True).start()
    end = time.monotonic() + timeout
    seen = b""
    while True:
        try:
            line = lines.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no start line within the deadline; printed {seen!r}") from None
        if not line:
            raise AssertionError(f"server exited with {process.wait()}; printed {seen!r}")
        seen += line
        text = line.decode(errors="replace")
        if " running at " in text:
            return text.split(" running at ")[1].split()[0]


def start_server(
    processes: Processes, args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    process = processes.start(args, stdout=subprocess.PIPE, env=env or clean_env())
    return process, read_url(process)


def health(url: str, timeout: float = 30) -> dict[str, object]:
    """GET /health once the server answers; fails at the deadline."""

    def attempt() -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                assert response.status == 200
                return dict(json.load(response))
        except OSError:
            return None

    return deadline_poll(attempt, timeout)  # type: ignore[return-value]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def tree_gone(members: list[psutil.Process]) -> bool:
    return all(gone(member.pid, member.create_time()) for member in members)


def stop_and_expect_nothing_left(
    server: subprocess.Popen[bytes], tree: list[psutil.Process], port: int, sig: signal.Signals
) -> None:
    """``sig`` to the task ends it, every process of its tree, and frees the port."""
    server.send_signal(sig)
    server.wait(timeout=30)
    deadline_poll(lambda: tree_gone(tree))
    assert port_manager.check(port).free


def test_dev_find_port_moves_off_a_held_port(processes: Processes) -> None:
    preferred = fresh_port()
    holder = processes.start([PYTHON, "-c", listener_script(), str(preferred)])
    deadline_poll(lambda: holder.pid in pids_holding(preferred))
    _, url = start_server(
        processes, [*INVOKE, "serve.dev", "--find-port"], clean_env(PORT=str(preferred))
    )
    assert port_of(url) != preferred
    assert url.startswith("http://127.0.0.1:")
    answer = health(url)
    assert answer["status"] == "ok" and answer["pid"] in pids_holding(port_of(url))
    assert holder.poll() is None and pids_holding(preferred) == {holder.pid}


def test_twelve_simultaneous_dev_starts_get_twelve_ports(processes: Processes) -> None:
    """The race is between the starts taking their ports, before any reloader runs: each
    start is one process (--no-reload; the reloader is test_dev_reload_restarts_...'s)."""
    preferred = str(fresh_port())
    # No reloader: the reload test, writing into backend/ from another xdist worker, would
    # restart all twelve workers, and one restarted while its tree is stopped outlives it.
    servers = [
        processes.start(
            [*INVOKE, "serve.dev", "--find-port", "--no-reload", "--port", preferred],
            stdout=subprocess.PIPE,
            env=clean_env(),
        )
        for _ in range(12)
    ]
    urls = [read_url(server, timeout=90) for server in servers]
    assert len({port_of(url) for url in urls}) == 12
    assert preferred in {str(port_of(url)) for url in urls}
    for url in urls:
        assert health(url, timeout=60)["status"] == "ok"
    assert all(server.poll() is None for server in servers)


def test_busy_port_is_refused_then_cleaned_up(processes: Processes) -> None:
    port = str(fresh_port())
    stale, url = start_server(processes, [*BACKEND, "--dev", "--port", port])
    stale_tree = processes.tree(stale.pid)
    health(url)

    refused = run_invoke("serve.dev", "--port", port)
    assert refused.returncode == 1
    assert f"pid {stale.pid}" in refused.stderr and "--cleanup-port" in refused.stderr
    assert "--find-port" in refused.stderr and "Traceback" not in refused.stderr
    assert stale.poll() is None

    fresh, fresh_url = start_server(
        processes, [*INVOKE, "serve.dev", "--port", port, "--cleanup-port"]
    )
    assert port_of(fresh_url) == int(port)
    deadline_poll(lambda: tree_gone(stale_tree))
    assert health(fresh_url)["pid"] not in {member.pid for member in stale_tree}
    assert fresh.pid in pids_holding(int(port))


@POSIX_SIGNALS
def test_prod_with_workers_and_sigterm_leaves_nothing(processes: Processes) -> None:
    port = fresh_port()
    env = production_env(PORT=str(port), WEB_CONCURRENCY="2", HOST="127.0.0.1")
    server, url = start_server(processes, [*INVOKE, "serve.prod"], env)
    assert port_of(url) == port
    deadline_poll(lambda: len(pids_holding(port)) == 3)
    holders = pids_holding(port)
    assert server.pid in holders
    workers = holders - {server.pid}
    assert all(psutil.Process(pid).ppid() == server.pid for pid in workers)
    assert health(url)["pid"] in workers
    stop_and_expect_nothing_left(server, processes.tree(server.pid), port, signal.SIGTERM)


@POSIX_SIGNALS  # SIGINT: a Ctrl-C to the task alone
def test_dev_ctrl_c_stops_reloader_and_worker(processes: Processes) -> None:
    port = fresh_port()
    server, url = start_server(processes, [*INVOKE, "serve.dev", "--port", str(port)])
    health(url)
    tree = processes.tree(server.pid)
    assert len(tree) >= 2  # the reloader and its worker (and multiprocessing's helper)
    stop_and_expect_nothing_left(server, tree, port, signal.SIGINT)


def test_dev_reload_restarts_the_worker_on_the_same_port(processes: Processes) -> None:
    port = fresh_port()
    server, url = start_server(processes, [*INVOKE, "serve.dev", "--port", str(port)])
    first = health(url)["pid"]
    probe = ROOT / "backend" / f"_reload_probe_{uuid.uuid4().hex}.py"
    try:
        probe.write_text("VALUE = 1\n")

        def new_worker() -> object:
            answer = health(url)["pid"]
            return answer if answer != first else None

        second = deadline_poll(new_worker, timeout=60)
        assert second != first
        # The reloader kept the one socket: same port, held by it and the answering worker.
        deadline_poll(lambda: pids_holding(port) == {server.pid, health(url)["pid"]})
    finally:
        probe.unlink(missing_ok=True)  # (this reloads once more)
    assert health(url)["status"] == "ok"


def test_cleanup_port_alone_frees_and_exits(processes: Processes) -> None:
    port = str(fresh_port())
    stale, _ = start_server(processes, [*BACKEND, "--dev", "--no-reload", "--port", port])
    result = front_end([*BACKEND, "--cleanup-port", "--port", port], clean_env())
    assert result.returncode == 0, result.stderr
    assert f"Port {port} is free" in result.stdout
    assert stale.wait(timeout=10) is not None
    assert port_manager.check(int(port)).free


BAD_ENVIRONMENTS = [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("WEB_CONCURRENCY", "0"),
    ("LOG_LEVEL", "loud"),
    ("APP_ENV", "staging"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_ENVIRONMENTS)
@pytest.mark.parametrize(
    "command", [[*INVOKE, "serve.prod"], [*INVOKE, "serve.dev"], [*BACKEND, "--production"]]
)
def test_bad_settings_exit_2_with_one_line(command: list[str], variable: str, value: str) -> None:
    result = front_end(command, clean_env(**{variable: value}))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{variable}={value!r}" in lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["serve.dev", "--port", "abc"], "'abc'"),
        (["serve.dev", "--port", "65536"], "'65536'"),
        (["serve.dev", "--host", "no-such-host.invalid"], "no-such-host.invalid"),
        (["serve.prod", "--workers", "0"], "'0'"),
        (["serve.prod", "--workers", "many"], "'many'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], named: str) -> None:
    for command in (
        [*INVOKE, *args],
        [*BACKEND, "--dev" if args[0] == "serve.dev" else "--production", *args[1:]],
    ):
        result = front_end(command, clean_env())
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]


def test_find_port_is_refused_in_production() -> None:
    result = front_end([*BACKEND, "--production", "--find-port"], clean_env())
    assert result.returncode == 2
    assert "fixed port" in result.stderr


def test_production_never_drifts_off_a_busy_port(processes: Processes) -> None:
    port = fresh_port()
    holder = processes.start([PYTHON, "-c", listener_script(), str(port)])
    deadline_poll(lambda: holder.pid in pids_holding(port))
    result = front_end([*INVOKE, "serve.prod"], production_env(PORT=str(port), HOST="127.0.0.1"))
    assert result.returncode == 1
    assert f"pid {holder.pid}" in result.stderr and "(PORT)" in result.stderr
    assert "--find-port" not in result.stderr


def test_tasks_module_imports_no_server_code() -> None:
    heavy = "('fastapi', 'uvicorn', 'backend', 'pydantic', 'psutil')"
    # Allowed: the plain-data declarations of the serve flags, whose help Invoke reads.
    light = "('backend', 'backend.setting_specs', 'backend.setting_types')"
    code = (
        "import sys, tasks; print(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {heavy} and m not in {light}))"
    )
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_app_env_picks_the_mode_of_python_m_backend(processes: Processes) -> None:
    port = fresh_port()
    env = production_env(APP_ENV="production", PORT=str(port), HOST="127.0.0.1")
    server, url = start_server(processes, BACKEND, env)
    assert health(url)["status"] == "ok"
    assert pids_holding(port) == {server.pid}  # production: no reloader, one process


@pytest.mark.parametrize(
    ("keys", "named"),
    [(None, "TOKEN_ENCRYPTION_KEYS is not set"), ("not-a-key", "TOKEN_ENCRYPTION_KEYS")],
)
def test_production_without_a_usable_key_does_not_start(keys: str | None, named: str) -> None:
    port = str(fresh_port())
    env = clean_env(PORT=port, HOST="127.0.0.1")
    if keys is not None:
        env["TOKEN_ENCRYPTION_KEYS"] = keys
    for command in ([*INVOKE, "serve.prod"], [*BACKEND, "--production"]):
        result = front_end(command, env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and named in lines[0]
        assert "not-a-key" not in result.stderr  # a secret setting is never echoed
        assert port_manager.check(int(port)).free


def test_port_0_takes_a_port_the_os_assigns_and_stdout_holds_only_the_start_line(
    processes: Processes,
) -> None:
    server, url = start_server(processes, [*INVOKE, "serve.dev", "--port", "0", "--no-reload"])
    port = int(url.rsplit(":", 1)[1])
    assert port > 0 and health(url)["status"] == "ok"  # the access log goes to stderr
    assert url.startswith("http://127.0.0.1:")
    server.terminate()
    assert server.wait(timeout=30) is not None
    assert server.stdout is not None
    rest = server.stdout.read().decode()
    assert rest.strip() == ""  # after the start line: nothing on stdout, no access log


def test_the_busy_port_hint_names_the_flag_that_will_work(
    processes: Processes, tmp_path: Path
) -> None:
    """A foreign holder: --cleanup-port would be refused, so --force-cleanup is named."""
    port = str(fresh_port())
    foreign = processes.start([PYTHON, "-c", listener_script(), port], cwd=tmp_path)
    deadline_poll(lambda: foreign.pid in pids_holding(int(port)))
    busy = front_end([*INVOKE, "serve.dev", "--port", port], clean_env())
    assert busy.returncode == 1 and "use --find-port" in busy.stderr
    assert "--force-cleanup to stop it" in busy.stderr
    refused = front_end([*INVOKE, "serve.dev", "--port", port, "--cleanup-port"], clean_env())
    assert refused.returncode == 1
    assert "nothing was stopped" in refused.stderr and "(use --force-cleanup)" in refused.stderr
    assert foreign.poll() is None


def test_production_refuses_port_0() -> None:
    result = front_end([*INVOKE, "serve.prod", "--port", "0"], production_env())
    assert result.returncode == 2
    assert result.stderr.startswith("error: --port '0' is not valid in production")
