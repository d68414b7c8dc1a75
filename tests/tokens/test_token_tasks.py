"""``invoke tokens.*``: the operator commands, on both databases, and their exit statuses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest

from backend.services.integrations import token_commands
from backend.services.integrations.errors import RefreshError, RefreshFailed
from backend.services.integrations.keys import KeyRing
from backend.services.integrations.records import TokenSet
from backend.services.integrations.store import TokenStore
from backend.services.integrations.unified_token_service import UnifiedTokenService
from tests.conftest import PYTHON, ROOT, run_invoke
from tests.tokens.conftest import new_key, raw_rows, subprocess_env
from tests.tokens.test_scrub import assert_no_form

SECRET = "gho_PLAINTEXT_ACCESS_TOKEN"


def seed(url: str, key: bytes) -> None:
    """alice: github (valid, refreshable) and slack (expired); bob: google (no expiry)."""
    service = UnifiedTokenService(TokenStore(url), KeyRing([key]))
    try:
        service.save(
            "alice", "github", TokenSet.expiring_in(SECRET, 3600, "refresh-secret", ["repo"])
        )
        past = datetime.now(timezone.utc) - timedelta(hours=1)
        service.save("alice", "slack", TokenSet("xoxb-secret", None, past))
        service.save("bob", "google", TokenSet("ya29-secret"))
    finally:
        service.close()


@pytest.fixture
def operator_env(
    store_url: str, tmp_path: Path, clean_token_env: pytest.MonkeyPatch
) -> tuple[str, bytes]:
    """The settings of an operator shell: this store, one configured key."""
    key = new_key()
    clean_token_env.setenv("DATABASE_URL", store_url)
    clean_token_env.setenv("DATA_DIR", str(tmp_path / "unused"))
    clean_token_env.setenv("TOKEN_ENCRYPTION_KEYS", key.decode())
    return store_url, key


def test_list_shows_state_and_expiry_never_secrets(
    operator_env: tuple[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    seed(*operator_env)
    assert token_commands.run_list(as_json=True) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert err == ""
    assert [(r["user"], r["provider"], r["state"]) for r in rows] == [
        ("alice", "github", "connected"),
        ("alice", "slack", "expired"),
        ("bob", "google", "connected"),
    ]
    assert set(rows[0]) == {
        "user",
        "provider",
        "state",
        "expires_at",
        "refreshable",
        "scopes",
        "updated_at",
        "last_refresh_error",
    }
    assert rows[0]["expires_at"].endswith("Z") and rows[0]["refreshable"] is True
    assert rows[0]["scopes"] == ["repo"] and rows[2]["expires_at"] is None

    assert token_commands.run_list(user="bob") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "USER",
        "PROVIDER",
        "STATE",
        "EXPIRES",
        "REFRESHABLE",
        "LAST",
        "REFRESH",
        "ERROR",
    ]
    assert table[1].split()[:4] == ["bob", "google", "connected", "never"]
    assert len(table) == 2

    assert token_commands.run_list(user="nobody") == 0
    assert capsys.readouterr().out == "No stored tokens for user 'nobody'.\n"
    assert token_commands.run_list(user="nobody", as_json=True) == 0
    assert capsys.readouterr().out == "[]\n"
    for secret in (SECRET, "refresh-secret", "xoxb-secret", "ya29-secret"):
        assert secret not in out + "\n".join(table)


def test_revoke(operator_env: tuple[str, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    seed(*operator_env)
    assert token_commands.run_revoke(user="alice", provider="slack") == 0
    assert capsys.readouterr().out == "Revoked the 'slack' token of user 'alice'.\n"
    assert token_commands.run_revoke(user="alice", provider="slack") == 1
    assert capsys.readouterr().err == ("error: not connected: user 'alice' has no 'slack' token\n")
    token_commands.run_list(as_json=True)
    assert [r["provider"] for r in json.loads(capsys.readouterr().out)] == ["github", "google"]


@pytest.mark.parametrize(
    ("user", "provider", "message"),
    [
        (None, "github", "error: --user is required: expected a user id\n"),
        ("alice", None, "error: --provider is required: expected a provider name\n"),
        ("", "github", "error: --user '' is not valid: expected 1 to 255 printable"),
        ("alice", "Git Hub", "error: --provider 'Git Hub' is not valid: expected 1 to 64"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    user: str | None,
    provider: str | None,
    message: str,
    clean_token_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    assert token_commands.run_revoke(user=user, provider=provider) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_bad_settings_exit_2_with_one_line(
    clean_token_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_token_env.setenv("DATA_DIR", str(tmp_path))
    for name, value, expected in (
        ("TOKEN_REFRESH_SKEW", "soon", "TOKEN_REFRESH_SKEW='soon' is not valid: expected an"),
        ("TOKEN_REFRESH_SKEW", "-1", "TOKEN_REFRESH_SKEW='-1' is not valid"),
        ("TOKEN_STORE_TIMEOUT", "0", "TOKEN_STORE_TIMEOUT='0' is not valid: expected a number"),
        ("DATABASE_URL", "mysql://root:hunter2@db/x", "DATABASE_URL=<hidden> is not valid"),
        ("TOKEN_ENCRYPTION_KEYS", "hunter2", "TOKEN_ENCRYPTION_KEYS=<hidden> is not valid"),
    ):
        with clean_token_env.context() as env:
            env.setenv(name, value)
            assert token_commands.run_list() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: environment variable {expected}") and err.count("\n") == 1
        assert "hunter2" not in err


def test_rotate_key_with_two_keys(
    operator_env: tuple[str, bytes],
    clean_token_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, old = operator_env
    seed(url, old)
    new = new_key()
    clean_token_env.setenv("TOKEN_ENCRYPTION_KEYS", f"{new.decode()},{old.decode()}")
    assert token_commands.run_rotate_key() == 0
    out = capsys.readouterr().out
    ring = KeyRing([new, old])
    assert out.startswith(f"Re-encrypted 3 tokens with key {ring.newest} (the newest of 2 keys)")
    newest_only = UnifiedTokenService(TokenStore(url), KeyRing([new]))
    assert newest_only.get("alice", "github").access_token == SECRET
    newest_only.close()


def test_rotate_key_with_a_wrong_key_names_the_rows_and_exits_1(
    operator_env: tuple[str, bytes],
    clean_token_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, key = operator_env
    seed(url, key)
    before = raw_rows(url, "SELECT user_id, provider, secret FROM integration_tokens")
    clean_token_env.setenv("TOKEN_ENCRYPTION_KEYS", new_key().decode())
    assert token_commands.run_rotate_key() == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: cannot decrypt 3 tokens with the configured")
    for row in ("user 'alice' provider 'github'", "user 'alice' provider 'slack'", "user 'bob'"):
        assert row in err
    assert "nothing was changed" in err and err.count("\n") == 1
    assert raw_rows(url, "SELECT user_id, provider, secret FROM integration_tokens") == before


def test_new_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert token_commands.run_new_key() == 0
    key = capsys.readouterr().out.strip()
    assert KeyRing([key.encode()]).decrypt(KeyRing([key.encode()]).encrypt(b"x")) == b"x"


# ----------------------------------------------------------------- real invoke processes


def test_invoke_tokens_list_json_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    key = new_key()
    seed(postgres_url, key)
    env = subprocess_env(
        DATABASE_URL=postgres_url, TOKEN_ENCRYPTION_KEYS=key.decode(), DATA_DIR=str(tmp_path)
    )
    result = run_invoke("tokens.list", "--user", "alice", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert [r["provider"] for r in json.loads(result.stdout)] == ["github", "slack"]
    assert SECRET not in result.stdout + result.stderr


ENCODABLE_ACCESS = "ya29.a0Af/H6+SMBx=Qz9~kLm"  # changes under URL encoding
ENCODABLE_REFRESH = "1//0gRefresh+Token=="


def fail_refresh(url: str, key: bytes, user: str, message: str) -> RefreshFailed:
    """Store an expired token for ``user`` and have its refresh fail with ``message``."""
    service = UnifiedTokenService(TokenStore(url), KeyRing([key]))
    past = datetime.now(timezone.utc) - timedelta(hours=1)

    def refuse(_current: TokenSet) -> TokenSet:
        raise RefreshError(message)

    try:
        service.save(user, "github", TokenSet(ENCODABLE_ACCESS, ENCODABLE_REFRESH, past))
        with pytest.raises(RefreshFailed) as failure:
            service.get_valid(user, "github", refuse)
    finally:
        service.close()
    return failure.value


def test_invoke_tokens_list_shows_no_form_of_a_token_quoted_by_the_provider(
    store_url: str, tmp_path: Path
) -> None:
    key = new_key()
    url_encoded = quote(ENCODABLE_ACCESS, safe="")
    assert url_encoded != ENCODABLE_ACCESS
    failure = fail_refresh(
        store_url,
        key,
        "alice",
        f"GET https://api.example/user?access_token={url_encoded}&rt="
        f"{quote(ENCODABLE_REFRESH, safe='')} returned 401 Unauthorized",
    )
    ((stored,),) = raw_rows(store_url, "SELECT refresh_error FROM integration_tokens")
    assert isinstance(stored, str)
    expected = "GET https://api.example/user?access_token=<hidden>&rt=<hidden> returned 401"
    assert stored.startswith(expected)

    env = subprocess_env(
        DATABASE_URL=store_url, TOKEN_ENCRYPTION_KEYS=key.decode(), DATA_DIR=str(tmp_path)
    )
    human = run_invoke("tokens.list", env=env)
    as_json = run_invoke("tokens.list", "--json", env=env)
    assert human.returncode == 0 and as_json.returncode == 0, human.stderr + as_json.stderr
    assert expected in human.stdout
    assert json.loads(as_json.stdout)[0]["last_refresh_error"] == stored
    for text in (
        stored,
        str(failure),
        human.stdout + human.stderr,
        as_json.stdout + as_json.stderr,
    ):
        assert_no_form(text, ENCODABLE_ACCESS, ENCODABLE_REFRESH)


def test_invoke_tokens_list_shows_a_provider_message_escaped_on_one_line(
    store_url: str, tmp_path: Path
) -> None:
    key = new_key()
    fail_refresh(store_url, key, "alice", "invalid_grant\x1b]0;pwned\x07\r\nbob  github  ok")
    env = subprocess_env(
        DATABASE_URL=store_url, TOKEN_ENCRYPTION_KEYS=key.decode(), DATA_DIR=str(tmp_path)
    )
    human = run_invoke("tokens.list", env=env)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert len(lines) == 2  # the header and alice's row: the message made no row of its own
    assert lines[1].endswith("invalid_grant\\x1b]0;pwned\\x07 bob github ok")
    assert "\x1b" not in human.stdout and "\r" not in human.stdout and "\x07" not in human.stdout

    as_json = run_invoke("tokens.list", "--json", env=env)
    (row,) = json.loads(as_json.stdout)
    assert row["last_refresh_error"] == "invalid_grant\\x1b]0;pwned\\x07 bob github ok"


def test_invoke_faults_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "tokens.db").write_bytes(b"garbage " * 1000)
    (tmp_path / "tokens.db").chmod(0o600)
    env = subprocess_env(DATA_DIR=str(tmp_path), TOKEN_ENCRYPTION_KEYS=new_key().decode())
    result = run_invoke("tokens.revoke", "--user", "alice", "--provider", "github", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: SQLite token store {tmp_path / 'tokens.db'} is corrupted"
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_invoke_rotate_key_refuses_a_wrong_key(tmp_path: Path) -> None:
    seed(f"sqlite:///{tmp_path / 'tokens.db'}", new_key())
    env = subprocess_env(DATA_DIR=str(tmp_path), TOKEN_ENCRYPTION_KEYS=new_key().decode())
    result = run_invoke("tokens.rotate-key", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot decrypt 3 tokens")
    assert "Traceback" not in result.stderr


def test_production_start_with_a_malformed_key_exits_2(tmp_path: Path) -> None:
    import subprocess

    leaked = new_key().decode()[:-2]  # 31 bytes: not a key
    env = subprocess_env(APP_ENV="production", DATA_DIR=str(tmp_path), TOKEN_ENCRYPTION_KEYS=leaked)
    for command in (
        [PYTHON, "-m", "backend", "--production"],
        [PYTHON, "-m", "invoke", "tokens.list"],
    ):
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 2
        assert result.stderr.startswith(
            "error: environment variable TOKEN_ENCRYPTION_KEYS=<hidden> is not valid"
        )
        assert result.stderr.count("\n") == 1 and leaked not in result.stderr


def test_production_without_a_key_exits_2(tmp_path: Path) -> None:
    env = subprocess_env(APP_ENV="production", DATA_DIR=str(tmp_path))
    result = run_invoke("tokens.list", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "error: TOKEN_ENCRYPTION_KEYS is not set: it is required in production "
        "(comma-separated Fernet keys, newest first; make one with invoke tokens.new-key)\n"
    )
    assert list(tmp_path.iterdir()) == []
