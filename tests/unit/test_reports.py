"""The commands' answers (utils/_reports.py): JSON equal to the records' dicts, tables that
keep outside text on one escaped line, and the words of each result."""

from __future__ import annotations

import json
import os

import pytest

from tests.unit.synthetic import FakeReader, facts, holding, row
from utils import _reports
from utils._binding import AddressStatus, PortStatus
from utils._common import Listener
from utils._holders import Scan, scan
from utils._project_policy import PROJECT_ROOT
from utils._stop_rules import CleanupResult, Outcome

HOSTILE = (
    "python3",
    "-c",
    'evil\x1b[2J\x1b]0;owned\x07\r\nPORT  ADDRESS  fake row "quoted" \\ \u202e\udcff',
)


def _rows() -> list[Listener]:
    """Rows that stress the JSON cache: one process on many sockets, the same pid in
    another role, a hidden holder, a bound socket, outside text of every kind."""
    server = facts(10, cmdline=HOSTILE, user='o"wner\n')
    worker = facts(11, 10, cmdline=("python3", "-c", "w\u00e9"), stopped=True)
    return [
        row(server, port=8000, socket_id="a", project=True, role="supervisor"),
        row(server, port=8001, socket_id="b", address="::1", project=True, role="supervisor"),
        row(worker, port=8000, socket_id="a", role="worker", supervisor_cmdline=HOSTILE),
        row(facts(12, cmdline=()), port=8002, socket_id="c", listening=False),
        row(None, port=8003, socket_id="d"),
        row(server, port=8004, socket_id="e", project=True),  # the same pid as a server
        row(server, port=8005, socket_id="f", project=True, listening=False, role="supervisor"),
    ]


def _scan(fake_reader: FakeReader) -> Scan:
    """A scan that stresses the JSON cache: one process on many sockets, in several roles
    and states, a hidden holder, a bound socket, outside text of every kind."""
    server = facts(10, cmdline=HOSTILE, user='o"wner\n', cwd=PROJECT_ROOT)
    worker = facts(11, 10, cmdline=("python3", "-c", "w\u00e9"), stopped=True)
    quoting = facts(13, cmdline=("sh", "-c", 'echo "plain"', "back\\slash"))  # printable, escaped
    fake_reader.processes = {p.pid: p for p in (server, worker, facts(12, cmdline=()), quoting)}
    fake_reader.holdings = [
        holding(10, 8000, socket_id="a"),
        holding(11, 8000, socket_id="a"),
        holding(10, 8001, socket_id="b", address="::1"),
        holding(12, 8002, socket_id="c", listening=False),
        holding(None, 8003, socket_id="d"),
        holding(10, 8004, socket_id="e"),
        holding(10, 8005, socket_id="f", listening=False),
        holding(11, 8005, socket_id="f", listening=False),
        holding(13, 8006, socket_id="g"),
    ]
    return scan(bound=True)


def test_the_fast_json_equals_the_plain_encoding(fake_reader: FakeReader) -> None:
    found = _scan(fake_reader)
    encoded = _reports.listeners_json(found)
    assert encoded == json.dumps([r.as_dict() for r in found.listeners()])
    assert "\x1b" not in encoded and "\n" not in encoded  # JSON escapes, the value is exact


def test_the_json_cache_keeps_each_rows_own_socket(fake_reader: FakeReader) -> None:
    decoded = json.loads(_reports.listeners_json(_scan(fake_reader)))
    assert [(d["port"], d["address"], d["family"], d["pid"]) for d in decoded] == [
        (8000, "127.0.0.1", "IPv4", 10),
        (8000, "127.0.0.1", "IPv4", 11),
        (8001, "::1", "IPv6", 10),
        (8002, "127.0.0.1", "IPv4", 12),
        (8003, "127.0.0.1", "IPv4", None),
        (8004, "127.0.0.1", "IPv4", 10),
        (8005, "127.0.0.1", "IPv4", 10),
        (8005, "127.0.0.1", "IPv4", 11),
        (8006, "127.0.0.1", "IPv4", 13),
    ]
    assert [(d["state"], d["role"], d["project"]) for d in decoded] == [
        ("listening", "supervisor", True),
        ("listening", "worker", True),
        ("listening", "server", True),
        ("bound", "server", False),
        ("listening", "server", False),
        ("listening", "server", True),
        ("bound", "supervisor", True),
        ("bound", "worker", True),
        ("listening", "server", False),
    ]
    assert decoded[1]["suspended"] is True and decoded[0]["suspended"] is False


def test_a_table_keeps_every_hostile_row_on_one_escaped_line() -> None:
    rows = _rows()
    table = _reports.listener_table(rows, colour=False)
    lines = table.split("\n")
    assert len(lines) == 1 + len(rows)
    assert all(line.isprintable() for line in lines)
    assert "\\x1b[2J\\x1b]0;owned\\x07\\r\\nPORT" in lines[1]
    assert "\\u202e" in lines[1] and "\\udcff" in lines[1]
    assert lines[1].split()[:8] == [
        *("8000", "127.0.0.1", "IPv4", "listening", "10", "1", 'o"wner\\n', "yes")
    ]
    assert "listening, suspended" in lines[3] and "worker of 10" in lines[3]
    assert lines[4].split()[3] == "bound" and "[python3]" in lines[4]
    assert "(hidden by the operating system)" in lines[5]
    assert lines[5].split()[4:7] == ["-", "-", "-"]


def test_a_coloured_table_paints_only_the_programs_own_words() -> None:
    table = _reports.listener_table(_rows(), colour=True)
    assert "\x1b[32myes\x1b[0m" in table and "\x1b[33mlistening, suspended\x1b[0m" in table
    assert "\x1b[2J" not in table and "\x1b]" not in table


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (Outcome(1, "a", "terminated"), "terminated"),
        (Outcome(1, "a", "killed", suspended=True), "killed (was suspended)"),
        (Outcome(1, "a", "terminated", role="restarter"), "terminated (restarter)"),
        (
            Outcome(1, "a", "refused", "not yours", role="restarter", suspended=True),
            "refused: not yours (restarter, was suspended)",
        ),
        (Outcome(1, "a", "would terminate"), "would terminate"),
    ],
)
def test_outcome_text(outcome: Outcome, text: str) -> None:
    assert _reports.outcome_text(outcome) == text


def test_a_cleanup_report_escapes_command_lines_and_says_what_happened(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = CleanupResult(8000, freed=True, seconds=0.5)
    result.stopped = [Outcome(10, "python3", "terminated", cmdline=HOSTILE)]
    _reports.print_cleanup(result, colour=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["PID", "RESULT", "COMMAND"]
    assert out[1].startswith("10   terminated  python3 -c 'evil\\x1b[2J")
    assert out[2] == "Port 8000 is free and stayed free (0.50 s)."
    assert len(out) == 3


def test_a_dry_run_and_a_held_port_read_differently(capsys: pytest.CaptureFixture[str]) -> None:
    _reports.print_cleanup(CleanupResult(8000, dry_run=True), colour=False)
    assert capsys.readouterr().out == (
        "Dry run: nothing was stopped; port 8000 is still as it was.\n"
    )
    held = CleanupResult(8000, seconds=1.0, still_held=[row(facts(10))])
    _reports.print_cleanup(held, colour=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Port 8000 is still held after 1.00 s."
    assert out[1].startswith("PORT") and out[2].startswith("8000")


def test_a_busy_port_names_its_holders(capsys: pytest.CaptureFixture[str]) -> None:
    addresses = (
        AddressStatus("0.0.0.0", False, "in use"),
        AddressStatus("::", False, "unavailable"),
        AddressStatus("127.0.0.1", True),
    )
    _reports.print_status(PortStatus(8000, None, addresses, (row(facts(10)),)), colour=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Port 8000 is not free on 0.0.0.0 (in use)."
    assert out[1].startswith("PORT") and " 10 " in out[2]
    _reports.print_status(PortStatus(8000, None, addresses[2:]), colour=False)
    assert capsys.readouterr().out == "Port 8000 is free on 127.0.0.1.\n"


def test_what_is_said_of_holders_the_system_does_not_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "bound but not listening" in (_reports.unnamed_holders_note([]) or "")
    assert _reports.unnamed_holders_note([row(facts(10))]) is None
    hidden = [row(facts(10)), row(None)]
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)  # (Windows has none)
    assert "another user (try as root)" in (_reports.unnamed_holders_note(hidden) or "")
    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert "another PID namespace" in (_reports.unnamed_holders_note(hidden) or "")


def test_a_command_is_escaped_before_any_table_sees_it() -> None:
    """``command`` also reaches one-line messages (the busy-port line of a start)."""
    listed = row(facts(10, cmdline=HOSTILE)).command
    assert listed.isprintable() and listed.startswith("python3 -c 'evil\\x1b[2J")
    stopped = Outcome(10, "python3", "terminated", cmdline=HOSTILE).command
    assert stopped == listed
    assert row(facts(11, cmdline=(), name="evil\x1b[2J")).command == "[evil\\x1b[2J]"
