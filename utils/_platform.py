"""The one place the platform's modules are chosen, once per process (psutil's pattern).

The reader: ``_linux`` (netlink sock_diag, or the /proc/net text tables, and one pass
over ``/proc/*/fd``) where procfs exists, ``_generic`` (psutil) everywhere else. Both have
the interface ``_common.Reader``. The environment variable ``PORT_MANAGER_READER``
(``netlink``, ``procfs`` or ``psutil``) forces one: that is how the test suite runs every
path on one machine.

The stopper (``_stop_rules.Stopper``): ``_signals`` on POSIX, ``_windows`` on Windows,
which has no signals to send. What else differs is decided where it is used, by
functions taking the platform's name, so every platform's decision is tested here:
``_binding.bind_options`` and ``with_wildcards``, ``_stop_rules.system_pids``.
"""

from __future__ import annotations

import os
import sys

from utils.errors import InvalidValue

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from utils._common import Reader
    from utils._names import ReaderName, StopperName
    from utils._stop_rules import Stopper

READER_VARIABLE = "PORT_MANAGER_READER"
READERS: tuple[ReaderName, ...] = ("netlink", "procfs", "psutil")
# The choice, and the variable's value it was made for: the suite changes the variable
# within one process to hold the readers equal, so a new value means a new choice.
_CHOSEN: dict[str, tuple[ReaderName, Reader]] = {}


def _choose(setting: str) -> tuple[ReaderName, Reader]:
    choice = setting.strip().lower()
    if choice and choice not in READERS:
        raise InvalidValue(
            f"{READER_VARIABLE} {choice!r} is not valid: expected one of "
            f"{', '.join(READERS)}, or unset"
        )
    if choice != "psutil" and sys.platform.startswith("linux"):
        from utils import _linux

        if _linux.available():
            name: ReaderName = "procfs" if choice == "procfs" else "netlink"
            _linux.select(name)
            return name, _linux
    if choice in ("netlink", "procfs"):
        raise InvalidValue(f"{READER_VARIABLE} {choice!r} is not available on this system")
    from utils import _generic

    return "psutil", _generic


def reader() -> Reader:
    """The platform reader in force (imported when first asked for: psutil costs time)."""
    return _chosen()[1]


def _chosen() -> tuple[ReaderName, Reader]:
    setting = os.environ.get(READER_VARIABLE, "")
    if setting not in _CHOSEN:
        _CHOSEN.clear()
        _CHOSEN[setting] = _choose(setting)
    return _CHOSEN[setting]


def reader_name() -> ReaderName:
    """The name of the reader in force."""
    return _chosen()[0]


def stopper_name(platform: str = sys.platform) -> StopperName:
    """Which stopper ``platform`` needs: signals on POSIX, process trees on Windows."""
    return "windows" if platform == "win32" else "posix"


def stopper() -> Stopper:
    """The platform's stopper (imported when first asked for)."""
    if stopper_name() == "windows":
        from utils import _windows

        return _windows
    from utils import _signals

    return _signals
