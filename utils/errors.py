"""The error contract every front end shares (the CLI, the Invoke tasks, ``python -m
backend``, the backend's settings and token store).

Exit statuses: 0 success, 1 the answer is "no" (busy, refused, timed out, a foreseeable
fault), 2 bad input, 130 interrupted. A foreseeable failure is one ``error: ...`` line
on stderr, never a traceback. This module imports nothing heavy, so the backend can raise
``InvalidValue`` without pulling in the port tools.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class InvalidValue(ValueError):
    """A malformed user value; ``str()`` is one line naming the value and what is allowed."""


def error_line(message: str) -> None:
    """One line on stderr, whatever the message holds (it may quote outside text)."""
    from utils.render import printable

    sys.stderr.write(f"error: {printable(message)}\n")


def _describe(failure: BaseException) -> str:
    if isinstance(failure, PermissionError):
        return f"permission denied: {failure}"
    if isinstance(failure, OSError):
        return failure.strerror or str(failure)
    return str(failure)


def guarded(action: Callable[[], int], failures: tuple[type[Exception], ...] = ()) -> int:
    """Run ``action``; bad input exits 2, the expected ``failures`` exit 1, each as one line."""
    try:
        return action()
    except InvalidValue as invalid:
        error_line(str(invalid))
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # the reader went away: the caller ends quietly
    except failures as failure:
        error_line(_describe(failure))
        return EXIT_NO
