"""The exit-status contract shared by every front end (CLI, Invoke tasks, ``python -m backend``).

0 success, 1 the answer is "no" (busy, refused, timed out, a foreseeable fault), 2 bad
input; a foreseeable failure is one ``error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from utils._values import InvalidValue
from utils.render import printable

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def error_line(message: str) -> None:
    """One line on stderr, whatever the message holds (it may quote outside text)."""
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
