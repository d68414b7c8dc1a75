"""A tiny ASGI app for the tests: answers /health and records its shutdown.

With ``TINY_LIFESPAN_LOG`` set, each process appends ``startup <pid>`` to that file once
its lifespan has started (its signal handlers are installed by then) and ``shutdown <pid>``
when it ends, so a test can wait for every worker and prove that a cleanup was graceful.
"""

from __future__ import annotations

import json
import os
from typing import Any


def _log(event: str) -> None:
    log = os.environ.get("TINY_LIFESPAN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {os.getpid()}\n")


def lifespan_pids(log: str | os.PathLike[str], event: str) -> set[int]:
    """The pids that logged ``event`` ("startup" or "shutdown") in a lifespan log."""
    try:
        with open(log, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return set()
    return {int(line.split()[1]) for line in lines if line.startswith(event + " ")}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _log("startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _log("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = json.dumps({"status": "ok", "pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
