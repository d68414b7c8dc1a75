"""Operator commands behind ``invoke tokens.*``: validate, act, print, return the exit status.

Exit statuses follow the port tools: 0 done, 1 a fault or "not connected" (one line on
stderr), 2 a bad flag or setting. No command ever prints a token or a key it reads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from backend.services.integrations.errors import TokenError
from backend.services.integrations.records import ConnectionInfo, check_provider, check_user_id, iso
from utils import render
from utils.errors import EXIT_OK, InvalidValue, guarded


def _guarded(action: Callable[[], int]) -> int:
    return guarded(action, (TokenError,))


def _required(value: str | None, flag: str, allowed: str) -> str:
    if value is None:
        raise InvalidValue(f"{flag} is required: expected {allowed}")
    return value


def _table(rows: list[ConnectionInfo]) -> str:
    header = ("USER", "PROVIDER", "STATE", "EXPIRES", "REFRESHABLE", "LAST REFRESH ERROR")
    cells = [
        (
            row.user_id,
            row.provider,
            row.state,
            iso(row.expires_at) or "never",
            "yes" if row.refreshable else "no",
            row.last_refresh_error or "-",
        )
        for row in rows
    ]
    return render.table(header, cells, render.colour_enabled(sys.stdout))


def run_list(user: str | None = None, as_json: bool = False) -> int:
    """``tokens.list [--user U] [--json]``: provider, state and expiry, never a secret."""

    def action() -> int:
        from backend.services.integrations.factory import token_service

        user_id = check_user_id(user, "--user") if user is not None else None
        service = token_service()
        try:
            rows = service.connections(user_id) if user_id else service.all_connections()
        finally:
            service.close()
        if as_json:
            render.emit_json([row.as_json() for row in rows])
        elif rows:
            print(_table(rows))
        else:
            print("No stored tokens" + (f" for user {user_id!r}." if user_id else "."))
        return EXIT_OK

    return _guarded(action)


def run_revoke(user: str | None = None, provider: str | None = None) -> int:
    """``tokens.revoke --user U --provider P``: 0 revoked, 1 not connected."""

    def action() -> int:
        from backend.services.integrations.factory import token_service

        user_id = check_user_id(_required(user, "--user", "a user id"), "--user")
        name = check_provider(_required(provider, "--provider", "a provider name"), "--provider")
        service = token_service()
        try:
            service.revoke(user_id, name)
        finally:
            service.close()
        print(f"Revoked the {name!r} token of user {user_id!r}.")
        return EXIT_OK

    return _guarded(action)


def run_rotate_key() -> int:
    """``tokens.rotate-key``: re-encrypt every token with the newest key (all or nothing)."""

    def action() -> int:
        from backend.services.integrations.factory import token_service

        service = token_service()
        try:
            count = service.rotate()
        finally:
            service.close()
        keys = service.keys.fingerprints
        print(
            f"Re-encrypted {count} token{'s' if count != 1 else ''} with key {keys[0]} "
            f"(the newest of {len(keys)} key{'s' if len(keys) != 1 else ''}); "
            "older keys can now be removed from TOKEN_ENCRYPTION_KEYS."
        )
        return EXIT_OK

    return _guarded(action)


def run_new_key() -> int:
    """``tokens.new-key``: print a fresh key to put first in TOKEN_ENCRYPTION_KEYS."""
    from backend.services.integrations.keys import new_key

    print(new_key())
    return EXIT_OK
