"""The naive baseline: listening TCP sockets from one ``psutil.net_connections()`` call.

What a quick script would do (and what port killers often do): one system-wide table,
filtered to LISTEN, one pid per socket. Run as ``python benchmarks/psutil_listeners.py``.
"""

from __future__ import annotations

import psutil


def main() -> None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            print(conn.laddr.ip, conn.laddr.port, conn.pid)


if __name__ == "__main__":
    main()
