"""The settings a server start reads, parsed by their declarations alone (no pydantic).

A start must refuse a bad variable (exit 2) before it binds its port, so this reading is
on the way to the first response. It is the pydantic-settings model's reading
(``backend/settings.py``): every variable of ``setting_specs.SETTINGS``, its name in
any case, through ``parse_variable`` (the model's validator calls it too), the first bad
one reported by its declaration's error line. Importing pydantic and building the model
cost a dev start about 70 ms before uvicorn could spawn its worker (benchmarks/README.md);
the model stays what the token store reads, in the worker, on first use.
``tests/unit/test_start_settings.py`` holds the two readings to the same values and lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from backend.services.integrations.keys import key_problem
from backend.setting_specs import (
    BY_NAME,
    FORWARDED_ALLOW_IPS,
    GRACEFUL_SHUTDOWN_TIMEOUT,
    SETTINGS,
    TOKEN_ENCRYPTION_KEYS,
)
from backend.setting_types import Mode, Setting

T = TypeVar("T")


def parse_variable(name: str, value: object) -> Any:
    """A variable's value checked by its declaration, and Fernet keys by their format;
    ValueError when it is not allowed (the caller words the error)."""
    parsed = BY_NAME[name].parse(value)
    if name == TOKEN_ENCRYPTION_KEYS.name and parsed is not None and key_problem(str(parsed)):
        raise ValueError("not Fernet keys")  # needs keys.py: not part of the plain-data table
    return parsed


class StartSettings:
    """The variables the environment gave, parsed. Its repr names them, never a value:
    some are secrets."""

    def __init__(self, given: Mapping[str, Any]) -> None:
        self._given = dict(given)

    def __repr__(self) -> str:
        return f"StartSettings(given={sorted(self._given)})"

    def given(self) -> dict[str, Any]:
        """Setting name -> parsed value, for each variable set (None: set empty, so unset)."""
        return dict(self._given)

    def value(self, setting: Setting[T]) -> T:
        """The variable's value, else the declared default (for mode-independent reads)."""
        given: T | None = self._given.get(setting.name)
        return setting.default if given is None else given

    def chosen(self, setting: Setting[T], mode: Mode, flag: object = None) -> tuple[T, str]:
        """The value in force for a start in ``mode``, and where it came from.

        A given flag is checked by the declaration and wins in the modes that offer it
        (elsewhere it is only checked: ``python -m backend --dev --workers 2`` is one
        process); then the variable, in the modes that read it; then the mode's default.
        The source (``--port``, ``PORT`` or ``default``) is named in messages.
        """
        if flag is not None and setting.flag:
            value = setting.from_flag(flag)
            if mode in setting.flag_modes:
                return value, setting.flag
        given: T | None = self._given.get(setting.name)
        if mode in setting.env_modes and given is not None:  # set but empty: unset
            return given, setting.env
        return setting.default_for(mode), "default"

    # What uvicorn is handed, read as the model's fields are (backend.server.run).
    @property
    def forwarded_allow_ips(self) -> str | None:
        return self.value(FORWARDED_ALLOW_IPS)

    @property
    def graceful_shutdown_timeout(self) -> int:
        return self.value(GRACEFUL_SHUTDOWN_TIMEOUT)


def read_start_settings(environ: Mapping[str, str] | None = None) -> StartSettings:
    """The backend's variables in ``environ`` (default: this process's), checked.

    Names in any case, as pydantic-settings reads them (``case_sensitive=False``: when a
    name is set in two cases, the later one wins); InvalidValue with the declaration's
    one line for the first bad variable, in declaration order (the model's first error).
    """
    source = os.environ if environ is None else environ
    by_name = {name.lower(): value for name, value in source.items()}
    given: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in by_name:
            raw = by_name[setting.name]
            try:
                given[setting.name] = parse_variable(setting.name, raw)
            except ValueError:
                raise setting.env_error(raw) from None
    return StartSettings(given)
