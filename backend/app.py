"""The ASGI application: ``create_app()`` builds it, ``/health`` says it is alive,
``/ready`` says it can serve (its token store answers), ``/`` leads to the API docs.

``app`` is one application built at import, for the tools that look for an app object:
``uvicorn backend.app:app``, ``fastapi dev`` / ``fastapi run`` (``[tool.fastapi]`` in
pyproject.toml names it). Building it is cheap and touches nothing outside the process:
the settings, the token store and its key are read on the first request that needs them,
and their modules (SQLAlchemy, pydantic-settings) are imported only then, so a worker
answers ``/health`` sooner. ``python -m backend`` and the Invoke tasks use the
``create_app`` factory instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from backend import __version__
from backend.services.integrations.errors import TokenError
from utils.errors import InvalidValue

if TYPE_CHECKING:
    from backend.services.integrations.unified_token_service import UnifiedTokenService

# uvicorn configures its own loggers only; log through its general one so lines show.
logger = logging.getLogger("uvicorn.error")


class Health(BaseModel):
    """Liveness: which process answered and for how long it has been up."""

    status: str
    version: str
    pid: int
    uptime_seconds: float


class Readiness(BaseModel):
    """Readiness: 200 ``ready`` when the token store answers, else 503 with the reason."""

    status: str
    token_store: str | None = None
    schema_version: int | None = None
    reason: str | None = None


class LazyTokenService:
    """One token service per process, built on first use; a failed build is retried next
    time. Its modules are imported then too: a worker that has not been asked ``/ready``
    (or any token route) has not loaded SQLAlchemy or the settings model."""

    def __init__(self) -> None:
        self._service: UnifiedTokenService | None = None
        self._lock = threading.Lock()

    def get(self) -> UnifiedTokenService:
        with self._lock:
            if self._service is None:
                from backend.services.integrations.factory import token_service

                self._service = token_service()
            return self._service

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None


READY_TIMEOUT = 3.0  # seconds; a readiness probe must answer quickly either way
DOCS_URL = "/docs"  # the interactive API documentation; GET / redirects there


def _probe(tokens: LazyTokenService) -> Readiness:
    """Build the token service if needed and run its cheap query (in a worker thread)."""
    service = tokens.get()
    version = service.ping()
    return Readiness(status="ready", token_store=service.store.kind, schema_version=version)


def create_app() -> FastAPI:
    """A fresh application (uvicorn calls this in each worker: ``factory=True``)."""
    started = time.monotonic()
    tokens = LazyTokenService()  # built from the settings on first use, in this worker

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info("backend %s started in pid %d", __version__, os.getpid())
        yield
        tokens.close()
        logger.info("backend in pid %d shut down gracefully", os.getpid())

    app = FastAPI(title="backend", version=__version__, lifespan=lifespan, docs_url=DOCS_URL)
    app.state.tokens = tokens

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        """The API's home page is its documentation: 307 to /docs (below any root path)."""
        return RedirectResponse(str(request.scope.get("root_path", "")).rstrip("/") + DOCS_URL)

    @app.get("/health")
    async def health() -> Health:
        return Health(
            status="ok",
            version=__version__,
            pid=os.getpid(),
            uptime_seconds=round(time.monotonic() - started, 3),
        )

    last_reason: list[str | None] = [None]  # log a failure when it starts or changes only

    @app.get("/ready", responses={503: {"model": Readiness}})
    async def ready() -> JSONResponse:
        try:
            answer = await asyncio.wait_for(run_in_threadpool(_probe, tokens), READY_TIMEOUT)
        except asyncio.TimeoutError:
            reason = f"the token store did not answer within {READY_TIMEOUT:g} s"
        except (InvalidValue, TokenError) as failure:
            reason = str(failure)
        except Exception as failure:  # a probe must answer, whatever went wrong
            reason = f"unexpected {type(failure).__name__} while checking the token store"
        else:
            last_reason[0] = None
            return JSONResponse(answer.model_dump())
        if reason != last_reason[0]:
            logger.warning("not ready: %s", reason)
            last_reason[0] = reason
        return JSONResponse(Readiness(status="unavailable", reason=reason).model_dump(), 503)

    return app


# For `uvicorn backend.app:app` and fastapi-cli; see the module's docstring.
app = create_app()
