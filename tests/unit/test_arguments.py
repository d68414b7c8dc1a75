"""Argument parsing: the port CLI's grammar (utils/_arguments.py over port_cli.COMMANDS),
its usage errors as one line with exit 2, and tasks.py's bare ports for Invoke."""

from __future__ import annotations

import pytest

from utils._arguments import Command, Option, UsageError, parse, usage, wants_help
from utils.port_cli import COMMANDS, main


def _parse(*words: str) -> tuple[str, dict[str, object]]:
    return parse(COMMANDS, list(words))


def _refused(*words: str) -> str:
    with pytest.raises(UsageError) as raised:
        _parse(*words)
    return str(raised.value)


# ------------------------------------------------------------------ what parses


def test_every_option_has_its_default_when_not_given() -> None:
    assert _parse("cleanup") == (
        "cleanup",
        {
            "force": False,
            "grace": "5",
            "settle": "0.5",
            "dry_run": False,
            "json": False,
            "ports": [],
        },
    )
    assert _parse("find") == ("find", {"start": "8000", "host": None, "json": False})


def test_ports_are_positional_and_join_a_repeated_port_option() -> None:
    command, values = _parse("cleanup", "8000", "--port", "8002", "8001", "--port=8003")
    assert command == "cleanup"
    assert values["ports"] == ["8000", "8001", "8002", "8003"]  # positional first


def test_values_come_after_a_space_or_an_equals_sign_and_stay_text() -> None:
    _, spaced = _parse("cleanup", "1", "--grace", "2.5", "--settle=0", "--force", "--json")
    assert (spaced["grace"], spaced["settle"], spaced["force"], spaced["json"]) == (
        "2.5",
        "0",
        True,
        True,
    )
    _, empty = _parse("wait", "1", "--http=")  # an empty value is a value (the check refuses it)
    assert empty["http"] == ""


def test_a_negative_number_is_a_port_to_refuse_not_an_option() -> None:
    assert _parse("check", "-1")[1]["ports"] == ["-1"]


def test_words_after_a_double_dash_are_ports() -> None:
    assert _parse("check", "--json", "--", "--host", "8000")[1]["ports"] == ["--host", "8000"]


# ------------------------------------------------------------------ what does not


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ((), "a command is required: one of list, check, find, cleanup, wait"),
        (
            ("kill", "8000"),
            "unknown command 'kill': expected one of list, check, find, cleanup, wait",
        ),
        (("check", "8000", "--forse"), "unknown option '--forse' for check"),
        (("check", "8000", "-x"), "unknown option '-x' for check"),
        (("list", "--json=yes"), "option --json takes no value"),
        (("cleanup", "8000", "--grace"), "option --grace needs a value"),
        (("check",), "check needs PORT [PORT ...]"),
        (("wait",), "wait needs PORT"),
        (("wait", "1", "2"), "unexpected argument '2' for wait"),
        (("wait", "1", "--port", "2"), "unexpected argument '2' for wait"),
        (("list", "8000"), "unexpected argument '8000' for list"),
        (("find", "8000"), "unexpected argument '8000' for find"),
    ],
)
def test_grammar_errors_say_what_is_wrong(words: tuple[str, ...], message: str) -> None:
    assert _refused(*words) == message


def test_a_hostile_command_name_is_named_escaped() -> None:
    message = _refused("\x1b[2Jkill" + "x" * 100)
    assert "\x1b" not in message and "\\x1b[2Jkill" in message and "(108 characters)" in message


def test_a_usage_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "8000", "--forse"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: unknown option '--forse' for check (see ")
    assert captured.err.endswith(" --help)\n")


# ------------------------------------------------------------------ help


def test_help_is_asked_for_anywhere_on_the_line() -> None:
    assert wants_help(["check", "8000", "-h"]) and wants_help(["--help"])
    assert not wants_help(["check", "8000"])


def test_usage_lists_every_command_or_just_one() -> None:
    everything = usage("pk", "Ports.", COMMANDS)
    for shape in ("pk list", "pk check PORT [PORT ...]", "pk cleanup [PORT ...]", "pk wait PORT"):
        assert f"  {shape}\n" in everything
    assert "--grace SECONDS" in everything and "--dry-run" in everything
    one = usage("pk", "Ports.", COMMANDS, "cleanup")
    assert one.startswith("usage: pk cleanup [PORT ...] [OPTIONS]\n")
    assert "pk wait" not in one and "--settle SECONDS" in one


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wait", "--help"]) == 0
    assert "wait PORT" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("portkeeper ")


def test_a_command_of_one_positional_takes_exactly_one() -> None:
    one = Command("get", "one thing", "NAME", (Option("--x", "a flag"),))
    assert parse([one], ["get", "a"]) == ("get", {"x": False, "names": ["a"]})
    with pytest.raises(UsageError, match="get needs NAME"):
        parse([one], ["get", "--x"])


# ------------------------------------------------------------------ Invoke's bare ports


def test_bare_ports_become_options_only_where_they_are_ports() -> None:
    import tasks
    from utils.task_arguments import ports_as_options

    valued = {
        "ports.cleanup": {"--grace", "-g", "--settle", "-s", "--port", "-p"},
        "ports.check": {"--host", "--port", "-p"},
        "tokens.revoke": {"--user", "-u", "--provider", "-p"},
        "ports.list": set(),
    }

    def rewrite(words: list[str], valued: dict[str, set[str]]) -> list[str]:
        return ports_as_options(words, valued, tasks.PORT_TASKS)

    assert rewrite(["ports.cleanup", "8000", "-g", "1", "8001"], valued) == [
        *("ports.cleanup", "--port", "8000", "-g", "1", "--port", "8001"),
    ]
    assert rewrite(["ports.check", "--host=::1", "8000", "ports.list"], valued) == [
        *("ports.check", "--host=::1", "--port", "8000", "ports.list"),
    ]
    assert rewrite(["ports.check", "--", "8000", "8001"], valued) == [
        *("ports.check", "--port", "8000", "--port", "8001"),
    ]
    assert rewrite(["ports.check", "-1"], valued) == ["ports.check", "--port", "-1"]
    # A value that looks like a task name stays the value of its option.
    assert rewrite(["tokens.revoke", "--user", "ports.check", "--provider", "x"], valued) == [
        *("tokens.revoke", "--user", "ports.check", "--provider", "x"),
    ]


@pytest.mark.parametrize("name", ["list", "check", "find", "cleanup", "wait"])
def test_each_ports_task_takes_its_flags_help_and_defaults_from_the_cli_table(name: str) -> None:
    """One table (utils/port_cli.py) for the CLI and ``invoke ports.*``: every flag of the
    command, its help, and the defaults of the task's parameters."""
    import inspect

    import tasks
    from utils.port_cli import command

    task = tasks.ports[name]
    options = {option.name.lstrip("-"): option for option in command(name).options}
    assert set(task.help) == set(options)
    for flag, option in options.items():
        if flag != "port":  # the task's port help adds "also as arguments"
            assert task.help[flag] == option.help, flag
    parameters = inspect.signature(task.body).parameters
    for flag, option in options.items():
        parameter = parameters[flag.replace("-", "_")]
        if option.takes_value and option.default is not None:
            assert parameter.default == option.default, flag
