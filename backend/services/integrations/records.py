"""The values the token service takes and gives: tokens, connections, checked names.

``TokenSet`` never shows its secrets: its repr and str print ``<hidden>``, so a token
that ends up in a log line or an exception message leaks nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from utils.errors import InvalidValue

ConnectionState = Literal["connected", "expired"]
MAX_USER_ID = 255
MAX_PROVIDER = 64
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9._-]*")
HIDDEN = "<hidden>"


def utc_now() -> datetime:
    """Now, timezone-aware (every time the service handles is UTC)."""
    return datetime.now(timezone.utc)


def from_epoch(seconds: float | None) -> datetime | None:
    """A stored epoch timestamp as an aware UTC datetime."""
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """``2025-06-01T12:00:00Z``: the one time format of the operator output."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_user_id(value: object, what: str = "user id") -> str:
    """A user id: 1-255 printable characters without surrounding spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_USER_ID
        or value != value.strip()
        or not value.isprintable()
    ):
        raise InvalidValue(
            f"{what} {value!r} is not valid: expected 1 to {MAX_USER_ID} printable "
            "characters without leading or trailing spaces"
        )
    return value


def check_provider(value: object, what: str = "provider") -> str:
    """A provider name such as ``github`` or ``google-drive`` (lower case, max 64)."""
    if not isinstance(value, str) or len(value) > MAX_PROVIDER or not _PROVIDER.fullmatch(value):
        raise InvalidValue(
            f"{what} {value!r} is not valid: expected 1 to {MAX_PROVIDER} characters "
            "a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _secret(value: object, what: str) -> str:
    # The value itself is never quoted: it is (or may be) a secret.
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"{what} is not valid: expected a non-empty string")
    return value


def _moment(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidValue(
            f"expires_at {value!r} is not valid: expected a timezone-aware datetime or None"
        )
    return value.astimezone(timezone.utc)


def _scopes(value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise InvalidValue(f"scopes {value!r} are not valid: expected strings")
    scopes = tuple(items)
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise InvalidValue(
                f"scope {scope!r} is not valid: expected a non-empty string without spaces"
            )
    return scopes


@dataclass(frozen=True, repr=False)
class TokenSet:
    """An OAuth grant: access token, optional refresh token, expiry (None: none known), scopes."""

    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "access_token", _secret(self.access_token, "access token"))
        if self.refresh_token is not None:
            object.__setattr__(self, "refresh_token", _secret(self.refresh_token, "refresh token"))
        object.__setattr__(self, "expires_at", _moment(self.expires_at))
        object.__setattr__(self, "scopes", _scopes(self.scopes))

    @classmethod
    def expiring_in(
        cls,
        access_token: str,
        seconds: float,
        refresh_token: str | None = None,
        scopes: Iterable[str] = (),
    ) -> TokenSet:
        """From an OAuth token response's ``expires_in``."""
        expires_at = utc_now() + timedelta(seconds=seconds)
        return cls(access_token, refresh_token, expires_at, tuple(scopes))

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """True if the token expires within ``seconds`` of ``now`` (never without an expiry)."""
        if self.expires_at is None:
            return False
        return self.expires_at - (now or utc_now()) <= timedelta(seconds=seconds)

    def __repr__(self) -> str:
        refresh = HIDDEN if self.refresh_token else None
        return (
            f"TokenSet(access_token={HIDDEN}, refresh_token={refresh}, "
            f"expires_at={iso(self.expires_at)}, scopes={self.scopes!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ConnectionInfo:
    """What an operator or a settings page may see of a stored token: never a secret."""

    user_id: str
    provider: str
    state: ConnectionState
    expires_at: datetime | None
    scopes: tuple[str, ...]
    refreshable: bool
    updated_at: datetime
    last_refresh_error: str | None

    def as_json(self) -> dict[str, object]:
        """The ``tokens list --json`` row."""
        return {
            "user": self.user_id,
            "provider": self.provider,
            "state": self.state,
            "expires_at": iso(self.expires_at),
            "refreshable": self.refreshable,
            "scopes": list(self.scopes),
            "updated_at": iso(self.updated_at),
            "last_refresh_error": self.last_refresh_error,
        }
