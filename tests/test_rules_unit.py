"""Fast unit tests of the pure rules: values, escaping, tables and the project rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from utils import render
from utils._project_policy import program_files, runs_project_code
from utils._values import (
    InvalidValue,
    parse_http_path,
    parse_int,
    parse_port,
    parse_seconds,
    resolve_host,
    shown,
)

# ------------------------------------------------------------------ values


@pytest.mark.parametrize("good", ["1", "80", "08000", "65535", 1, 65535])
def test_ports_that_parse(good: object) -> None:
    assert parse_port(good) == int(str(good))


@pytest.mark.parametrize(
    "bad",
    ["0", "65536", " 80", "80\n", "+80", "-1", "8_0", "80.0", "0x50", "٨٠", "", "1" * 4301, True],
)
def test_ports_that_do_not(bad: object) -> None:
    with pytest.raises(InvalidValue, match="expected an integer from 1 to 65535"):
        parse_port(bad)


def test_a_huge_value_is_named_short_and_with_its_length() -> None:
    with pytest.raises(InvalidValue) as raised:
        parse_int("9" * 5000, "--workers", 1, 64)
    message = str(raised.value)
    assert len(message) < 150 and "(5000 characters)" in message and "\n" not in message


def test_shown_escapes_what_it_names() -> None:
    assert shown("a\x1bb") == repr("a\x1bb") and "\x1b" not in shown("a\x1bb")


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("2.5", 2.5), (".5", 0.5), ("5.", 5.0)])
def test_durations_that_parse(text: str, seconds: float) -> None:
    assert parse_seconds(text, "--grace", 600) == seconds


@pytest.mark.parametrize("bad", ["-1", "nan", "inf", "1e3", "1e300", " 5", "", "..", "601", True])
def test_durations_that_do_not(bad: object) -> None:
    with pytest.raises(InvalidValue, match="seconds from 0 to 600"):
        parse_seconds(bad, "--grace", 600)


@pytest.mark.parametrize("bad", ["health", "/\u00e9", "/a b", "/x\r\ny", ""])
def test_http_paths_that_do_not_parse(bad: str) -> None:
    with pytest.raises(InvalidValue, match="printable ASCII"):
        parse_http_path(bad)


def test_an_ipv4_mapped_address_resolves_to_its_ipv4_address() -> None:
    assert resolve_host("::ffff:127.0.0.1") == ("127.0.0.1",)
    with pytest.raises(InvalidValue):
        resolve_host("bad\nhost")


# ------------------------------------------------------------------ escaping and tables


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain text", "plain text"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("bell\x07", "bell\\x07"),
        ("one\r\ntwo\tthree", "one\\r\\ntwo\\tthree"),
        ("rlo\u202eevil", "rlo\\u202eevil"),
        ("line\u2028sep", "line\\u2028sep"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
        ("\U000e0001tag", "\\U000e0001tag"),
    ],
)
def test_printable_escapes_every_non_printable_character(raw: str, escaped: str) -> None:
    assert render.printable(raw) == escaped
    assert render.printable(raw).isprintable()


def test_a_table_escapes_cells_and_aligns_painted_ones() -> None:
    rows: list[list[render.Cell]] = [
        ["1", render.Styled("yes", "green"), "evil\nPORT x"],
        ["22", "no", "ok"],
    ]
    plain = render.table(["A", "B", "C"], rows, enabled=False).splitlines()
    assert plain == ["A   B    C", "1   yes  evil\\nPORT x", "22  no   ok"]
    coloured = render.table(["A", "B", "C"], rows, enabled=True).splitlines()
    assert coloured[1] == "1   \x1b[32myes\x1b[0m  evil\\nPORT x"
    assert coloured[2] == plain[2]  # padding measured without the colour codes


# ------------------------------------------------------------------ the project rule


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fake checkout with a script, a package, and a virtualenv inside it."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "serve.py").write_text("")
    (root / "backend").mkdir()
    (root / "backend" / "__main__.py").write_text("")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "pyvenv.cfg").write_text("")
    (root / ".venv" / "bin" / "uvicorn").write_text("")
    (tmp_path / "elsewhere").mkdir()
    return root.resolve()


def _ours(repo: Path, cmdline: list[str], cwd: Path | str | None) -> bool:
    return runs_project_code(cmdline, None if cwd is None else str(cwd), str(repo))


def test_a_process_working_inside_the_repository_is_the_projects(repo: Path) -> None:
    assert _ours(repo, ["python3", "-c", "pass"], repo / "backend")
    assert _ours(repo, ["sleep", "60"], repo)


@pytest.mark.parametrize(
    "cmdline",
    [
        ["python3", "REPO/scripts/serve.py"],
        ["python3", "-u", "REPO/scripts/serve.py", "--port", "1"],
        ["python3", "-Bu", "REPO/scripts/serve.py"],
        ["python3", "-W", "ignore", "REPO/scripts/serve.py"],
        ["python3.12", "-X", "dev", "REPO/scripts/serve.py"],
        ["bash", "-e", "REPO/scripts/serve.py"],
        ["node", "--require", "x", "REPO/scripts/serve.py"],
        ["REPO/scripts/serve.py", "--flag"],
    ],
)
def test_a_process_running_a_file_of_the_repository_is_the_projects(
    repo: Path, cmdline: list[str]
) -> None:
    words = [word.replace("REPO", str(repo)) for word in cmdline]
    assert _ours(repo, words, repo.parent / "elsewhere")


def test_a_module_resolved_against_the_working_directory_counts(repo: Path, tmp_path: Path) -> None:
    work = tmp_path / "linked"
    work.mkdir()
    (work / "backend").symlink_to(repo / "backend", target_is_directory=True)
    assert _ours(repo, ["python3", "-m", "backend"], work)
    assert _ours(repo, ["python3", "-mbackend"], work)
    assert not _ours(repo, ["python3", "-m", "backend"], tmp_path / "repo" / ".." / "elsewhere")


@pytest.mark.parametrize(
    "cmdline",
    [
        ["python3", "-m", "http.server", "--directory", "REPO"],
        ["python3", "/tmp/tool.py", "--log=REPO/x.log"],
        ["python3", "-c", "import os", "REPO/scripts/serve.py"],
        ["code", "REPO"],
        ["bash", "-c", "REPO/scripts/serve.py"],
        ["sh", "-ec", "REPO/scripts/serve.py; sleep 1"],
        ["bash", "-lc", "REPO/scripts/serve.py"],
        ["REPO/.venv/bin/uvicorn", "other:app"],
        ["python3", "REPO/.venv/bin/uvicorn", "other:app"],
        ["python3", "-", "REPO/scripts/serve.py"],
    ],
)
def test_a_mere_mention_of_the_repository_does_not_count(repo: Path, cmdline: list[str]) -> None:
    words = [word.replace("REPO", str(repo)) for word in cmdline]
    assert not _ours(repo, words, repo.parent / "elsewhere")


def test_paths_are_compared_with_symlinks_resolved(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo, target_is_directory=True)
    assert _ours(repo, ["python3", f"{link}/scripts/serve.py"], tmp_path / "elsewhere")
    assert _ours(repo, ["sleep", "60"], link)  # a cwd reached through the link
    assert _ours(repo, ["python3", "scripts/serve.py"], link)  # relative to that cwd


def test_a_hidden_working_directory_leaves_relative_programs_unknown(repo: Path) -> None:
    assert not _ours(repo, ["python3", "scripts/serve.py"], None)
    assert program_files(["python3", "scripts/serve.py"], None) == []


def test_program_files_reads_the_interpreters_options() -> None:
    assert program_files(["python3", "-c", "x", "a.py"], "/w") == []
    assert program_files(["python3", "-Wignore", "a.py"], "/w") == ["/w/a.py"]
    # The value of a clustered -W is not read as more flags (its "m" is no -m).
    assert program_files(["python3", "-BWignore::ImportWarning", "a.py"], "/w") == ["/w/a.py"]
    assert program_files(["python3", "--", "a.py"], "/w") == ["/w/a.py"]
    assert program_files(["./run", "a.py"], "/w") == [os.path.join("/w", "./run")]
    assert program_files(["sh", "-o", "errexit", "b.sh"], "/w") == ["/w/b.sh"]
    assert program_files([], "/w") == []


def test_an_installed_copy_takes_the_project_around_the_working_directory(tmp_path: Path) -> None:
    from utils._project_policy import project_root

    installed = str(tmp_path / "site-packages")  # no pyproject.toml beside utils/
    home = tmp_path / "home"
    (home / "work" / "app" / "src").mkdir(parents=True)
    (home / "work" / "app" / ".git").mkdir()
    (home / ".git").mkdir()  # a dotfiles repository: never the project
    app = str((home / "work" / "app").resolve())
    assert project_root(installed, str(home / "work" / "app" / "src"), str(home)) == app
    assert project_root(installed, str(home / "work"), str(home)) == ""
    assert project_root(installed, str(home), str(home)) == ""
    assert project_root(installed, "/", str(home)) == ""
    assert project_root(installed, None, str(home)) == ""
    assert not runs_project_code(["python3", "x.py"], "/", "")  # no project: nothing is ours
    checkout = str(tmp_path / "checkout")
    Path(checkout).mkdir()
    (Path(checkout) / "pyproject.toml").write_text("")
    assert project_root(checkout, "/", str(home)) == checkout


def test_bare_ports_become_options_only_where_they_are_ports() -> None:
    import tasks

    valued = {
        "ports.cleanup": {"--grace", "-g", "--settle", "-s", "--port", "-p"},
        "ports.check": {"--host", "--port", "-p"},
        "tokens.revoke": {"--user", "-u", "--provider", "-p"},
        "ports.list": set(),
    }
    rewrite = tasks.ports_as_options
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
