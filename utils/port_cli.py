"""The command line of the port tooling; ``tasks.py`` calls the same ``run_*`` functions.

Every ``run_*`` function takes values as the user typed them (strings from argparse or
Invoke), validates them, prints the answer and returns the contract's exit status, so
both front ends behave identically: 0 success, 1 the answer is "no", 2 bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from utils import render
from utils._arguments import Command, Option, UsageError, fail, parse, usage, wants_help
from utils._guard import EXIT_NO, EXIT_OK, EXIT_USAGE, guarded
from utils._values import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_SETTLE_SECONDS,
    MAX_GRACE_SECONDS,
    MAX_SETTLE_SECONDS,
    MAX_WAIT_SECONDS,
    InvalidValue,
    parse_http_path,
    parse_port,
    parse_seconds,
)

if TYPE_CHECKING:
    from utils._holders import Listener
    from utils._stopping import Outcome


def _guarded(action: Callable[[], int]) -> int:
    return guarded(action, (OSError,))


def _pid(value: int | None) -> str:
    return "-" if value is None else str(value)


def _listener_table(rows: Sequence[Listener], colour: bool) -> str:
    cells: list[list[render.Cell]] = []
    for row in rows:
        state = row.state + (", suspended" if row.suspended else "")
        cells.append(
            [
                str(row.port),
                row.address,
                row.family,
                render.Styled(state, "yellow") if row.suspended else state,
                _pid(row.pid),
                _pid(row.ppid),
                row.user or "-",
                render.Styled("yes", "green") if row.project else "no",
                row.command,
            ]
        )
    headers = ["PORT", "ADDRESS", "FAMILY", "STATE", "PID", "PPID", "USER", "PROJECT", "COMMAND"]
    return render.table(headers, cells, colour)


def _unnamed_holders_note(holders: Sequence[Listener]) -> str | None:
    """What can be said of holders the operating system does not name, or None."""
    import os

    if not holders:
        return (
            "The port is bound but not listening, and the operating system does not say by "
            "which process (a socket that never called listen(), or connections still open)."
        )
    if all(row.pid is not None for row in holders):
        return None
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "Some holders are not named: they belong to another user (try as root)."
    return (
        "Some holders are not named by the operating system: a process this one may not "
        "inspect (another PID namespace or container, or missing privileges), or the kernel."
    )


def _listeners_json(rows: Sequence[Listener]) -> str:
    """The JSON array of listener rows, each process's part encoded once.

    A process with thousands of sockets would otherwise have its command line encoded
    thousands of times: this is three times faster than ``json.dumps`` of the rows.
    Addresses and families are plain ASCII, so only the process part needs the encoder.
    """
    import json

    encoded: dict[tuple[int | None, bool, bool], str] = {}
    parts = []
    for row in rows:
        key = (row.pid, row.project, row.listening)
        process = encoded.get(key)
        if process is None:
            whole = row.as_dict()
            del whole["port"], whole["address"], whole["family"]
            process = encoded[key] = json.dumps(whole)[1:]
        parts.append(
            f'{{"port": {row.port}, "address": "{row.address}", "family": "{row.family}", {process}'
        )
    return "[" + ", ".join(parts) + "]"


def run_list(*, all_listeners: bool = False, as_json: bool = False) -> int:
    """Listening sockets with every holder; only this project's unless ``all_listeners``."""

    def action() -> int:
        from utils._holders import listeners

        rows = listeners(project_only=not all_listeners)
        if as_json and sys.stdout.isatty():
            render.emit_json([row.as_dict() for row in rows])  # indented for a person
        elif as_json:
            sys.stdout.write(_listeners_json(rows) + "\n")
        elif rows:
            print(_listener_table(rows, render.colour_enabled(sys.stdout)))
        elif all_listeners:
            print("No listening TCP sockets.")
        else:
            print("No servers of this project are listening. Use --all to see every listener.")
        return EXIT_OK

    return _guarded(action)


def run_check(port: object, *, host: str | None = None, as_json: bool = False) -> int:
    """Exit 0 when ``port`` is free on ``host`` (default: every local address), else 1."""

    def action() -> int:
        from utils._binding import check

        status = check(parse_port(port), host)
        if as_json:
            render.emit_json(status.as_dict())
            return EXIT_OK if status.free else EXIT_NO
        colour = render.colour_enabled(sys.stdout)
        checked = [s.address for s in status.addresses if s.available]
        if status.free:
            verdict = render.paint("free", "green", colour)
            print(f"Port {status.port} is {verdict} on {', '.join(checked)}.")
            return EXIT_OK
        busy = [f"{s.address} ({s.reason})" for s in status.addresses if s.available and not s.free]
        verdict = render.paint("not free", "red", colour)
        print(f"Port {status.port} is {verdict} on {', '.join(busy)}.")
        if status.holders:
            print(_listener_table(status.holders, colour))
        note = _unnamed_holders_note(status.holders)
        if note and any(s.reason == "in use" for s in status.addresses):
            print(note)
        return EXIT_NO

    return _guarded(action)


def run_find(*, start: object = 8000, host: str | None = None, as_json: bool = False) -> int:
    """Print the first free port at or above ``start`` (just the number, for scripts)."""

    def action() -> int:
        from utils._binding import find

        first = parse_port(start, "start port")
        port = find(first, host)
        if as_json:
            render.emit_json({"port": port, "start": first, "host": host})
        else:
            print(port)
        return EXIT_OK

    return _guarded(action)


def run_cleanup(
    port: object,
    *,
    force: bool = False,
    grace: object = DEFAULT_GRACE_SECONDS,
    settle: object = DEFAULT_SETTLE_SECONDS,
    dry_run: bool = False,
    as_json: bool = False,
) -> int:
    """Free ``port``; exit 0 when it is free at the end (or, dry, would be), else 1."""

    def action() -> int:
        from utils._holders import command_text
        from utils._stopping import cleanup

        number = parse_port(port)
        grace_seconds = parse_seconds(grace, "--grace", MAX_GRACE_SECONDS)
        settle_seconds = parse_seconds(settle, "--settle", MAX_SETTLE_SECONDS)
        result = cleanup(
            number, force=force, grace=grace_seconds, dry_run=dry_run, settle=settle_seconds
        )
        success = not result.refused if dry_run else result.freed
        if as_json:
            render.emit_json(result.as_dict())
            return EXIT_OK if success else EXIT_NO
        colour = render.colour_enabled(sys.stdout)
        outcomes = [*result.stopped, *result.refused]
        if outcomes:
            cells = [
                [_pid(o.pid), _outcome_text(o), command_text(o.cmdline, o.name)] for o in outcomes
            ]
            print(render.table(["PID", "RESULT", "COMMAND"], cells, colour))
        if dry_run:
            print(f"Dry run: nothing was stopped; port {number} is still as it was.")
        elif result.freed:
            freed = render.paint("free", "green", colour)
            print(f"Port {number} is {freed} and stayed free ({result.seconds:.2f} s).")
        else:
            held = render.paint("still held", "red", colour)
            print(f"Port {number} is {held} after {result.seconds:.2f} s.")
            if result.still_held:
                print(_listener_table(result.still_held, colour))
            note = _unnamed_holders_note(result.still_held)
            if note and not result.refused:
                print(note)
        return EXIT_OK if success else EXIT_NO

    return _guarded(action)


def _outcome_text(outcome: Outcome) -> str:
    """'terminated', 'refused: <reason>', with notes on the restarter and suspended ones."""
    text = f"refused: {outcome.reason}" if outcome.how == "refused" else outcome.how
    notes = [
        note
        for note, on in (
            ("restarter", outcome.role == "restarter"),
            ("was suspended", outcome.suspended),
        )
        if on
    ]
    return text + (f" ({', '.join(notes)})" if notes else "")


def run_wait(
    port: object,
    *,
    host: str | None = None,
    timeout: object = 30.0,
    free: bool = False,
    http: str | None = None,
    as_json: bool = False,
) -> int:
    """Exit 0 once the port accepts connections (answers 2xx at ``http``, is free), 1 on timeout."""

    def action() -> int:
        from utils._waiting import wait

        number = parse_port(port)
        seconds = parse_seconds(timeout, "--timeout", MAX_WAIT_SECONDS)
        if http is not None:
            parse_http_path(http)
        if http is not None and free:
            raise InvalidValue("--http and --free are not valid together: choose one condition")
        result = wait(number, host, timeout=seconds, free=free, http_path=http)
        if as_json:
            render.emit_json(result.as_dict())
            return EXIT_OK if result.reached else EXIT_NO
        goal = {
            "open": "to accept connections",
            "free": "to be free",
            "http": f"to answer 2xx at {http}",
        }[result.condition]
        if result.reached:
            print(f"Port {number} is ready: waited {result.seconds:.2f} s for it {goal}.")
            return EXIT_OK
        detail = f" (last answer: {result.detail})" if result.detail else ""
        sys.stderr.write(
            f"timed out after {seconds:g} s waiting for port {number} {goal}{detail}\n"
        )
        return EXIT_NO

    return _guarded(action)


PROGRAM = "port_manager"
_JSON = Option("--json", "print one JSON document on stdout")
_HOST = Option("--host", "hostname or IP address (default: every local address)", True)
COMMANDS = (
    Command(
        "list",
        "listening TCP sockets and every process holding each (this project's only)",
        None,
        (Option("--all", "every listener, not only this project's servers"), _JSON),
    ),
    Command("check", "exit 0 if PORT is free to bind, 1 if it is in use", "PORT", (_HOST, _JSON)),
    Command(
        "find",
        "print the first free port at or above --start, else one the OS assigns",
        None,
        (Option("--start", "first port to try (default 8000)", True, "8000", "PORT"), _HOST, _JSON),
    ),
    Command(
        "cleanup",
        "stop PORT's holders gracefully, SIGKILL after --grace, verify it is free",
        "PORT",
        (
            Option("--force", "also stop processes that are not this project's"),
            Option("--grace", "seconds before SIGKILL (default 5)", True, "5", "SECONDS"),
            Option(
                "--settle",
                "seconds the port must stay free to count as freed (default 0.5)",
                True,
                "0.5",
                "SECONDS",
            ),
            Option("--dry-run", "print what would be stopped, stop nothing"),
            _JSON,
        ),
    ),
    Command(
        "wait",
        "wait until PORT accepts connections (or answers 2xx at --http, or is --free)",
        "PORT",
        (
            Option("--host", "host to connect to (default 127.0.0.1, then ::1)", True),
            Option("--timeout", "seconds to wait (default 30)", True, "30", "SECONDS"),
            Option("--free", "wait until PORT is free instead"),
            Option("--http", "wait until GET PATH answers 2xx", True, None, "PATH"),
            _JSON,
        ),
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a reader that goes away (``| head``) is not an error worth a trace."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NO


def _dispatch(words: list[str]) -> int:
    if wants_help(words):
        print(usage(PROGRAM, "List, check, find, free and wait for TCP ports.", COMMANDS))
        return EXIT_OK
    try:
        command, values = parse(COMMANDS, words)
    except UsageError as bad:
        fail(PROGRAM, str(bad))
        return EXIT_USAGE
    host = values.get("host")
    host = host if isinstance(host, str) else None
    as_json = bool(values["json"])
    if command == "list":
        return run_list(all_listeners=bool(values["all"]), as_json=as_json)
    if command == "check":
        return run_check(values["port"], host=host, as_json=as_json)
    if command == "find":
        return run_find(start=values["start"], host=host, as_json=as_json)
    if command == "cleanup":
        return run_cleanup(
            values["port"],
            force=bool(values["force"]),
            grace=values["grace"],
            settle=values["settle"],
            dry_run=bool(values["dry_run"]),
            as_json=as_json,
        )
    http = values["http"]
    return run_wait(
        values["port"],
        host=host,
        timeout=values["timeout"],
        free=bool(values["free"]),
        http=http if isinstance(http, str) else None,
        as_json=as_json,
    )


if __name__ == "__main__":
    sys.exit(main())
