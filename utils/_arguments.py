"""A small command-line parser for the port CLI's five fixed commands.

Written by hand because argparse is too slow for a command that must answer in tens
of milliseconds: building its parser imports ``re``, ``gettext`` and ``shutil`` (with
``bz2`` and ``lzma``), about a third of a ``check``'s whole run. The grammar here is
fixed and small: ``COMMAND [PORT] [--flag] [--option VALUE | --option=VALUE]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

from utils._values import shown


class Option(NamedTuple):
    name: str  # "--grace"
    help: str
    takes_value: bool = False
    default: str | None = None
    metavar: str = "VALUE"


class Command(NamedTuple):
    name: str
    help: str
    positional: str | None  # "PORT", or None
    options: tuple[Option, ...]


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
        _dest(o.name): (o.default if o.takes_value else False) for o in command.options
    }
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
            values[_dest(name)] = _option_value(option, inline if has_inline else None, words)
        else:
            positional.append(word)
    expected = 1 if command.positional else 0
    if len(positional) < expected:
        raise UsageError(f"{command.name} needs {command.positional}")
    if len(positional) > expected:
        raise UsageError(f"unexpected argument {shown(positional[expected])} for {command.name}")
    if command.positional:
        values[command.positional.lower()] = positional[0]
    return command.name, values


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


def usage(program: str, description: str, commands: Sequence[Command]) -> str:
    """The ``--help`` text: every command with its options."""
    lines = [f"usage: {program} COMMAND [PORT] [OPTIONS]", "", description, ""]
    for command in commands:
        head = f"{program} {command.name}" + (
            f" {command.positional}" if command.positional else ""
        )
        lines += [f"  {head}", f"      {command.help}"]
        for option in command.options:
            spelled = f"{option.name} {option.metavar}" if option.takes_value else option.name
            lines.append(f"      {spelled:<22}{option.help}")
        lines.append("")
    return "\n".join(lines)


def wants_help(argv: Sequence[str]) -> bool:
    return any(word in ("-h", "--help") for word in argv)


def fail(program: str, message: str) -> None:
    sys.stderr.write(f"error: {message} (see {program} --help)\n")
