"""The documentation stays true to the repository: every link resolves inside it, the
README shows the test command CI runs, and the JSON documents of docs/contract.md have
exactly the keys the commands print (checked against real listeners on loopback)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from tests.conftest import (
    PYTHON,
    ROOT,
    Processes,
    deadline_poll,
    fresh_port,
    listener_script,
    pids_holding,
    run_cli,
)

DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def prose(path: Path) -> str:
    """The Markdown text outside fenced code blocks (a ``# comment`` there is no heading)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        anchor(line.lstrip("#")) for line in prose(path).splitlines() if re.match(r"#{1,6} ", line)
    }


def test_there_are_documents_to_check() -> None:
    assert len(DOCUMENTS) >= 6
    assert all(path.is_file() for path in DOCUMENTS)


def test_every_link_resolves_inside_the_repository() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(prose(document)):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:: not ours to check offline
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.is_relative_to(ROOT) or not linked.exists():
                broken.append(f"{document.name}: {target} (no such file in the repository)")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_shows_the_test_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code_lines = {line.strip() for block in FENCE.findall(readme) for line in block.splitlines()}
    assert "nox -s tests" in code_lines
    assert "nox -s tests" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- JSON shapes


def documented_shapes() -> dict[str, tuple[set[str], set[str]]]:
    """command -> (keys in its JSON examples, keys its table describes), from the
    contract's "JSON shapes" section: one part per ``**`COMMAND --json`**`` paragraph."""
    text = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    section = text.split("### JSON shapes", 1)[1].split("\n### ", 1)[0]
    shapes: dict[str, tuple[set[str], set[str]]] = {}
    for part in re.split(r"^(?=\*\*`)", section, flags=re.M)[1:]:
        command = part[3:].split()[0]
        examples = set(re.findall(r'"([a-z_]+)":', part))
        described = {
            key
            for row in re.findall(r"^\| ([^|]+) \|", part, flags=re.M)
            for key in re.findall(r"`([a-z_]+)`", row)
        }
        shapes[command] = (examples, described)
    return shapes


def keys(*documents: dict[str, Any]) -> set[str]:
    return {key for document in documents for key in document}


def cli_json(*args: str, status: int = 0) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == status, done.stderr
    return json.loads(done.stdout)


def test_contract_json_shapes_are_what_the_commands_print(
    processes: Processes, reserved_socket: socket.socket
) -> None:
    shapes = documented_shapes()
    assert set(shapes) == {"list", "check", "find", "cleanup", "wait"}
    port = fresh_port()
    processes.start([PYTHON, "-c", listener_script(), str(port)])
    deadline_poll(lambda: pids_holding(port))
    ours = reserved_socket.getsockname()[1]  # held by this test process: never stopped

    row_keys = keys(*(row for row in cli_json("list") if row["port"] == port))
    checked = cli_json("check", str(port), status=1)
    assert keys(*checked["holders"]) == row_keys
    printed = {
        "list": row_keys,
        "check": keys(checked, *checked["addresses"]),
        "find": keys(cli_json("find")),
        "wait": keys(cli_json("wait", str(port), "--timeout", "10")),
    }
    refused = cli_json("cleanup", str(ours), status=1)  # this process is the tool's ancestor
    assert refused["refused"] and not refused["stopped"]
    assert keys(*refused["still_held"]) == row_keys
    stopped = cli_json("cleanup", str(port))  # our own listener: stopped, the port freed
    assert stopped["freed"] and stopped["stopped"]
    printed["cleanup"] = keys(refused, *refused["refused"], *stopped["stopped"])

    for command, (examples, described) in shapes.items():
        assert examples == printed[command], command
        assert described <= printed[command], command


def _contract_options() -> dict[tuple[str, str], tuple[str, str]]:
    """(option, command) -> (default, allowed) from docs/contract.md's options table."""
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    text = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            option = cells[0].strip("`").split()[0]
            for command in cells[1].split(","):
                rows[(option, command.strip())] = (cells[2], cells[3])
    return rows


def test_the_contract_options_table_has_the_cli_defaults_and_ranges() -> None:
    """Every valued option's default and range in docs/contract.md is the code's."""
    from utils import port_manager as pm
    from utils.port_cli import COMMANDS

    maxima = {
        "--grace": pm.MAX_GRACE_SECONDS,
        "--settle": pm.MAX_SETTLE_SECONDS,
        "--timeout": pm.MAX_WAIT_SECONDS,
    }
    rows = _contract_options()
    checked = 0
    for command in COMMANDS:
        for option in command.options:
            if not option.takes_value or option.default is None:
                continue
            default, allowed = rows[(option.name, command.name)]
            assert default == option.default, (command.name, option.name, default)
            if option.name in maxima:
                assert f"0\N{EN DASH}{maxima[option.name]:g}" in allowed, (option.name, allowed)
            if option.metavar == "PORT":
                assert "{}\N{EN DASH}{}".format(*pm.PORT_RANGE) in allowed, (option.name, allowed)
            checked += 1
    assert checked == 4  # --start, --grace, --settle, --timeout
