"""Fixtures of the token-service tests: real SQLite files and a real PostgreSQL server.

The PostgreSQL server comes from the operating system's packages (Debian: ``postgresql``,
binaries under /usr/lib/postgresql/*/bin). It is started once per test session in a
temporary directory, on 127.0.0.1 and a port from the port manager, with its socket
directory there too, and always stopped (``pg_ctl stop -m fast``, then by pid). As root
it runs as the ``postgres`` user, since PostgreSQL refuses to run as root. Each test
gets a database of its own. Without the binaries the PostgreSQL tests skip locally and
FAIL under CI (``CI`` set), so CI can never pass without testing PostgreSQL - except
where a job says PostgreSQL cannot run: ``PORTKEEPER_SKIP_POSTGRES=REASON`` skips them
with that reason (the workflow's Windows and macOS jobs; Linux CI tests PostgreSQL).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from backend.services.integrations.keys import KeyRing
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService
from tests.conftest import fresh_port

# Every setting the token service reads: removed from the environment of each test.
TOKEN_SETTINGS = (
    "APP_ENV",
    "DATABASE_URL",
    "DATA_DIR",
    "TOKEN_ENCRYPTION_KEYS",
    "TOKEN_REFRESH_SKEW",
    "TOKEN_STORE_TIMEOUT",
    "XDG_DATA_HOME",
)


def new_key() -> bytes:
    return Fernet.generate_key()


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class PostgresServer:
    """A running server: connect as the trusted ``postgres`` user over TCP on loopback."""

    port: int
    bin_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


SKIP_POSTGRES = "PORTKEEPER_SKIP_POSTGRES"  # its value: why this job tests no PostgreSQL


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def find_postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<N>/bin with a server, else pg_ctl's directory on PATH."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
        key=lambda bin_dir: int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _run_as() -> dict[str, object]:
    """``subprocess`` keyword arguments that run PostgreSQL as a non-root user."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return {}
    import pwd  # POSIX's

    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        _missing("running as root and there is no 'postgres' user to run the server as")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _pg(command: list[str], run_as: dict[str, object], cwd: Path, timeout: float = 60):
    return subprocess.run(  # type: ignore[call-overload]
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, **run_as
    )


def _stop(bin_dir: Path, data: Path, run_as: dict[str, object], cwd: Path) -> None:
    """``pg_ctl stop -m fast``; if that fails, SIGQUIT the postmaster by its pid."""
    if not (data / "postmaster.pid").exists():
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        result = _pg(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            run_as,
            cwd,
            timeout=30,
        )
        if result.returncode == 0:
            return
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown of the postmaster and its children


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    declared = os.environ.get(SKIP_POSTGRES, "").strip()
    if declared:
        pytest.skip(f"PostgreSQL tests skipped: {declared} ({SKIP_POSTGRES})")
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        _missing(
            "no PostgreSQL server binaries (install the Debian package 'postgresql'; "
            "looked under /usr/lib/postgresql/*/bin and for pg_ctl on PATH)"
        )
        return
    run_as = _run_as()
    base = Path(tempfile.mkdtemp(prefix="tokens-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    if run_as:
        for path in (base, sockets):
            os.chown(path, int(run_as["user"]), int(run_as["group"]))  # type: ignore[call-overload]
    try:
        initdb = _pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            run_as,
            base,
        )
        assert initdb.returncode == 0, f"initdb failed: {initdb.stderr}"
        for _attempt in range(3):  # a port found free can be taken before the server binds
            port = fresh_port()
            options = (
                f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50"
            )
            started = _pg(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    options,
                    "start",
                ],
                run_as,
                base,
            )
            if started.returncode == 0:
                break
            _stop(bin_dir, data, run_as, base)
        else:
            server_log = log.read_text(errors="replace") if log.exists() else ""
            raise AssertionError(f"PostgreSQL did not start: {started.stderr}\n{server_log}")
        yield PostgresServer(port=port, bin_dir=bin_dir)
    finally:
        _stop(bin_dir, data, run_as, base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server for one test."""
    import sqlalchemy

    name = f"tokens_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(
        postgres_server.url().replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield postgres_server.url(name)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# --------------------------------------------------------------------------- stores


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of an empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'tokens.db'}"
    return str(request.getfixturevalue("postgres_url"))


ServiceFactory = Callable[..., UnifiedTokenService]


@pytest.fixture
def make_service(store_url: str) -> Iterator[ServiceFactory]:
    """Services over the test's store, with the given keys; all closed at teardown."""
    made: list[UnifiedTokenService] = []

    def make(
        *keys: bytes, url: str | None = None, timeout: float = 10.0, skew: float = 60.0
    ) -> UnifiedTokenService:
        service = UnifiedTokenService(
            TokenStore(url or store_url, timeout=timeout), KeyRing(keys or [new_key()]), skew=skew
        )
        made.append(service)
        return service

    try:
        yield make
    finally:
        for service in made:
            service.close()


@pytest.fixture
def clean_token_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No token setting inherited from the developer's or CI's environment."""
    for name in TOKEN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a command under test: no inherited token settings."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_SETTINGS}
    return {**env, "NO_COLOR": "1", **extra}


def raw_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run SQL directly on the store's database (not through the service)."""
    import sqlalchemy

    from backend.services.integrations.store import normalise_url

    engine = sqlalchemy.create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            result = conn.exec_driver_sql(sql)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()
