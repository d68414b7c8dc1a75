"""Who holds a port, is it free, which one is, take one, free one, wait for one.

The public API of the port tooling; ``utils/port_cli.py`` is its command line, run by
``python utils/port_manager.py list|check|find|cleanup|wait`` or
``python -m utils.port_manager``. The work is done in small private modules: readers per
platform (``_linux``, ``_psutil_reader``) behind ``_holders``, test binds in ``_binding``,
stopping in ``_stopping`` and waiting in ``_waiting``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # Run as a file: make the repository importable, then hand over to the CLI.
    import os

    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from utils.port_cli import main

    sys.exit(main())

from utils._binding import (
    LOCAL_ADDRESSES,
    AddressStatus,
    PortInUse,
    PortStatus,
    check,
    find,
    reserve,
)
from utils._compat import (
    cleanup_port,
    cleanup_port_if_needed,
    cleanup_project_ports,
    find_free_port,
    get_process_using_port,
    is_port_in_use,
    kill_process_on_port,
    list_project_ports,
    wait_for_port_free,
)
from utils._guard import EXIT_NO, EXIT_OK, EXIT_USAGE, error_line, guarded
from utils._holders import Listener, is_project_process, listeners, project_ports
from utils._project import PROJECT_ROOT, runs_project_code
from utils._stopping import CleanupResult, Outcome, cleanup
from utils._values import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PORT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_WAIT_SECONDS,
    PORT_RANGE,
    WORKERS_RANGE,
    InvalidValue,
    parse_int,
    parse_port,
    parse_seconds,
    resolve_host,
    shown,
)
from utils._waiting import WaitResult, wait

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_PORT",
    "DEFAULT_SETTLE_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_USAGE",
    "LOCAL_ADDRESSES",
    "PORT_RANGE",
    "PROJECT_ROOT",
    "WORKERS_RANGE",
    "AddressStatus",
    "CleanupResult",
    "InvalidValue",
    "Listener",
    "Outcome",
    "PortInUse",
    "PortStatus",
    "WaitResult",
    "check",
    "cleanup",
    "cleanup_port",
    "cleanup_port_if_needed",
    "cleanup_project_ports",
    "error_line",
    "find",
    "find_free_port",
    "get_process_using_port",
    "guarded",
    "is_port_in_use",
    "is_project_process",
    "kill_process_on_port",
    "list_project_ports",
    "listeners",
    "parse_int",
    "parse_port",
    "parse_seconds",
    "project_ports",
    "reserve",
    "resolve_host",
    "runs_project_code",
    "shown",
    "wait",
    "wait_for_port_free",
]

if __name__ == "__main__":
    from utils.port_cli import main

    sys.exit(main())
