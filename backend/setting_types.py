"""How a setting is declared: the value types (with their ranges and what their errors
say is allowed) and the ``Setting`` record that ``backend/setting_specs.py`` fills in.

Plain data and the value parsers of the port tools: no pydantic, no server code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, Literal, Protocol, TypeVar, get_args

from utils.errors import InvalidValue
from utils.port_manager import parse_int, parse_seconds, shown

Mode = Literal["dev", "prod"]
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


class DatabaseScheme:
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
