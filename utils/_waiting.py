"""Wait for a port to accept connections, to answer HTTP 2xx, or to become free."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any, NamedTuple

from utils._binding import check
from utils._polling import poll_until
from utils._values import resolve_host

LOOPBACK = ("127.0.0.1", "::1")


class WaitResult(NamedTuple):
    port: int
    host: str | None
    condition: str  # "open", "http" or "free"
    reached: bool
    seconds: float
    detail: str | None = None  # the last answer seen, to explain a timeout

    def as_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "host": self.host,
            "condition": self.condition,
            "reached": self.reached,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def _accepts(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_status(address: str, port: int, path: str, timeout: float) -> int:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        return connection.getresponse().status
    finally:
        connection.close()


def wait(
    port: int,
    host: str | None = None,
    *,
    timeout: float = 30.0,
    free: bool = False,
    http_path: str | None = None,
) -> WaitResult:
    """Poll until the condition holds or ``timeout`` seconds pass.

    Without a host, connections go to the loopback addresses (IPv4, then IPv6); ``free``
    uses the same test bind as ``check``.
    """
    start = time.monotonic()
    addresses = resolve_host(host) if host is not None else LOOPBACK
    condition = "free" if free else "http" if http_path is not None else "open"
    last: list[str] = []

    def reached() -> bool:
        if free:
            return check(port, host).free
        for address in addresses:
            # One attempt never outlasts the whole wait (nor 2 s, so a retry comes soon).
            attempt = min(2.0, max(0.05, start + timeout - time.monotonic()))
            if http_path is None:
                if _accepts(address, port, attempt):
                    return True
                continue
            try:
                status = _http_status(address, port, http_path, attempt)
            except (OSError, http.client.HTTPException) as error:
                last[:] = [f"{address}: {error}"]
                continue
            last[:] = [f"{address}: HTTP {status}"]
            if 200 <= status < 300:
                return True
        return False

    ok = poll_until(reached, start + timeout, first_interval=0.01, max_interval=0.25)
    return WaitResult(
        port, host, condition, ok, time.monotonic() - start, None if ok or not last else last[0]
    )
