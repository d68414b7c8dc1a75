"""The token service's failures: each message is one line and never holds a secret.

Front ends map them to exit statuses: bad values are ``utils.port_manager.InvalidValue``
(exit 2), everything here is a fault or an answer (exit 1).
"""

from __future__ import annotations

from collections.abc import Sequence


class TokenError(Exception):
    """Base of every token-service failure; ``str()`` is one line, safe to log."""


class NotConnected(TokenError):
    """No token is stored for this (user, provider)."""

    def __init__(self, user_id: str, provider: str) -> None:
        self.user_id = user_id
        self.provider = provider
        super().__init__(f"not connected: user {user_id!r} has no {provider!r} token")


class TokenStoreError(TokenError):
    """The store cannot be used: unreachable, locked, corrupted or of a newer schema."""


class DecryptionFailed(TokenError):
    """Rows that none of the configured keys can decrypt; nothing was changed."""

    def __init__(self, rows: Sequence[tuple[str, str]]) -> None:
        self.rows = tuple(rows)
        named = ", ".join(f"user {user!r} provider {provider!r}" for user, provider in self.rows)
        count = len(self.rows)
        super().__init__(
            f"cannot decrypt {count} token{'s' if count != 1 else ''} with the configured "
            f"TOKEN_ENCRYPTION_KEYS ({named}): the key they were encrypted with is missing "
            "or wrong; nothing was changed"
        )


class RefreshError(Exception):
    """Raised by a refresh function with the provider's answer (e.g. ``invalid_grant``)."""


class RefreshFailed(TokenError):
    """The refresh function failed; the old token is kept and ``reason`` says why."""

    def __init__(self, user_id: str, provider: str, reason: str) -> None:
        self.user_id = user_id
        self.provider = provider
        self.reason = reason
        super().__init__(
            f"refreshing the {provider!r} token of user {user_id!r} failed: {reason} "
            "(the old token is kept)"
        )
