"""Who holds a port, is it free, which one is, take one, free one, wait for one.

The public API of the port tools: the CLI's commands (which the Invoke tasks run), the
backend, the pytest plugin and the tests reach the port tools through it (tests of a
private mechanism excepted). The defaults and ranges are defined once, in ``_values``,
and exported here. Importing it is cheap: the values, the records and the defaults load
at once; the parts that do the work (test binds, discovery, stopping, waiting, the
compatibility functions) load on first use.

Run as a program (``python utils/port_manager.py``, ``python -m utils.port_manager`` or,
installed, ``portkeeper``) it is the command line of ``utils/port_cli.py``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:
    # Run as a file: make the repository importable, then hand over to the CLI.
    import os

    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from utils.port_cli import run

    run()

from utils._values import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PORT,
    DEFAULT_SETTLE_SECONDS,
    DEFAULT_WAIT_SECONDS,
    MAX_GRACE_SECONDS,
    MAX_SETTLE_SECONDS,
    MAX_WAIT_SECONDS,
    PORT_RANGE,
    WORKERS_RANGE,
    parse_http_path,
    parse_int,
    parse_port,
    parse_seconds,
    resolve_host,
    shown,
)
from utils.errors import InvalidValue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:  # the lazy names below, as type checkers and editors should see them
    from utils._binding import (
        LOCAL_ADDRESSES,
        AddressStatus,
        PortInUse,
        PortStatus,
        check,
        find,
        reserve,
    )
    from utils._common import Listener, ProcessFacts
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
    from utils._holders import (
        descendants,
        listeners,
        process_facts,
        process_tree,
        project_ports,
        socket_ports,
    )
    from utils._names import ReaderName, Role
    from utils._platform import reader_name
    from utils._project_policy import PROJECT_ROOT, is_project_process, runs_project_code
    from utils._stop_rules import CleanupResult, Outcome
    from utils._stopping import cleanup, stop_processes
    from utils._waiting import WaitResult, wait

# name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {
    **dict.fromkeys(
        ("LOCAL_ADDRESSES", "AddressStatus", "PortInUse", "PortStatus", "check", "find", "reserve"),
        "utils._binding",
    ),
    **dict.fromkeys(
        (
            "cleanup_port",
            "cleanup_port_if_needed",
            "cleanup_project_ports",
            "find_free_port",
            "get_process_using_port",
            "is_port_in_use",
            "kill_process_on_port",
            "list_project_ports",
            "wait_for_port_free",
        ),
        "utils._compat",
    ),
    **dict.fromkeys(
        (
            "descendants",
            "listeners",
            "process_facts",
            "process_tree",
            "project_ports",
            "socket_ports",
        ),
        "utils._holders",
    ),
    **dict.fromkeys(("Listener", "ProcessFacts"), "utils._common"),
    **dict.fromkeys(("ReaderName", "Role"), "utils._names"),  # Literal types: typing loads
    "reader_name": "utils._platform",
    **dict.fromkeys(
        ("PROJECT_ROOT", "is_project_process", "runs_project_code"), "utils._project_policy"
    ),
    **dict.fromkeys(("CleanupResult", "Outcome"), "utils._stop_rules"),
    **dict.fromkeys(("cleanup", "stop_processes"), "utils._stopping"),
    **dict.fromkeys(("WaitResult", "wait"), "utils._waiting"),
}


def __getattr__(name: str) -> object:
    """Load a lazy name's module on first use, then keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    __import__(module)  # not importlib.import_module: importing importlib costs start-up time
    value = getattr(sys.modules[module], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_PORT",
    "DEFAULT_SETTLE_SECONDS",
    "DEFAULT_WAIT_SECONDS",
    "LOCAL_ADDRESSES",
    "MAX_GRACE_SECONDS",
    "MAX_SETTLE_SECONDS",
    "MAX_WAIT_SECONDS",
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
    "ProcessFacts",
    "ReaderName",
    "Role",
    "WaitResult",
    "check",
    "cleanup",
    "cleanup_port",
    "cleanup_port_if_needed",
    "cleanup_project_ports",
    "descendants",
    "find",
    "find_free_port",
    "get_process_using_port",
    "is_port_in_use",
    "is_project_process",
    "kill_process_on_port",
    "list_project_ports",
    "listeners",
    "parse_http_path",
    "parse_int",
    "parse_port",
    "parse_seconds",
    "process_facts",
    "process_tree",
    "project_ports",
    "reader_name",
    "reserve",
    "resolve_host",
    "runs_project_code",
    "shown",
    "socket_ports",
    "stop_processes",
    "wait",
    "wait_for_port_free",
]

if __name__ == "__main__":
    from utils.port_cli import run

    run()
