"""The token store's tables and the schema version recorded for later migrations.

One row per (user, provider). Both tokens are encrypted together in ``secret`` with the
user and provider inside the ciphertext, so a value copied into another row does not
decrypt as that row's token. Expiry and scopes stay readable: listing connections
never needs a key.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)

from backend.services.integrations.errors import TokenStoreError
from backend.services.integrations.records import MAX_PROVIDER, MAX_USER_ID

SCHEMA_VERSION = 1
# pg_advisory_xact_lock key: serialises first-use schema creation between workers/machines.
SCHEMA_LOCK_KEY = 0x70_6B_74_6B  # "pktk"

metadata = MetaData()

tokens_table = Table(
    "integration_tokens",
    metadata,
    Column("user_id", String(MAX_USER_ID), primary_key=True),
    Column("provider", String(MAX_PROVIDER), primary_key=True),
    Column("secret", Text, nullable=False),  # Fernet: JSON of user, provider, both tokens
    Column("expires_at", Double, nullable=True),  # epoch seconds; NULL: no known expiry
    Column("scopes", Text, nullable=False),  # space-separated, as OAuth writes them
    Column("refreshable", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("refresh_error", Text, nullable=True),  # last failed refresh: provider's answer
    Column("refresh_failed_at", Double, nullable=True),
)

meta_table = Table(
    "token_store_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def ensure_schema(conn: Connection) -> int:
    """Create the tables on first use and return the recorded schema version.

    Runs inside a write transaction; on PostgreSQL an advisory lock makes concurrent
    first starts wait for each other instead of racing to create the same tables.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
    metadata.create_all(conn, checkfirst=True)
    version = read_version(conn)
    if version is None:
        conn.execute(insert(meta_table).values(name="schema_version", value=str(SCHEMA_VERSION)))
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise TokenStoreError(
            f"the token store has schema version {version}, newer than this code "
            f"understands ({SCHEMA_VERSION}): upgrade the backend"
        )
    return version


def read_version(conn: Connection) -> int | None:
    """The recorded schema version, or None before the first use."""
    value = conn.execute(
        select(meta_table.c.value).where(meta_table.c.name == "schema_version")
    ).scalar()
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise TokenStoreError(
            f"the token store records schema version {value!r}, which is not a number: "
            "the database is damaged"
        ) from None
