"""A small command-line parser for the port CLI's five fixed commands.

Written by hand, not with argparse, for a command that must answer in tens of
milliseconds: importing argparse loads ``re`` and ``gettext``, and building a parser
``shutil`` (with ``bz2`` and ``lzma``), about a quarter of a ``check``'s whole run. The
grammar here is fixed and small: ``COMMAND [PORT ...] [--flag] [--option VALUE |
--option=VALUE]``; after ``--`` every word is a port.
"""

from __future__ import annotations

from collections.abc import Sequence

from utils._records import Record
from utils._values import shown


class Option(Record):
    name: str  # "--grace"
    help: str
    takes_value: bool = False
    default: str | None = None
    metavar: str = "VALUE"
    repeats: bool = False  # may be given several times: the values form a list


class Command(Record):
    name: str
    help: str
    positional: str | None  # "PORT", or None
    options: tuple[Option, ...]
    arity: str = "1"  # how many positional values: "1", "+" (one or more), "*" (any)

    @property
    def usage(self) -> str:
        """The positional part of the usage line: PORT, PORT [PORT ...], [PORT ...]."""
        if not self.positional:
            return ""
        many = f"[{self.positional} ...]"
        return {"1": self.positional, "+": f"{self.positional} {many}", "*": many}[self.arity]


class UsageError(Exception):
    """Bad command-line grammar; the message is one line."""


def parse(commands: Sequence[Command], argv: Sequence[str]) -> tuple[str, dict[str, object]]:
    """(command name, {dest: value}) with flags as bools and values as the strings typed."""
    if not argv:
        raise UsageError(f"a command is required: one of {', '.join(c.name for c in commands)}")
    by_name = {command.name: command for command in commands}
    command = by_name.get(argv[0])
    if command is None:
        choices = ", ".join(by_name)
        raise UsageError(f"unknown command {shown(argv[0])}: expected one of {choices}")
    options = {option.name: option for option in command.options}
    values: dict[str, object] = {
        _dest(o.name): (o.default if o.takes_value else False)
        for o in command.options
        if not o.repeats
    }
    repeated: dict[str, list[str]] = {_dest(o.name): [] for o in command.options if o.repeats}
    positional: list[str] = []
    words = list(argv[1:])
    while words:
        word = words.pop(0)
        name, has_inline, inline = word.partition("=")
        if word == "--":
            positional.extend(words)
            break
        if word.startswith("--") or (word.startswith("-") and not word[1:2].isdigit()):
            option = options.get(name)
            if option is None:
                raise UsageError(f"unknown option {shown(name)} for {command.name}")
            value = _option_value(option, inline if has_inline else None, words)
            if option.repeats:
                repeated[_dest(name)].append(str(value))
            else:
                values[_dest(name)] = value
        else:
            positional.append(word)
    return command.name, _with_positional(command, positional, repeated, values)


def _with_positional(
    command: Command,
    positional: list[str],
    repeated: dict[str, list[str]],
    values: dict[str, object],
) -> dict[str, object]:
    """The values with the positional words (and a repeated --PORT option, which joins
    them) checked against the command's arity, under the key ``ports``."""
    if not command.positional:
        if positional:
            raise UsageError(f"unexpected argument {shown(positional[0])} for {command.name}")
        return values
    key = command.positional.lower()
    given = [*positional, *repeated.pop(key, [])]
    if not given and command.arity != "*":
        raise UsageError(f"{command.name} needs {command.usage}")
    if len(given) > 1 and command.arity == "1":
        raise UsageError(f"unexpected argument {shown(given[1])} for {command.name}")
    values[key + "s"] = given
    values.update(repeated)
    return values


def _option_value(option: Option, inline: str | None, words: list[str]) -> object:
    """True for a flag; else the value after ``=`` or the next word (consumed)."""
    if not option.takes_value:
        if inline is not None:
            raise UsageError(f"option {option.name} takes no value")
        return True
    if inline is not None:
        return inline
    if not words:
        raise UsageError(f"option {option.name} needs a value")
    return words.pop(0)


def _dest(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def usage(
    program: str, description: str, commands: Sequence[Command], only: str | None = None
) -> str:
    """The ``--help`` text: every command with its options, or just the command ``only``."""
    lines = [f"usage: {program} COMMAND [PORT ...] [OPTIONS]", "", description, ""]
    for command in commands:
        if only is not None and command.name != only:
            continue
        if only is not None:
            shape = f"{command.usage} " if command.usage else ""
            lines = [f"usage: {program} {command.name} {shape}[OPTIONS]", ""]
        head = f"{program} {command.name}" + (f" {command.usage}" if command.usage else "")
        lines += [f"  {head}", f"      {command.help}"]
        for option in command.options:
            spelled = f"{option.name} {option.metavar}" if option.takes_value else option.name
            lines.append(f"      {spelled:<22}{option.help}")
        lines.append("")
    return "\n".join(lines)


def wants_help(argv: Sequence[str]) -> bool:
    return any(word in ("-h", "--help") for word in argv)


def fail(program: str, message: str) -> None:
    """A usage error as the error contract writes every one (escaped, one line)."""
    from utils.errors import error_line

    error_line(f"{message} (see {program} --help)")
