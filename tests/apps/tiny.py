"""A tiny ASGI app for the tests: answers /health and records its shutdown.

With ``TINY_SHUTDOWN_LOG`` set, each process appends ``shutdown <pid>`` to that file when
its lifespan ends, so a test can prove that a cleanup was graceful.
"""

from __future__ import annotations

import json
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                log = os.environ.get("TINY_SHUTDOWN_LOG")
                if log:
                    with open(log, "a", encoding="utf-8") as handle:
                        handle.write(f"shutdown {os.getpid()}\n")
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
