"""Malformed input: exit 2 and one line ``error: ...`` naming the value, through both front ends."""

from __future__ import annotations

import os

import pytest

from tests.conftest import (
    fresh_port,
    run_backend,
    run_backend_process,
    run_cli,
    run_cli_process,
    run_invoke,
    run_invoke_process,
)
from utils.port_manager import shown

HUGE = "1" * 4301  # past int()'s digit limit: once a traceback in every command
BAD_PORTS = ["abc", "0", "-1", "65536", "80.5", "", " ", " 80", "80\n", "8_0", HUGE]


def _cli_and_invoke(cli_args: list[str], invoke_args: list[str]) -> list[tuple[str, object]]:
    return [("cli", run_cli(*cli_args)), ("invoke", run_invoke(*invoke_args))]


def one_line_error(result: object) -> str:
    """Exit 2, nothing on stdout, and one line ``error: ...`` on stderr: that line."""
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert result.stdout == ""  # type: ignore[attr-defined]
    return str(lines[0])


def assert_one_line_error(result: object, value: str) -> None:
    """One line ``error: ...`` that names ``value`` as the tools show a value (quoted,
    escaped, a long one cut with its length): an empty or blank value too."""
    line = one_line_error(result)
    assert shown(value) in line, (shown(value), line)


@pytest.mark.parametrize("value", BAD_PORTS)
@pytest.mark.parametrize("command", ["check", "cleanup", "wait"])
def test_bad_port(command: str, value: str) -> None:
    for _front, result in _cli_and_invoke([command, value], [f"ports.{command}", "--port", value]):
        assert_one_line_error(result, value)
        assert "1 to 65535" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["abc", "0", "70000", HUGE])
def test_bad_start_port(value: str) -> None:
    for _front, result in _cli_and_invoke(
        ["find", "--start", value], ["ports.find", "--start", value]
    ):
        assert_one_line_error(result, value)


BAD_DURATIONS = ["-1", "abc", "nan", "inf", "", "1e300", "1e3", " 5", HUGE]


@pytest.mark.parametrize("value", [*BAD_DURATIONS, "601"])
def test_bad_grace(value: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["cleanup", port, "--grace", value],
        ["ports.cleanup", "--port", port, "--grace", value],
    ):
        assert_one_line_error(result, value)
        assert "seconds from 0 to 600" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [*BAD_DURATIONS, "61"])
def test_bad_settle(value: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["cleanup", port, "--settle", value],
        ["ports.cleanup", "--port", port, "--settle", value],
    ):
        assert_one_line_error(result, value)
        assert "seconds from 0 to 60" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["-0.5", "soon", "1e300", "86401", HUGE])
def test_bad_timeout(value: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["wait", port, "--timeout", value],
        ["ports.wait", "--port", port, "--timeout", value],
    ):
        assert_one_line_error(result, value)
        assert "seconds from 0 to 86400" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["check", "wait", "find"])
def test_unresolvable_host(command: str) -> None:
    host = "no-such-host.invalid"
    port = str(fresh_port())
    cli = [command, "--host", host] + ([port] if command != "find" else [])
    task = [f"ports.{command}", "--host", host] + (["--port", port] if command != "find" else [])
    for _front, result in _cli_and_invoke(cli, task):
        assert_one_line_error(result, host)


# TEST-NET-1 and an IPv4-mapped form of it: a test bind sends no traffic anywhere.
@pytest.mark.parametrize("host", ["192.0.2.1", "::ffff:192.0.2.1"])
def test_a_host_that_is_not_this_machine_is_refused_by_check_find_and_serve(host: str) -> None:
    port = str(fresh_port())
    for result in (
        run_cli("check", port, "--host", host),
        run_cli("find", "--host", host),
        run_invoke("ports.check", "--port", port, "--host", host),
        run_invoke("ports.find", "--host", host),
        run_backend("--dev", "--port", port, "--host", host),
    ):
        assert_one_line_error(result, host)
        assert "address of this machine" in result.stderr


def test_an_ipv4_mapped_loopback_is_checked_as_its_ipv4_address() -> None:
    result = run_cli("check", str(fresh_port()), "--host", "::ffff:127.0.0.1", "--json")
    assert result.returncode == 0, result.stderr
    assert '"address": "127.0.0.1"' in result.stdout


def test_missing_port_is_a_usage_error() -> None:
    assert one_line_error(run_cli("check")).startswith("error: check needs PORT [PORT ...]")
    assert "a port is required (as an argument or --port)" in one_line_error(
        run_invoke("ports.check")
    )


@pytest.mark.parametrize("path", ["health", "/\u00e9", "/a b", "/x\ny", "/\x1b[2J"])
def test_bad_http_path(path: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["wait", port, "--http", path, "--timeout", "0"],
        ["ports.wait", "--port", port, "--http", path, "--timeout", "0"],
    ):
        assert_one_line_error(result, path)
        assert "printable ASCII" in result.stderr  # type: ignore[attr-defined]


def test_conflicting_wait_conditions() -> None:
    port = str(fresh_port())
    result = run_cli("wait", port, "--http", "/health", "--free")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_bad_reader_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT_MANAGER_READER", "magic")
    assert_one_line_error(run_cli("list", "--all"), "magic")


# "0" is no bad --port for a server (it asks the OS for a port), but it is for PORT.
@pytest.mark.parametrize("value", [HUGE, " 80", "80\n", "-1", "abc"])
def test_bad_serve_port_through_every_front_end(value: str) -> None:
    for result in (
        run_invoke("serve.dev", "--port", value),
        run_backend("--dev", "--port", value),
        run_backend("--dev", env={**os.environ, "NO_COLOR": "1", "PORT": value}),
        run_invoke("serve.dev", env={**os.environ, "NO_COLOR": "1", "PORT": value}),
    ):
        assert_one_line_error(result, value)
        assert "1 to 65535" in result.stderr


@pytest.mark.parametrize("value", [HUGE, "0", "65", " 2", "two"])
def test_bad_workers_through_every_front_end(value: str) -> None:
    for result in (
        run_invoke("serve.prod", "--workers", value),
        run_backend("--production", "--workers", value),
        run_backend("--production", env={**os.environ, "NO_COLOR": "1", "WEB_CONCURRENCY": value}),
    ):
        assert_one_line_error(result, value)
        assert "1 to 64" in result.stderr


@pytest.mark.parametrize("value", ["abc", HUGE])
def test_real_processes_answer_bad_input_in_one_line(value: str) -> None:
    """The tables above run each front end's entry point in this process; a process of
    its own answers alike, through every front end."""
    for result in (
        run_cli_process("check", value),
        run_invoke_process("ports.check", "--port", value),
        run_invoke_process("serve.dev", "--port", value),
        run_backend_process("--dev", "--port", value),
        run_backend_process(
            "--production", env={**os.environ, "NO_COLOR": "1", "WEB_CONCURRENCY": value}
        ),
    ):
        assert_one_line_error(result, value)


def test_a_start_that_is_not_refused_fails_in_process_instead_of_serving() -> None:
    """The tables above run the front ends in the test process, where a start that should
    have been refused must fail its test at once, not serve until the timeout."""
    with pytest.raises(AssertionError, match="began serving"):
        run_backend("--dev", "--no-reload", "--port", str(fresh_port()))
