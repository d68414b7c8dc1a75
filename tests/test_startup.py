"""Start-up discipline: each command imports only what it needs (``python -X importtime``),
and still does its job: every measured run must end with its own exit status, without a
traceback (a command that crashes early imports little and would pass otherwise)."""

from __future__ import annotations

import socket
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, fresh_port

NEVER = {"fastapi", "uvicorn", "starlette", "pydantic", "pydantic_settings", "backend", "psutil"}
# The one backend module Invoke may load before a task runs: the serve flags' declarations
# (their help is read when tasks.py loads). Plain data: it imports no pydantic or server code.
DECLARATIONS = {"backend", "backend.setting_specs", "backend.setting_types"}


def imported_modules(
    status: int, *args: str, dotted: bool = False, env: dict[str, str] | None = None
) -> set[str]:
    """Top-level packages a command imports (every module with ``dotted``), read from
    ``-X importtime``'s report; the command must have exited with ``status`` and printed
    no traceback. ``env`` is added to a bare environment."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **(env or {})},
    )
    report = result.stderr
    assert result.returncode == status, (args, result.returncode, result.stdout, report[-2000:])
    assert "Traceback" not in report, report[-2000:]
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            modules.add(name if dotted else name.split(".")[0])
    assert modules, result.stderr
    return modules


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["list", "--all", "--json"], 0),
        (["list", "--all"], 0),
        (["check", "PORT"], 0),  # a fresh port is free
        (["check", "PORT", "--json"], 0),
        (["find", "--json"], 0),
        (["wait", "PORT", "--timeout", "0"], 1),  # nothing listens: timed out at once
    ],
)
def test_port_cli_imports_nothing_heavy(command: list[str], status: int) -> None:
    args = [str(fresh_port()) if arg == "PORT" else arg for arg in command]
    modules = imported_modules(status, str(ROOT / "utils" / "port_manager.py"), *args)
    assert not modules & NEVER
    assert "dataclasses" not in modules  # it drags in inspect: more than a check may cost


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["list"], 0),
        (["list", "--all"], 0),
        (["list", "--all", "--json"], 0),
        (["check", "PORT"], 0),
        (["check", "PORT", "--json"], 0),
        (["check", "HELD"], 1),  # held here: the holders are looked for
        (["find"], 0),
        (["find", "--json"], 0),
    ],
)
def test_list_check_and_find_do_not_import_typing(command: list[str], status: int) -> None:
    """typing (with re, functools and contextlib beneath it) costs more start-up time than
    a check of a free port may take: records and annotations do without it at run time."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        values = {"PORT": str(fresh_port()), "HELD": str(held.getsockname()[1])}
        args = [values.get(arg, arg) for arg in command]
        modules = imported_modules(status, str(ROOT / "utils" / "port_manager.py"), *args)
    assert "typing" not in modules


def test_check_of_a_free_port_loads_no_discovery() -> None:
    """A free port is answered by the test binds alone: no socket or process scan, not
    even its modules; and the binds need only ``_socket``, not the wrapper's enums."""
    script = str(ROOT / "utils" / "port_manager.py")
    modules = imported_modules(0, script, "check", str(fresh_port()), dotted=True)
    assert not {"utils._holders", "utils._platform", "utils._linux", "psutil"} & modules
    assert "_socket" in modules and "socket" not in modules


def test_json_output_skips_the_table_code() -> None:
    assert "shlex" not in imported_modules(
        0, str(ROOT / "utils" / "port_manager.py"), "list", "--all", "--json"
    )


def test_invoke_ports_check_imports_no_server_code() -> None:
    args = ("-m", "invoke", "ports.check", "--port", str(fresh_port()))
    modules = imported_modules(0, *args, dotted=True)
    assert not {name.split(".")[0] for name in modules - DECLARATIONS} & NEVER


# What a worker imports before it answers /health: the token store's modules (SQLAlchemy,
# the pydantic-settings model, the key ring's cryptography) wait for the first request
# that needs them (/ready), so `invoke serve.dev` and every other way to serve the app
# answer sooner.
TOKEN_STORE_MODULES = {"sqlalchemy", "pydantic_settings", "cryptography", "psycopg"}
TOKEN_STORE_BACKEND = {"backend.settings", "backend.services.integrations.factory"}


def test_the_app_answers_health_without_loading_the_token_store() -> None:
    code = (
        "import asyncio, httpx\n"
        "from backend.app import app, create_app\n"
        "async def get():\n"
        "    transport = httpx.ASGITransport(app=create_app())\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://a') as client:\n"
        "        assert (await client.get('/health')).status_code == 200\n"
        "asyncio.run(get())\n"
    )
    modules = imported_modules(0, "-c", code, dotted=True)
    assert "backend.app" in modules and "fastapi" in modules
    assert not {name.split(".")[0] for name in modules} & TOKEN_STORE_MODULES
    assert not modules & TOKEN_STORE_BACKEND


SERVE_STARTS = (["-m", "invoke", "serve.dev"], ["-m", "backend", "--dev"])


@pytest.mark.parametrize("start", SERVE_STARTS, ids=" ".join)
def test_a_start_checks_its_settings_without_pydantic(start: list[str]) -> None:
    """Every variable is checked before the port is bound, without importing pydantic (the
    token store's model is built in the worker, on first use): here the port is held, so
    the start stops at the bind with 1, and a bad variable stops it before with 2."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", fresh_port()))
        holder.listen()
        held = ["--port", str(holder.getsockname()[1])]
        at_the_bind = imported_modules(1, *start, *held, dotted=True)
        assert "backend.start_settings" in at_the_bind
        refused = imported_modules(2, *start, *held, dotted=True, env={"LOG_LEVEL": "loud"})
    for modules in (at_the_bind, refused):
        assert not {name.split(".")[0] for name in modules} & {"pydantic", "pydantic_settings"}
