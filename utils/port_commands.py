"""The five port commands as both front ends run them: ``list``, ``check``, ``find``,
``cleanup`` and ``wait``.

Every ``run_*`` function takes values as the user typed them (strings from the CLI's
parser or Invoke), validates them, prints the answer and returns the contract's exit
status, so both front ends behave identically: 0 success, 1 the answer is "no", 2 bad
input. ``utils/port_cli.py`` is the command line; ``tasks.py`` calls these directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from utils import render
from utils._guard import EXIT_NO, EXIT_OK, guarded
from utils._values import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PORT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_WAIT_SECONDS,
    MAX_GRACE_SECONDS,
    MAX_SETTLE_SECONDS,
    MAX_WAIT_SECONDS,
    InvalidValue,
    parse_http_path,
    parse_port,
    parse_seconds,
)

if TYPE_CHECKING:
    from utils._binding import PortStatus
    from utils._holders import Listener
    from utils._stopping import CleanupResult, Outcome


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

    encoded: dict[tuple[int | None, bool, bool, str], str] = {}
    parts = []
    for row in rows:
        key = (row.pid, row.project, row.listening, row.role)
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


def _ports(values: Sequence[object]) -> list[int]:
    """Every port validated before anything is done: one bad value, nothing happens."""
    return [parse_port(value) for value in values]


def _one_or_many(documents: list[object], single: bool) -> object:
    """One port asked for: its JSON object (as ever); several, or all: an array."""
    return documents[0] if single else documents


def run_check(ports: Sequence[object], *, host: str | None = None, as_json: bool = False) -> int:
    """Exit 0 when every port is free on ``host`` (default: every local address), else 1."""

    def action() -> int:
        from utils._binding import check

        statuses = [check(number, host) for number in _ports(ports)]
        free = all(status.free for status in statuses)
        if as_json:
            documents: list[object] = [status.as_dict() for status in statuses]
            render.emit_json(_one_or_many(documents, len(ports) == 1))
        else:
            colour = render.colour_enabled(sys.stdout)
            for status in statuses:
                _print_status(status, colour)
        return EXIT_OK if free else EXIT_NO

    return _guarded(action)


def _print_status(status: PortStatus, colour: bool) -> None:
    checked = [s.address for s in status.addresses if s.available]
    if status.free:
        verdict = render.paint("free", "green", colour)
        print(f"Port {status.port} is {verdict} on {', '.join(checked)}.")
        return
    busy = [f"{s.address} ({s.reason})" for s in status.addresses if s.available and not s.free]
    verdict = render.paint("not free", "red", colour)
    print(f"Port {status.port} is {verdict} on {', '.join(busy)}.")
    if status.holders:
        print(_listener_table(status.holders, colour))
    note = _unnamed_holders_note(status.holders)
    if note and any(s.reason == "in use" for s in status.addresses):
        print(note)


def run_find(
    *, start: object = DEFAULT_PORT, host: str | None = None, as_json: bool = False
) -> int:
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
    ports: Sequence[object] = (),
    *,
    force: bool = False,
    grace: object = DEFAULT_GRACE_SECONDS,
    settle: object = DEFAULT_SETTLE_SECONDS,
    dry_run: bool = False,
    as_json: bool = False,
) -> int:
    """Free each port (none given: every port of this project's servers); exit 0 when
    every one is free at the end (or, dry, nothing would be refused), else 1."""

    def action() -> int:
        from utils._holders import project_ports
        from utils._stopping import cleanup

        numbers = _ports(ports)
        grace_seconds = parse_seconds(grace, "--grace", MAX_GRACE_SECONDS)
        settle_seconds = parse_seconds(settle, "--settle", MAX_SETTLE_SECONDS)
        if not ports:
            numbers = project_ports()
        progress = render.Progress.for_stream(sys.stderr, enabled=not as_json)
        results = []
        try:
            for number in numbers:
                result = cleanup(
                    number,
                    force=force,
                    grace=grace_seconds,
                    dry_run=dry_run,
                    settle=settle_seconds,
                    progress=progress.show,
                )
                results.append(result)
                progress.clear()
        finally:
            progress.clear()  # Ctrl-C too: "interrupted" starts a line of its own
        success = all((not r.refused) if dry_run else r.freed for r in results)
        if as_json:
            documents: list[object] = [result.as_dict() for result in results]
            render.emit_json(_one_or_many(documents, len(ports) == 1))
        elif not results:
            print("No servers of this project are listening: nothing to clean up.")
        else:
            colour = render.colour_enabled(sys.stdout)
            for result in results:
                _print_cleanup(result, colour)
        return EXIT_OK if success else EXIT_NO

    return _guarded(action)


def _print_cleanup(result: CleanupResult, colour: bool) -> None:
    outcomes = [*result.stopped, *result.refused]
    if outcomes:
        cells = [[_pid(o.pid), _outcome_text(o), o.command] for o in outcomes]
        print(render.table(["PID", "RESULT", "COMMAND"], cells, colour))
    number = result.port
    if result.dry_run:
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
    timeout: object = DEFAULT_WAIT_SECONDS,
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
        progress = render.Progress.for_stream(sys.stderr, enabled=not as_json)
        try:
            result = wait(
                number, host, timeout=seconds, free=free, http_path=http, progress=progress.show
            )
        finally:
            progress.clear()
        if as_json:
            render.emit_json(result.as_dict())
            return EXIT_OK if result.reached else EXIT_NO
        goal = {
            "open": "to accept connections",
            "free": "to be free",
            "http": f"to answer 2xx at {http}",
        }[result.condition]
        if result.reached:
            state = "free" if free else "ready"
            print(f"Port {number} is {state}: waited {result.seconds:.2f} s for it {goal}.")
            return EXIT_OK
        detail = f" (last answer: {result.detail})" if result.detail else ""
        sys.stderr.write(
            f"timed out after {seconds:g} s waiting for port {number} {goal}{detail}\n"
        )
        return EXIT_NO

    return _guarded(action)
