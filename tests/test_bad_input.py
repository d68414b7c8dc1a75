"""Malformed input: exit 2 and one line ``error: ...`` naming the value, through both front ends."""

from __future__ import annotations

import pytest

from tests.conftest import fresh_port, run_cli, run_invoke

BAD_PORTS = ["abc", "0", "-1", "65536", "80.5", "", " "]


def _cli_and_invoke(cli_args: list[str], invoke_args: list[str]) -> list[tuple[str, object]]:
    return [("cli", run_cli(*cli_args)), ("invoke", run_invoke(*invoke_args))]


def assert_one_line_error(result: object, value: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ")
    assert repr(value) in lines[0] or value in lines[0]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert result.stdout == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", BAD_PORTS)
@pytest.mark.parametrize("command", ["check", "cleanup", "wait"])
def test_bad_port(command: str, value: str) -> None:
    for _front, result in _cli_and_invoke([command, value], [f"ports.{command}", "--port", value]):
        assert_one_line_error(result, value)
        assert "1 to 65535" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_bad_start_port(value: str) -> None:
    for _front, result in _cli_and_invoke(
        ["find", "--start", value], ["ports.find", "--start", value]
    ):
        assert_one_line_error(result, value)


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", ""])
def test_bad_grace(value: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["cleanup", port, "--grace", value],
        ["ports.cleanup", "--port", port, "--grace", value],
    ):
        assert_one_line_error(result, value)
        assert "seconds >= 0" in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["-0.5", "soon"])
def test_bad_timeout(value: str) -> None:
    port = str(fresh_port())
    for _front, result in _cli_and_invoke(
        ["wait", port, "--timeout", value],
        ["ports.wait", "--port", port, "--timeout", value],
    ):
        assert_one_line_error(result, value)


@pytest.mark.parametrize("command", ["check", "wait", "find"])
def test_unresolvable_host(command: str) -> None:
    host = "no-such-host.invalid"
    port = str(fresh_port())
    cli = [command, "--host", host] + ([port] if command != "find" else [])
    task = [f"ports.{command}", "--host", host] + (["--port", port] if command != "find" else [])
    for _front, result in _cli_and_invoke(cli, task):
        assert_one_line_error(result, host)


def test_a_host_that_is_not_this_machine_cannot_be_checked() -> None:
    result = run_cli("check", str(fresh_port()), "--host", "192.0.2.1")  # TEST-NET-1, no traffic
    assert_one_line_error(result, "192.0.2.1")
    assert "address of this machine" in result.stderr


def test_missing_port_is_a_usage_error() -> None:
    assert run_cli("check").returncode == 2
    result = run_invoke("ports.check")
    assert_one_line_error(result, "--port")


def test_bad_http_path_and_conflicting_conditions() -> None:
    port = str(fresh_port())
    assert_one_line_error(run_cli("wait", port, "--http", "health"), "health")
    result = run_cli("wait", port, "--http", "/health", "--free")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_bad_reader_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT_MANAGER_READER", "magic")
    assert_one_line_error(run_cli("list", "--all"), "magic")
