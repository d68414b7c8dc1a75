"""A server start reads the environment without pydantic (``backend/start_settings.py``);
the token store reads it through the pydantic-settings model (``backend/settings.py``).
Both must take the same values and refuse the same ones with the same line, whatever the
environment holds: each environment below is read both ways and compared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from backend import setting_specs as spec
from backend.setting_specs import SETTINGS
from backend.settings import Settings, load_settings
from backend.start_settings import read_start_settings
from utils.errors import InvalidValue

KEY = "Wm9zMUtSZzNsY1hxN0xHbW5SeWJ4aDJQUnNjWTBWQkY="  # a test-only Fernet key

# Values each variable is read with: allowed, refused, blank, and the edges of a range.
VALUES: dict[str, tuple[str, ...]] = {
    "APP_ENV": ("production", " Production ", "staging", ""),
    "PORT": ("8123", "0", "65536", "abc", " 80", "", "1_000"),
    "HOST": ("127.0.0.1", "::1", " ", ""),
    "WEB_CONCURRENCY": ("2", "0", "many"),
    "LOG_LEVEL": ("DEBUG", " info ", "loud", ""),
    "FORWARDED_ALLOW_IPS": ("*", "10.0.0.0/8,127.0.0.1", ""),
    "GRACEFUL_SHUTDOWN_TIMEOUT": ("1", "300", "301", "1.5"),
    "DATABASE_URL": ("sqlite:///x.db", "postgresql://u:s3cret@db/x", "mysql://u:s3cret@db/x", ""),
    "DATA_DIR": ("/tmp/portkeeper", "relative/dir", ""),
    "TOKEN_ENCRYPTION_KEYS": (KEY, f"{KEY}, {KEY}", "not-a-key", f"{KEY},", ""),
    "TOKEN_REFRESH_SKEW": ("0", "3600", "3601", "-1"),
    "TOKEN_STORE_TIMEOUT": ("0.5", "300", "0", "301", "nan", "inf"),
}
ENVIRONMENTS: list[dict[str, str]] = [
    {},
    *({name: value} for name, values in VALUES.items() for value in values),
    {"port": "8124"},  # pydantic-settings reads a name in any case
    {"Log_Level": "loud"},
    {"PORT": "abc", "LOG_LEVEL": "loud"},  # two bad ones: the first declared is named
    {"LOG_LEVEL": "loud", "APP_ENV": "staging"},
    {"PORT": "8125", "HOST": "0.0.0.0", "WEB_CONCURRENCY": "3", "TOKEN_ENCRYPTION_KEYS": KEY},
]


def _comparable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value) if isinstance(value, Path) else value


def _model_reading() -> dict[str, Any] | str:
    """Set variable -> value, as the model reads this process's environment (or its error)."""
    try:
        settings = load_settings()
    except InvalidValue as error:
        return str(error)
    return {name: _comparable(getattr(settings, name)) for name in settings.model_fields_set}


def _start_reading() -> dict[str, Any] | str:
    try:
        return read_start_settings().given()
    except InvalidValue as error:
        return str(error)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without any backend variable, in any case."""
    for name in [name for name in os.environ if name.lower() in Settings.model_fields]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("variables", ENVIRONMENTS, ids=lambda env: repr(env)[:60])
def test_a_start_reads_the_environment_as_the_model_does(
    environment: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        environment.setenv(name, value)
    assert _start_reading() == _model_reading()


def test_the_table_covers_every_setting() -> None:
    assert set(VALUES) == {setting.env for setting in SETTINGS}


def test_a_given_mapping_is_read_instead_of_this_process(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("PORT", "abc")
    assert read_start_settings({"PORT": "8126"}).value(spec.PORT) == 8126
    with pytest.raises(InvalidValue, match="LOG_LEVEL='loud'"):
        read_start_settings({"LOG_LEVEL": "loud"})


def test_values_and_defaults(environment: pytest.MonkeyPatch) -> None:
    settings = read_start_settings({"HOST": "", "GRACEFUL_SHUTDOWN_TIMEOUT": "7"})
    assert settings.value(spec.HOST) is None  # set empty: unset
    assert settings.chosen(spec.HOST, "prod") == ("0.0.0.0", "default")
    assert settings.graceful_shutdown_timeout == 7
    assert settings.forwarded_allow_ips == spec.FORWARDED_ALLOW_IPS.default


def test_a_secret_is_never_in_the_repr() -> None:
    settings = read_start_settings({"TOKEN_ENCRYPTION_KEYS": KEY, "DATABASE_URL": "sqlite:///s3"})
    assert KEY not in repr(settings) and "s3" not in repr(settings)
    assert "token_encryption_keys" in repr(settings)
