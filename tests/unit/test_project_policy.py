"""The project rule (utils/_project_policy.py): which processes cleanup may stop unasked.

Each rule on a fake checkout in a temporary folder: the working directory, the program
file (executable, script, ``-m`` module), symlinks, the virtualenv exclusion, and the
project around the working directory of an installed copy. A worker's attribution
through its supervisor is in test_holders_logic.py, where the rows are built.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from utils._project_policy import (
    inside,
    program_files,
    program_label,
    project_root,
    runs_project_code,
)


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
    (root / ".venv" / "bin" / "python3").write_text("")
    (tmp_path / "elsewhere").mkdir()
    return root.resolve()


def _ours(repo: Path, cmdline: list[str], cwd: Path | str | None) -> bool:
    return runs_project_code(cmdline, None if cwd is None else str(cwd), str(repo))


def _words(repo: Path, cmdline: list[str]) -> list[str]:
    return [word.replace("REPO", str(repo)) for word in cmdline]


# ------------------------------------------------------------------ the working directory


def test_a_process_working_inside_the_repository_is_the_projects(repo: Path) -> None:
    assert _ours(repo, ["python3", "-c", "pass"], repo / "backend")
    assert _ours(repo, ["sleep", "60"], repo)
    assert not _ours(repo, ["sleep", "60"], repo.parent / "elsewhere")


def test_a_sibling_folder_sharing_the_prefix_is_not_inside(repo: Path, tmp_path: Path) -> None:
    sibling = tmp_path / "repo-old"  # "/x/repo-old" starts with "/x/repo" but is not in it
    sibling.mkdir()
    assert not _ours(repo, ["sleep", "60"], sibling)
    assert inside(str(repo), str(repo)) and inside(f"{repo}/a", str(repo))
    assert not inside(f"{repo}-old/a", str(repo))


# ------------------------------------------------------------------ the program file


@pytest.mark.parametrize(
    "cmdline",
    [
        ["python3", "REPO/scripts/serve.py"],
        ["python3", "-u", "REPO/scripts/serve.py", "--port", "1"],
        ["python3", "-Bu", "REPO/scripts/serve.py"],
        ["python3", "-W", "ignore", "REPO/scripts/serve.py"],
        ["python3.12", "-X", "dev", "REPO/scripts/serve.py"],
        ["pypy3", "REPO/scripts/serve.py"],
        ["bash", "-e", "REPO/scripts/serve.py"],
        ["node", "--require", "x", "REPO/scripts/serve.py"],
        ["REPO/scripts/serve.py", "--flag"],
    ],
)
def test_a_process_running_a_file_of_the_repository_is_the_projects(
    repo: Path, cmdline: list[str]
) -> None:
    assert _ours(repo, _words(repo, cmdline), repo.parent / "elsewhere")


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
        ["python3", "-", "REPO/scripts/serve.py"],
        ["node", "-e", "1", "REPO/scripts/serve.py"],
    ],
)
def test_a_mere_mention_of_the_repository_does_not_count(repo: Path, cmdline: list[str]) -> None:
    assert not _ours(repo, _words(repo, cmdline), repo.parent / "elsewhere")


def test_paths_are_compared_with_symlinks_resolved(repo: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(repo, target_is_directory=True)
    assert _ours(repo, ["python3", f"{link}/scripts/serve.py"], tmp_path / "elsewhere")
    assert _ours(repo, ["sleep", "60"], link)  # a cwd reached through the link
    assert _ours(repo, ["python3", "scripts/serve.py"], link)  # relative to that cwd


def test_a_hidden_working_directory_leaves_relative_programs_unknown(repo: Path) -> None:
    assert not _ours(repo, ["python3", "scripts/serve.py"], None)
    assert program_files(["python3", "scripts/serve.py"], None) == []


def test_a_path_holding_a_nul_is_never_resolved(repo: Path) -> None:
    assert not _ours(repo, ["python3", f"{repo}/scripts/serve.py\0x"], repo.parent / "elsewhere")


def test_program_files_reads_the_interpreters_options() -> None:
    assert program_files(["python3", "-c", "x", "a.py"], "/w") == []
    assert program_files(["python3", "-Wignore", "a.py"], "/w") == ["/w/a.py"]
    # The value of a clustered -W is not read as more flags (its "m" is no -m).
    assert program_files(["python3", "-BWignore::ImportWarning", "a.py"], "/w") == ["/w/a.py"]
    assert program_files(["python3", "--", "a.py"], "/w") == ["/w/a.py"]
    assert program_files(["./run", "a.py"], "/w") == [os.path.join("/w", "./run")]
    assert program_files(["sh", "-o", "errexit", "b.sh"], "/w") == ["/w/b.sh"]
    assert program_files(["python3", "-X=dev", "a.py"], "/w") == ["/w/a.py"]
    assert program_files([], "/w") == []


# ------------------------------------------------------------------ virtualenvs


@pytest.mark.parametrize(
    "cmdline",
    [
        ["REPO/.venv/bin/uvicorn", "other:app"],  # a console script of the venv
        ["REPO/.venv/bin/python3", "-m", "http.server"],  # the venv's interpreter
        ["REPO/.venv/bin/python3", "/tmp/tool.py"],
        ["python3", "REPO/.venv/bin/uvicorn", "other:app"],  # a venv script run by python
    ],
)
def test_a_virtualenv_inside_the_repository_is_not_its_code(repo: Path, cmdline: list[str]) -> None:
    assert not _ours(repo, _words(repo, cmdline), repo.parent / "elsewhere")


def test_the_venvs_interpreter_running_the_projects_script_is_the_projects(repo: Path) -> None:
    cmdline = _words(repo, ["REPO/.venv/bin/python3", "REPO/scripts/serve.py"])
    assert _ours(repo, cmdline, repo.parent / "elsewhere")


def test_a_virtualenv_is_found_at_any_depth_but_only_inside_the_repository(
    tmp_path: Path,
) -> None:
    outer = tmp_path / "env"  # the checkout itself lives inside a virtualenv's folder
    root = outer / "repo"
    (root / "tools" / "env" / "bin").mkdir(parents=True)
    (outer / "pyvenv.cfg").write_text("")
    (root / "tools" / "env" / "pyvenv.cfg").write_text("")
    (root / "tools" / "env" / "bin" / "serve").write_text("")
    (root / "bin").mkdir()
    (root / "bin" / "serve").write_text("")
    resolved = root.resolve()
    elsewhere = str(tmp_path)
    # A venv nested deep in the repository is still a venv.
    assert not runs_project_code([f"{root}/tools/env/bin/serve"], elsewhere, str(resolved))
    # A pyvenv.cfg above the repository does not make the repository's own files a venv's.
    assert runs_project_code([f"{root}/bin/serve"], elsewhere, str(resolved))


# ------------------------------------------------------------------ which project


def test_an_installed_copy_takes_the_project_around_the_working_directory(tmp_path: Path) -> None:
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


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize(
    ("cmdline", "label"),
    [
        (["python3", "-m", "uvicorn", "app:app"], "uvicorn"),
        (["/srv/.venv/bin/uvicorn", "app:app"], "uvicorn"),
        (["python3", "scripts/serve.py"], "serve.py"),
        (["python3", "-m", "backend", "--dev"], "uvicorn"),  # our own start command
        (["python3", "-m", "invoke", "serve.dev"], "uvicorn"),
        (["python3", "-c", "pass"], "python3"),
        ([], ""),
    ],
)
def test_program_label_names_what_a_command_line_runs(cmdline: list[str], label: str) -> None:
    assert program_label(cmdline) == label
