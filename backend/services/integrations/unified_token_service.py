"""The one owner of the backend's integration tokens: save, get, refresh once, revoke, list.

Everything that touches a third-party token goes through ``UnifiedTokenService``: tokens
are encrypted at rest (``keys.KeyRing``), never logged or shown (``TokenSet``'s repr
hides them, store errors carry no values), and refreshed exactly once however many
callers ask at the same moment.

Refreshing once, across threads, worker processes and machines: ``get_valid`` first
reads without a lock; a token that is not within ``skew`` seconds of its expiry is
returned at once. Otherwise it opens a write transaction that serialises refreshers -
``BEGIN IMMEDIATE`` on SQLite (the database's single write lock), ``SELECT ... FOR
UPDATE`` of the row on PostgreSQL - and reads the row again under that lock:

- another caller refreshed it meanwhile: the new token is returned, ``refresh`` is not
  called;
- another caller's refresh failed meanwhile (the row records a failure other than the
  one the first read saw): that error is raised without asking the provider again;
- otherwise this caller calls ``refresh`` while holding the lock and commits the new
  token; the others are waiting for it. A failed refresh keeps the old token and
  records the provider's answer, with both tokens removed from it in every encoding
  (``scrub.safe_line``) before it is stored or raised.

The lock is held while the provider answers, so the refresh function must finish (time
out) within ``TOKEN_STORE_TIMEOUT``, which bounds how long the others wait. On SQLite
this briefly holds up every writer of the file (readers never wait, thanks to WAL);
on PostgreSQL only that one row.

The API is synchronous (SQLAlchemy Core); async code calls it through
``starlette.concurrency.run_in_threadpool``, as ``/ready`` does.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from backend.services.integrations.errors import (
    DecryptionFailed,
    NotConnected,
    RefreshFailed,
)
from backend.services.integrations.keys import KeyRing
from backend.services.integrations.provider_calls import Refresh, call_refresh, stored_reason
from backend.services.integrations.records import (
    ConnectionInfo,
    TokenSet,
    check_provider,
    check_user_id,
    from_epoch,
    utc_now,
)
from backend.services.integrations.schema import tokens_table
from backend.services.integrations.store import TokenStore
from backend.setting_specs import TOKEN_REFRESH_SKEW

DEFAULT_SKEW = float(TOKEN_REFRESH_SKEW.default)


class UnifiedTokenService:
    """Encrypted (user, provider) -> TokenSet store with single-flight refresh."""

    def __init__(self, store: TokenStore, keys: KeyRing, *, skew: float = DEFAULT_SKEW) -> None:
        self.store = store
        self.keys = keys
        self.skew = skew

    def __repr__(self) -> str:
        return f"UnifiedTokenService({self.store!r}, {self.keys!r}, skew={self.skew:g})"

    # ------------------------------------------------------------------ API

    def save(self, user_id: str, provider: str, tokens: TokenSet) -> None:
        """Store (or replace) the tokens of a connection; clears any recorded refresh error."""
        user_id, provider = check_user_id(user_id), check_provider(provider)
        if not isinstance(tokens, TokenSet):
            raise TypeError(f"tokens must be a TokenSet, not {type(tokens).__name__}")
        values = self._row_values(user_id, provider, tokens)
        with self.store.write() as conn:
            statement = (pg_insert if self.store.kind == "postgresql" else sqlite_insert)(
                tokens_table
            ).values(user_id=user_id, provider=provider, **values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[tokens_table.c.user_id, tokens_table.c.provider], set_=values
                )
            )

    def get(self, user_id: str, provider: str) -> TokenSet:
        """The stored tokens, expired or not; NotConnected if there are none."""
        user_id, provider = check_user_id(user_id), check_provider(provider)
        with self.store.read() as conn:
            row = self._select(conn, user_id, provider, lock=False)
        return self._decode(row, user_id, provider)

    def get_valid(self, user_id: str, provider: str, refresh: Refresh) -> TokenSet:
        """Tokens not within ``skew`` of expiry, refreshed through ``refresh`` once if needed.

        ``refresh`` gets the current tokens and returns new ones (raise ``RefreshError``
        with the provider's answer on failure). A new set without a refresh token keeps
        the old refresh token, as OAuth providers expect.
        """
        user_id, provider = check_user_id(user_id), check_provider(provider)
        with self.store.read() as conn:
            seen = self._select(conn, user_id, provider, lock=False)
        current = self._decode(seen, user_id, provider)
        if not current.expires_within(self.skew):
            return current
        with self.store.write() as conn:
            row = self._select(conn, user_id, provider, lock=True)
            current = self._decode(row, user_id, provider)
            if not current.expires_within(self.skew):
                return current  # another caller refreshed it while we waited for the lock
            if row.refresh_failed_at not in (None, seen.refresh_failed_at):
                # It failed while we waited. Scrubbed again: the row may predate scrubbing.
                failure = stored_reason(row.refresh_error or "unknown error", current)
            else:
                fresh, failure = call_refresh(refresh, current)
                if fresh is not None:
                    if fresh.refresh_token is None and current.refresh_token is not None:
                        fresh = replace(fresh, refresh_token=current.refresh_token)
                    values = self._row_values(user_id, provider, fresh)
                    conn.execute(self._update(user_id, provider).values(**values))
                    return fresh
                conn.execute(
                    self._update(user_id, provider).values(
                        refresh_error=failure, refresh_failed_at=time.time()
                    )
                )
        raise RefreshFailed(user_id, provider, failure)

    def revoke(self, user_id: str, provider: str) -> None:
        """Forget the tokens of a connection; NotConnected if there were none."""
        user_id, provider = check_user_id(user_id), check_provider(provider)
        with self.store.write() as conn:
            result = conn.execute(
                delete(tokens_table).where(
                    tokens_table.c.user_id == user_id, tokens_table.c.provider == provider
                )
            )
        if not result.rowcount:
            raise NotConnected(user_id, provider)

    def connections(self, user_id: str) -> list[ConnectionInfo]:
        """The providers a user is connected to, with state and expiry (no secrets)."""
        user_id = check_user_id(user_id)
        return self._connections(user_id)

    def all_connections(self) -> list[ConnectionInfo]:
        """Every stored connection (operators: ``invoke tokens.list``)."""
        return self._connections(None)

    def rotate(self) -> int:
        """Re-encrypt every row with the newest key, all or nothing; the number of rows.

        Raises DecryptionFailed naming every row no configured key opens, before
        changing anything.
        """
        with self.store.write() as conn:
            rows = conn.execute(
                select(
                    tokens_table.c.user_id, tokens_table.c.provider, tokens_table.c.secret
                ).with_for_update()
            ).all()
            plaintexts = [self.keys.decrypt(row.secret) for row in rows]
            unreadable = [
                (row.user_id, row.provider)
                for row, plain in zip(rows, plaintexts, strict=True)
                if plain is None
            ]
            if unreadable:
                raise DecryptionFailed(unreadable)
            for row, plain in zip(rows, plaintexts, strict=True):
                assert plain is not None
                conn.execute(
                    self._update(row.user_id, row.provider).values(secret=self.keys.encrypt(plain))
                )
        return len(rows)

    def ping(self) -> int:
        """The store's schema version: it is reachable and usable (``/ready``)."""
        return self.store.ping()

    def close(self) -> None:
        self.store.dispose()

    # ------------------------------------------------------------------ rows

    def _row_values(self, user_id: str, provider: str, tokens: TokenSet) -> dict[str, Any]:
        payload = json.dumps(
            {
                "user": user_id,
                "provider": provider,
                "access_token": tokens.access_token,
                "refresh_token": tokens.refresh_token,
            }
        ).encode("utf-8")
        return {
            "secret": self.keys.encrypt(payload),
            "expires_at": tokens.expires_at.timestamp() if tokens.expires_at else None,
            "scopes": " ".join(tokens.scopes),
            "refreshable": tokens.refresh_token is not None,
            "updated_at": time.time(),
            "refresh_error": None,
            "refresh_failed_at": None,
        }

    @staticmethod
    def _select(conn: Connection, user_id: str, provider: str, *, lock: bool) -> Row[Any]:
        statement = select(tokens_table).where(
            tokens_table.c.user_id == user_id, tokens_table.c.provider == provider
        )
        row = conn.execute(statement.with_for_update() if lock else statement).first()
        if row is None:
            raise NotConnected(user_id, provider)
        return row

    @staticmethod
    def _update(user_id: str, provider: str) -> Any:
        return update(tokens_table).where(
            tokens_table.c.user_id == user_id, tokens_table.c.provider == provider
        )

    def _decode(self, row: Row[Any], user_id: str, provider: str) -> TokenSet:
        plain = self.keys.decrypt(row.secret)
        try:
            payload = json.loads(plain) if plain is not None else None
        except ValueError:
            payload = None
        if (
            not isinstance(payload, dict)
            or payload.get("user") != user_id
            or payload.get("provider") != provider
        ):
            raise DecryptionFailed([(user_id, provider)])
        return TokenSet(
            access_token=payload["access_token"],
            refresh_token=payload.get("refresh_token"),
            expires_at=from_epoch(row.expires_at),
            scopes=tuple(row.scopes.split()),
        )

    def _connections(self, user_id: str | None) -> list[ConnectionInfo]:
        columns = [c for c in tokens_table.c if c.name != "secret"]
        statement = select(*columns).order_by(tokens_table.c.user_id, tokens_table.c.provider)
        if user_id is not None:
            statement = statement.where(tokens_table.c.user_id == user_id)
        with self.store.read() as conn:
            rows = conn.execute(statement).all()
        now = utc_now()
        found: list[ConnectionInfo] = []
        for row in rows:
            expires_at = from_epoch(row.expires_at)
            expired = expires_at is not None and expires_at <= now
            found.append(
                ConnectionInfo(
                    user_id=row.user_id,
                    provider=row.provider,
                    state="expired" if expired else "connected",
                    expires_at=expires_at,
                    scopes=tuple(row.scopes.split()),
                    refreshable=bool(row.refreshable),
                    updated_at=from_epoch(row.updated_at) or now,
                    last_refresh_error=row.refresh_error,
                )
            )
        return found
