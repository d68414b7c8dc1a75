"""Settings from the environment, validated once, with one-line errors.

pydantic-settings reads and converts the variables; what it reports is turned into the
contract's ``error: ...`` line (exit 2) naming the variable, its value and what is allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from utils.port_manager import InvalidValue

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

ALLOWED = {
    "app_env": "'development' or 'production'",
    "host": "a hostname or IP address",
    "port": "an integer from 1 to 65535",
    "web_concurrency": "an integer from 1 to 64",
    "log_level": "one of critical, error, warning, info, debug, trace",
    "forwarded_allow_ips": "a comma-separated list of IP addresses or networks, or '*'",
    "graceful_shutdown_timeout": "an integer number of seconds from 1 to 300",
}


class Settings(BaseSettings):
    """The backend's environment. Unset variables keep these defaults."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    app_env: Literal["development", "production"] = "development"
    host: str | None = None  # default per mode: 127.0.0.1 in dev, 0.0.0.0 in production
    port: int = Field(default=8000, ge=1, le=65535)
    web_concurrency: int = Field(default=1, ge=1, le=64)
    log_level: LogLevel | None = None  # default per mode: debug in dev, info in production
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_shutdown_timeout: int = Field(default=10, ge=1, le=300)

    @field_validator("log_level", "app_env", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
        raise InvalidValue(
            f"environment variable {field.upper()}={first.get('input')!r} is not valid: "
            f"expected {ALLOWED.get(field, first['msg'])}"
        ) from None
