"""The store's files, keys and faults: private modes, WAL, corrupted/locked/unreachable."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backend.services.integrations import factory
from backend.services.integrations.errors import TokenStoreError
from backend.services.integrations.keys import KEY_FILE_NAME, KeyRing
from backend.services.integrations.records import TokenSet
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService
from backend.settings import load_settings
from tests.conftest import LINUX, WINDOWS, fresh_port, needs
from tests.tokens.conftest import PostgresServer, new_key
from utils.errors import InvalidValue

TOKEN = TokenSet.expiring_in("plain-access", 3600, "plain-refresh")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sqlite_service(path: Path, timeout: float = 10.0) -> UnifiedTokenService:
    return UnifiedTokenService(
        TokenStore(f"sqlite:///{path}", timeout=timeout), KeyRing([new_key()])
    )


POSIX_MODES = needs(not WINDOWS, "POSIX file modes (Windows: the folder's ACL, docs/tokens.md)")


@POSIX_MODES
def test_database_directory_and_key_are_private_even_with_a_permissive_umask(
    tmp_path: Path, clean_token_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "nested" / "data"
    clean_token_env.setenv("DATA_DIR", str(data))
    previous = os.umask(0)
    try:
        service = factory.token_service()
        service.save("alice", "github", TOKEN)
        with service.store.engine().connect() as conn:  # the -wal/-shm files exist while open
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
            files = {path.name: mode(path) for path in data.iterdir()}
        service.close()
    finally:
        os.umask(previous)
    assert mode(data) == mode(data.parent) == 0o700
    assert files == {
        "tokens.db": 0o600,
        "tokens.db-wal": 0o600,
        "tokens.db-shm": 0o600,
        KEY_FILE_NAME: 0o600,
    }


@POSIX_MODES
def test_an_existing_database_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    path.touch()
    path.chmod(0o644)
    service = sqlite_service(path)
    service.ping()
    service.close()
    assert mode(path) == 0o600


def test_the_development_key_is_generated_once_and_announced_once(
    tmp_path: Path, clean_token_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    caplog.set_level(logging.WARNING)
    first = factory.token_service()
    first.save("alice", "github", TOKEN)
    second = factory.token_service()  # a second worker: reuses the key, says nothing
    assert second.get("alice", "github") == TOKEN
    first.close()
    second.close()
    announcements = [r for r in caplog.records if "generated a development" in r.getMessage()]
    assert len(announcements) == 1
    assert str(tmp_path / KEY_FILE_NAME) in announcements[0].getMessage()
    assert (tmp_path / KEY_FILE_NAME).read_text().strip() not in caplog.text


def test_production_needs_configured_keys(
    tmp_path: Path, clean_token_env: pytest.MonkeyPatch
) -> None:
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    clean_token_env.setenv("APP_ENV", "production")
    with pytest.raises(InvalidValue, match="TOKEN_ENCRYPTION_KEYS is not set: it is required"):
        factory.token_service()
    assert list(tmp_path.iterdir()) == []  # no key generated, no database created

    clean_token_env.setenv("TOKEN_ENCRYPTION_KEYS", f"{new_key().decode()},{new_key().decode()}")
    service = factory.token_service()
    assert len(service.keys.fingerprints) == 2
    service.ping()
    service.close()
    assert not (tmp_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize(
    "keys",
    ["not-a-key", "", " , ", "{good},short", "{good},,{good}", "{good}!"],
)
def test_malformed_keys_are_refused_without_echoing_them(
    keys: str, clean_token_env: pytest.MonkeyPatch
) -> None:
    text = keys.format(good=new_key().decode())
    clean_token_env.setenv("TOKEN_ENCRYPTION_KEYS", text)
    if not text.strip():
        assert load_settings().token_encryption_keys is None  # empty means unset
        return
    with pytest.raises(InvalidValue) as invalid:
        load_settings()
    message = str(invalid.value)
    assert message.startswith("environment variable TOKEN_ENCRYPTION_KEYS=<hidden> is not valid")
    assert "Fernet keys, newest first" in message
    for part in text.split(","):
        assert not part.strip() or part.strip() not in message


def test_a_corrupted_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    service = sqlite_service(path)
    for call in (service.ping, lambda: service.get("alice", "github")):
        with pytest.raises(TokenStoreError) as failure:
            call()
        assert str(failure.value) == (
            f"SQLite token store {path} is corrupted (file is not a database): restore it "
            "from a backup, or move it away to start with an empty store"
        )
        assert failure.value.__cause__ is None and failure.value.__suppress_context__
    service.close()


def test_a_locked_database_is_a_clear_error_and_readers_go_on(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    service = sqlite_service(path, timeout=0.3)
    service.save("alice", "github", TOKEN)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(TokenStoreError, match=r"is locked by another process \(waited 0.3 s\)"):
            service.save("alice", "slack", TOKEN)
        assert service.get("alice", "github") == TOKEN  # WAL: reading does not wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    service.save("alice", "slack", TOKEN)
    service.close()


def test_a_database_path_that_cannot_exist_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.touch()
    service = sqlite_service(blocker / "data" / "tokens.db")
    with pytest.raises(
        TokenStoreError, match=r"cannot open SQLite token store .*: Not a directory"
    ):
        service.ping()


def test_unreachable_postgresql_is_a_clear_error_without_the_password() -> None:
    port = fresh_port()  # nothing listens there
    store = TokenStore(f"postgresql://tokens:s3cret-pw@127.0.0.1:{port}/tokens", timeout=2)
    service = UnifiedTokenService(store, KeyRing([new_key()]))
    with pytest.raises(TokenStoreError) as failure:
        service.ping()
    message = str(failure.value)
    assert message.startswith(f"cannot reach PostgreSQL token store tokens at 127.0.0.1:{port}")
    assert "refused" in message.lower()
    assert "s3cret-pw" not in message + repr(service)
    service.close()


def test_a_locked_postgresql_row_is_a_clear_error(postgres_url: str) -> None:
    import sqlalchemy

    from backend.services.integrations.store import normalise_url

    key = new_key()
    service = UnifiedTokenService(TokenStore(postgres_url, timeout=0.5), KeyRing([key]))
    old = TokenSet("old-access", "refresh", datetime.now(timezone.utc))
    service.save("alice", "github", old)
    other = sqlalchemy.create_engine(normalise_url(postgres_url))
    try:
        with other.begin() as conn:  # another machine is refreshing this row right now
            conn.exec_driver_sql(
                "SELECT * FROM integration_tokens WHERE user_id = 'alice' FOR UPDATE"
            )
            with pytest.raises(TokenStoreError, match=r"is locked by another process"):
                service.get_valid("alice", "github", lambda _: TOKEN)
    finally:
        other.dispose()
    assert service.get("alice", "github") == old
    service.close()


def test_database_url_is_checked_and_never_echoed(clean_token_env: pytest.MonkeyPatch) -> None:
    clean_token_env.setenv("DATABASE_URL", "mysql://root:hunter2@db/tokens")
    with pytest.raises(InvalidValue) as invalid:
        load_settings()
    assert str(invalid.value).startswith("environment variable DATABASE_URL=<hidden> is not valid")
    assert "hunter2" not in str(invalid.value)
    with pytest.raises(InvalidValue, match="must be a file"):
        TokenStore("sqlite://")


def test_postgres_urls_use_psycopg(postgres_server: PostgresServer) -> None:
    for scheme in ("postgres", "postgresql"):
        store = TokenStore(f"{scheme}://postgres@127.0.0.1:{postgres_server.port}/postgres")
        assert store.url.drivername == "postgresql+psycopg"
        assert store.kind == "postgresql"


@needs(not WINDOWS, "a home directory named by HOME (Windows: USERPROFILE)")
def test_the_default_data_directory_is_per_user(
    tmp_path: Path, clean_token_env: pytest.MonkeyPatch
) -> None:
    clean_token_env.setenv("HOME", str(tmp_path / "home"))
    if LINUX:  # the XDG rules, as before platformdirs: a relative XDG_DATA_HOME is ignored
        assert factory.data_dir(load_settings()) == tmp_path / "home/.local/share/portkeeper"
        clean_token_env.setenv("XDG_DATA_HOME", "relative/xdg")
        assert factory.data_dir(load_settings()) == tmp_path / "home/.local/share/portkeeper"
        clean_token_env.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert factory.data_dir(load_settings()) == tmp_path / "xdg/portkeeper"
    else:  # macOS
        expected = tmp_path / "home/Library/Application Support/portkeeper"
        assert factory.data_dir(load_settings()) == expected
    clean_token_env.setenv("DATA_DIR", "~/tokens")
    assert factory.data_dir(load_settings()) == tmp_path / "home/tokens"
    store = factory.token_store(load_settings())
    assert store.path == tmp_path / "home/tokens/tokens.db"
    assert not store.path.parent.exists()  # nothing is created before first use


@needs(WINDOWS, "Windows")
def test_the_default_data_directory_on_windows_is_local_app_data(
    clean_token_env: pytest.MonkeyPatch,
) -> None:
    import os

    found = factory.data_dir(load_settings())
    assert found.name == "portkeeper" and found.is_absolute()
    assert found.parent == Path(os.environ["LOCALAPPDATA"])


def test_where_modes_mean_nothing_the_store_file_is_only_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Windows: st_mode always looks open to others and os.fchmod is missing before
    Python 3.13; the first start must neither crash nor warn (the folder's ACL applies)."""
    from backend.services.integrations.store import create_private_file

    real_fstat = os.fstat

    def windows_fstat(fd: int) -> os.stat_result:  # every file there looks 0o666
        found = list(real_fstat(fd))
        found[0] = stat.S_IFREG | 0o666
        return os.stat_result(found)

    monkeypatch.delattr(os, "fchmod", raising=False)
    monkeypatch.setattr(os, "fstat", windows_fstat)
    path = tmp_path / "data" / "tokens.db"
    caplog.set_level(logging.WARNING)
    create_private_file(path, posix_modes=False)
    create_private_file(path, posix_modes=False)  # the second start finds it
    assert path.is_file() and caplog.records == []
