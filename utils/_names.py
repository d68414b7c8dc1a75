"""The names of the enum-like values the records carry, as ``Literal`` types.

Kept apart from the records (``_common``) because ``Literal`` comes from ``typing``, which
the command line does not import (start-up time): the records import these names for type
checkers only, and ``port_manager`` loads this module when a caller asks for one.
"""

from __future__ import annotations

from typing import Literal

ReaderName = Literal["netlink", "procfs", "psutil"]
SocketState = Literal["listening", "bound"]
# "server" holds its socket alone, "supervisor" shares it with its children, "worker"
# shares its parent's socket (uvicorn --workers/--reload, gunicorn, ...).
Role = Literal["server", "supervisor", "worker"]
# How a platform stops processes: signals (POSIX), or whole process trees (Windows).
StopperName = Literal["posix", "windows"]
