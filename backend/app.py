"""The ASGI application: ``create_app()`` builds it, ``/health`` says it is alive."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from backend import __version__

# uvicorn configures its own loggers only; log through its general one so lines show.
logger = logging.getLogger("uvicorn.error")


class Health(BaseModel):
    """Liveness: which process answered and for how long it has been up."""

    status: str
    version: str
    pid: int
    uptime_seconds: float


def create_app() -> FastAPI:
    """A fresh application (uvicorn calls this in each worker: ``factory=True``)."""
    started = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("backend %s started in pid %d", __version__, os.getpid())
        yield
        logger.info("backend in pid %d shut down gracefully", os.getpid())

    app = FastAPI(title="backend", version=__version__, lifespan=lifespan)

    @app.get("/health")
    async def health() -> Health:
        return Health(
            status="ok",
            version=__version__,
            pid=os.getpid(),
            uptime_seconds=round(time.monotonic() - started, 3),
        )

    return app
