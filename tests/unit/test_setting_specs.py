"""Each setting is declared once (backend/setting_specs.py), and everything else follows it.

The environment's check, the flags' check, both error lines, the help of
``python -m backend`` and of ``invoke serve.*``, and the pydantic-settings model are all
read from the declaration: changing a declared range here (as a scratch edit would)
changes every one of them. Fast: no server starts; one test runs ``invoke --help``.
"""

from __future__ import annotations

import inspect
import re
import tokenize
from pathlib import Path

import pytest

import tasks
from backend import __main__ as backend_main
from backend import setting_specs as spec
from backend.server import build_request
from backend.setting_specs import (
    BY_NAME,
    PORT,
    SETTINGS,
    SWITCHES,
    WEB_CONCURRENCY,
    ServeFlags,
    serve_flags,
)
from backend.setting_types import Choice, Integer, Mode
from backend.settings import Settings, load_settings
from backend.start_settings import read_start_settings
from tests.conftest import ROOT
from utils.port_manager import DEFAULT_PORT, PORT_RANGE, WORKERS_RANGE, InvalidValue, shown


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting from the environment the tests run in."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)


def env_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """The one line a start prints for ``name=value`` in the environment (the token
    store's model prints the same one)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidValue) as error:
        read_start_settings()
    with pytest.raises(InvalidValue) as model_error:
        load_settings()
    assert str(model_error.value) == str(error.value)
    return str(error.value)


def flag_error(mode: Mode, flags: ServeFlags) -> str:
    """The one line a start prints for these flags (in a clean environment)."""
    with pytest.raises(InvalidValue) as error:
        build_request(mode, flags, read_start_settings())
    return str(error.value)


def flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- one source


def test_the_model_has_one_field_per_declaration_with_its_default_and_help() -> None:
    assert list(Settings.model_fields) == [setting.name for setting in SETTINGS]
    assert not Settings.model_config.get("env_prefix")
    for name, field in Settings.model_fields.items():
        assert field.validation_alias is None, name  # so the variable is the name: env
        assert field.default == BY_NAME[name].default, name
        assert field.description == BY_NAME[name].help, name


def test_every_default_is_allowed_by_its_own_declaration() -> None:
    for setting in SETTINGS:
        for mode in spec.MODES:
            default = setting.default_for(mode)
            if default is not None:
                assert setting.parse(default) == default, (setting, mode)


def test_ranges_are_the_port_tools_ranges() -> None:
    assert isinstance(PORT.parse, Integer) and PORT.parse.limits == PORT_RANGE
    assert isinstance(WEB_CONCURRENCY.parse, Integer)
    assert WEB_CONCURRENCY.parse.limits == WORKERS_RANGE
    assert PORT.default == DEFAULT_PORT


def test_the_serve_flags_are_the_declared_ones_in_every_front_end() -> None:
    declared = {name.replace("-", "_") for name in serve_flags(None)}
    assert set(ServeFlags._fields) == declared
    for mode, body in (("dev", tasks.serve_dev.body), ("prod", tasks.serve_prod.body)):
        parameters = set(inspect.signature(body).parameters) - {"c"}
        assert parameters == {name.replace("-", "_") for name in serve_flags(mode)}, mode
    assert tasks.serve_dev.help == serve_flags("dev")
    assert tasks.serve_prod.help == serve_flags("prod")
    actions = backend_main.parser()._actions
    helps = {action.dest: action.help for action in actions}
    for name, text in serve_flags(None).items():
        assert helps[name.replace("-", "_")] == text


# --------------------------------------------------------------------------- one check


@pytest.mark.parametrize(
    ("setting", "mode", "value"),
    [
        (PORT, "dev", "abc"),
        (PORT, "prod", "65536"),
        (PORT, "dev", " 80"),
        (WEB_CONCURRENCY, "prod", "0"),
        (WEB_CONCURRENCY, "prod", "many"),
        (spec.HOST, "prod", " "),
    ],
)
def test_a_flag_and_its_variable_are_refused_alike(
    monkeypatch: pytest.MonkeyPatch, setting: spec.Setting[object], mode: Mode, value: str
) -> None:
    assert setting.flag is not None
    tail = f"is not valid: expected {setting.expected}"
    from_flag = flag_error(mode, ServeFlags()._replace(**{setting.flag.removeprefix("--"): value}))
    assert from_flag == f"{setting.flag} {shown(value)} {tail}"
    if value.strip():  # a blank variable means unset; a blank flag is an error
        from_env = env_error(monkeypatch, setting.env, value)
        assert from_env == f"environment variable {setting.env}={shown(value)} {tail}"


def test_a_flag_wins_over_its_variable_and_names_where_the_value_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("HOST", "127.0.0.1")
    settings = read_start_settings()
    request = build_request("prod", ServeFlags(), settings)
    assert (request.port, request.port_from, request.workers, request.host) == (
        8123,
        "PORT",
        3,
        "127.0.0.1",
    )
    request = build_request("prod", ServeFlags(port="8124", workers=2), settings)
    assert (request.port, request.port_from, request.workers) == (8124, "--port", 2)
    dev = build_request("dev", ServeFlags(), settings)  # dev reads neither HOST nor workers
    assert (dev.host, dev.workers, dev.port) == ("127.0.0.1", 1, 8123)
    monkeypatch.delenv("PORT")
    assert build_request("dev", ServeFlags(), read_start_settings()).port_from == "default"


def test_secret_values_are_named_but_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in (spec.DATABASE_URL, spec.TOKEN_ENCRYPTION_KEYS):
        line = env_error(monkeypatch, setting.env, "mysql://user:s3cret@db/x")
        assert line.startswith(f"environment variable {setting.env}=<hidden> is not valid")
        assert "s3cret" not in line
        monkeypatch.delenv(setting.env)


# --------------------------------------------------------------------------- a scratch edit


def test_changing_a_declared_range_changes_the_env_the_flag_and_every_help(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a scratch edit of the table would: only the declaration is changed here."""
    monkeypatch.setattr(PORT, "parse", Integer((DEFAULT_PORT, DEFAULT_PORT + 9)))
    monkeypatch.setattr(WEB_CONCURRENCY, "parse", Integer((1, 3)))
    ports = f"an integer from {DEFAULT_PORT} to {DEFAULT_PORT + 9}"
    outside = str(DEFAULT_PORT + 10)

    assert env_error(monkeypatch, "PORT", outside).endswith(f"expected {ports}")
    assert flag_error("dev", ServeFlags(port=outside)).endswith(f"expected {ports}")
    monkeypatch.delenv("PORT")
    assert env_error(monkeypatch, "WEB_CONCURRENCY", "4").endswith("from 1 to 3")
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert flag_error("prod", ServeFlags(workers="4")).endswith("from 1 to 3")
    monkeypatch.setenv("PORT", str(DEFAULT_PORT + 9))  # inside the new range: taken
    assert load_settings().port == DEFAULT_PORT + 9
    assert read_start_settings().value(PORT) == DEFAULT_PORT + 9

    for mode in ("dev", "prod", None):
        assert ports in serve_flags(mode)["port"]
    assert "from 1 to 3" in serve_flags("prod")["workers"]
    assert ports in flat(backend_main.parser().format_help())


# --------------------------------------------------------------------------- one default port


def _literals_8000(path: Path) -> list[int]:
    """Lines where ``path`` writes 8000 as a number or as the whole of a string."""
    found = []
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            text = token.string
            if (token.type == tokenize.NUMBER and text == "8000") or (
                token.type == tokenize.STRING and re.fullmatch(r"[rbuRBU]?(['\"])8000\1", text)
            ):
                found.append(token.start[0])
    return found


def test_the_default_port_is_written_once_in_the_python() -> None:
    files = [ROOT / "tasks.py", *(ROOT / "backend").rglob("*.py"), *(ROOT / "utils").rglob("*.py")]
    written = {
        str(path.relative_to(ROOT)): lines for path in files if (lines := _literals_8000(path))
    }
    assert written == {"utils/_values.py": written.get("utils/_values.py", [])}
    assert len(written["utils/_values.py"]) == 1


# --------------------------------------------------------------------------- the docs
ENVIRONMENT_TABLES = ("docs/contract.md", "docs/tokens.md")  # server settings, token store's


def test_the_documented_environment_tables_agree_with_the_declarations() -> None:
    text = "\n".join((ROOT / path).read_text(encoding="utf-8") for path in ENVIRONMENT_TABLES)
    rows = {match[1]: match[0] for match in re.finditer(r"^\| `(\w+)` \|.*$", text, re.M)}
    checked = 0
    for setting in SETTINGS:
        row = rows.get(setting.env)
        assert row is not None, f"{ENVIRONMENT_TABLES} have no row for {setting.env}"
        if isinstance(setting.parse, Integer):
            low, high = setting.parse.limits
            assert f"{low}\N{EN DASH}{high}" in row, (setting.env, row)
            assert row.split("|")[2].strip() == str(setting.default), (setting.env, row)
            checked += 1
        elif isinstance(setting.parse, Choice) and len(setting.parse.values) > 2:
            assert ", ".join(map(str, setting.parse.values)) in row, (setting.env, row)
            checked += 1
    assert checked >= 5
    assert SWITCHES  # the switches have no variable: described with the commands
