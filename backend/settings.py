"""Settings from the environment, validated once, with one-line errors.

Each setting is declared once, in ``backend/setting_specs.py``: the fields below take
their defaults and help from there, and one validator parses every variable with the
declaration's parser, the same one a command-line flag goes through. pydantic-settings
reads the variables and converts the parsed text to each field's type; what fails is
reported as the contract's ``error: ...`` line (exit 2), worded by the declaration.

The token store reads this model. A server start reads the same variables the same way
without pydantic (``backend/start_settings.py``: it is on the way to the first response).

The annotations stay written out so mypy knows each field's type; ``declared`` makes mypy
check them against the declaration's type, and tests/unit/test_setting_specs.py holds
the fields equal to the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend import setting_specs as spec
from backend.setting_specs import BY_NAME, AppEnv, LogLevel
from backend.setting_types import Setting
from backend.start_settings import parse_variable
from utils.errors import InvalidValue

T = TypeVar("T")


def declared(setting: Setting[T]) -> T:
    """The field of ``setting``: its default and help come from the declaration."""
    field: T = Field(default=setting.default, description=setting.help)
    return field


def converted(setting: Setting[Any]) -> Any:
    """As ``declared``, for a field pydantic converts the parsed text into (a secret, a path)."""
    return Field(default=setting.default, description=setting.help)


class Settings(BaseSettings):
    """The backend's environment. Unset variables keep the declared defaults."""

    # The defaults are not parsed (tests/unit holds each inside its declaration): an error
    # always names a value the environment gave.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", validate_default=False)

    app_env: AppEnv = declared(spec.APP_ENV)
    port: int = declared(spec.PORT)
    host: str | None = declared(spec.HOST)
    web_concurrency: int = declared(spec.WEB_CONCURRENCY)
    log_level: LogLevel | None = declared(spec.LOG_LEVEL)
    forwarded_allow_ips: str | None = declared(spec.FORWARDED_ALLOW_IPS)
    graceful_shutdown_timeout: int = declared(spec.GRACEFUL_SHUTDOWN_TIMEOUT)
    database_url: SecretStr | None = converted(spec.DATABASE_URL)
    data_dir: Path | None = converted(spec.DATA_DIR)
    token_encryption_keys: SecretStr | None = converted(spec.TOKEN_ENCRYPTION_KEYS)
    token_refresh_skew: int = declared(spec.TOKEN_REFRESH_SKEW)
    token_store_timeout: float = declared(spec.TOKEN_STORE_TIMEOUT)

    @field_validator("*", mode="before")
    @classmethod
    def _declared_parser(cls, value: object, info: ValidationInfo) -> object:
        """Every variable through its declaration's parser, as the flags go (and a server
        start's reading, ``backend/start_settings.py``)."""
        return parse_variable(str(info.field_name), value)


def load_settings() -> Settings:
    """Read the environment; a bad variable raises InvalidValue with one clear line."""
    try:
        return Settings()
    except ValidationError as invalid:
        first = invalid.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        if name not in BY_NAME:
            raise InvalidValue(f"the environment is not valid: {first['msg']}") from None
        raise BY_NAME[name].env_error(first.get("input")) from None
