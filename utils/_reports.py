"""How the commands' answers read: tables and notes for people, JSON for programs.

Every piece of outside text (command lines, user names) reaches a table through
``Listener.command`` or ``Outcome.command``, which escape it; JSON carries it exact.
"""

from __future__ import annotations

from collections.abc import Sequence

from utils import render

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from utils._holders import Scan
    from utils.port_manager import CleanupResult, Listener, Outcome, PortStatus


def pid_text(value: int | None) -> str:
    return "-" if value is None else str(value)


def listener_table(rows: Sequence[Listener], colour: bool) -> str:
    cells: list[list[render.Cell]] = []
    for row in rows:
        state = row.state + (", suspended" if row.suspended else "")
        cells.append(
            [
                str(row.port),
                row.address,
                row.family,
                render.Styled(state, "yellow") if row.suspended else state,
                pid_text(row.pid),
                pid_text(row.ppid),
                row.user or "-",
                render.Styled("yes", "green") if row.project else "no",
                row.command,
            ]
        )
    headers = ["PORT", "ADDRESS", "FAMILY", "STATE", "PID", "PPID", "USER", "PROJECT", "COMMAND"]
    return render.table(headers, cells, colour)


def unnamed_holders_note(holders: Sequence[Listener]) -> str | None:
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


def listeners_json(scan: Scan) -> str:
    """The JSON array of a scan's rows, written straight from them: no record per row.

    Each process's part (the same for every socket it holds in one role) is encoded once,
    from the record of its first row; the socket's part - numbers, a numeric address and
    a family name, plain ASCII - is written in place. A process with thousands of
    sockets would otherwise have its command line encoded thousands of times.
    """
    encoded: dict[tuple[int | None, bool, bool, str], str] = {}
    parts = []
    for row in scan.rows:
        port, family, address, _, pid, listening, project, role, _ = row
        key = (pid, listening, project, role)
        process = encoded.get(key)
        if process is None:
            whole = scan.listener(row).as_dict()
            del whole["port"], whole["address"], whole["family"]
            process = ", ".join(f'"{name}": {_json(value)}' for name, value in whole.items())
            process = encoded[key] = process + "}"
        parts.append(f'{{"port": {port}, "address": "{address}", "family": "{family}", {process}')
    return "[" + ", ".join(parts) + "]"


def _json(value: object) -> str:
    """``json.dumps(value)`` for what a listener row holds (None, booleans, integers,
    strings and lists of them), without importing json - and ``re`` beneath it - unless
    a string needs escaping: plain printable ASCII is written as it is."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_json(item) for item in value) + "]"
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    import json

    return json.dumps(value)


def print_status(status: PortStatus, colour: bool) -> None:
    checked = [s.address for s in status.addresses if s.available]
    if status.free:
        verdict = render.paint("free", "green", colour)
        print(f"Port {status.port} is {verdict} on {', '.join(checked)}.")
        return
    busy = [f"{s.address} ({s.reason})" for s in status.addresses if s.available and not s.free]
    verdict = render.paint("not free", "red", colour)
    print(f"Port {status.port} is {verdict} on {', '.join(busy)}.")
    if status.holders:
        print(listener_table(status.holders, colour))
    note = unnamed_holders_note(status.holders)
    if note and any(s.reason == "in use" for s in status.addresses):
        print(note)


def print_cleanup(result: CleanupResult, colour: bool) -> None:
    outcomes = [*result.stopped, *result.refused]
    if outcomes:
        cells = [[pid_text(o.pid), outcome_text(o), o.command] for o in outcomes]
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
            print(listener_table(result.still_held, colour))
        note = unnamed_holders_note(result.still_held)
        if note and not result.refused:
            print(note)


def outcome_text(outcome: Outcome) -> str:
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
