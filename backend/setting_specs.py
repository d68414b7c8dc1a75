"""Every backend setting and serve flag, declared once, as plain data.

One entry per setting: its name (the environment variable is the name in capitals), the
flag that overrides it, its type and range, its default, its help and what its error
says is allowed. From this table come the pydantic-settings model (``backend/settings.py``),
the validation of the flags (``backend/server.py``), the ``python -m backend`` parser and
the help of ``invoke serve.dev|prod`` (``tasks.py``): a range changed here changes the
environment's check, the flag's check, both error lines and every help text.

This module imports neither pydantic nor any server code (only the value parsers of
``utils/_values.py``): tasks.py reads it when Invoke starts, and ``invoke --list`` must
stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeVar, get_args

from utils.errors import InvalidValue
from utils.port_manager import (
    DEFAULT_PORT,
    PORT_RANGE,
    WORKERS_RANGE,
    parse_int,
    parse_seconds,
    shown,
)

Mode = Literal["dev", "prod"]
AppEnv = Literal["development", "production"]
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
MODES: tuple[Mode, ...] = get_args(Mode)
MODE_NAMES: Mapping[Mode, str] = {"dev": "dev", "prod": "production"}

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# --------------------------------------------------------------------------- value types


class Parser(Protocol[T_co]):
    """Turns a value as typed (text from the environment or a command line) into a setting."""

    @property
    def expected(self) -> str:
        """What is allowed, as the error line ends: ``expected <this>``."""
        ...

    def __call__(self, value: object) -> T_co:
        """The value, or ValueError when it is not allowed."""
        ...


class Integer:
    """Plain decimal digits in a closed range (no sign, spaces or underscores)."""

    def __init__(self, limits: tuple[int, int], unit: str = "") -> None:
        self.limits = limits
        self.unit = unit

    @property
    def expected(self) -> str:
        low, high = self.limits
        kind = f"an integer number of {self.unit}" if self.unit else "an integer"
        return f"{kind} from {low} to {high}"

    def __call__(self, value: object) -> int:
        return parse_int(value, "value", *self.limits)


class Seconds:
    """A decimal number of seconds, more than ``above`` and at most ``at_most``."""

    def __init__(self, above: float, at_most: float) -> None:
        self.above = above
        self.at_most = at_most

    @property
    def expected(self) -> str:
        return f"a number of seconds greater than {self.above:g} and at most {self.at_most:g}"

    def __call__(self, value: object) -> float:
        seconds = parse_seconds(value, "value", self.at_most)
        if seconds <= self.above:
            raise ValueError(value)
        return seconds


class Choice(Generic[T]):
    """One of a few words (the values of a ``Literal``), in any case, spaces around ignored."""

    def __init__(self, values: tuple[T, ...]) -> None:
        self.values = values

    @property
    def expected(self) -> str:
        if len(self.values) == 2:
            return " or ".join(repr(value) for value in self.values)
        return "one of " + ", ".join(str(value) for value in self.values)

    def __call__(self, value: object) -> T:
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in self.values:
            raise ValueError(value)
        return word


class Text:
    """Free text; what is allowed is checked by ``check`` (if any) and said by ``expected``.

    With ``empty_is_unset``, an empty or blank value means "not set" (None), as an
    ``export NAME=`` in a shell or an empty line in an env file usually does.
    """

    def __init__(
        self, expected: str, *, empty_is_unset: bool = False, check: Parser[object] | None = None
    ) -> None:
        self._expected = expected
        self.empty_is_unset = empty_is_unset
        self.check = check

    @property
    def expected(self) -> str:
        return self._expected

    def __call__(self, value: object) -> str | None:
        if not isinstance(value, str):
            raise ValueError(value)
        if self.empty_is_unset and not value.strip():
            return None
        if self.check is not None:
            self.check(value)
        return value


class _DatabaseScheme:
    """A PostgreSQL or SQLite URL (the token store speaks these two)."""

    expected = "a postgresql:// or sqlite:/// URL"

    def __call__(self, value: object) -> object:
        scheme = str(value).split(":", 1)[0].lower()
        if scheme.split("+")[0] not in {"postgresql", "postgres", "sqlite"}:
            raise ValueError("not a postgresql:// or sqlite:/// URL")
        return value


# --------------------------------------------------------------------------- settings


class Setting(Generic[T]):
    """One setting: read from ``env`` (the name in capitals), overridden by ``flag``.

    ``env_modes`` are the serve modes that read the variable, ``flag_modes`` those whose
    commands offer the flag; ``by_mode`` holds the defaults that differ per mode.
    """

    __slots__ = (
        "by_mode",
        "default",
        "env_modes",
        "flag",
        "flag_modes",
        "help",
        "name",
        "parse",
        "secret",
    )

    def __init__(
        self,
        name: str,
        parse: Parser[T],
        help: str,
        default: T,
        *,
        flag: str | None = None,
        by_mode: Mapping[Mode, T] | None = None,
        env_modes: tuple[Mode, ...] = MODES,
        flag_modes: tuple[Mode, ...] = MODES,
        secret: bool = False,
    ) -> None:
        self.name = name
        self.parse = parse
        self.help = help
        self.default = default
        self.flag = flag
        self.by_mode: Mapping[Mode, T] = by_mode or {}
        self.env_modes = env_modes
        self.flag_modes = flag_modes if flag else ()
        self.secret = secret  # a bad value is named, never echoed: it may hold a key

    def __repr__(self) -> str:
        return f"Setting({self.name!r})"

    @property
    def env(self) -> str:
        """The environment variable (pydantic-settings reads the field name, any case)."""
        return self.name.upper()

    @property
    def expected(self) -> str:
        """What is allowed, as every error about this setting ends."""
        return self.parse.expected

    def default_for(self, mode: Mode) -> T:
        """The value when neither the flag nor (in ``env_modes``) the variable gives one."""
        return self.by_mode.get(mode, self.default)

    def from_env(self, value: object) -> T:
        """The variable's value; InvalidValue naming the variable when it is not allowed."""
        try:
            return self.parse(value)
        except ValueError:
            raise self.env_error(value) from None

    def env_error(self, value: object) -> InvalidValue:
        """``environment variable NAME=<value> is not valid: expected ...``."""
        shown_value = "<hidden>" if self.secret else shown(value)
        return InvalidValue(
            f"environment variable {self.env}={shown_value} is not valid: expected {self.expected}"
        )

    def from_flag(self, value: object) -> T:
        """A flag's value, checked as the variable is; InvalidValue naming the flag."""
        try:
            parsed = self.parse(value)
        except ValueError:
            parsed = None
        if parsed is None:  # a flag given empty is not "unset"
            raise InvalidValue(
                f"{self.flag} {shown(value)} is not valid: expected {self.expected}"
            ) from None
        return parsed

    def help_for(self, mode: Mode | None) -> str:
        """The flag's help for one serve mode, or for both (``python -m backend``)."""
        modes = self.flag_modes if mode is None else (mode,)
        defaults = {
            m: f"{self.env}, else {self.default_for(m)}"
            if m in self.env_modes
            else str(self.default_for(m))
            for m in modes
        }
        if len(set(defaults.values())) == 1:
            default = f"default: {defaults[modes[0]]}"
        else:
            default = "; ".join(f"{MODE_NAMES[m]} default: {text}" for m, text in defaults.items())
        scope = f"{MODE_NAMES[modes[0]]} only: " if mode is None and len(modes) == 1 else ""
        return f"{scope}{self.help}, {self.expected} ({default})"


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
        check=_DatabaseScheme(),
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
