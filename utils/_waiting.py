"""Wait for a port to accept connections, to answer HTTP 2xx, or to become free."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from utils._binding import check
from utils._common import poll_until
from utils._values import DEFAULT_WAIT_SECONDS, parse_http_path, resolve_host

LOOPBACK = ("127.0.0.1", "::1")
ATTEMPT_SECONDS = 2.0  # one connection attempt at most, so a retry comes soon
FIRST_ATTEMPT_SECONDS = 0.01  # an address never tried gets this much, even past the deadline
MAX_ANSWER_BYTES = 64 * 1024  # read at most this much looking for the status line
_VERSION = b"HTTP/1."
MALFORMED = "malformed answer (not an HTTP/1.x status line)"


# What is waited for: connections accepted, a 2xx answer, or nobody holding the port.
Condition = Literal["open", "http", "free"]


class WaitResult(NamedTuple):
    port: int
    host: str | None
    condition: Condition
    reached: bool
    seconds: float
    # On a timeout, the last answer of each address tried, in the order tried:
    # "127.0.0.1: HTTP 503; ::1: Connection refused". Never text that came from the server.
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The wait result of the JSON contract: the fields, seconds to the millisecond."""
        return {**self._asdict(), "seconds": round(self.seconds, 3)}


class _NoAnswer(Exception):
    """An attempt that got no usable status line; ``str()`` is our own words, never the server's."""


def _remaining(end: float) -> float:
    """Seconds left until ``end``; TimeoutError once there are none.

    (Never 0: ``settimeout(0)`` would make the socket non-blocking, not expire it.)
    """
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _error_text(error: OSError) -> str:
    """The local reason of a failed socket operation: "Connection refused", "timed out"."""
    if isinstance(error, TimeoutError):  # socket.timeout and ETIMEDOUT alike
        return "timed out"
    return error.strerror or str(error) or type(error).__name__


def _connect(address: str, port: int, end: float) -> socket.socket:
    """A socket connected to ``address``:``port``, or OSError by ``end`` at the latest."""
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.settimeout(_remaining(end))
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _parse_status_line(line: bytes) -> int:
    """The code of ``HTTP/1.x NNN [reason]`` (the reason is ignored); _NoAnswer otherwise."""
    version, _, rest = line.partition(b" ")
    code = rest.partition(b" ")[0]
    if (
        len(version) == len(_VERSION) + 1
        and version.startswith(_VERSION)
        and version[-1:].isdigit()
        and len(code) == 3
        and code.isdigit()
        and code[:1] != b"0"
    ):
        return int(code)
    raise _NoAnswer(MALFORMED)


def _read_status(sock: socket.socket, end: float) -> int:
    """The final status code the server sends on ``sock``, reading until ``end`` at the latest.

    Interim answers (``100 Continue``, ``103 Early Hints``) are skipped with their headers.
    """
    buffer = b""
    begin = 0  # where the current answer starts in buffer
    while True:
        line_end = buffer.find(b"\r\n", begin)
        if line_end >= 0:
            status = _parse_status_line(buffer[begin:line_end])
            if status >= 200 or status == 101:
                return status
            block_end = buffer.find(b"\r\n\r\n", line_end)
            if block_end >= 0:
                begin = block_end + 4
                continue
        elif not _VERSION.startswith(buffer[begin : begin + len(_VERSION)]):
            raise _NoAnswer(MALFORMED)  # no need to wait for the end of the line
        if len(buffer) >= MAX_ANSWER_BYTES:
            raise _NoAnswer(f"{MALFORMED[:-1]} in the first {MAX_ANSWER_BYTES // 1024} KiB)")
        sock.settimeout(_remaining(end))
        chunk = sock.recv(MAX_ANSWER_BYTES - len(buffer))
        if not chunk:
            if begin == len(buffer):
                raise _NoAnswer("closed the connection without answering")
            raise _NoAnswer("closed the connection before the end of the status line")
        buffer += chunk


def _host_header(host: str | None, address: str, port: int) -> str:
    """``Host`` names what the user asked for when it is a plain name, else the address."""
    name = host.strip() if host is not None else address
    if not (name.isascii() and name.isprintable()) or " " in name:
        name = address
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def _http_status(address: str, port: int, path: str, host_header: str, end: float) -> int:
    # Written by hand instead of http.client: http.client's timeout applies to each socket
    # operation, so a server trickling its headers a byte at a time keeps one request alive
    # past any timeout (measured: 25-40 s for `wait --http ... --timeout 3`). Here every
    # connect, send and recv gets only the time left until ``end``.
    with _connect(address, port, end) as sock:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(_remaining(end))
        sock.sendall(request.encode("ascii"))
        return _read_status(sock, end)


def wait(
    port: int,
    host: str | None = None,
    *,
    timeout: float = DEFAULT_WAIT_SECONDS,
    free: bool = False,
    http_path: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> WaitResult:
    """Poll until the condition holds or ``timeout`` seconds pass.

    Without a host, connections go to the loopback addresses (IPv4, then IPv6); ``free``
    uses the same test bind as ``check``. With ``http_path`` (checked like ``--http``:
    InvalidValue otherwise), the condition is a ``GET`` answered with a 2xx status.

    One deadline bounds the whole wait: every connect, send and receive gets at most the
    time left (and at most 2 s, so a stuck attempt is retried soon). The only overshoot
    is the first attempt at an address never tried before the deadline, which gets
    10 ms so that ``timeout=0`` still checks once and every address has an answer: the
    call returns within ``timeout`` + 10 ms per address + scheduling delay (about 20 ms
    for the two loopback addresses). For ``free`` add the last test bind.

    On a timeout, ``detail`` is the last answer of each address, in the order tried
    (``127.0.0.1: HTTP 503; ::1: Connection refused``): a status code, a local socket
    error or our own words for a malformed answer, never text sent by the server.
    """
    start = time.monotonic()
    deadline = start + timeout
    if http_path is not None:
        parse_http_path(http_path)
    addresses = resolve_host(host) if host is not None else LOOPBACK
    condition: Condition = "free" if free else "http" if http_path is not None else "open"
    answers: dict[str, str] = {}  # address -> its last answer, in the order first tried

    def attempt(address: str) -> bool:
        now = time.monotonic()
        end = min(now + ATTEMPT_SECONDS, deadline)
        if address not in answers:
            end = max(end, now + FIRST_ATTEMPT_SECONDS)
        try:
            if http_path is None:
                _connect(address, port, end).close()
                return True
            status = _http_status(address, port, http_path, _host_header(host, address, port), end)
        except OSError as error:
            # A retry cut off by the overall deadline says less than the answer before it:
            # "timed out" would hide the malformed line or the 503 the address gave.
            cut_off = isinstance(error, TimeoutError) and end >= deadline and address in answers
            if not cut_off:
                answers[address] = _error_text(error)
            return False
        except _NoAnswer as error:
            answers[address] = str(error)
            return False
        answers[address] = f"HTTP {status}"
        return 200 <= status < 300

    goal = {"free": "to be free", "http": f"to answer 2xx at {http_path}"}.get(
        condition, "to accept connections"
    )

    def reached() -> bool:
        if progress is not None:
            last = "; ".join(f"{a}: {answer}" for a, answer in answers.items())
            progress(
                f"waiting for port {port} {goal}: {time.monotonic() - start:.1f} of "
                f"{timeout:g} s" + (f" (last: {last})" if last else "")
            )
        if free:
            return check(port, host).free
        for address in addresses:
            if address in answers and time.monotonic() >= deadline:
                continue  # no time left for a retry
            if attempt(address):
                return True
        return False

    ok = poll_until(reached, deadline, first_interval=0.01, max_interval=0.25)
    detail = "; ".join(f"{address}: {answer}" for address, answer in answers.items())
    return WaitResult(
        port, host, condition, ok, time.monotonic() - start, None if ok else detail or None
    )
