"""Every backend setting and serve flag, declared once, as plain data.

One entry per setting: its name (the environment variable is the name in capitals), the
flag that overrides it, its type and range, its default, its help and what its error
says is allowed. From this table come the pydantic-settings model (``backend/settings.py``),
the validation of the flags (``backend/server.py``), the ``python -m backend`` parser and
the help of ``invoke serve.dev|prod`` (``tasks.py``): a range changed here changes the
environment's check, the flag's check, both error lines and every help text.

The value types and the ``Setting`` record are in ``backend/setting_types.py``. This
module imports neither pydantic nor any server code: tasks.py reads it when Invoke
starts, and ``invoke --list`` must stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, get_args

from backend.setting_types import (
    MODE_NAMES,
    MODES,
    Choice,
    DatabaseScheme,
    Integer,
    Mode,
    Seconds,
    Setting,
    Text,
)
from utils.port_manager import DEFAULT_PORT, PORT_RANGE, WORKERS_RANGE

AppEnv = Literal["development", "production"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]

APP_ENV: Setting[AppEnv] = Setting(
    "app_env",
    Choice(get_args(AppEnv)),
    "the mode of python -m backend without --dev or --production",
    "development",
)
HOST: Setting[str | None] = Setting(
    "host",
    Text("a hostname or IP address", empty_is_unset=True),
    "address to bind",
    None,
    flag="--host",
    by_mode={"dev": "127.0.0.1", "prod": "0.0.0.0"},
    env_modes=("prod",),  # dev listens on loopback unless --host says otherwise
)
PORT: Setting[int] = Setting(
    "port", Integer(PORT_RANGE), "port to serve on", DEFAULT_PORT, flag="--port"
)
WEB_CONCURRENCY: Setting[int] = Setting(
    "web_concurrency",
    Integer(WORKERS_RANGE),
    "worker processes",
    1,
    flag="--workers",
    env_modes=("prod",),
    flag_modes=("prod",),  # dev runs one process, restarted on code changes
)
LOG_LEVEL: Setting[LogLevel | None] = Setting(
    "log_level",
    Choice(get_args(LogLevel)),
    "uvicorn's log level",
    None,
    by_mode={"dev": "debug", "prod": "info"},
)
FORWARDED_ALLOW_IPS: Setting[str | None] = Setting(
    "forwarded_allow_ips",
    Text("a comma-separated list of IP addresses or networks, or '*'"),
    "proxies whose X-Forwarded-* headers production trusts",
    "127.0.0.1",
    env_modes=("prod",),
)
GRACEFUL_SHUTDOWN_TIMEOUT: Setting[int] = Setting(
    "graceful_shutdown_timeout",
    Integer((1, 300), unit="seconds"),
    "how long a stopping server lets open requests finish",
    10,
)
# The token store (backend/services/integrations): unset DATABASE_URL means SQLite in DATA_DIR.
DATABASE_URL: Setting[str | None] = Setting(
    "database_url",
    Text(
        "a postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH URL",
        empty_is_unset=True,
        check=DatabaseScheme(),
    ),
    "the token store's database",
    None,
    secret=True,
)
DATA_DIR: Setting[str | None] = Setting(
    "data_dir",
    Text("a directory path", empty_is_unset=True),
    "where the SQLite token store and the dev key live "
    "(default: the user's data directory: $XDG_DATA_HOME/portkeeper, else "
    "~/.local/share/portkeeper; macOS ~/Library/Application Support/portkeeper; "
    "Windows %LOCALAPPDATA%\\portkeeper)",
    None,
)
TOKEN_ENCRYPTION_KEYS: Setting[str | None] = Setting(
    "token_encryption_keys",
    Text(
        "comma-separated Fernet keys, newest first, each 32 url-safe base64-encoded bytes "
        "(make one with invoke tokens.new-key)",
        empty_is_unset=True,
    ),
    "the token store's keys, newest first (dev generates one when unset)",
    None,
    secret=True,
)
TOKEN_REFRESH_SKEW: Setting[int] = Setting(
    "token_refresh_skew",
    Integer((0, 3600), unit="seconds"),
    "how long before expiry a token is refreshed",
    60,
)
TOKEN_STORE_TIMEOUT: Setting[float] = Setting(
    "token_store_timeout",
    Seconds(above=0, at_most=300),
    "how long to wait for a locked database, a row lock or a PostgreSQL connection",
    15.0,
)

SETTINGS: tuple[Setting[Any], ...] = (
    APP_ENV,
    PORT,
    HOST,
    WEB_CONCURRENCY,
    LOG_LEVEL,
    FORWARDED_ALLOW_IPS,
    GRACEFUL_SHUTDOWN_TIMEOUT,
    DATABASE_URL,
    DATA_DIR,
    TOKEN_ENCRYPTION_KEYS,
    TOKEN_REFRESH_SKEW,
    TOKEN_STORE_TIMEOUT,
)
BY_NAME: Mapping[str, Setting[Any]] = {setting.name: setting for setting in SETTINGS}


# --------------------------------------------------------------------------- serve flags


class Switch(NamedTuple):
    """A serve flag that is not a setting: on or off, for this start only.

    ``refused`` maps a mode that takes the flag only to refuse it to the reason, so
    the user reads why (exit 2) rather than Invoke's "unknown flag".
    """

    flag: str
    help: str
    modes: tuple[Mode, ...] = MODES
    refused: Mapping[Mode, str] | None = None

    def refused_in(self, mode: Mode) -> str | None:
        """Why ``mode`` refuses the flag, or None where it is used."""
        return (self.refused or {}).get(mode)

    def offered(self) -> tuple[Mode, ...]:
        """The modes whose commands take the flag (to use it or to refuse it)."""
        return tuple(mode for mode in MODES if mode in self.modes or self.refused_in(mode))

    def help_for(self, mode: Mode | None) -> str:
        """The flag's help for one serve mode, or for both (``python -m backend``)."""
        reason = self.refused_in(mode) if mode is not None else None
        if mode is not None and reason:
            return f"refused in {MODE_NAMES[mode]}: {reason}"
        if mode is None and len(self.modes) == 1:
            return f"{MODE_NAMES[self.modes[0]]} only: {self.help}"
        return self.help


# Why production refuses --port 0 (dev asks the OS for a port and announces it).
PORT_ZERO_REFUSED = (
    "the platform routes traffic to one fixed port, so an OS-assigned one would be unreachable"
)
FIND_PORT = Switch(
    "--find-port",
    "if the port is busy, move to the next free one",
    modes=("dev",),
    refused={
        "prod": "the platform routes traffic to one fixed port (PORT), so a busy port is an "
        "error, not a reason to move"
    },
)
CLEANUP_PORT = Switch(
    "--cleanup-port", "if the port is busy, stop this project's server holding it"
)
FORCE_CLEANUP = Switch("--force-cleanup", "like --cleanup-port, and stop any process holding it")
NO_RELOAD = Switch("--no-reload", "do not restart on code changes", modes=("dev",))
SWITCHES = (FIND_PORT, CLEANUP_PORT, FORCE_CLEANUP, NO_RELOAD)


class ServeFlags(NamedTuple):
    """The serve flags as typed (text from Invoke or argparse, or numbers from Python);
    ``backend.server`` validates them against the table above. The fields are the
    flags' names: tests/unit/test_setting_specs.py holds them equal to the table."""

    port: str | int | None = None
    host: str | None = None
    workers: str | int | None = None
    find_port: bool = False
    cleanup_port: bool = False
    force_cleanup: bool = False
    no_reload: bool = False


def serve_flags(mode: Mode | None) -> dict[str, str]:
    """Flag name (without ``--``) -> help, for one serve mode or for both, in table order."""
    helps: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.flag and (mode is None or mode in setting.flag_modes):
            helps[setting.flag.removeprefix("--")] = setting.help_for(mode)
    for switch in SWITCHES:
        if mode is None or mode in switch.offered():
            helps[switch.flag.removeprefix("--")] = switch.help_for(mode)
    return helps
