"""Where tokens live: an SQLAlchemy engine for SQLite (default) or PostgreSQL, with the
transactions the service needs and one-line errors instead of driver tracebacks.

SQLite: one file shared by every worker of a machine, in WAL mode (readers never wait
for the writer) with a busy timeout. The pysqlite driver's own transaction handling is
turned off so that a write transaction starts with ``BEGIN IMMEDIATE``: the database's
write lock is taken at the start, so two writers never both read a stale row and then
both write. The file (and its -wal/-shm companions, which SQLite creates with the same
mode) is created 0600 in a 0700 directory. Windows has no such modes (``os.chmod`` only
sets the read-only flag there, and ``os.fchmod`` is missing before Python 3.13): the
files are private through the ACL their folder passes on - the user profile's for the
default data directory (docs/tokens.md).

PostgreSQL (``DATABASE_URL``): rows are locked with ``SELECT ... FOR UPDATE``; waiting
for a lock is bounded by ``lock_timeout`` and connecting by ``connect_timeout``, both
from ``TOKEN_STORE_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from backend.services.integrations import schema
from backend.services.integrations.errors import TokenError, TokenStoreError
from backend.services.integrations.keys import ensure_private_dir
from backend.setting_specs import TOKEN_STORE_TIMEOUT
from utils.errors import InvalidValue

logger = logging.getLogger(__name__)
StoreKind = Literal["sqlite", "postgresql"]
WRITE_OPTION = "token_store_write"  # execution option: begin this transaction as a writer


def normalise_url(url: str) -> URL:
    """``postgres://`` and ``postgresql://`` use psycopg 3; SQLite needs a file path."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidValue(
            "DATABASE_URL is not valid: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "or sqlite:///PATH"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres" or (backend == "postgresql" and "+" not in parsed.drivername):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise InvalidValue(
                "DATABASE_URL is not valid: an SQLite token store must be a file "
                "(sqlite:///PATH), shared by the workers"
            )
    elif backend != "postgresql":
        raise InvalidValue(
            f"DATABASE_URL is not valid (database {backend!r}): expected postgresql:// or sqlite:///"
        )
    return parsed


class TokenStore:
    """The database of the token service: created lazily, schema ensured on first use."""

    def __init__(self, url: str | URL, *, timeout: float = TOKEN_STORE_TIMEOUT.default) -> None:
        self.url = normalise_url(url) if isinstance(url, str) else url
        self.kind: StoreKind = "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"
        self.timeout = timeout
        self.path = Path(self.url.database or "").expanduser() if self.kind == "sqlite" else None
        if self.path is not None:
            self.path = self.path.absolute()
            self.url = self.url.set(database=str(self.path))
        self._engine: Engine | None = None
        self._schema_version: int | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        """Names the store in messages (never with a password)."""
        if self.path is not None:
            return f"SQLite token store {self.path}"
        where = f"{self.url.host or 'localhost'}:{self.url.port or 5432}"
        return f"PostgreSQL token store {self.url.database or '?'} at {where}"

    def __repr__(self) -> str:
        return f"TokenStore({self.description})"

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (SQLite: deferred, sees a consistent WAL snapshot)."""
        with self._faults(), self._connect(write=False) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: SQLite ``BEGIN IMMEDIATE``; lock rows with FOR UPDATE."""
        with self._faults(), self._connect(write=True) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        self._ensure_schema()
        with self.engine().connect() as conn:
            yield conn.execution_options(**{WRITE_OPTION: write})

    def ping(self) -> int:
        """The schema version, read with a cheap query: is the store usable right now?"""
        with self.read() as conn:
            version = schema.read_version(conn)
        return version if version is not None else 0

    def dispose(self) -> None:
        """Close pooled connections (at shutdown, or after a fork)."""
        if self._engine is not None:
            self._engine.dispose()

    # ------------------------------------------------------------------ setup

    def _ensure_schema(self) -> None:
        if self._schema_version is not None:
            return
        with self._lock, self._faults():
            if self._schema_version is None:
                with self.engine().connect() as raw:
                    conn = raw.execution_options(**{WRITE_OPTION: True})
                    with conn.begin():
                        self._schema_version = schema.ensure_schema(conn)

    def engine(self) -> Engine:
        """The engine, created on first use (in the process that uses it)."""
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        if self.path is not None:
            return self._sqlite_engine(self.path)
        timeout_ms = max(1, math.ceil(self.timeout * 1000))
        return create_engine(
            self.url,
            hide_parameters=True,  # a failing statement's message never carries a value
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(2, math.ceil(self.timeout)),
                "options": f"-c lock_timeout={timeout_ms}",
                "application_name": "backend-token-store",
            },
        )

    def _sqlite_engine(self, path: Path) -> Engine:
        create_private_file(path)
        engine = create_engine(
            self.url,
            hide_parameters=True,
            connect_args={"timeout": self.timeout},  # sqlite3's busy timeout
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: object) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    # ------------------------------------------------------------------ faults

    @contextlib.contextmanager
    def _faults(self) -> Iterator[None]:
        """Turn driver and file errors into TokenStoreError with one clear line."""
        try:
            yield
        except TokenError:
            raise
        except DBAPIError as error:
            raise TokenStoreError(self._explain(error.orig or error)) from None
        except SQLAlchemyError as error:
            raise TokenStoreError(f"{self.description} failed: {_first_line(error)}") from None
        except OSError as error:
            raise TokenStoreError(
                f"cannot open {self.description}: {error.strerror or error}"
            ) from None
        except Exception as error:
            if self._is_driver_error(error):
                raise TokenStoreError(self._explain(error)) from None
            raise

    def _is_driver_error(self, error: BaseException) -> bool:
        dbapi = self._engine.dialect.dbapi if self._engine is not None else None
        base = getattr(dbapi, "Error", None)
        return isinstance(base, type) and isinstance(error, base)

    def _explain(self, error: BaseException) -> str:
        message = _first_line(error)
        lowered = message.lower()
        code = getattr(getattr(error, "diag", None), "sqlstate", None) or getattr(
            error, "sqlstate", None
        )
        if "locked" in lowered or code == "55P03":
            return (
                f"{self.description} is locked by another process (waited {self.timeout:g} s): "
                "try again, or raise TOKEN_STORE_TIMEOUT"
            )
        if "not a database" in lowered or "malformed" in lowered or "disk image" in lowered:
            return (
                f"{self.description} is corrupted ({message}): restore it from a backup, or "
                "move it away to start with an empty store"
            )
        if "unable to open" in lowered:
            return f"cannot open {self.description} ({message}): check DATA_DIR"
        if self.kind == "postgresql" and (
            "connection" in lowered or "timeout" in lowered or "could not" in lowered
        ):
            return f"cannot reach {self.description}: {message}"
        return f"{self.description} failed: {message}"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def create_private_file(path: Path, *, posix_modes: bool = os.name == "posix") -> None:
    """Create the database file 0600 (its directory 0700); tighten an existing looser file.

    Where modes mean nothing (Windows: ``posix_modes`` False) the file only is created."""
    if not path.parent.exists():
        ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if posix_modes and stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)  # through the descriptor: no race with a renamed path
            logger.warning("token store %s was readable by others: set its mode to 0600", path)
    finally:
        os.close(fd)
