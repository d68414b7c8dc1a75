"""Polling with short, growing intervals: fast to notice, cheap while waiting."""

from __future__ import annotations

import time
from collections.abc import Callable


def poll_until(
    condition: Callable[[], bool],
    deadline: float,
    first_interval: float = 0.005,
    max_interval: float = 0.2,
) -> bool:
    """Call ``condition`` until it is true (True) or ``time.monotonic()`` passes ``deadline``."""
    interval = first_interval
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 1.6, max_interval)
