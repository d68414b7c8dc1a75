"""Settings from the environment, validated once, with one-line errors.

pydantic-settings reads and converts the variables; what it reports is turned into the
contract's ``error: ...`` line (exit 2) naming the variable, its value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.services.integrations.keys import key_problem
from utils.port_manager import PORT_RANGE, WORKERS_RANGE, InvalidValue, parse_int
from utils.port_manager import shown as shown_value

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

ALLOWED = {
    "app_env": "'development' or 'production'",
    "host": "a hostname or IP address",
    "port": "an integer from 1 to 65535",
    "web_concurrency": "an integer from 1 to 64",
    "log_level": "one of critical, error, warning, info, debug, trace",
    "forwarded_allow_ips": "a comma-separated list of IP addresses or networks, or '*'",
    "graceful_shutdown_timeout": "an integer number of seconds from 1 to 300",
    "database_url": "a postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH URL",
    "data_dir": "a directory path",
    "token_encryption_keys": "comma-separated Fernet keys, newest first, each 32 url-safe "
    "base64-encoded bytes (make one with invoke tokens.new-key)",
    "token_refresh_skew": "an integer number of seconds from 0 to 3600",
    "token_store_timeout": "a number of seconds greater than 0 and at most 300",
}
# Secret settings: a bad value is named but never echoed (it may hold a key or a password).
SECRET = frozenset({"database_url", "token_encryption_keys"})


class Settings(BaseSettings):
    """The backend's environment. Unset variables keep these defaults."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    app_env: Literal["development", "production"] = "development"
    host: str | None = None  # default per mode: 127.0.0.1 in dev, 0.0.0.0 in production
    port: int = 8000  # ranges: utils/_values.py, checked by _plain_integer
    web_concurrency: int = 1
    log_level: LogLevel | None = None  # default per mode: debug in dev, info in production
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_shutdown_timeout: int = Field(default=10, ge=1, le=300)
    # Token store (backend/services/integrations): unset DATABASE_URL means SQLite in DATA_DIR.
    database_url: SecretStr | None = None
    data_dir: Path | None = None  # default: $XDG_DATA_HOME/portkeeper or ~/.local/share/...
    token_encryption_keys: SecretStr | None = None  # newest first; dev generates one if unset
    token_refresh_skew: int = Field(default=60, ge=0, le=3600)
    token_store_timeout: float = Field(default=15.0, gt=0, le=300)

    @field_validator("port", "web_concurrency", mode="before")
    @classmethod
    def _plain_integer(cls, value: object, info: ValidationInfo) -> object:
        """Digits only, as the command-line flags take them: no spaces, signs or floats."""
        low, high = PORT_RANGE if info.field_name == "port" else WORKERS_RANGE
        return parse_int(value, str(info.field_name), low, high)

    @field_validator("log_level", "app_env", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url", "data_dir", "token_encryption_keys", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        scheme = value.get_secret_value().split(":", 1)[0].lower() if value else "sqlite"
        if scheme.split("+")[0] not in {"postgresql", "postgres", "sqlite"}:
            raise ValueError("expected a postgresql:// or sqlite:/// URL")
        return value

    @field_validator("token_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and key_problem(value.get_secret_value()):
            raise ValueError("not Fernet keys")
        return value

    def is_set(self, name: str) -> bool:
        """Whether the environment gave this setting (rather than the default)."""
        return name in self.model_fields_set


def load_settings() -> Settings:
    """Read the environment; a bad variable raises InvalidValue with one clear line."""
    try:
        return Settings()
    except ValidationError as invalid:
        first = invalid.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        shown = "<hidden>" if field in SECRET else shown_value(first.get("input"))
        raise InvalidValue(
            f"environment variable {field.upper()}={shown} is not valid: "
            f"expected {ALLOWED.get(field, first['msg'])}"
        ) from None
