"""Calling the provider's refresh function: whatever it returns or raises becomes new
tokens or one stored line of reason, with both tokens scrubbed from it in every encoding
(``scrub.safe_line``) before it is stored, raised or shown."""

from __future__ import annotations

from collections.abc import Callable

from backend.services.integrations.errors import RefreshError
from backend.services.integrations.records import TokenSet
from backend.services.integrations.scrub import safe_line

Refresh = Callable[[TokenSet], TokenSet]
MAX_REASON = 300


def call_refresh(refresh: Refresh, current: TokenSet) -> tuple[TokenSet | None, str]:
    """Run the caller's refresh; (new tokens, "") or (None, the reason, secrets removed).

    The reason is provider or library text that may quote the tokens in any encoding; it
    is scrubbed here, before it is stored, raised or shown.
    """
    try:
        fresh: object = refresh(current)
    except RefreshError as error:
        reason = _text(error) or "the provider refused"
    except Exception as error:
        text = _text(error)
        reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        if isinstance(fresh, TokenSet):
            return fresh, ""
        reason = f"the refresh function returned {type(fresh).__name__}, not a TokenSet"
    return None, stored_reason(reason, current)


def _text(error: BaseException) -> str:
    """``str(error)``, or "" if even that fails: a broken ``__str__`` must not escape."""
    try:
        return str(error)
    except Exception:
        return ""


def stored_reason(text: str, current: TokenSet) -> str:
    """Outside text as a stored reason: both tokens scrubbed, one line, ``MAX_REASON`` long."""
    return safe_line(text, (current.access_token, current.refresh_token), MAX_REASON)
