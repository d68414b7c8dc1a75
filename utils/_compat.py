"""The original port API, kept: the functions of the code this project replaces.

Start scripts written for that code import these names from ``utils.port_manager``.
Each one is a thin layer over the current library - ``check``, the test binds of
``_binding``, ``listeners``, ``project_ports``, ``cleanup`` and ``wait`` - so the
answers and the safety rules are exactly those of the CLI: without ``force``, only the
current user's processes of this project are stopped; never pid 1, this process or one
of its ancestors, even with ``force``.

Nothing is printed. The functions answer with their return value, log to the
``portkeeper`` logger (silent unless the application configures logging), and raise
``InvalidValue`` (a ``ValueError``) for a bad argument; ``find_free_port`` raises
``RuntimeError`` when its range holds no free port.

Arguments are checked by the library's own validators: a port is an integer from 1 to
65535 (or its plain decimal text, as everywhere in the library); ``force`` and ``wait``
must be real booleans, so that ``force="no"`` is an error rather than a forced cleanup.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from utils._binding import LOCAL_ADDRESSES, check, free_for_servers, quick_free
from utils._common import Listener
from utils._holders import listeners, project_ports, supervisor_of
from utils._stop_rules import CleanupResult
from utils._stopping import cleanup
from utils._values import (
    DEFAULT_PORT,
    DEFAULT_SETTLE_SECONDS,
    MAX_WAIT_SECONDS,
    PORT_RANGE,
    parse_int,
    parse_port,
    parse_seconds,
    shown,
)
from utils._waiting import wait as wait_until
from utils.errors import InvalidValue

LOGGER_NAME = "portkeeper"
log = logging.getLogger(LOGGER_NAME)
log.addHandler(logging.NullHandler())  # a library never prints, not even a warning

_STOPPED = ("terminated", "killed")  # how a process counts as stopped by this call


def _flag(value: object, what: str) -> bool:
    """A real ``bool``: a truthy string must not turn on ``force`` by accident."""
    if not isinstance(value, bool):
        raise InvalidValue(f"{what} {shown(value)} is not valid: expected True or False")
    return value


def _report(result: CleanupResult) -> CleanupResult:
    """Log what one cleanup did and return it."""
    for outcome in result.stopped:
        log.info("port %d: pid %s (%s) %s", result.port, outcome.pid, outcome.name, outcome.how)
    for outcome in result.refused:
        log.warning(
            "port %d: pid %s (%s) refused: %s",
            result.port,
            outcome.pid,
            outcome.name,
            outcome.reason,
        )
    if result.freed:
        log.info("port %d is free (%.2f s)", result.port, result.seconds)
    else:
        log.warning("port %d is still held after %.2f s", result.port, result.seconds)
    return result


def find_free_port(start_port: int = DEFAULT_PORT, max_attempts: int = 10) -> int:
    """The first port of ``[start_port, start_port + max_attempts)`` that is free.

    Free means what ``check`` means: a server could bind it on every local address
    (0.0.0.0, ::, 127.0.0.1, ::1) right now. The range stops at 65535: ports past it do
    not exist and are not tried. ``start_port`` must be a port (1-65535) and
    ``max_attempts`` an integer from 1 to 65535, else ``InvalidValue``; ``RuntimeError``
    when no port of the range is free. Unlike ``find``, there is no fallback to a port
    the operating system picks: the old contract promises a port from the range.

    Nothing is reserved: another process may take the port before the caller binds it
    (``reserve`` hands back a bound socket instead).
    """
    first = parse_port(start_port, "start_port")
    attempts = parse_int(max_attempts, "max_attempts", 1, PORT_RANGE[1])
    last = min(first + attempts, PORT_RANGE[1] + 1)
    for port in range(first, last):
        if quick_free(port, LOCAL_ADDRESSES):
            log.debug("port %d is free", port)
            return port
    raise RuntimeError(f"no free port from {first} to {last - 1} ({last - first} tried)")


def is_port_in_use(port: int) -> bool:
    """True when a server could not bind ``port`` on every local address right now.

    Exactly ``not check(port).free``: held by any process, of any user, on any local
    address, or refused for want of privilege (a port below 1024 for a normal user is
    "in use" for a server of that user too).
    """
    return not check(parse_port(port)).free


def _top_row(rows: list[Listener]) -> Listener | None:
    """The row of the top-most named holder of the first socket that has one: listening
    sockets before sockets only bound, then the library's order (family, address, pid)."""
    named = [row for row in rows if row.pid is not None and row.facts is not None]
    if not named:
        return None
    named.sort(key=lambda row: not row.listening)  # stable: keeps the library's order
    chosen = named[0]
    same_socket = [row for row in named if row.socket_id == chosen.socket_id]
    facts = {row.pid: row.facts for row in same_socket if row.pid is not None and row.facts}
    holders = set(facts)
    root = supervisor_of(chosen.pid, holders, facts) if chosen.pid is not None else None
    return next((row for row in same_socket if row.pid == root), chosen)


def get_process_using_port(port: int) -> dict[str, Any] | None:
    """The process holding ``port``: ``{"pid", "name", "command", "port"}``, or None.

    The top-most holder of the socket: for a uvicorn ``--reload`` or ``--workers``
    server, the supervisor, not one of the workers that share its socket. A listening
    socket is preferred to one only bound to the port. ``command`` is the whole
    command line as one string, shell-quoted (``shlex.join``, so ``shlex.split`` gives
    the arguments back) and exact - not escaped for a terminal: pass it through
    ``utils.render.printable`` before printing it. It is ``""`` when the system does not
    show the command line (a kernel thread). None when nothing holds the port, or when
    the operating system does not say which process does (another user's process, or
    one of another PID namespace) - "held" is ``is_port_in_use``'s question.
    """
    number = parse_port(port)
    row = _top_row(listeners(number, bound=True))
    if row is None:
        log.debug("port %d: no visible holder", number)
        return None
    return {
        "pid": row.pid,
        "name": row.name,
        "command": shlex.join(row.cmdline) if row.cmdline else "",
        "port": number,
    }


def kill_process_on_port(port: int, force: bool = False) -> bool:
    """Stop what holds ``port``; True when at least one process was stopped by this call
    (terminated, or killed after the grace period) and the port is free afterwards.

    ``cleanup(port, force=force)`` with its defaults: SIGTERM to the top-most holders,
    SIGKILL after 5 s, then the port must stay free through the 0.5 s settle window.
    False when nothing held the port (there was nothing to kill: use
    ``cleanup_port_if_needed`` for "make sure it is free"), when a holder was refused
    by the safety rules (then nothing at all is stopped; ``force=True`` lifts the user
    and project rules), or when the port is still held.
    """
    number = parse_port(port)
    result = _report(cleanup(number, force=_flag(force, "force")))
    return result.freed and any(outcome.how in _STOPPED for outcome in result.stopped)


def wait_for_port_free(port: int, timeout: float = 10) -> bool:
    """Wait until ``port`` is free (the test bind of ``check``); False at ``timeout``.

    ``timeout`` is a number of seconds from 0 to 86400 (0 checks once). Nothing is
    stopped: this only watches.
    """
    number = parse_port(port)
    seconds = parse_seconds(timeout, "timeout", MAX_WAIT_SECONDS)
    result = wait_until(number, timeout=seconds, free=True)
    if not result.reached:
        log.info("port %d still in use after %.2f s", number, result.seconds)
    return result.reached


def cleanup_port(port: int, force: bool = False, wait: bool = True) -> bool:
    """Free ``port``; True when it is free at the end, also when nothing held it.

    ``cleanup(port, force=force)``: the holders are stopped within the safety rules
    (SIGTERM, SIGKILL after the 5 s grace) and the call returns once they are gone.
    ``wait=True``: the port must then stay free through the settle window (0.5 s), so a
    server restarted by a loop or a process manager is caught and stopped too.
    ``wait=False``: a settle window of 0 - the port is checked once, right after the
    holders exited, and not watched for a restart; signalling and the grace period are
    the same (the library never returns while a holder it signalled still runs).
    """
    number = parse_port(port)
    settle = DEFAULT_SETTLE_SECONDS if _flag(wait, "wait") else 0.0
    return _report(cleanup(number, force=_flag(force, "force"), settle=settle)).freed


def cleanup_port_if_needed(port: int, force: bool = False) -> bool:
    """``cleanup_port(port, force)`` only when something holds ``port``; True when the
    port is free afterwards.

    "Holds" is cleanup's notion: no local address would bind for a server (a bind
    refused only for want of privilege does not count). A port that is free at the
    call answers True at once, without the settle window that ``cleanup_port`` watches
    a free port through.
    """
    number = parse_port(port)
    force = _flag(force, "force")
    if free_for_servers(number):
        log.debug("port %d is free: nothing to clean up", number)
        return True
    return _report(cleanup(number, force=force)).freed


def list_project_ports() -> list[int]:
    """The ports this project's servers listen on, ascending (``project_ports()``)."""
    return project_ports()


def cleanup_project_ports(force: bool = False) -> int:
    """``cleanup`` each port of ``list_project_ports()``; the number of them freed.

    Every port is tried even when one is refused or stays held (logged as a warning).
    ``force=True`` lifts the user and project rules for whatever else holds those ports
    too (another user's process sharing a project port).
    """
    force = _flag(force, "force")
    freed = 0
    for port in project_ports():
        if _report(cleanup(port, force=force)).freed:
            freed += 1
    return freed
