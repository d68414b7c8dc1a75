"""Plain-text output: escaped outside text, aligned tables, colour only where a person looks.

Process names, command lines, user names and third-party messages are chosen by others
and may hold escape sequences, carriage returns or newlines that would fake rows, clear
the screen or retitle the terminal. Every human printer passes them through
``printable()``; only JSON carries them exactly. Tables are hand-written rather than a
table library, which would cost more start-up time than the whole answer.

A Windows console shows escape sequences as text until its virtual terminal processing
is switched on (``speaks_ansi``); where that fails, nothing is painted or rewritten.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from utils._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, TextIO

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
PLATFORM = sys.platform
ENABLE_VIRTUAL_TERMINAL_PROCESSING = 0x0004  # SetConsoleMode's flag (Windows 10 and later)
_INVALID_HANDLE = (0, -1)


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, format, separators other
    than the space, unassigned) shown as a Python-style escape, so it is one safe line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def colour_enabled(stream: TextIO) -> bool:
    """Colour on a terminal; never with NO_COLOR set (no-color.org) or TERM=dumb; and
    also off a terminal with FORCE_COLOR set to anything but 0 (force-color.org: CI
    logs that render colour). NO_COLOR wins when both are set."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    return os.environ.get("TERM") != "dumb" and stream.isatty() and speaks_ansi(stream)


def speaks_ansi(stream: TextIO, platform: str | None = None) -> bool:
    """Whether escape sequences written to ``stream`` reach the screen as colour: a POSIX
    terminal's always do; a Windows console's once VT processing is on (turned on here)."""
    if (platform or PLATFORM) != "win32":
        return True
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return False  # not a file, so not a console whose mode could be set
    return _windows_console_vt(fd)


def _windows_console_vt(fd: int) -> bool:
    if sys.platform == "win32":  # mypy reads the Windows-only modules only here
        import ctypes
        import msvcrt

        try:
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            return enable_vt_mode(kernel32, msvcrt.get_osfhandle(fd))
        except OSError:
            return False
    return False


def enable_vt_mode(kernel32: Any, handle: int) -> bool:
    """Switch on VT processing of the console behind ``handle`` (kernel32's
    GetConsoleMode/SetConsoleMode): whether it is on. False for no console, or one too
    old to know the flag (before Windows 10), which refuses it."""
    import ctypes

    mode = ctypes.c_uint32()
    if handle in _INVALID_HANDLE or not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):
        return False
    if mode.value & ENABLE_VIRTUAL_TERMINAL_PROCESSING:
        return True
    return bool(kernel32.SetConsoleMode(handle, mode.value | ENABLE_VIRTUAL_TERMINAL_PROCESSING))


def paint(text: str, colour: str, enabled: bool) -> str:
    """``text`` in ``colour`` when enabled; ``text`` must be the program's own words."""
    return f"\033[{_COLOURS[colour]}m{text}\033[0m" if enabled and text else text


class Styled(Record):
    """A table cell of the program's own words, shown in a colour."""

    text: str
    colour: str


Cell = str | Styled


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], enabled: bool) -> str:
    """Columns padded to their widest cell; the last column is never padded.

    Plain cells are outside text and are escaped; widths are measured before colour is
    added, so painted cells line up too.
    """
    texts = [
        [printable(cell) if isinstance(cell, str) else cell.text for cell in row] for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *texts, strict=True)]

    def line(cells: Sequence[str], styles: Sequence[Cell] | None) -> str:
        parts = []
        for index, cell in enumerate(cells):
            padding = "" if index == len(cells) - 1 else " " * (widths[index] - len(cell))
            style = styles[index] if styles is not None else None
            shown = paint(cell, style.colour, enabled) if isinstance(style, Styled) else cell
            parts.append(shown + padding)
        return "  ".join(parts).rstrip()

    head = paint(line(headers, None), "bold", enabled)
    return "\n".join([head, *(line(cells, row) for cells, row in zip(texts, rows, strict=True))])


class Progress:
    """A live status line on a terminal's stderr, rewritten in place and cleared at the
    end; silent when stderr is not a terminal (a pipe, a CI log) or for ``--json``."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._shown = False
        self._last = 0.0

    @classmethod
    def for_stream(cls, stream: TextIO, *, enabled: bool = True) -> Progress:
        on_terminal = stream.isatty() and os.environ.get("TERM") != "dumb"
        return cls(stream, enabled and on_terminal and speaks_ansi(stream))

    def show(self, text: str) -> None:
        """Replace the status line with ``text`` (at most ten times a second)."""
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        if self._shown and now - self._last < 0.1:
            return
        self._last = now
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            width = 0
        width = width if width > 0 else 80  # a terminal of unknown size (0 columns)
        self.stream.write("\r\033[K" + printable(text)[: max(10, width - 1)])
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False


def emit_json(document: Any) -> None:
    """Indented at a terminal; compact otherwise (``indent`` turns off the fast C encoder)."""
    import json  # with ``re`` beneath it: only the --json answers pay for it

    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(document, indent=indent) + "\n")
