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

from utils import _reports, port_manager, render
from utils.errors import EXIT_NO, EXIT_OK, InvalidValue, guarded

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


def _guarded(action: Callable[[], int]) -> int:
    return guarded(action, (OSError,))


def run_list(*, all_listeners: bool = False, as_json: bool = False) -> int:
    """Listening sockets with every holder; only this project's unless ``all_listeners``."""

    def action() -> int:
        from utils._holders import scan  # the rows as found: JSON is written straight from them

        found = scan(project_only=not all_listeners)
        if as_json and not sys.stdout.isatty():
            sys.stdout.write(_reports.listeners_json(found) + "\n")
            return EXIT_OK
        rows = found.listeners()
        if as_json:
            render.emit_json([row.as_dict() for row in rows])  # indented for a person
        elif rows:
            print(_reports.listener_table(rows, render.colour_enabled(sys.stdout)))
        elif all_listeners:
            print("No listening TCP sockets.")
        else:
            print("No servers of this project are listening. Use --all to see every listener.")
        return EXIT_OK

    return _guarded(action)


def _ports(values: Sequence[object]) -> list[int]:
    """Every port validated before anything is done: one bad value, nothing happens."""
    return [port_manager.parse_port(value) for value in values]


def _answer(
    results: Sequence[Any], single: bool, as_json: bool, show: Callable[[Any, bool], None]
) -> None:
    """Print the results: JSON (one port asked for: its object; several, or all: an
    array), or each for people through ``show``."""
    if as_json:
        documents = [result.as_dict() for result in results]
        render.emit_json(documents[0] if single else documents)
    else:
        colour = render.colour_enabled(sys.stdout)
        for result in results:
            show(result, colour)


def run_check(ports: Sequence[object], *, host: str | None = None, as_json: bool = False) -> int:
    """Exit 0 when every port is free on ``host`` (default: every local address), else 1."""

    def action() -> int:
        statuses = [port_manager.check(number, host) for number in _ports(ports)]
        _answer(statuses, len(ports) == 1, as_json, _reports.print_status)
        return EXIT_OK if all(status.free for status in statuses) else EXIT_NO

    return _guarded(action)


def run_find(
    *, start: object = port_manager.DEFAULT_PORT, host: str | None = None, as_json: bool = False
) -> int:
    """Print the first free port at or above ``start`` (just the number, for scripts)."""

    def action() -> int:
        first = port_manager.parse_port(start, "start port")
        port = port_manager.find(first, host)
        if as_json:
            render.emit_json({"port": port, "start": first, "host": host})
        else:
            print(port)
        return EXIT_OK

    return _guarded(action)


def run_cleanup(
    ports: Sequence[object] = (),
    *,
    dry_run: bool = False,
    as_json: bool = False,
    force: bool = False,
    grace: object = port_manager.DEFAULT_GRACE_SECONDS,
    settle: object = port_manager.DEFAULT_SETTLE_SECONDS,
) -> int:
    """Free each port (none given: every port of this project's servers); exit 0 when
    every one is free at the end (or, dry, nothing would be refused), else 1."""

    def action() -> int:
        numbers = _ports(ports)
        grace_seconds = port_manager.parse_seconds(grace, "--grace", port_manager.MAX_GRACE_SECONDS)
        settle_seconds = port_manager.parse_seconds(
            settle, "--settle", port_manager.MAX_SETTLE_SECONDS
        )
        if not ports:
            numbers = port_manager.project_ports()
        progress = render.Progress.for_stream(sys.stderr, enabled=not as_json)
        results = []
        try:
            for number in numbers:
                result = port_manager.cleanup(
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
        if results or as_json:
            _answer(results, len(ports) == 1, as_json, _reports.print_cleanup)
        else:
            print("No servers of this project are listening: nothing to clean up.")
        return EXIT_OK if success else EXIT_NO

    return _guarded(action)


def run_wait(
    port: object,
    *,
    host: str | None = None,
    timeout: object = port_manager.DEFAULT_WAIT_SECONDS,
    free: bool = False,
    http: str | None = None,
    as_json: bool = False,
) -> int:
    """Exit 0 once the port accepts connections (answers 2xx at ``http``, is free), 1 on timeout."""

    def action() -> int:
        number = port_manager.parse_port(port)
        seconds = port_manager.parse_seconds(timeout, "--timeout", port_manager.MAX_WAIT_SECONDS)
        if http is not None:
            port_manager.parse_http_path(http)
        if http is not None and free:
            raise InvalidValue("--http and --free are not valid together: choose one condition")
        progress = render.Progress.for_stream(sys.stderr, enabled=not as_json)
        try:
            result = port_manager.wait(
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
