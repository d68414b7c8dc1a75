"""Invoke tasks: ``invoke ports.<command>``, ``invoke serve.dev|prod`` and ``tokens.*``.

Thin wrappers: each task hands the flag values, as typed, to the same function the
port CLI uses (``utils.port_commands.run_*``), which validates them and prints the
answer; the task only turns its return value into the process exit status. Everything
heavier than Invoke itself is imported inside the task that needs it, so ``invoke
--list`` and ``invoke ports.check`` stay fast.

Ports are typed the way port killers take them, as arguments, several at once
(``invoke ports.cleanup 8000 8001``); Invoke itself has no variadic arguments, so the
bottom of this file has ``utils/task_arguments.py`` turn those words into the ``--port``
options Invoke knows.
"""

from __future__ import annotations

from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from backend.setting_specs import ServeFlags, serve_flags
from utils.port_cli import command, option_default, task_help
from utils.port_manager import PORT_RANGE
from utils.task_arguments import accept_ports_as_arguments

PORT_TASKS = ("ports.check", "ports.cleanup", "ports.wait")  # ports typed as arguments

# The flags' help is the CLI's (utils/port_cli.py), but for the port: as arguments here too.
PORTS = "TCP port {}-{}".format(*PORT_RANGE)
PORT_HELP = f"{PORTS}; also as arguments, several at once: ports.check 8000 8001"
ONE_PORT_HELP = f"{PORTS}; also as the argument: ports.wait 8000"


def _finish(status: int) -> None:
    """Exit with the contract's status (Invoke would otherwise always exit 0)."""
    if status:
        raise Exit(code=status)


def _required(ports: list[str] | None, *, one: bool = False) -> list[str]:
    """The ports given (as arguments or --port): at least one, or exactly ``one``."""
    if not ports or (one and len(ports) > 1):
        from utils.errors import EXIT_USAGE, error_line

        if ports:
            error_line(f"this command takes one port, not {len(ports)}: {' '.join(ports)}")
        else:
            error_line(f"a port is required (as an argument or --port): a {PORTS}")
        raise Exit(code=EXIT_USAGE)
    return ports


@task(name="list", help=task_help("list"))
def list_(c: Context, all: bool = False, json: bool = False) -> None:
    from utils.port_commands import run_list

    _finish(run_list(all_listeners=all, as_json=json))


@task(
    help=task_help("check", port=PORT_HELP),
    iterable=["port"],
    auto_shortflags=False,  # -h is help, not --host
)
def check(
    c: Context, port: list[str] | None = None, host: str | None = None, json: bool = False
) -> None:
    from utils.port_commands import run_check

    _finish(run_check(_required(port), host=host, as_json=json))


@task(help=task_help("find"), auto_shortflags=False)  # -h is help, not --host
def find(
    c: Context,
    start: str = option_default("find", "--start"),
    host: str | None = None,
    json: bool = False,
) -> None:
    from utils.port_commands import run_find

    _finish(run_find(start=start, host=host, as_json=json))


@task(help=task_help("cleanup", port=PORT_HELP), iterable=["port"])
def cleanup(
    c: Context,
    port: list[str] | None = None,
    force: bool = False,
    grace: str = option_default("cleanup", "--grace"),
    settle: str = option_default("cleanup", "--settle"),
    dry_run: bool = False,
    json: bool = False,
) -> None:
    from utils.port_commands import run_cleanup

    _finish(
        run_cleanup(
            port or [],
            force=force,
            grace=grace,
            settle=settle,
            dry_run=dry_run,
            as_json=json,
        )
    )


@task(
    help=task_help("wait", port=ONE_PORT_HELP),
    iterable=["port"],
    auto_shortflags=False,  # -h is help, not --host
)
def wait(
    c: Context,
    port: list[str] | None = None,
    host: str | None = None,
    timeout: str = option_default("wait", "--timeout"),
    free: bool = False,
    http: str | None = None,
    json: bool = False,
) -> None:
    from utils.port_commands import run_wait

    (one,) = _required(port, one=True)
    _finish(run_wait(one, host=host, timeout=timeout, free=free, http=http, as_json=json))


def _described_by_the_cli(*port_tasks: Task[Any]) -> None:
    """Each ports.* task says what its CLI command says (one table: utils/port_cli.py)."""
    for port_task in port_tasks:
        text = command(port_task.name).help
        port_task.__doc__ = f"{text[0].upper()}{text[1:]}."


_described_by_the_cli(list_, check, find, cleanup, wait)
ports = Collection("ports", list_, check, find, cleanup, wait)


# The serve tasks' flags and help are declared in backend/setting_specs.py (plain data, no
# pydantic), with python -m backend's; Invoke refuses a help entry without its parameter.


@task(name="dev", help=serve_flags("dev"), auto_shortflags=False)  # -h is help, not --host
def serve_dev(
    c: Context,
    port: str | None = None,
    host: str | None = None,
    find_port: bool = False,
    cleanup_port: bool = False,
    force_cleanup: bool = False,
    no_reload: bool = False,
) -> None:
    """Dev server on 127.0.0.1 with auto-reload; prints its URL."""
    from backend.server import serve

    flags = ServeFlags(
        port=port,
        host=host,
        find_port=find_port,
        cleanup_port=cleanup_port,
        force_cleanup=force_cleanup,
        no_reload=no_reload,
    )
    _finish(serve("dev", flags))


@task(name="prod", help=serve_flags("prod"), auto_shortflags=False)  # -h is help, not --host
def serve_prod(
    c: Context,
    port: str | None = None,
    host: str | None = None,
    workers: str | None = None,
    find_port: bool = False,
    cleanup_port: bool = False,
    force_cleanup: bool = False,
) -> None:
    """Production server: HOST/PORT/WEB_CONCURRENCY from the environment, proxy headers."""
    from backend.server import serve

    # --find-port is accepted only to be refused with its reason (exit 2), not Invoke's
    # "unknown flag": production never moves to another port.
    flags = ServeFlags(
        port=port,
        host=host,
        workers=workers,
        find_port=find_port,
        cleanup_port=cleanup_port,
        force_cleanup=force_cleanup,
    )
    _finish(serve("prod", flags))


serve = Collection("serve", serve_dev, serve_prod)
namespace = Collection(ports, serve)


# --------------------------------------------------------------------------- tokens
# Operator commands of the integration token store (backend/services/integrations);
# the store and its keys come from the same settings as the server (DATABASE_URL,
# DATA_DIR, TOKEN_ENCRYPTION_KEYS). Exit 0 done, 1 a fault or not connected, 2 bad input.


@task(
    name="list",
    help={
        "user": "only this user's connections (default: every user)",
        "json": task_help("list")["json"],
    },
)
def tokens_list(c: Context, user: str | None = None, json: bool = False) -> None:
    """List stored tokens: user, provider, state and expiry (never a secret)."""
    from backend.services.integrations.token_commands import run_list

    _finish(run_list(user=user, as_json=json))


@task(
    name="revoke",
    help={"user": "the user id (required)", "provider": "the provider, e.g. github (required)"},
)
def tokens_revoke(c: Context, user: str | None = None, provider: str | None = None) -> None:
    """Forget a user's token for a provider (exit 1 if not connected)."""
    from backend.services.integrations.token_commands import run_revoke

    _finish(run_revoke(user=user, provider=provider))


@task(name="rotate-key")
def tokens_rotate_key(c: Context) -> None:
    """Re-encrypt every token with the newest TOKEN_ENCRYPTION_KEYS key (all or nothing)."""
    from backend.services.integrations.token_commands import run_rotate_key

    _finish(run_rotate_key())


@task(name="new-key")
def tokens_new_key(c: Context) -> None:
    """Print a fresh encryption key to put first in TOKEN_ENCRYPTION_KEYS."""
    from backend.services.integrations.token_commands import run_new_key

    _finish(run_new_key())


tokens = Collection("tokens", tokens_list, tokens_revoke, tokens_rotate_key, tokens_new_key)
namespace.add_collection(tokens)


# Invoke has no variadic arguments: the words after a port task become --port options.
accept_ports_as_arguments(namespace, PORT_TASKS)
