"""Plain-text output: aligned tables, and colour only where a person is looking.

Hand-written rather than a table library, which would cost more start-up time than
the whole answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}


def colour_enabled(stream: TextIO) -> bool:
    """Colour on a terminal only, never with NO_COLOR set (no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"\033[{_COLOURS[colour]}m{text}\033[0m" if enabled and text else text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], enabled: bool) -> str:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).ljust(width) for cell, width in zip(cells[:-1], widths[:-1], strict=True)
        ]
        return "  ".join([*padded, str(cells[-1])]).rstrip()

    head = paint(line(headers), "bold", enabled)
    return "\n".join([head, *(line(row) for row in rows)])


def emit_json(document: Any) -> None:
    """Indented at a terminal; compact otherwise (``indent`` turns off the fast C encoder)."""
    import json  # with ``re`` beneath it: only the --json answers pay for it

    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(document, indent=indent) + "\n")
