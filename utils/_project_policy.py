"""Which processes are this project's: the rule that decides what cleanup may stop unasked.

A process is this project's when its working directory is inside the repository, or
when the program it runs is a file of the repository: the executable itself, or, for an
interpreter (Python, a POSIX shell, Node.js), the script it was given or the ``-m``
module resolved against its working directory. Any other argument does not count:
``python -m http.server --directory REPO`` started elsewhere, or an editor opened on the
repository, is not the project's. Interpreters and console scripts of a virtualenv inside
the repository are not its code either. Paths are compared with symlinks resolved on
both sides, so a repository reached through a symlink is still the same repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable

    from utils._common import ProcessFacts


def project_root(checkout: str, cwd: str | None, home: str) -> str:
    """The checkout this file belongs to; installed (pip, pipx), the project around the
    working directory instead: the nearest folder up from it holding ``.git`` or
    ``pyproject.toml`` - but never ``/`` or the home directory (a dotfiles repository
    would make every process of the user "the project's"). Outside any project: "",
    and no process counts as the project's (cleanup then needs --force)."""
    if os.path.exists(os.path.join(checkout, "pyproject.toml")):
        return checkout
    if cwd is None:  # the working directory was removed
        return ""
    too_wide = {os.path.realpath(home), os.path.realpath(os.sep)}
    folder = os.path.realpath(cwd)
    while folder not in too_wide:
        if any(os.path.exists(os.path.join(folder, mark)) for mark in (".git", "pyproject.toml")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return ""


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


PROJECT_ROOT = project_root(
    os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    _cwd(),
    os.path.expanduser("~"),
)


class _Interpreter:
    """How one family of interpreters names its program on the command line."""

    def __init__(
        self, valued: frozenset[str], inline: frozenset[str], module: str | None = None
    ) -> None:
        self.valued = valued  # options whose value is the next word (or the rest of it)
        self.inline = inline  # options whose value is code: no program file follows
        self.module = module  # the option naming a module to run, if any


_PYTHON = _Interpreter(frozenset({"-W", "-X", "--check-hash-based-pycs"}), frozenset({"-c"}), "-m")
_SHELL = _Interpreter(frozenset({"-o", "-O", "--rcfile", "--init-file"}), frozenset({"-c"}))
_NODE = _Interpreter(
    frozenset({"-r", "--require", "--import", "--loader", "--experimental-loader", "-C"}),
    frozenset({"-e", "--eval", "-p", "--print"}),
)
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})


def _interpreter(executable: str) -> _Interpreter | None:
    name = os.path.basename(executable).lower().removesuffix(".exe")
    for prefix in ("python", "pypy"):  # python3, python3.12, pythonw, pypy3 ...
        if name.startswith(prefix) and all(char in "0123456789.w" for char in name[len(prefix) :]):
            return _PYTHON
    if name in _SHELLS:
        return _SHELL
    if name in ("node", "nodejs"):
        return _NODE
    return None


Program = tuple[str, str]  # ("script", path) or ("module", dotted name)


def _cluster(word: str, words: Iterator[str], kind: _Interpreter) -> tuple[bool, Program | None]:
    """Clustered short flags (``-Bu``, ``-uc CODE``, ``-Wignore``, ``-mpkg``, a shell's
    ``-ec CODE``): the first
    letter that takes a value ends the cluster, with the rest of the word as its value.
    (whether the command line's program is decided, that program or None)."""
    for index, letter in enumerate(word[1:], start=1):
        rest = word[index + 1 :]
        if f"-{letter}" in kind.inline:
            return True, None
        if f"-{letter}" == kind.module:
            name = rest or next(words, None)
            return True, ("module", name) if name else None
        if f"-{letter}" in kind.valued:
            if not rest:
                next(words, None)
            break
    return False, None


def _program_word(arguments: Sequence[str], kind: _Interpreter) -> Program | None:
    """('script', path) or ('module', name) that an interpreter runs, or None (inline
    code, standard input, or only options)."""
    words = iter(arguments)
    for word in words:
        if word == "--":
            following = next(words, None)
            return ("script", following) if following else None
        if word == "-" or not word.startswith("-"):
            return ("script", word) if word != "-" else None
        option, has_value, value = word.partition("=")
        if option in kind.inline:
            return None
        if option == kind.module:
            name = value if has_value else next(words, None)
            return ("module", name) if name else None
        if option in kind.valued:
            if not has_value:
                next(words, None)
        elif not word.startswith("--") and kind is not _NODE:
            decided, program = _cluster(word, words, kind)
            if decided:
                return program
    return None


def _module_files(name: str, cwd: str) -> Iterator[str]:
    """Where ``python -m name`` finds its code when run from ``cwd`` (the first entry of
    its path): the module file, or the package's ``__main__``."""
    base = os.path.join(cwd, *name.split("."))
    yield base + ".py"
    yield os.path.join(base, "__main__.py")


def program_files(cmdline: Sequence[str], cwd: str | None) -> list[str]:
    """The files a command line runs as its program, as absolute paths (unresolved)."""
    if not cmdline:
        return []

    def absolute(path: str) -> str | None:
        if os.path.isabs(path):
            return path
        return os.path.join(cwd, path) if cwd is not None else None

    files: list[str] = []
    executable = cmdline[0]
    if os.sep in executable or (os.altsep and os.altsep in executable):
        found = absolute(executable)
        if found is not None:
            files.append(found)
    kind = _interpreter(executable)
    program = _program_word(cmdline[1:], kind) if kind is not None else None
    if program is not None:
        what, word = program
        if what == "script":
            found = absolute(word)
            if found is not None:
                files.append(found)
        elif cwd is not None:
            files.extend(path for path in _module_files(word, cwd) if os.path.isfile(path))
    return files


def program_label(cmdline: Sequence[str]) -> str:
    """A short name for what a command line runs: ``uvicorn`` for ``python -m uvicorn
    ...`` or ``.venv/bin/uvicorn ...``, ``serve.py`` for ``python scripts/serve.py``."""
    if not cmdline:
        return ""
    kind = _interpreter(cmdline[0])
    program = _program_word(cmdline[1:], kind) if kind is not None else None
    if program is None:
        return os.path.basename(cmdline[0])
    what, word = program
    if (what, word) == ("module", "backend") or {"serve.dev", "serve.prod"} & set(cmdline):
        return "uvicorn"  # this project's own start commands serve with uvicorn
    return word if what == "module" else os.path.basename(word)


def inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _in_virtualenv(path: str, root: str) -> bool:
    """Interpreters and console scripts of a venv inside the repository are not its code."""
    parent = os.path.dirname(path)
    while inside(parent, root):
        if os.path.exists(os.path.join(parent, "pyvenv.cfg")):
            return True
        if parent == root:
            return False
        parent = os.path.dirname(parent)
    return False


def runs_project_code(
    cmdline: Sequence[str],
    cwd: str | None,
    root: str = PROJECT_ROOT,
    resolve: Callable[[str], str] = os.path.realpath,
) -> bool:
    """The project rule (see the module docstring); ``root`` must be a resolved path
    ("" for no project: nothing is the project's); ``resolve`` gives a path's real path."""
    if not root:
        return False
    if cwd is not None and inside(resolve(cwd), root):
        return True
    for path in program_files(cmdline, cwd):
        if "\0" in path:
            continue
        real = resolve(path)
        if inside(real, root) and not _in_virtualenv(real, root):
            return True
    return False


def project_rule(root: str = PROJECT_ROOT) -> Callable[[Sequence[str], str | None], bool]:
    """``runs_project_code`` for one scan of many processes, which share working
    directories and programs: each path is resolved once and each (command line,
    working directory) judged once - about half of a ``list --all`` otherwise. For one
    scan only: a symbolic link may point elsewhere later."""
    real: dict[str, str] = {}
    verdicts: dict[tuple[tuple[str, ...], str | None], bool] = {}

    def resolve(path: str) -> str:
        found = real.get(path)
        if found is None:
            found = real[path] = os.path.realpath(path)
        return found

    def judge(cmdline: Sequence[str], cwd: str | None) -> bool:
        key = (tuple(cmdline), cwd)
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = verdicts[key] = runs_project_code(cmdline, cwd, root, resolve)
        return verdict

    return judge


def is_project_process(facts: ProcessFacts) -> bool:
    """The project rule applied to one process (its supervisor's counts too: see
    ``_holders.listeners``)."""
    return runs_project_code(facts.cmdline, facts.cwd, PROJECT_ROOT)
