"""Start the backend: choose the port, free or move off a busy one, bind it, run uvicorn.

The socket is bound once, here, and handed to uvicorn by file descriptor, so the port
this process chose is the port it holds: two starts at the same moment can never pick
the same port and then race to bind it. uvicorn's reloader and worker supervisor pass
that same socket on to their children.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.setting_specs import (
    APP_ENV,
    FIND_PORT,
    HOST,
    LOG_LEVEL,
    PORT,
    TOKEN_ENCRYPTION_KEYS,
    WEB_CONCURRENCY,
    Mode,
    ServeFlags,
)
from backend.start_settings import StartSettings, read_start_settings
from utils import port_manager
from utils.errors import EXIT_OK, InvalidValue, guarded
from utils.port_manager import Listener, PortInUse
from utils.render import Progress

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_FACTORY = "backend.app:create_app"
WATCHED_DIRS = ("backend", "utils")


@dataclass(frozen=True)
class StartRequest:
    """What the user asked for, validated (flags win over the environment)."""

    mode: Mode
    port: int
    host: str
    port_from: str  # "--port", "PORT" or "default": named in messages
    workers: int
    reload: bool
    find_port: bool
    cleanup_port: bool
    force_cleanup: bool


def describe(holders: tuple[Listener, ...] | list[Listener]) -> str:
    """'pid 4242: python -m http.server' per top-most holder, with its workers counted."""
    pids = {holder.pid for holder in holders if holder.pid is not None}
    parts: list[str] = []
    for holder in holders:
        if holder.pid is None:
            parts.append("a process the operating system does not name")
        elif holder.ppid not in pids:
            command = holder.command
            workers = sum(1 for other in holders if other.ppid == holder.pid)
            extra = f" and {workers} worker{'s' if workers > 1 else ''}" if workers else ""
            parts.append(f"pid {holder.pid}: {command}{extra}")
    unique = list(dict.fromkeys(parts))
    return ", ".join(unique) if unique else "a process this user cannot see"


def build_request(mode: Mode, flags: ServeFlags, settings: StartSettings) -> StartRequest:
    """Check the flags (text from Invoke or argparse) by the same declarations as the
    environment, and let each one win over its variable."""
    if mode == "prod" and flags.find_port:
        raise InvalidValue(f"--find-port is not valid in production: {FIND_PORT.refused_in(mode)}")
    if flags.port is not None and str(flags.port) == "0":
        if mode == "prod":
            raise InvalidValue(
                "--port '0' is not valid in production: the platform routes traffic to one "
                "fixed port, so an OS-assigned one would be unreachable"
            )
        port, port_from = 0, "--port"  # any free port, as uvicorn --port 0: announced
    else:
        port, port_from = settings.chosen(PORT, mode, flags.port)
    host, host_from = settings.chosen(HOST, mode, flags.host)
    if host is None:  # every mode has a default host: only a broken declaration gets here
        raise InvalidValue(f"no host to bind in {mode}: expected HOST or --host")
    if host_from == HOST.flag:
        port_manager.resolve_host(host)  # an unresolvable --host fails before anything starts
    workers, _ = settings.chosen(WEB_CONCURRENCY, mode, flags.workers)
    return StartRequest(
        mode=mode,
        port=port,
        host=host,
        port_from=port_from,
        workers=workers,
        reload=not flags.no_reload and mode == "dev",
        find_port=flags.find_port,
        cleanup_port=flags.cleanup_port or flags.force_cleanup,
        force_cleanup=flags.force_cleanup,
    )


class StartRefused(Exception):
    """The port cannot be had; the message says why and what to do."""


def free_port(port: int, force: bool) -> None:
    """Free ``port`` through the port manager or raise StartRefused naming what is left.

    What it stops is reported on stderr, with the logs; stdout carries only the start
    line. While it waits, a status line shows on stderr when that is a terminal.
    """
    progress = Progress.for_stream(sys.stderr)
    try:
        result = port_manager.cleanup(port, force=force, progress=progress.show)
    finally:
        progress.clear()
    for outcome in result.stopped:
        sys.stderr.write(
            f"Stopped pid {outcome.pid} ({outcome.command}) holding port {port}: {outcome.how}\n"
        )
    if result.refused:
        # The port manager's --force is this command's --force-cleanup.
        refused = "; ".join(
            f"pid {o.pid}: {(o.reason or '').replace('--force', '--force-cleanup')}"
            for o in result.refused
        )
        raise StartRefused(f"port {port} is held, and nothing was stopped ({refused})")
    if not result.freed:
        raise StartRefused(
            f"port {port} is still held after the cleanup, by {describe(result.still_held)}"
        )


def acquire_socket(request: StartRequest) -> tuple[socket.socket, str]:
    """Bind the port the request calls for; return the socket and a note on any move."""
    try:
        return port_manager.reserve(request.port, request.host), ""
    except PortInUse as busy:
        holders = describe(busy.status.holders)
        if request.cleanup_port:
            free_port(request.port, request.force_cleanup)
            return port_manager.reserve(request.port, request.host), ""
        if request.find_port:
            sock = port_manager.reserve(request.port, request.host, search=True)
            return sock, f"port {request.port} is held by {holders}"
        # --cleanup-port stops only this user's processes of this project: name the flag
        # that will work for the holder at hand.
        ours = all(holder.project and holder.user == _user() for holder in busy.status.holders)
        stop = "--cleanup-port" if ours and busy.status.holders else "--force-cleanup"
        hint = "" if request.mode == "prod" else "--find-port to use the next free port, or "
        raise StartRefused(
            f"port {request.port} ({request.port_from}) is in use by {holders}; "
            f"use {hint}{stop} to stop it"
        ) from None


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def url_of(sock: socket.socket, host: str) -> str:
    """The URL to open: a wildcard address is reached on loopback."""
    port = sock.getsockname()[1]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def run(request: StartRequest, settings: StartSettings) -> int:
    """Bind, announce and serve until uvicorn stops (it re-raises SIGINT/SIGTERM itself)."""
    sock, moved = acquire_socket(request)
    label = "dev" if request.mode == "dev" else "production"
    note = f" ({moved})" if moved else ""
    url = url_of(sock, request.host)
    print(f"Backend ({label}) running at {url} (API docs: {url}/docs){note}", flush=True)

    import uvicorn  # heavy: imported only once a server is really starting

    log_level, _ = settings.chosen(LOG_LEVEL, request.mode)
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            fd=sock.fileno(),
            app_dir=str(PROJECT_ROOT),
            reload=request.reload,
            reload_dirs=[str(PROJECT_ROOT / name) for name in WATCHED_DIRS]
            if request.reload
            else None,
            workers=request.workers if request.workers > 1 else None,
            log_level=log_level,
            log_config=logging_to_stderr(),
            proxy_headers=request.mode == "prod",
            forwarded_allow_ips=settings.forwarded_allow_ips if request.mode == "prod" else None,
            timeout_graceful_shutdown=settings.graceful_shutdown_timeout,
        )
    finally:
        sock.close()  # kept open (and inheritable) for as long as uvicorn ran
    return EXIT_OK


def logging_to_stderr() -> dict[str, object]:
    """uvicorn's logging with the access log on stderr too: stdout carries only the
    start line, so a script can read the URL from it and nothing else."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    for handler in config.get("handlers", {}).values():
        if handler.get("stream") == "ext://sys.stdout":
            handler["stream"] = "ext://sys.stderr"
    return config


def require_production_keys(settings: StartSettings) -> None:
    """Production refuses to start without token keys (InvalidValue: exit 2 before binding)."""
    from backend.services.integrations.keys import configured_keys

    configured_keys(settings.chosen(TOKEN_ENCRYPTION_KEYS, "prod")[0], production=True)


def serve(mode: Mode, flags: ServeFlags | None = None) -> int:
    """The one entry point of every front end: validate, then run; returns the exit status."""

    def action() -> int:
        # Every variable is checked here, before the port is bound, without pydantic (on
        # the way to the first response); the token store builds the full model later.
        settings = read_start_settings()
        request = build_request(mode, flags or ServeFlags(), settings)
        if mode == "prod":
            require_production_keys(settings)
            # The workers read APP_ENV too: a production start is production throughout.
            os.environ["APP_ENV"] = "production"
        return run(request, settings)

    return guarded(action, (StartRefused,))


def mode_from_env() -> Mode:
    """The mode ``APP_ENV`` names; a bad value is reported by ``serve`` like any setting."""
    try:
        return "prod" if read_start_settings().value(APP_ENV) == "production" else "dev"
    except InvalidValue:
        return "dev"


def cleanup_only(port: str | int | None = None, force: bool = False) -> int:
    """``--cleanup-port`` without a mode: free the port and exit (0 freed, 1 still held)."""

    def action() -> int:
        flags = ServeFlags(port=port, cleanup_port=True)
        request = build_request("dev", flags, read_start_settings())
        free_port(request.port, force)
        print(f"Port {request.port} is free.")
        return EXIT_OK

    return guarded(action, (StartRefused,))
