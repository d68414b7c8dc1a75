"""Rendering (utils/render.py): escaping of outside text, aligned tables, when colour is
on (a Windows console's VT mode included, on a fake kernel32), the live status line and
the JSON encoder's shape."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from utils import render


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (of unknown size: no file descriptor)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _posix_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminals speak ANSI as on POSIX; the Windows console's part is tested below."""
    monkeypatch.setattr(render, "PLATFORM", "linux")


# ------------------------------------------------------------------ escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text", "plain text"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("one\r\ntwo\tthree", "one\\r\\ntwo\\tthree"),
        ("del\x7f", "del\\x7f"),
        ("c1\x9b31m", "c1\\x9b31m"),  # the one-byte CSI
        ("rlo\u202eevil", "rlo\\u202eevil"),
        ("line\u2028sep", "line\\u2028sep"),
        ("nbsp\u00a0", "nbsp\\xa0"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
        ("\U000e0001tag", "\\U000e0001tag"),
        ("bytes\udcff", "bytes\\udcff"),  # a non-UTF-8 argument (surrogateescape)
    ],
)
def test_printable_escapes_every_non_printable_character(raw: str, escaped: str) -> None:
    assert render.printable(raw) == escaped
    assert render.printable(raw).isprintable()


# ------------------------------------------------------------------ tables


def test_a_table_escapes_cells_and_aligns_painted_ones() -> None:
    rows: list[list[render.Cell]] = [
        ["1", render.Styled("yes", "green"), "evil\nPORT x"],
        ["22", "no", "ok"],
    ]
    plain = render.table(["A", "B", "C"], rows, enabled=False).splitlines()
    assert plain == ["A   B    C", "1   yes  evil\\nPORT x", "22  no   ok"]
    coloured = render.table(["A", "B", "C"], rows, enabled=True).splitlines()
    assert coloured[0] == "\x1b[1mA   B    C\x1b[0m"
    assert coloured[1] == "1   \x1b[32myes\x1b[0m  evil\\nPORT x"
    assert coloured[2] == plain[2]  # padding measured without the colour codes


def test_a_column_is_as_wide_as_its_escaped_cell() -> None:
    rows: list[list[render.Cell]] = [["\x1b", "x"], ["ab", "y"]]
    assert render.table(["H", "Z"], rows, enabled=False).splitlines() == [
        "H     Z",
        "\\x1b  x",
        "ab    y",
    ]


def test_the_last_column_is_not_padded_and_no_line_ends_in_spaces() -> None:
    rows: list[list[render.Cell]] = [["a", "long value"], ["b", ""]]
    lines = render.table(["K", "V"], rows, enabled=False).splitlines()
    assert lines == ["K  V", "a  long value", "b"]


def test_paint_colours_only_when_enabled_and_never_empty_text() -> None:
    assert render.paint("free", "green", True) == "\x1b[32mfree\x1b[0m"
    assert render.paint("free", "green", False) == "free"
    assert render.paint("", "red", True) == ""


# ------------------------------------------------------------------ when colour is on


@pytest.mark.parametrize(
    ("environment", "terminal", "colour"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),  # NO_COLOR wins
        ({"TERM": "dumb"}, True, False),
        ({"TERM": "dumb", "FORCE_COLOR": "1"}, False, True),
        ({"NO_COLOR": ""}, True, True),  # set but empty: no-color.org says it does not count
    ],
)
def test_colour_is_on_at_a_terminal_and_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], terminal: bool, colour: bool
) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    stream = Terminal() if terminal else io.StringIO()
    assert render.colour_enabled(stream) is colour


# ------------------------------------------------------------------ the status line


def test_progress_is_silent_off_a_terminal_and_when_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TERM", raising=False)
    piped = io.StringIO()
    render.Progress.for_stream(piped).show("waiting")
    quiet_terminal = Terminal()
    render.Progress.for_stream(quiet_terminal, enabled=False).show("waiting")
    assert piped.getvalue() == quiet_terminal.getvalue() == ""


def test_progress_rewrites_one_escaped_line_and_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERM", raising=False)
    terminal = Terminal()
    progress = render.Progress.for_stream(terminal)
    progress.show("waiting for pid 7: evil\x1b]0;title\x07\n" + "x" * 200)
    shown = terminal.getvalue()
    assert shown.startswith("\r\x1b[K") and "\n" not in shown
    assert "\\x1b]0;title\\x07\\n" in shown
    assert len(shown) == len("\r\x1b[K") + 79  # a terminal of unknown size is 80 wide
    progress.clear()
    assert terminal.getvalue() == shown + "\r\x1b[K"
    progress.clear()  # nothing shown any more: nothing to clear
    assert terminal.getvalue() == shown + "\r\x1b[K"


# ------------------------------------------------------------------ JSON


def test_json_is_one_compact_line_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    render.emit_json({"cmdline": ["a\x1bb", "\u00e9"], "port": 1})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\x1b" not in out
    assert json.loads(out) == {"cmdline": ["a\x1bb", "\u00e9"], "port": 1}


# ------------------------------------------------------------------ Windows consoles


class FakeKernel32:
    """GetConsoleMode/SetConsoleMode of one console (``mode`` None: not a console)."""

    def __init__(self, mode: int | None, accepts: bool = True) -> None:
        self.mode = mode
        self.accepts = accepts
        self.set_to: list[int] = []

    def GetConsoleMode(self, handle: int, pointer: Any) -> int:  # kernel32's names
        if self.mode is None:
            return 0
        pointer._obj.value = self.mode
        return 1

    def SetConsoleMode(self, handle: int, mode: int) -> int:
        self.set_to.append(mode)
        return int(self.accepts)


VT = render.ENABLE_VIRTUAL_TERMINAL_PROCESSING


@pytest.mark.parametrize(
    ("kernel32", "handle", "on", "set_to"),
    [
        (FakeKernel32(0x3), 7, True, [0x3 | VT]),  # switched on, other flags kept
        (FakeKernel32(0x3 | VT), 7, True, []),  # already on: left alone
        (FakeKernel32(0x3, accepts=False), 7, False, [0x3 | VT]),  # a console before Windows 10
        (FakeKernel32(None), 7, False, []),  # a file or a pipe: no console mode
        (FakeKernel32(0x3), -1, False, []),  # INVALID_HANDLE_VALUE
    ],
)
def test_a_windows_console_gets_vt_processing_or_no_colour(
    kernel32: FakeKernel32, handle: int, on: bool, set_to: list[int]
) -> None:
    assert render.enable_vt_mode(kernel32, handle) is on
    assert kernel32.set_to == set_to


def test_ansi_is_spoken_on_posix_and_on_windows_only_by_a_console_that_was_switched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Console(Terminal):
        def fileno(self) -> int:
            return 1

    assert render.speaks_ansi(io.StringIO(), "linux")
    assert not render.speaks_ansi(Terminal(), "win32")  # no file: no console mode to set
    switched: list[int] = []
    answer = [False]

    def console_vt(fd: int) -> bool:
        switched.append(fd)
        return answer[0]

    monkeypatch.setattr(render, "_windows_console_vt", console_vt)
    monkeypatch.setattr(render, "PLATFORM", "win32")
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    assert not render.colour_enabled(Console())
    assert not render.Progress.for_stream(Console()).enabled
    answer[0] = True
    assert render.colour_enabled(Console()) and render.Progress.for_stream(Console()).enabled
    assert switched == [1, 1, 1, 1]
