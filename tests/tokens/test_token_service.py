"""UnifiedTokenService against real databases: SQLite files and a PostgreSQL server."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from backend.services.integrations.errors import (
    DecryptionFailed,
    NotConnected,
    RefreshError,
    RefreshFailed,
    TokenStoreError,
)
from backend.services.integrations.keys import KeyRing
from backend.services.integrations.provider_calls import MAX_REASON
from backend.services.integrations.records import HIDDEN, TokenSet
from backend.services.integrations.schema import SCHEMA_VERSION
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService
from tests.tokens.conftest import ServiceFactory, new_key, raw_rows
from tests.tokens.test_scrub import assert_no_form
from utils.errors import InvalidValue

ACCESS = "ya29.access-PLAINTEXT-0001"
REFRESH = "1//refresh-PLAINTEXT-0002"


def hour_token(access: str = ACCESS, refresh: str | None = REFRESH) -> TokenSet:
    return TokenSet.expiring_in(access, 3600, refresh, scopes=["repo", "read:user"])


class Recorder:
    """A refresh function that records every call and answers with a numbered token."""

    def __init__(self, fail: Exception | None = None, refresh_token: str | None = None) -> None:
        self.calls: list[TokenSet] = []
        self.fail = fail
        self.refresh_token = refresh_token

    def __call__(self, current: TokenSet) -> TokenSet:
        self.calls.append(current)
        if self.fail is not None:
            raise self.fail
        return TokenSet.expiring_in(f"new-access-{len(self.calls)}", 3600, self.refresh_token)


def test_round_trip(make_service: ServiceFactory) -> None:
    service = make_service()
    tokens = hour_token()
    service.save("alice", "github", tokens)
    service.save("alice", "slack", TokenSet("xoxb-slack-token"))
    assert service.get("alice", "github") == tokens
    assert service.get("alice", "slack") == TokenSet("xoxb-slack-token")

    replaced = TokenSet.expiring_in("second-access", 60, None, ["repo"])
    service.save("alice", "github", replaced)
    assert service.get("alice", "github") == replaced

    listed = service.connections("alice")
    assert [(c.provider, c.state, c.refreshable) for c in listed] == [
        ("github", "connected", False),
        ("slack", "connected", False),
    ]
    assert listed[0].expires_at == replaced.expires_at
    assert listed[1].expires_at is None
    assert service.ping() == SCHEMA_VERSION


def test_raw_database_holds_no_plaintext(make_service: ServiceFactory, store_url: str) -> None:
    service = make_service()
    service.save("alice", "github", hour_token())
    service.save("bob", "google", hour_token("bob-ACCESS-plaintext", "bob-REFRESH-plaintext"))

    dump = repr(raw_rows(store_url, "SELECT * FROM integration_tokens"))
    if store_url.startswith("sqlite"):
        data_dir = Path(store_url.removeprefix("sqlite:///")).parent
        dump += "".join(
            path.read_bytes().decode("latin-1") for path in data_dir.iterdir() if path.is_file()
        )
    for secret in (ACCESS, REFRESH, "bob-ACCESS-plaintext", "bob-REFRESH-plaintext"):
        assert secret not in dump
    assert "alice" in dump and "repo read:user" in dump  # the rest stays queryable


def test_valid_token_is_returned_without_refresh(make_service: ServiceFactory) -> None:
    service = make_service(skew=60)
    service.save("alice", "github", hour_token())
    service.save("alice", "forever", TokenSet("no-expiry-token"))
    refresh = Recorder()
    assert service.get_valid("alice", "github", refresh).access_token == ACCESS
    assert service.get_valid("alice", "forever", refresh).access_token == "no-expiry-token"
    assert refresh.calls == []


def test_expired_or_nearly_expired_token_is_refreshed(make_service: ServiceFactory) -> None:
    service = make_service(skew=60)
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    service.save("alice", "github", TokenSet(ACCESS, REFRESH, past))
    service.save("alice", "slack", TokenSet.expiring_in("slack-old", 30, "slack-refresh"))
    assert service.connections("alice")[0].state == "expired"

    refresh = Recorder()
    fresh = service.get_valid("alice", "github", refresh)
    assert fresh.access_token == "new-access-1"
    assert fresh.refresh_token == REFRESH  # the provider sent none: the old one is kept
    assert refresh.calls[0].refresh_token == REFRESH  # the refresh function got the old set
    assert service.get("alice", "github") == fresh
    assert service.connections("alice")[0].state == "connected"

    # 30 s left is within the 60 s skew: refreshed too; a new refresh token replaces the old.
    rotating = Recorder(refresh_token="slack-refresh-2")
    assert service.get_valid("alice", "slack", rotating).refresh_token == "slack-refresh-2"
    assert len(rotating.calls) == 1
    assert service.get_valid("alice", "slack", rotating).access_token == "new-access-1"
    assert len(rotating.calls) == 1  # now valid: no second refresh


def test_revoke(make_service: ServiceFactory) -> None:
    service = make_service()
    service.save("alice", "github", hour_token())
    service.save("alice", "slack", hour_token())
    service.revoke("alice", "github")
    with pytest.raises(NotConnected):
        service.get("alice", "github")
    assert [c.provider for c in service.connections("alice")] == ["slack"]
    with pytest.raises(NotConnected, match="not connected"):
        service.revoke("alice", "github")


def test_unknown_user_or_provider_is_not_connected(make_service: ServiceFactory) -> None:
    service = make_service()
    service.save("alice", "github", hour_token())
    refresh = Recorder()
    for user, provider in (("nobody", "github"), ("alice", "gitlab")):
        with pytest.raises(
            NotConnected, match=rf"not connected: user '{user}' has no '{provider}'"
        ):
            service.get(user, provider)
        with pytest.raises(NotConnected):
            service.get_valid(user, provider, refresh)
        with pytest.raises(NotConnected):
            service.revoke(user, provider)
    assert refresh.calls == []
    assert service.connections("nobody") == []


def test_failed_refresh_keeps_the_old_token_and_reports_the_provider_error(
    make_service: ServiceFactory,
) -> None:
    service = make_service()
    expired = TokenSet(ACCESS, REFRESH, datetime.now(timezone.utc) - timedelta(seconds=1))
    service.save("alice", "github", expired)

    refused = Recorder(fail=RefreshError("invalid_grant: the refresh token was revoked"))
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", refused)
    assert "invalid_grant: the refresh token was revoked" in str(failure.value)
    assert "old token is kept" in str(failure.value)
    assert service.get("alice", "github") == expired
    (listed,) = service.connections("alice")
    assert listed.last_refresh_error == "invalid_grant: the refresh token was revoked"

    # A refresh function whose error quotes the tokens: the values are removed.
    leaky = Recorder(fail=RuntimeError(f"POST /token refresh_token={REFRESH} failed for {ACCESS}"))
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", leaky)
    assert REFRESH not in str(failure.value) and ACCESS not in str(failure.value)
    assert "RuntimeError" in str(failure.value) and "<hidden>" in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__context__ is None

    # A refresh function that returns something else is a failure too.
    with pytest.raises(RefreshFailed, match="returned str, not a TokenSet"):
        service.get_valid("alice", "github", lambda _current: "not tokens")  # type: ignore[arg-type, return-value]
    assert service.get("alice", "github") == expired

    # The next successful refresh clears the recorded error.
    service.get_valid("alice", "github", Recorder())
    assert service.connections("alice")[0].last_refresh_error is None


# Tokens whose characters change under URL, form, JSON and base64 encoding.
ENCODABLE_ACCESS = "ya29.a0Af/H6+SMBx=Qz9~kLm"
ENCODABLE_REFRESH = '1//0g"refresh\\token é+='


def expired_encodable() -> TokenSet:
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    return TokenSet(ENCODABLE_ACCESS, ENCODABLE_REFRESH, past)


def test_a_provider_error_quoting_the_tokens_encoded_is_stored_and_raised_without_them(
    make_service: ServiceFactory, store_url: str
) -> None:
    service = make_service()
    service.save("alice", "github", expired_encodable())
    basic = base64.b64encode(f"client-id:{ENCODABLE_REFRESH}".encode()).decode()
    message = (
        f"GET https://api.example/user?access_token={quote(ENCODABLE_ACCESS, safe='')} "
        f"returned 401; sent {urlencode({'refresh_token': ENCODABLE_REFRESH})} with "
        f"Authorization: Basic {basic}; body {json.dumps({'token': ENCODABLE_ACCESS})}"
    )
    refused = Recorder(fail=RefreshError(message))
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", refused)
    assert len(refused.calls) == 1

    ((stored,),) = raw_rows(store_url, "SELECT refresh_error FROM integration_tokens")
    assert isinstance(stored, str)
    (listed,) = service.connections("alice")
    for text in (stored, str(failure.value), failure.value.reason, listed.last_refresh_error):
        assert text is not None
        assert_no_form(text, ENCODABLE_ACCESS, ENCODABLE_REFRESH)
        assert "GET https://api.example/user?access_token=<hidden> returned 401" in text
        assert "Authorization: Basic " in text and HIDDEN in text
    assert stored == failure.value.reason == listed.last_refresh_error
    assert len(stored) <= MAX_REASON
    assert service.get("alice", "github").access_token == ENCODABLE_ACCESS  # the old one kept

    # Any other exception's text is scrubbed the same way.
    broken = Recorder(fail=ConnectionError(f"reset by peer at /t?rt={quote(ENCODABLE_REFRESH)}"))
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", broken)
    assert "ConnectionError: reset by peer at /t?rt=<hidden>" in str(failure.value)
    assert_no_form(str(failure.value), ENCODABLE_REFRESH)


def test_a_provider_error_with_control_characters_is_kept_as_one_escaped_line(
    make_service: ServiceFactory,
) -> None:
    service = make_service()
    service.save("alice", "github", expired_encodable())
    refused = Recorder(fail=RefreshError("invalid_grant\x1b[2J\r\nFAKE ROW\x07" + "!" * 1000))
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", refused)
    (listed,) = service.connections("alice")
    reason = listed.last_refresh_error
    assert reason is not None
    assert reason.startswith("invalid_grant\\x1b[2J FAKE ROW\\x07!!!")
    assert reason.isprintable() and len(reason) == MAX_REASON and reason.endswith("...")
    assert str(failure.value).isprintable()


def test_a_failure_recorded_while_waiting_for_the_lock_is_raised_scrubbed(
    make_service: ServiceFactory, store_url: str
) -> None:
    """Another caller recorded a failure between our first read and our lock: that text
    is raised without calling the provider, and scrubbed again (it may predate scrubbing)."""
    service = make_service()
    service.save("alice", "github", expired_encodable())
    basic = base64.b64encode(f"user:{ENCODABLE_ACCESS}".encode()).decode()
    recorded = f"legacy: {ENCODABLE_ACCESS} and Basic {basic}\x1b[2J"
    write = service.store.write

    @contextlib.contextmanager
    def another_caller_failed_first() -> Iterator[object]:
        raw_rows(
            store_url,
            f"UPDATE integration_tokens SET refresh_error = '{recorded}', "
            f"refresh_failed_at = {time.time()}",
        )
        with write() as conn:
            yield conn

    service.store.write = another_caller_failed_first  # type: ignore[method-assign,assignment]
    refresh = Recorder()
    with pytest.raises(RefreshFailed) as failure:
        service.get_valid("alice", "github", refresh)
    assert refresh.calls == []  # the provider was not asked again
    assert_no_form(str(failure.value), ENCODABLE_ACCESS)
    assert "legacy: <hidden> and Basic dXNlcj<hidden>" in str(failure.value)
    assert "\\x1b[2J" in str(failure.value) and str(failure.value).isprintable()


def test_rotation_with_two_keys(make_service: ServiceFactory) -> None:
    old, new = new_key(), new_key()
    before = make_service(old)
    before.save("alice", "github", hour_token())
    before.save("bob", "slack", hour_token("bob-access", None))

    during = make_service(new, old)  # new key first: it encrypts, both decrypt
    assert during.get("alice", "github").access_token == ACCESS
    during.save("carol", "google", hour_token("carol-access"))  # written with the new key
    assert before.keys.decrypt("x") is None
    with pytest.raises(DecryptionFailed):
        before.get("carol", "google")

    assert during.rotate() == 3

    after = make_service(new)  # the old key is gone: every row still opens
    assert after.get("alice", "github").access_token == ACCESS
    assert after.get("bob", "slack").access_token == "bob-access"
    assert after.get("carol", "google").access_token == "carol-access"
    with pytest.raises(DecryptionFailed):
        before.get("alice", "github")


def test_rotation_with_a_wrong_key_names_the_rows_and_changes_nothing(
    make_service: ServiceFactory, store_url: str
) -> None:
    first, second = new_key(), new_key()
    make_service(first).save("alice", "github", hour_token())
    make_service(second).save("bob", "slack", hour_token())
    snapshot = raw_rows(store_url, "SELECT user_id, provider, secret FROM integration_tokens")

    only_second = make_service(second)
    with pytest.raises(DecryptionFailed) as failure:
        only_second.rotate()
    assert failure.value.rows == (("alice", "github"),)
    assert "user 'alice' provider 'github'" in str(failure.value)
    assert "nothing was changed" in str(failure.value)
    assert raw_rows(store_url, "SELECT user_id, provider, secret FROM integration_tokens") == (
        snapshot
    )
    with pytest.raises(DecryptionFailed, match="user 'alice' provider 'github'"):
        only_second.get("alice", "github")
    assert only_second.get("bob", "slack").access_token == ACCESS


def test_a_secret_copied_into_another_row_does_not_decrypt(
    make_service: ServiceFactory, store_url: str
) -> None:
    service = make_service()
    service.save("alice", "github", hour_token("alice-access"))
    service.save("mallory", "github", hour_token("mallory-access"))
    raw_rows(
        store_url,
        "UPDATE integration_tokens SET secret = (SELECT secret FROM integration_tokens "
        "WHERE user_id = 'alice') WHERE user_id = 'mallory'",
    )
    with pytest.raises(DecryptionFailed, match="mallory"):
        service.get("mallory", "github")


def test_schema_version_is_recorded_and_a_newer_one_refused(
    make_service: ServiceFactory, store_url: str
) -> None:
    make_service().ping()
    assert raw_rows(store_url, "SELECT name, value FROM token_store_meta") == [
        ("schema_version", str(SCHEMA_VERSION))
    ]
    raw_rows(store_url, "UPDATE token_store_meta SET value = '99'")
    with pytest.raises(TokenStoreError, match="schema version 99, newer than this code"):
        make_service().ping()


BAD_NAMES = [
    ("", "github", "user id ''"),
    (" alice", "github", "user id ' alice'"),
    ("a" * 256, "github", "user id 'aaaa"),
    ("ali\nce", "github", "user id 'ali\\nce'"),
    ("alice", "GitHub", "provider 'GitHub'"),
    ("alice", "", "provider ''"),
    ("alice", "git hub", "provider 'git hub'"),
    ("alice", "-x", "provider '-x'"),
]


def test_bad_user_or_provider_is_named(tmp_path: Path) -> None:
    # Checked before the store is touched: one backend is enough, and no file appears.
    service = UnifiedTokenService(TokenStore(f"sqlite:///{tmp_path}/t.db"), KeyRing([new_key()]))
    for user, provider, shown in BAD_NAMES:
        calls: list[Callable[[], object]] = [
            partial(service.get, user, provider),
            partial(service.get_valid, user, provider, Recorder()),
            partial(service.save, user, provider, hour_token()),
            partial(service.revoke, user, provider),
        ]
        if shown.startswith("user"):
            calls.append(partial(service.connections, user))
        for call in calls:
            with pytest.raises(InvalidValue, match="is not valid: expected") as invalid:
                call()
            assert shown in str(invalid.value)
    assert not (tmp_path / "t.db").exists()


def test_bad_token_sets_are_refused_without_quoting_them() -> None:
    with pytest.raises(InvalidValue, match="access token is not valid"):
        TokenSet("")
    with pytest.raises(InvalidValue, match="refresh token is not valid"):
        TokenSet("a", "")
    with pytest.raises(InvalidValue, match="timezone-aware"):
        TokenSet("a", None, datetime(2030, 1, 1))  # naive on purpose
    with pytest.raises(InvalidValue, match="scope 'two words'"):
        TokenSet("a", scopes=("two words",))
    assert TokenSet("a", scopes="repo").scopes == ("repo",)  # type: ignore[arg-type]


def test_secrets_never_reach_logs_reprs_or_errors(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)  # statements and rows
    try:
        service = make_service(skew=60)
        tokens = TokenSet(ACCESS, REFRESH, datetime.now(timezone.utc) - timedelta(seconds=5))
        service.save("alice", "github", tokens)
        got = service.get("alice", "github")
        errors = []
        for fail in (RefreshError(f"bad {ACCESS}"), ValueError(REFRESH)):
            with pytest.raises(RefreshFailed) as failure:
                service.get_valid("alice", "github", Recorder(fail=fail))
            errors.append(str(failure.value))
        with pytest.raises(DecryptionFailed) as wrong_key:
            make_service(new_key()).get("alice", "github")
        errors.append(str(wrong_key.value))
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.NOTSET)
    assert "integration_tokens" in caplog.text  # the engine did log its statements
    shown = " ".join([caplog.text, repr(got), str(got), repr(service), *errors])
    assert ACCESS not in shown and REFRESH not in shown
    assert "<hidden>" in repr(got)
    assert repr(got).startswith("TokenSet(access_token=<hidden>, refresh_token=<hidden>")
