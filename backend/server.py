"""Start the backend: choose the port, free or move off a busy one, bind it, run uvicorn.

The socket is bound once, here, and handed to uvicorn as a socket object (``sockets=``),
so the port this process chose is the port it holds: two starts at the same moment can
never pick the same port and then race to bind it. uvicorn's reloader and worker
supervisor pass that same socket on to their children (multiprocessing shares it: by file
descriptor on POSIX, by ``socket.share`` on Windows). uvicorn's ``fd=`` would rebuild it
as an AF_UNIX socket, which Windows does not have.
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
    PORT_ZERO_REFUSED,
    TOKEN_ENCRYPTION_KEYS,
    WEB_CONCURRENCY,
    ServeFlags,
)
from backend.setting_types import MODE_NAMES, Mode
from backend.start_settings import StartSettings, read_start_settings
from utils import port_manager
from utils.errors import EXIT_OK, InvalidValue, guarded
from utils.port_manager import Listener, PortInUse
from utils.render import Progress

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_FACTORY = "backend.app:create_app"
STARTUP_FAILURE = 3  # uvicorn's exit status when the app fails to start
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
            raise InvalidValue(f"--port '0' is not valid in production: {PORT_ZERO_REFUSED}")
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
        # --cleanup-port stops what the safety rules allow without --force: name the flag
        # that will work for the holder at hand (the rules decide, on a dry run).
        allowed = not port_manager.cleanup(request.port, dry_run=True).refused
        stop = "--cleanup-port" if allowed and busy.status.holders else "--force-cleanup"
        hint = "" if request.mode == "prod" else "--find-port to use the next free port, or "
        raise StartRefused(
            f"port {request.port} ({request.port_from}) is in use by {holders}; "
            f"use {hint}{stop} to stop it"
        ) from None


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
    label = MODE_NAMES[request.mode]
    note = f" ({moved})" if moved else ""
    url = url_of(sock, request.host)
    print(f"Backend ({label}) running at {url} (API docs: {url}/docs){note}", flush=True)

    import uvicorn  # heavy: imported only once a server is really starting

    log_level, _ = settings.chosen(LOG_LEVEL, request.mode)
    if str(PROJECT_ROOT) not in sys.path:  # what uvicorn.run's app_dir does
        sys.path.insert(0, str(PROJECT_ROOT))
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=request.host,  # uvicorn's log line names the address and port served
        port=sock.getsockname()[1],
        reload=request.reload,
        reload_dirs=[str(PROJECT_ROOT / name) for name in WATCHED_DIRS] if request.reload else None,
        workers=request.workers if request.workers > 1 else None,
        log_level=log_level,
        log_config=logging_to_stderr(),
        proxy_headers=request.mode == "prod",
        forwarded_allow_ips=settings.forwarded_allow_ips if request.mode == "prod" else None,
        timeout_graceful_shutdown=settings.graceful_shutdown_timeout,
    )
    try:
        return serve_on(config, sock)
    finally:
        sock.close()  # kept open for as long as uvicorn ran


def serve_on(config: Any, sock: socket.socket) -> int:
    """Serve ``config``'s app on ``sock`` the way ``uvicorn.run`` would serve its own
    socket: in this process, under the reloader, or under the worker supervisor.

    uvicorn 0.30 still gave its worker supervisor the server's ``run`` as ``target``;
    later releases build the server in each worker themselves."""
    import inspect

    import uvicorn
    from uvicorn.supervisors import ChangeReload, Multiprocess

    server = uvicorn.Server(config)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[sock]).run()
        elif config.workers > 1:
            supervisor: Any = Multiprocess
            if "target" in inspect.signature(Multiprocess).parameters:
                supervisor(config, target=server.run, sockets=[sock]).run()
            else:
                supervisor(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if not server.started and not config.should_reload and config.workers == 1:
        return STARTUP_FAILURE  # uvicorn.run exits so when the app cannot start
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
