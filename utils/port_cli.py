"""The command line of the port tooling: ``python utils/port_manager.py COMMAND ...``,
``python -m utils.port_manager`` or, installed, ``portkeeper``.

It only parses: each command's work and output is a ``run_*`` function of
``utils/port_commands.py``, which ``tasks.py`` calls too, so both front ends agree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from utils import __version__
from utils import port_manager as ports
from utils._arguments import Command, Option, UsageError, fail, parse, usage, wants_help
from utils.errors import EXIT_NO, EXIT_OK, EXIT_USAGE

DESCRIPTION = "List, check, find, free and wait for TCP ports."


def _limits(default: float, maximum: float) -> str:
    return f" (default {default:g}, at most {maximum:g})"


_JSON = Option("--json", "print one JSON document on stdout")
_START = Option(
    "--start",
    f"first port to try (default {ports.DEFAULT_PORT})",
    True,
    str(ports.DEFAULT_PORT),
    "PORT",
)
_HOST = Option("--host", "hostname or IP address (default: every local address)", True)
_PORT = Option("--port", "a port, as the PORT argument (may be repeated)", True, None, "PORT", True)
COMMANDS = (
    Command(
        "list",
        "listening TCP sockets and every process holding each (this project's only)",
        None,
        (Option("--all", "every listener, not only this project's servers"), _JSON),
    ),
    Command(
        "check",
        "exit 0 if every PORT is free to bind, 1 if one is in use (and who holds it)",
        "PORT",
        (_HOST, _PORT, _JSON),
        "+",
    ),
    Command(
        "find",
        "print the first free port at or above --start, else one the OS assigns",
        None,
        (_START, _HOST, _JSON),
    ),
    Command(
        "cleanup",
        "stop each PORT's holders gracefully, SIGKILL after --grace, verify it stays free "
        "(no PORT: every port of this project's servers)",
        "PORT",
        (
            Option("--force", "also stop processes that are not this project's"),
            Option(
                "--grace",
                "seconds before SIGKILL"
                + _limits(ports.DEFAULT_GRACE_SECONDS, ports.MAX_GRACE_SECONDS),
                True,
                f"{ports.DEFAULT_GRACE_SECONDS:g}",
                "SECONDS",
            ),
            Option(
                "--settle",
                "seconds the port must stay free to count as freed"
                + _limits(ports.DEFAULT_SETTLE_SECONDS, ports.MAX_SETTLE_SECONDS),
                True,
                f"{ports.DEFAULT_SETTLE_SECONDS:g}",
                "SECONDS",
            ),
            Option("--dry-run", "print what would be stopped, stop nothing"),
            _PORT,
            _JSON,
        ),
        "*",
    ),
    Command(
        "wait",
        "wait until PORT accepts connections (or answers 2xx at --http, or is --free)",
        "PORT",
        (
            Option("--host", "host to connect to (default 127.0.0.1, then ::1)", True),
            Option(
                "--timeout",
                f"seconds to wait{_limits(ports.DEFAULT_WAIT_SECONDS, ports.MAX_WAIT_SECONDS)}",
                True,
                f"{ports.DEFAULT_WAIT_SECONDS:g}",
                "SECONDS",
            ),
            Option("--free", "wait until PORT is free instead"),
            Option("--http", "wait until GET PATH answers 2xx", True, None, "PATH"),
            Option("--port", "the port, as the PORT argument", True, None, "PORT", True),
            _JSON,
        ),
    ),
)


def command(name: str) -> Command:
    """The command ``name`` of the table above."""
    return next(command for command in COMMANDS if command.name == name)


def task_help(name: str, **overrides: str) -> dict[str, str]:
    """The help of ``invoke ports.NAME``'s flags, from the same table as the CLI's."""
    helps = {option.name.lstrip("-"): option.help for option in command(name).options}
    return helps | overrides


def option_default(name: str, option: str) -> str:
    """The default of a command's option, as typed (``"5"`` for ``cleanup --grace``)."""
    found = next(o for o in command(name).options if o.name == option)
    return found.default or ""


def program_name() -> str:
    """How this program was run, for its help and errors: a person can paste it back."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("utils."):
        return f"python -m {spec.name}"
    path = sys.argv[0] if sys.argv else ""
    if os.path.basename(path) in ("port_manager.py", "port_cli.py"):
        relative = os.path.relpath(path)
        return f"python {path if relative.startswith('..') else relative}"
    return os.path.basename(path) or "portkeeper"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a reader that goes away (``| head``) is not an error worth a trace."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NO


def run() -> None:
    """Run the command line as a program and exit with its status, at once: exit
    handlers run and the standard streams are flushed, but the interpreter's teardown
    (freeing every object one by one: up to a fifth of a ``check``) is skipped."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # the reader went away (``| head``) after the last write
        status = status or EXIT_NO
    import atexit

    atexit._run_exitfuncs()  # what sys.exit would still have done (coverage saves its data)
    os._exit(status)


def _dispatch(words: list[str]) -> int:
    program = program_name()
    if words[:1] == ["--version"]:
        print(f"portkeeper {__version__}")
        return EXIT_OK
    if wants_help(words):
        named = [c.name for c in COMMANDS if words and c.name == words[0]]
        print(usage(program, DESCRIPTION, COMMANDS, named[0] if named else None))
        return EXIT_OK
    try:
        command, values = parse(COMMANDS, words)
    except UsageError as bad:
        fail(program, str(bad))
        return EXIT_USAGE
    from utils import port_commands as run  # after parsing: --help and errors stay cheap

    host = values.get("host")
    host = host if isinstance(host, str) else None
    as_json = bool(values["json"])
    ports = values.get("ports")
    ports = list(ports) if isinstance(ports, list) else []
    if command == "list":
        return run.run_list(all_listeners=bool(values["all"]), as_json=as_json)
    if command == "check":
        return run.run_check(ports, host=host, as_json=as_json)
    if command == "find":
        return run.run_find(start=values["start"], host=host, as_json=as_json)
    if command == "cleanup":
        return run.run_cleanup(
            ports,
            force=bool(values["force"]),
            grace=values["grace"],
            settle=values["settle"],
            dry_run=bool(values["dry_run"]),
            as_json=as_json,
        )
    http = values["http"]
    return run.run_wait(
        ports[0],
        host=host,
        timeout=values["timeout"],
        free=bool(values["free"]),
        http=http if isinstance(http, str) else None,
        as_json=as_json,
    )


if __name__ == "__main__":
    run()
