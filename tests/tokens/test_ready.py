"""``GET /ready``: 200 only when the token store answers, 503 with the reason otherwise."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from backend.app import create_app
from tests.conftest import PYTHON, Processes, fresh_port
from tests.tokens.conftest import new_key, subprocess_env
from utils import port_manager


def get(app: object, *paths: str) -> list[httpx.Response]:
    """GET each path from the ASGI app in this process (no server needed)."""

    async def fetch() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [await client.get(path) for path in paths]

    return asyncio.run(fetch())


@pytest.fixture
def app_env(
    store_url: str, tmp_path: Path, clean_token_env: pytest.MonkeyPatch
) -> pytest.MonkeyPatch:
    clean_token_env.setenv("DATA_DIR", str(tmp_path / "data"))
    clean_token_env.setenv("DATABASE_URL", store_url)
    return clean_token_env


def test_ready_when_the_store_answers(app_env: pytest.MonkeyPatch, store_url: str) -> None:
    app = create_app()
    try:
        ready, health = get(app, "/ready", "/health")
    finally:
        app.state.tokens.close()
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "token_store": store_url.split(":", 1)[0],
        "schema_version": 1,
        "reason": None,
    }
    assert health.status_code == 200
    assert set(health.json()) == {"status", "version", "pid", "uptime_seconds"}


def test_not_ready_while_the_database_is_corrupted_then_ready_again(
    tmp_path: Path, clean_token_env: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "tokens.db"
    database.write_bytes(b"not a database " * 100)
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    app = create_app()
    try:
        (ready,) = get(app, "/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert ready.json()["reason"].startswith(f"SQLite token store {database} is corrupted")
        database.unlink()  # the operator moved it away: ready on the next probe
        (ready,) = get(app, "/ready")
    finally:
        app.state.tokens.close()
    assert ready.status_code == 200


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"APP_ENV": "production"}, "TOKEN_ENCRYPTION_KEYS is not set: it is required"),
        (
            {"DATABASE_URL": "postgresql://app:pw-secret@127.0.0.1:{port}/tokens"},
            "cannot reach PostgreSQL token store tokens at 127.0.0.1:{port}",
        ),
    ],
)
def test_not_ready_without_a_key_or_a_reachable_database(
    settings: dict[str, str],
    reason: str,
    tmp_path: Path,
    clean_token_env: pytest.MonkeyPatch,
) -> None:
    port = fresh_port()  # nothing listens there
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    for name, value in settings.items():
        clean_token_env.setenv(name, value.format(port=port))
    app = create_app()
    try:
        ready, health = get(app, "/ready", "/health")
    finally:
        app.state.tokens.close()
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith(reason.format(port=port))
    assert "pw-secret" not in ready.text
    assert health.status_code == 200  # liveness does not depend on the store


def test_a_real_server_answers_ready_on_postgresql(
    processes: Processes, postgres_url: str, tmp_path: Path
) -> None:
    port = fresh_port()
    env = subprocess_env(
        DATABASE_URL=postgres_url,
        TOKEN_ENCRYPTION_KEYS=new_key().decode(),
        DATA_DIR=str(tmp_path),
        APP_ENV="production",
    )
    processes.start(
        [PYTHON, "-m", "backend", "--production", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    reached = port_manager.wait(port, "127.0.0.1", http_path="/ready", timeout=30)
    assert reached.reached, reached.detail
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
        assert json.load(response)["token_store"] == "postgresql"


def test_a_real_server_answers_503_when_the_store_is_down(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    dead = port_manager.find(start=port + 1)  # free, and nothing will listen there
    env = subprocess_env(DATABASE_URL=f"postgresql://x@127.0.0.1:{dead}/x", DATA_DIR=str(tmp_path))
    processes.start([PYTHON, "-m", "backend", "--dev", "--no-reload", "--port", str(port)], env=env)
    assert port_manager.wait(port, "127.0.0.1", http_path="/health", timeout=30).reached
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=10)
    assert answer.value.code == 503
    assert json.load(answer.value)["reason"].startswith("cannot reach PostgreSQL token store")
