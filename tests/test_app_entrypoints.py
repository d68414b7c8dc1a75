"""The FastAPI ecosystem's own ways to serve the app, and ``GET /``.

``uvicorn backend.app:app`` and fastapi-cli (``fastapi run``/``fastapi dev``, given the
file or no argument at all: ``[tool.fastapi] entrypoint`` in pyproject.toml) each start a
real server on a fresh loopback port; ``/health`` must answer 200 and ``/`` must redirect
to ``/docs``. The project's own start (``python -m backend``, through the ``create_app``
factory) is tested against real servers in test_serve.py.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from uvicorn.importer import import_from_string

from backend import app as app_module
from backend import server
from tests.conftest import ROOT, Processes, deadline_poll, fresh_port

PYTHON = sys.executable
SETTINGS = (
    "PORT",
    "HOST",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "APP_ENV",
    "TOKEN_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "DATA_DIR",
)

# How the FastAPI documentation and uvicorn's tell users to serve an app; host and port
# are added (fastapi run would listen on 0.0.0.0 by default).
ENTRYPOINTS = {
    "uvicorn backend.app:app": ["-m", "uvicorn", "backend.app:app"],
    "fastapi run backend/app.py": ["-m", "fastapi", "run", "backend/app.py"],
    "fastapi run (pyproject entrypoint)": ["-m", "fastapi", "run"],
    # The reloader watches backend/ only: edits elsewhere in the tree do not restart it.
    "fastapi dev (pyproject entrypoint)": ["-m", "fastapi", "dev", "--reload-dir", "backend"],
}


def server_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return {**env, "NO_COLOR": "1", "DATA_DIR": str(tmp_path / "data")}


def get(port: int, path: str) -> http.client.HTTPResponse | None:
    """GET without following redirects; None while nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response
    except OSError:
        return None
    finally:
        connection.close()


@pytest.mark.parametrize("name", list(ENTRYPOINTS))
def test_ecosystem_command_serves_the_app(name: str, processes: Processes, tmp_path: Path) -> None:
    port = fresh_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = processes.start(
            [PYTHON, *ENTRYPOINTS[name], "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=server_env(tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        response = get(port, "/health")
        return response is not None and response.status == 200

    deadline_poll(healthy, timeout=30)
    root = get(port, "/")
    assert root is not None and root.status == 307
    assert root.getheader("location") == "/docs"
    docs = get(port, "/docs")
    assert docs is not None and docs.status == 200


async def _request(path: str, root_path: str = "") -> httpx.Response:
    transport = httpx.ASGITransport(app=app_module.create_app(), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path)


def test_root_redirects_to_the_docs() -> None:
    root = asyncio.run(_request("/"))
    assert root.status_code == 307, root.text
    assert root.headers["location"] == "/docs"
    docs = asyncio.run(_request(root.headers["location"]))
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # Behind a proxy that mounts the API below a prefix, the redirect keeps the prefix.
    assert asyncio.run(_request("/", root_path="/api")).headers["location"] == "/api/docs"


def test_root_is_not_an_api_operation() -> None:
    schema = app_module.create_app().openapi()
    assert "/" not in schema["paths"], "the redirect is for browsers, not in the API schema"


def test_module_app_is_built_without_settings_or_disk(tmp_path: Path) -> None:
    """Importing backend.app reads no setting and writes nothing: bad values still import."""
    home = tmp_path / "home"
    env = {
        **{name: value for name, value in os.environ.items() if name not in SETTINGS},
        "PORT": "not-a-port",
        "APP_ENV": "staging",
        "TOKEN_ENCRYPTION_KEYS": "not-a-key",
        "DATA_DIR": str(tmp_path / "data"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    code = (
        "import fastapi, backend.app as m; "
        "assert isinstance(m.app, fastapi.FastAPI); "
        "assert m.app.state.tokens._service is None"
    )
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(tmp_path.iterdir()) == [], "importing the app created files"


def test_module_app_and_the_factory_serve_the_same_routes() -> None:
    """``python -m backend`` keeps its factory (a fresh app per worker); ``app`` is one more."""
    factory = import_from_string(server.APP_FACTORY)
    assert callable(factory)
    fresh = factory()
    assert isinstance(fresh, FastAPI) and isinstance(app_module.app, FastAPI)
    assert fresh is not app_module.app and fresh is not factory()

    def routes(app: FastAPI) -> set[str]:
        return {getattr(route, "path", "") for route in app.routes}

    assert routes(fresh) == routes(app_module.app)
    assert {"/", "/health", "/ready", "/docs"} <= routes(fresh)
