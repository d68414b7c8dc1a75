"""``wait``: one deadline for the whole wait, and a timeout message naming every address.

Real servers in real processes: a server trickling its status line, servers answering
503, malformed or interim answers, a real ``python -m http.server``, and nothing at all.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listening_socket,
    run_cli,
    run_invoke,
)
from utils import port_manager

CLI = [PYTHON, str(ROOT / "utils" / "port_manager.py")]
STARTUP_MARGIN = 3.0  # interpreter start-up of the CLI on a slow machine; far below 25-40 s
IN_PROCESS_MARGIN = 0.3
WAIT_KEYS = {"port", "host", "condition", "reached", "seconds", "detail"}

# Accepts connections and sends its status line one byte every 0.5 s (8.5 s in all).
SLOW_HEADERS = """
import socket, sys, threading, time

def trickle(conn):
    with conn:
        try:
            if not conn.recv(65536):
                return
            for byte in b"HTTP/1.1 200 OK\\r\\n":
                conn.sendall(bytes([byte]))
                time.sleep(0.5)
            conn.sendall(b"Content-Length: 0\\r\\n\\r\\n")
        except OSError:
            pass

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    conn, _ = s.accept()
    threading.Thread(target=trickle, args=(conn,), daemon=True).start()
"""

# Reads each request head, logs it, sends a fixed answer (another once the flag file
# exists) and "pad" bytes of x, then closes the connection ("close") or holds it until the
# client closes it. argv: PORT CONFIG-JSON {"answer": hex, "after": hex, "pad": int,
# "close": bool, "flag": path, "log": path, "hold_first": bool (the first request gets
# no answer at all), "hold_later": bool (only the first request gets one)}
ANSWERING = """
import json, os, socket, sys, threading

config = json.loads(sys.argv[2])
lock = threading.Lock()
seen = []

def serve(conn):
    with conn:
        try:
            conn.settimeout(30)
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with lock:
                seen.append(1)
                first = len(seen) == 1  # the first request (readiness probes send none)
            if config.get("log"):
                with lock, open(config["log"], "ab") as log:
                    log.write(head)
            if (first and config.get("hold_first")) or (not first and config.get("hold_later")):
                conn.recv(1)
                return
            after = config.get("flag") and os.path.exists(config["flag"])
            answer = bytes.fromhex(config["after"] if after else config["answer"])
            conn.sendall(answer + b"x" * config["pad"])
            if config["close"]:
                return
            while conn.recv(65536):
                pass
        except OSError:
            pass

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def ipv6_loopback() -> bool:
    """True when this machine has ``::1`` (a wait tries it after 127.0.0.1)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_server(processes: Processes, script: str, port: int, *args: str) -> None:
    processes.start([PYTHON, "-c", script, str(port), *args])
    deadline_poll(lambda: accepting(port))


def answering(
    processes: Processes,
    port: int,
    answer: bytes,
    *,
    after: bytes = b"",
    pad: int = 0,
    close: bool = False,
    flag: Path | None = None,
    log: Path | None = None,
    hold_first: bool = False,
    hold_later: bool = False,
) -> None:
    config = {
        "answer": answer.hex(),
        "after": after.hex(),
        "pad": pad,
        "close": close,
        "flag": str(flag) if flag else "",
        "log": str(log) if log else "",
        "hold_first": hold_first,
        "hold_later": hold_later,
    }
    start_server(processes, ANSWERING, port, json.dumps(config))


def timed_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = run_cli(*args)
    return result, time.monotonic() - start


def last_answers(stderr: str) -> str:
    """The ``(last answer: ...)`` part of a timeout message."""
    assert "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1, stderr
    assert "(last answer: " in stderr, stderr
    return stderr.split("(last answer: ", 1)[1].rstrip().removesuffix(")")


def expected_v6(error: str = "Connection refused") -> str:
    return f"::1: {error}" if ipv6_loopback() else "::1: "


# ------------------------------------------------------------------ one deadline


def test_http_wait_ends_at_its_timeout_against_a_server_trickling_headers(
    processes: Processes,
) -> None:
    port = fresh_port()
    start_server(processes, SLOW_HEADERS, port)

    result, wall = timed_cli("wait", str(port), "--http", "/health", "--timeout", "1.5")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert wall < 1.5 + STARTUP_MARGIN, wall
    assert "timed out after 1.5 s" in result.stderr
    answers = last_answers(result.stderr)
    assert answers.startswith("127.0.0.1: timed out; "), answers
    assert expected_v6() in answers

    for host in (None, "127.0.0.1"):
        start = time.monotonic()
        waited = port_manager.wait(port, host, timeout=1.5, http_path="/health")
        wall = time.monotonic() - start
        assert not waited.reached
        assert 1.5 <= waited.seconds <= 1.5 + IN_PROCESS_MARGIN, waited
        assert wall <= 1.5 + IN_PROCESS_MARGIN, wall
        assert waited.detail is not None and waited.detail.startswith("127.0.0.1: timed out")


def test_a_stuck_attempt_is_retried_within_two_seconds(processes: Processes) -> None:
    port = fresh_port()
    answering(processes, port, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", hold_first=True)
    waited = port_manager.wait(port, "127.0.0.1", timeout=10, http_path="/health")
    assert waited.reached, waited
    assert 2.0 <= waited.seconds <= 2.0 + 1.0, waited  # the first attempt gave up at 2 s


def test_timeout_zero_checks_once() -> None:
    port = fresh_port()
    result, wall = timed_cli("wait", str(port), "--timeout", "0")
    assert result.returncode == 1
    assert wall < STARTUP_MARGIN
    answers = last_answers(result.stderr)  # even at 0 s, every address is tried once
    assert answers.startswith("127.0.0.1: Connection refused; ::1: "), answers
    assert expected_v6() in answers
    with listening_socket("127.0.0.1", port):
        assert run_cli("wait", str(port), "--timeout", "0").returncode == 0


# ------------------------------------------------------------------ the timeout message


def test_open_timeout_names_every_address_with_its_error() -> None:
    port = str(fresh_port())
    result = run_cli("wait", port, "--timeout", "0.5")
    assert result.returncode == 1
    assert f"timed out after 0.5 s waiting for port {port} to accept connections" in (result.stderr)
    answers = last_answers(result.stderr)
    ipv4, _, ipv6 = answers.partition("; ")
    assert ipv4 == "127.0.0.1: Connection refused", answers
    assert ipv6.startswith("::1: ") and len(ipv6) > len("::1: "), answers
    if ipv6_loopback():
        assert ipv6 == "::1: Connection refused", answers


def test_json_timeout_names_each_address() -> None:
    port = fresh_port()
    for extra in ([], ["--http", "/health"]):
        result = run_cli("wait", str(port), "--timeout", "0.5", "--json", *extra)
        assert result.returncode == 1
        assert result.stderr == ""
        document = json.loads(result.stdout)
        assert set(document) == WAIT_KEYS
        assert document["reached"] is False and document["port"] == port
        assert document["host"] is None
        assert document["condition"] == ("http" if extra else "open")
        assert 0.5 <= document["seconds"] <= 0.5 + IN_PROCESS_MARGIN
        detail = document["detail"]
        assert isinstance(detail, str)
        assert detail.startswith("127.0.0.1: Connection refused; ::1: "), detail
        assert expected_v6() in detail

    # An explicit host names only its own addresses.
    result = run_cli("wait", str(port), "--host", "127.0.0.1", "--timeout", "0.3", "--json")
    document = json.loads(result.stdout)
    assert document["host"] == "127.0.0.1"
    assert document["detail"] == "127.0.0.1: Connection refused"


def test_wait_times_out_with_a_message_not_a_traceback() -> None:
    port = str(fresh_port())
    result = run_cli("wait", port, "--timeout", "0.3", "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["reached"] is False and document["seconds"] >= 0.3
    human = run_invoke("ports.wait", "--port", port, "--timeout", "0.2")
    assert human.returncode == 1
    assert "timed out after 0.2 s" in human.stderr and "Traceback" not in human.stderr


def test_http_wait_reports_the_last_answer_on_timeout() -> None:
    port = fresh_port()
    with listening_socket("127.0.0.1", port):  # accepts connections, never answers HTTP
        result = run_cli("wait", str(port), "--http", "/health", "--timeout", "0.5")
    assert result.returncode == 1
    answers = last_answers(result.stderr)
    assert answers.startswith("127.0.0.1: timed out; "), answers
    assert expected_v6() in answers


# ------------------------------------------------------------------ HTTP answers


def test_http_wait_goes_from_503_to_2xx_and_never_shows_the_servers_words(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    flag, log = tmp_path / "ready", tmp_path / "requests.log"
    answering(
        processes,
        port,
        b"HTTP/1.1 503 SERVER-WORDS\x1b[2J\r\nContent-Length: 0\r\n\r\n",
        after=b"HTTP/1.1 204 No Content\r\n\r\n",
        flag=flag,
        log=log,
    )
    result = run_cli("wait", str(port), "--http", "/health?x=1", "--timeout", "0.5")
    assert result.returncode == 1
    answers = last_answers(result.stderr)
    assert answers.startswith("127.0.0.1: HTTP 503; "), answers
    assert expected_v6() in answers
    assert "SERVER-WORDS" not in result.stderr and "\x1b" not in result.stderr
    request = log.read_bytes().split(b"\r\n\r\n")[0].split(b"\r\n")
    assert request[0] == b"GET /health?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in request and b"Connection: close" in request

    def requests() -> int:
        return log.read_bytes().count(b"GET /health ")

    waiter = processes.start(
        [*CLI, "wait", str(port), "--http", "/health", "--timeout", "30", "--json"],
        stdout=subprocess.PIPE,
    )
    deadline_poll(lambda: requests() >= 2)  # it has been answered 503, and keeps asking
    flag.touch()
    out, _ = waiter.communicate(timeout=40)
    assert waiter.returncode == 0
    document = json.loads(out)
    assert document["reached"] is True and document["detail"] is None


def test_http_wait_reaches_a_real_http_server_once_the_file_appears(
    processes: Processes, tmp_path: Path
) -> None:
    port = fresh_port()
    processes.start(
        [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)]
    )
    deadline_poll(lambda: accepting(port))
    result = run_cli("wait", str(port), "--http", "/ready.txt", "--timeout", "0.5")
    assert result.returncode == 1
    assert last_answers(result.stderr).startswith("127.0.0.1: HTTP 404; ")
    assert "not found" not in result.stderr.lower()  # http.server's reason phrase

    waiter = processes.start(
        [*CLI, "wait", str(port), "--http", "/ready.txt", "--timeout", "30"],
        stdout=subprocess.PIPE,
    )
    (tmp_path / "ready.txt").write_text("ok\n")
    out, _ = waiter.communicate(timeout=40)
    assert waiter.returncode == 0
    assert b"is ready" in out


MALFORMED = "malformed answer (not an HTTP/1.x status line)"
CLOSED = "closed the connection"


@pytest.mark.parametrize(
    ("answer", "pad", "close", "code", "detail"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", 0, False, 1, MALFORMED, id="ssh"),
        pytest.param(b"HTTP/1.1 2OO OK\r\n\r\n", 0, False, 1, MALFORMED, id="letters"),
        pytest.param(b"HTTP/1.1 200OK\r\n\r\n", 0, False, 1, MALFORMED, id="no-space"),
        pytest.param(b"HTTP/2 200\r\n\r\n", 0, False, 1, MALFORMED, id="http2"),
        pytest.param(b"http/1.1 200 OK\r\n\r\n", 0, False, 1, MALFORMED, id="lowercase"),
        pytest.param(b"HTTP/1.1 099 Low\r\n\r\n", 0, False, 1, MALFORMED, id="below-100"),
        pytest.param(
            b"HTTP/1.1 200 OK",
            70000,
            False,
            1,
            "malformed answer (not an HTTP/1.x status line in the first 64 KiB)",
            id="over-64k",
        ),
        pytest.param(b"", 0, True, 1, f"{CLOSED} without answering", id="closed"),
        pytest.param(
            b"HTTP/1.1 20", 0, True, 1, f"{CLOSED} before the end of the status line", id="cut"
        ),
        pytest.param(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n", 0, False, 1, "HTTP 301", id="redirect"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\n\r\n", 0, True, 0, None, id="http10"),
        pytest.param(b"HTTP/1.1 200\r\n\r\n", 0, False, 0, None, id="no-reason"),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            0,
            False,
            0,
            None,
            id="early-hints",
        ),
    ],
)
def test_http_answers_are_parsed_strictly_without_a_traceback(
    processes: Processes, answer: bytes, pad: int, close: bool, code: int, detail: str | None
) -> None:
    port = fresh_port()
    answering(processes, port, answer, pad=pad, close=close)
    # Room for the server's first answer under load (two workers per core): a timeout
    # before any answer would name "timed out", not the answer.
    result, wall = timed_cli("wait", str(port), "--http", "/", "--timeout", "1")
    assert result.returncode == code, (result.stdout, result.stderr)
    assert wall < 1 + STARTUP_MARGIN
    if detail is not None:  # exactly our words: nothing the server sent reaches the terminal
        assert last_answers(result.stderr) == f"127.0.0.1: {detail}; {expected_v6()}" or (
            not ipv6_loopback() and last_answers(result.stderr).startswith(f"127.0.0.1: {detail};")
        )


def test_a_retry_cut_off_by_the_deadline_keeps_the_answer_before_it(
    processes: Processes,
) -> None:
    """The last retry may still wait for its answer when the deadline comes: the timeout
    names the answer the address gave, not "timed out"."""
    port = fresh_port()
    answering(processes, port, b"HTTP/2 200\r\n\r\n", close=True, hold_later=True)
    result = run_cli("wait", str(port), "--host", "127.0.0.1", "--http", "/", "--timeout", "1")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert last_answers(result.stderr) == "127.0.0.1: " + MALFORMED


def test_a_bad_http_path_is_refused_before_any_request() -> None:
    with pytest.raises(port_manager.InvalidValue):
        port_manager.wait(fresh_port(), timeout=0.1, http_path="/a\r\nX-Injected: 1")


# ------------------------------------------------------------------ the three conditions


def test_wait_until_open_http_and_free(processes: Processes) -> None:
    port = str(fresh_port())
    cli = [*CLI, "wait", port, "--timeout", "30"]
    waiter = processes.start([*cli, "--http", "/health", "--json"], stdout=subprocess.PIPE)
    server = processes.start([PYTHON, "-m", "uvicorn", "tests.apps.tiny:app", "--port", port])
    out, _ = waiter.communicate(timeout=40)
    assert waiter.returncode == 0
    document = json.loads(out)
    assert document["reached"] is True and document["condition"] == "http"
    assert run_cli("wait", port, "--timeout", "5").returncode == 0

    free_waiter = processes.start([*cli, "--free"], stdout=subprocess.PIPE)
    server.terminate()
    free_waiter.communicate(timeout=40)
    assert free_waiter.returncode == 0
