"""render.yaml, the Render Blueprint, uses only Render's documented fields and agrees with the code.

No JSON Schema validation runs, because none can be installed: Render publishes the
Blueprint schema on its own site only (render.com/schema/render.yaml.json, which SchemaStore
lists by address). No package on PyPI or npm carries it: check-jsonschema vendors no Render
schema, the ``schemastore`` package's bundled copy of the catalogue predates it, and Render's
own SDK (``render``) checks a Blueprint only through Render's authenticated API. The machines
that build and test this project reach package registries only. So ``check_documented`` holds
the file to the fields, types and values of Render's Blueprint YAML reference
(render.com/docs/blueprint-spec), and ``nox -s lint`` runs ``yamllint --strict`` on it.

The other checks hold it against the code, as tests/test_deployment.py does for the other
deployment files: the start command is replayed through ``python -m backend``'s real start-up
(settings, mode, production's keys; only binding and serving replaced) in the environment
Render gives it. Each check takes the Blueprint as data, and
``test_a_broken_blueprint_is_caught`` shows each one failing on a Blueprint with its fact
broken.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import APIRoute

import noxfile
from backend import server
from backend.app import create_app
from backend.services.integrations.keys import new_key
from backend.services.integrations.store import normalise_url
from backend.setting_specs import SETTINGS
from backend.settings import Settings
from tests.conftest import fresh_port
from tests.test_deployment import (
    assert_known_variables,
    assert_served,
    assert_valid_values,
    dockerfile_stages,
    get_status,
    settings_variables,
)

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = ROOT / "render.yaml"
COMPOSE = ROOT / "compose.yaml"
PYTHONS = frozenset({"python", "python3"})

# --------------------------------------------------------------------------- Render's reference
# The fields, types and values of Render's Blueprint YAML reference that this file may use.

ROOT_FIELDS = frozenset(
    {"services", "databases", "envVarGroups", "projects", "ungrouped", "previews", "version"}
)
SERVICE_TYPES = frozenset({"web", "pserv", "worker", "cron", "keyvalue", "redis"})
RUNTIMES = frozenset(
    {"docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static"}
)
WEB_SERVICE_FIELDS = frozenset(
    {"type", "name", "runtime", "plan", "region", "repo", "branch", "rootDir", "buildFilter"}
    | {"buildCommand", "startCommand", "preDeployCommand", "healthCheckPath", "envVars"}
    | {"numInstances", "scaling", "maxShutdownDelaySeconds", "autoDeploy", "autoDeployTrigger"}
    | {"domains", "disk", "previews", "ipAllowList", "dockerfilePath", "dockerContext"}
    | {"dockerCommand", "image", "registryCredential", "headers", "routes", "staticPublishPath"}
)
# Instance types of services; regions of services and databases (Render's default: oregon).
SERVICE_PLANS = frozenset(
    {"free", "starter", "standard", "pro", "pro plus", "pro max", "pro ultra"}
)
REGIONS = frozenset({"oregon", "ohio", "virginia", "frankfurt", "singapore"})
DEFAULT_REGION = "oregon"
AUTO_DEPLOY_TRIGGERS = frozenset({"off", "commit", "checksPass"})
# SIGTERM, then this many seconds (1-300; 30 when omitted) before SIGKILL.
SHUTDOWN_DELAY_RANGE = (1, 300)
DEFAULT_SHUTDOWN_DELAY = 30
DATABASE_FIELDS = frozenset(
    {"name", "databaseName", "user", "plan", "previewPlan", "diskSizeGB", "previewDiskSizeGB"}
    | {"region", "ipAllowList", "postgresMajorVersion", "highAvailability", "readReplicas"}
)
# Current PostgreSQL instance types (the legacy starter/standard/pro can no longer be created).
DATABASE_PLAN = re.compile(r"free|basic-(?:256mb|1gb|4gb)|(?:pro|accelerated)-\d+gb")
# An envVars entry has a key and exactly one source, or is a whole group (fromGroup alone).
ENV_VAR_SOURCES = frozenset({"value", "generateValue", "sync", "fromDatabase", "fromService"})
FROM_DATABASE_PROPERTIES = frozenset(
    {"host", "port", "database", "user", "password", "connectionString"}
)


def check_documented(blueprint: dict[str, Any]) -> None:
    """Every field is one Render documents, with a value of the documented type."""
    assert set(blueprint) <= ROOT_FIELDS, f"unknown root fields {set(blueprint) - ROOT_FIELDS}"
    names: list[str] = []
    for service in blueprint.get("services", []):
        assert service.get("type") in SERVICE_TYPES, f"service type {service.get('type')!r}"
        assert isinstance(service.get("name"), str) and service["name"], "a service needs a name"
        names.append(service["name"])
        if service["type"] != "web":
            continue
        unknown = set(service) - WEB_SERVICE_FIELDS
        assert not unknown, f"{service['name']}: fields Render does not document: {unknown}"
        assert service.get("runtime") in RUNTIMES, f"runtime {service.get('runtime')!r}"
        assert service.get("plan", "starter") in SERVICE_PLANS, f"plan {service.get('plan')!r}"
        assert service.get("region", DEFAULT_REGION) in REGIONS, service.get("region")
        for command in ("buildCommand", "startCommand", "preDeployCommand"):
            assert isinstance(service.get(command, ""), str), f"{command} is a string"
        path = service.get("healthCheckPath", "/")
        assert isinstance(path, str) and path.startswith("/"), f"healthCheckPath {path!r}"
        trigger = service.get("autoDeployTrigger", "commit")
        assert trigger in AUTO_DEPLOY_TRIGGERS, f"autoDeployTrigger {trigger!r}"
        delay = service.get("maxShutdownDelaySeconds", DEFAULT_SHUTDOWN_DELAY)
        low, high = SHUTDOWN_DELAY_RANGE
        assert type(delay) is int and low <= delay <= high, f"maxShutdownDelaySeconds {delay!r}"
        instances = service.get("numInstances", 1)
        assert type(instances) is int and instances >= 1, f"numInstances {instances!r}"
        check_env_var_entries(service.get("envVars", []), service["name"])
    for database in blueprint.get("databases", []):
        unknown = set(database) - DATABASE_FIELDS
        assert not unknown, f"database fields Render does not document: {unknown}"
        assert isinstance(database.get("name"), str) and database["name"], "a database name"
        names.append(database["name"])
        for field in ("databaseName", "user"):
            value = database.get(field, "x")
            assert isinstance(value, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", value), (
                f"{field} {value!r}: lower-case letters, digits and _"
            )
        assert DATABASE_PLAN.fullmatch(str(database.get("plan", "free"))), database.get("plan")
        assert database.get("region", DEFAULT_REGION) in REGIONS, database.get("region")
        version = database.get("postgresMajorVersion", "17")
        assert isinstance(version, str | int) and str(version).isdigit(), version
        for rule in database.get("ipAllowList", []):
            assert set(rule) <= {"source", "description"} and "source" in rule, rule
    assert len(names) == len(set(names)), f"names are unique in a Blueprint: {names}"


def check_env_var_entries(entries: object, where: str) -> None:
    assert isinstance(entries, list), f"{where}: envVars is a list"
    keys: list[str] = []
    for entry in entries:
        assert isinstance(entry, dict), f"{where}: envVars entry {entry!r}"
        if "fromGroup" in entry:
            assert set(entry) == {"fromGroup"}, f"{where}: fromGroup stands alone: {entry}"
            continue
        key = entry.get("key")
        assert isinstance(key, str) and re.fullmatch(r"[A-Za-z_]\w*", key), f"key {key!r}"
        keys.append(key)
        sources = set(entry) & ENV_VAR_SOURCES
        assert len(sources) == 1 and set(entry) == {"key"} | sources, (
            f"{where}: {key} needs exactly one of {sorted(ENV_VAR_SOURCES)}: {entry}"
        )
        (source,) = sources
        given = entry[source]
        if source == "value":
            assert isinstance(given, str), f"{key}: write the value as a string, not {given!r}"
        elif source == "generateValue":
            assert given is True, f"{key}: generateValue: true"
        elif source == "sync":
            assert given is False, f"{key}: sync: false (prompted for) is its only form"
        elif source == "fromDatabase":
            assert isinstance(given, dict) and set(given) == {"name", "property"}, given
            assert given["property"] in FROM_DATABASE_PROPERTIES, f"property {given['property']!r}"
        else:
            assert isinstance(given, dict) and {"name", "type"} <= set(given), given
    assert len(keys) == len(set(keys)), f"{where}: a key is set twice: {keys}"


# --------------------------------------------------------------------------- the Blueprint


def load() -> dict[str, Any]:
    document = yaml.safe_load(BLUEPRINT.read_text())
    assert isinstance(document, dict)
    return document


def web_service(blueprint: dict[str, Any]) -> dict[str, Any]:
    """The backend: the Blueprint's one web service."""
    (service,) = [s for s in blueprint.get("services", []) if s.get("type") == "web"]
    assert isinstance(service, dict)
    return service


def env_entries(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in service.get("envVars", []) if "key" in entry}


def literal_env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(e["value"]) for key, e in env_entries(service).items() if "value" in e}


def databases(blueprint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {database["name"]: database for database in blueprint.get("databases", [])}


def connection_string(database: dict[str, Any]) -> str:
    """The shape of a Render database's internal connection string: no port (5432)."""
    user = database.get("user", "generated_user")
    name = database.get("databaseName", "generated_db")
    return f"postgresql://{user}:password@dpg-0123456789abcdef-a/{name}"


def runtime_env(blueprint: dict[str, Any], port: int) -> dict[str, str]:
    """The backend's environment on Render: PORT from Render, the literal values, a fresh key
    where the key is prompted for (as README says: ``invoke tokens.new-key``), and the
    connection string of the database an entry comes from."""
    env = {"PORT": str(port)}
    for key, entry in env_entries(web_service(blueprint)).items():
        if "value" in entry:
            env[key] = str(entry["value"])
        elif entry.get("sync") is False:
            assert key == "TOKEN_ENCRYPTION_KEYS", f"{key} is prompted for: no stand-in known"
            env[key] = new_key()
        elif "fromDatabase" in entry:
            source = entry["fromDatabase"]
            assert source.get("property") == "connectionString", f"{key}: {source}"
            env[key] = connection_string(databases(blueprint).get(source.get("name"), {}))
        else:
            pytest.fail(f"{key}: {entry} is a value this test cannot stand in for")
    return env


@dataclass
class Start:
    """What ``python -m backend ARGS`` did in process: the request it would serve, or why not."""

    request: server.StartRequest | None
    settings: Settings | None
    errors: str


def replay(argv: list[str], env: dict[str, str]) -> Start:
    """Run the start command's ``python -m backend ARGS`` with exactly ``env`` as the backend's
    settings; everything runs but binding and serving (``server.run``)."""
    from backend import __main__ as backend_main

    assert len(argv) >= 3 and argv[0] in PYTHONS and argv[1:3] == ["-m", "backend"], (
        f"the start command {argv} is not python -m backend"
    )
    served: list[tuple[server.StartRequest, Settings]] = []

    def serve_nothing(request: server.StartRequest, settings: Settings) -> int:
        served.append((request, settings))
        return 0

    errors = io.StringIO()
    saved = dict(os.environ)  # serve() itself sets APP_ENV=production in production
    try:
        for name in settings_variables():
            os.environ.pop(name, None)
        os.environ.update(env)
        with (
            pytest.MonkeyPatch.context() as patch,
            contextlib.redirect_stderr(errors),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            patch.setattr(server, "run", serve_nothing)
            status = backend_main.main(argv[3:])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if status == 0 and served:
        return Start(*served[0], "")
    return Start(None, None, errors.getvalue().strip() or f"exit status {status}")


def start_on_render(blueprint: dict[str, Any], port: int) -> Start:
    argv = shlex.split(web_service(blueprint)["startCommand"])
    return replay(argv, runtime_env(blueprint, port))


def served_start(blueprint: dict[str, Any], port: int) -> server.StartRequest:
    start = start_on_render(blueprint, port)
    assert start.request is not None, f"the start command would fail on Render: {start.errors}"
    return start.request


# --------------------------------------------------------------------------- the checks


def check_start(blueprint: dict[str, Any]) -> None:
    """The start command is the production start, and it starts with what Render gives it."""
    service = web_service(blueprint)
    assert service.get("runtime") == "python", "the start command runs on Render's Python"
    argv = shlex.split(service["startCommand"])
    assert argv[:3] in (["python", "-m", "backend"], ["python3", "-m", "backend"]), argv
    assert "--production" in argv, f"{argv} is not a production start"
    pinned = {"--host", "--port", "--workers"} & {arg.split("=")[0] for arg in argv}
    assert not pinned, f"{sorted(pinned)} would override what HOST, PORT and WEB_CONCURRENCY say"
    request = served_start(blueprint, fresh_port())
    assert request.mode == "prod"
    workers = literal_env(service).get("WEB_CONCURRENCY")
    assert workers is not None, "WEB_CONCURRENCY is set: the worker count is chosen, not implied"
    assert request.workers == int(workers), (request.workers, workers)


def check_port(blueprint: dict[str, Any]) -> None:
    """The server binds the PORT Render sets; nothing in the file fixes one."""
    assert "PORT" not in env_entries(web_service(blueprint)), "PORT is Render's to set"
    port = fresh_port()
    request = served_start(blueprint, port)
    assert (request.port, request.port_from) == (port, "PORT"), request


def check_host(blueprint: dict[str, Any]) -> None:
    """Render's proxy reaches the server on 0.0.0.0, not on loopback."""
    assert literal_env(web_service(blueprint)).get("HOST") == "0.0.0.0"
    assert served_start(blueprint, fresh_port()).host == "0.0.0.0"


@functools.cache
def app_routes() -> dict[str, set[str]]:
    """Path -> HTTP methods, read from the application itself."""
    routes: dict[str, set[str]] = {}
    for route in create_app().routes:
        if isinstance(route, APIRoute):
            routes.setdefault(route.path, set()).update(route.methods or ())
    return routes


def check_health(blueprint: dict[str, Any]) -> None:
    """Render's health check asks a route the app serves, and gets 200 from it."""
    path = web_service(blueprint).get("healthCheckPath")
    assert isinstance(path, str), "Render checks a path before it routes traffic to a deploy"
    assert_served(path, app_routes(), "the Render health check")
    assert get_status(path) == 200


def check_settings(blueprint: dict[str, Any]) -> None:
    """Every variable is one backend/settings.py reads, and every literal is a valid value."""
    service = web_service(blueprint)
    assert_known_variables(set(env_entries(service)), "render.yaml")
    assert_valid_values(literal_env(service), "render.yaml")


def check_secrets(blueprint: dict[str, Any]) -> None:
    """No secret setting is written in the file; the keys are prompted for at the first sync."""
    entries = env_entries(web_service(blueprint))
    secret_variables = {setting.env for setting in SETTINGS if setting.secret}
    for name in sorted(secret_variables & set(entries)):
        assert "value" not in entries[name], f"{name} is a secret: it has no value in the file"
    assert entries.get("TOKEN_ENCRYPTION_KEYS") == {"key": "TOKEN_ENCRYPTION_KEYS", "sync": False}
    # Production refuses to start without it: the prompt is what makes the deploy start.
    without = copy.deepcopy(blueprint)
    entries = web_service(without)["envVars"]
    entries[:] = [e for e in entries if e.get("key") != "TOKEN_ENCRYPTION_KEYS"]
    assert "TOKEN_ENCRYPTION_KEYS" in start_on_render(without, fresh_port()).errors


def check_build(blueprint: dict[str, Any]) -> None:
    """The build installs requirements.txt, the runtime requirements, and nothing else."""
    build = web_service(blueprint).get("buildCommand", "")
    installs = [
        words
        for part in re.split(r"&&|;|\n", build)
        if (words := shlex.split(part))
        and ("pip" in words[0] or words[:3] == ["python", "-m", "pip"])
        and "install" in words
    ]
    assert installs, f"the build command {build!r} installs nothing"
    for words in installs:
        rest = iter(words[words.index("install") + 1 :])
        files = []
        for word in rest:
            if word in {"-r", "--requirement"}:
                files.append(next(rest, ""))
            else:
                assert word.startswith("-") and word not in {"-e", "--editable"}, (
                    f"the build installs {word!r} besides the runtime requirements"
                )
        assert files == ["requirements.txt"], f"the build installs {files}"
    assert (ROOT / "requirements.txt").is_file()
    assert "requirements-dev" not in (ROOT / "requirements.txt").read_text()


def check_database(blueprint: dict[str, Any]) -> None:
    """DATABASE_URL is the connection string of a PostgreSQL database this file declares,
    which the settings and the token store accept."""
    entry = env_entries(web_service(blueprint)).get("DATABASE_URL", {})
    source = entry.get("fromDatabase")
    assert isinstance(source, dict), f"DATABASE_URL comes from the Blueprint's database: {entry}"
    assert source.get("property") == "connectionString", source
    declared = databases(blueprint)
    assert source.get("name") in declared, f"no database {source.get('name')!r} in {declared}"
    database = declared[source["name"]]
    url = connection_string(database)
    assert_valid_values({"DATABASE_URL": url}, "a Render connection string")
    store_url = normalise_url(url)
    assert store_url.drivername == "postgresql+psycopg"
    assert store_url.database == database.get("databaseName"), "the database is named"


def check_database_private(blueprint: dict[str, Any]) -> None:
    """The database shares the service's region (its internal connection string works only
    there) and takes no connection from outside Render's private network."""
    service = web_service(blueprint)
    source = env_entries(service)["DATABASE_URL"]["fromDatabase"]
    database = databases(blueprint)[source["name"]]
    assert database.get("region", DEFAULT_REGION) == service.get("region", DEFAULT_REGION), (
        "the database and the service are in one region"
    )
    assert database.get("ipAllowList") == [], "ipAllowList: [] (omitted, any address may try)"


def check_database_version(blueprint: dict[str, Any]) -> None:
    """Render runs the PostgreSQL major version the development stack (compose.yaml) runs."""
    compose = yaml.safe_load(COMPOSE.read_text())
    (image,) = [
        str(s["image"])
        for s in compose["services"].values()
        if str(s.get("image", "")).startswith("postgres:")
    ]
    major = image.partition(":")[2].split("-")[0].split(".")[0]
    source = env_entries(web_service(blueprint))["DATABASE_URL"]["fromDatabase"]
    database = databases(blueprint)[source["name"]]
    assert str(database.get("postgresMajorVersion")) == major, (
        f"postgresMajorVersion {database.get('postgresMajorVersion')!r}; compose runs {image}"
    )


def check_shutdown(blueprint: dict[str, Any]) -> None:
    """uvicorn's graceful shutdown ends before Render's SIGKILL."""
    service = web_service(blueprint)
    delay = service.get("maxShutdownDelaySeconds", DEFAULT_SHUTDOWN_DELAY)
    start = start_on_render(blueprint, fresh_port())
    assert start.settings is not None, start.errors
    timeout = start.settings.graceful_shutdown_timeout
    assert timeout < delay, (
        f"GRACEFUL_SHUTDOWN_TIMEOUT {timeout} s >= maxShutdownDelaySeconds {delay} s: "
        "open requests would be cut by SIGKILL"
    )


def check_python(blueprint: dict[str, Any]) -> None:
    """Render's Python is one CI tests, the one the container image runs."""
    version = literal_env(web_service(blueprint)).get("PYTHON_VERSION")
    assert version, "PYTHON_VERSION is pinned (Render's default changes with the service's age)"
    minor = ".".join(version.split(".")[:2])
    assert minor in noxfile.PYTHONS, f"PYTHON_VERSION {version}; CI tests {noxfile.PYTHONS}"
    image = dockerfile_stages()[-1].base.partition(":")[2].split("-")[0]
    assert minor == image, f"Render runs Python {minor}, the image {image}"


# --------------------------------------------------------------------------- the tests


def test_blueprint_uses_only_documented_fields() -> None:
    check_documented(load())


def test_start_command_is_the_production_start() -> None:
    check_start(load())


def test_port_comes_from_render() -> None:
    check_port(load())


def test_host_is_every_address() -> None:
    check_host(load())


def test_health_check_path_is_served() -> None:
    check_health(load())


def test_environment_is_the_settings() -> None:
    check_settings(load())


def test_secrets_are_prompted_for_not_written() -> None:
    check_secrets(load())


def test_build_installs_the_runtime_requirements() -> None:
    check_build(load())


def test_database_url_comes_from_the_declared_database() -> None:
    check_database(load())


def test_database_is_private_and_beside_the_service() -> None:
    check_database_private(load())


def test_database_runs_the_development_postgres_version() -> None:
    check_database_version(load())


def test_graceful_shutdown_ends_before_render_kills() -> None:
    check_shutdown(load())


def test_python_version_is_one_ci_tests() -> None:
    check_python(load())


# --------------------------------------------------------------------------- break to red


Change = Callable[[dict[str, Any]], None]


def set_env(key: str, entry: dict[str, object] | None) -> Change:
    """Replace the envVars entry ``key`` with ``entry`` (None: remove it)."""

    def change(blueprint: dict[str, Any]) -> None:
        entries = web_service(blueprint)["envVars"]
        entries[:] = [e for e in entries if e.get("key") != key]
        if entry is not None:
            entries.append({"key": key, **entry})

    return change


def set_field(field: str, value: object, *, database: bool = False) -> Change:
    """Set a field of the web service (or the database); None removes it."""

    def change(blueprint: dict[str, Any]) -> None:
        target = blueprint["databases"][0] if database else web_service(blueprint)
        if value is None:
            target.pop(field, None)
        else:
            target[field] = value

    return change


def both(*changes: Change) -> Change:
    def change(blueprint: dict[str, Any]) -> None:
        for one in changes:
            one(blueprint)

    return change


DB_URL = "postgresql://user:password@db.example/tokens"
CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "documented": check_documented,
    "start": check_start,
    "port": check_port,
    "host": check_host,
    "health": check_health,
    "settings": check_settings,
    "secrets": check_secrets,
    "build": check_build,
    "database": check_database,
    "database_private": check_database_private,
    "database_version": check_database_version,
    "shutdown": check_shutdown,
    "python": check_python,
}
BROKEN: dict[str, tuple[str, Change]] = {
    "an undocumented field": ("documented", set_field("healthCheckInterval", 30)),
    "an unknown plan": ("documented", set_field("plan", "hobby")),
    "the old spelling env: beside runtime:": ("documented", set_field("env", "python")),
    "an entry without a source": ("documented", set_env("LOG_LEVEL", {})),
    "a number as a value": ("documented", set_env("WEB_CONCURRENCY", {"value": 2})),
    "two sources": ("documented", set_env("LOG_LEVEL", {"value": "info", "sync": False})),
    "a shutdown delay over 300 s": ("documented", set_field("maxShutdownDelaySeconds", 301)),
    "an unknown database plan": ("documented", set_field("plan", "huge", database=True)),
    "the dev server": ("start", set_field("startCommand", "python -m backend --dev")),
    "no mode flag": ("start", set_field("startCommand", "python -m backend")),
    "uvicorn itself": ("start", set_field("startCommand", "uvicorn backend.app:app")),
    "a pinned port": (
        "start",
        set_field("startCommand", "python -m backend --production --port=1"),
    ),
    "the Docker runtime": ("start", set_field("runtime", "docker")),
    "a bad WEB_CONCURRENCY": ("start", set_env("WEB_CONCURRENCY", {"value": "0"})),
    "a hard-coded PORT": ("port", set_env("PORT", {"value": "8000"})),
    "a path the app does not serve": ("health", set_field("healthCheckPath", "/healthz")),
    "no health check": ("health", set_field("healthCheckPath", None)),
    "HOST on loopback": ("host", set_env("HOST", {"value": "127.0.0.1"})),
    "a variable the settings do not read": ("settings", set_env("WORKERS", {"value": "2"})),
    "a bad LOG_LEVEL": ("settings", set_env("LOG_LEVEL", {"value": "loud"})),
    "the keys in the file": ("secrets", set_env("TOKEN_ENCRYPTION_KEYS", {"value": new_key()})),
    "keys Render generates": ("secrets", set_env("TOKEN_ENCRYPTION_KEYS", {"generateValue": True})),
    "no keys": ("secrets", set_env("TOKEN_ENCRYPTION_KEYS", None)),
    "the dev requirements": (
        "build",
        set_field("buildCommand", "pip install -r requirements-dev.txt"),
    ),
    "an extra package": (
        "build",
        set_field("buildCommand", "pip install -r requirements.txt rich"),
    ),
    "no install": ("build", set_field("buildCommand", "echo")),
    "a literal DATABASE_URL": ("database", set_env("DATABASE_URL", {"value": DB_URL})),
    "another database": (
        "database",
        set_env(
            "DATABASE_URL", {"fromDatabase": {"name": "other", "property": "connectionString"}}
        ),
    ),
    "the database's host only": (
        "database",
        set_env("DATABASE_URL", {"fromDatabase": {"name": "portkeeper-db", "property": "host"}}),
    ),
    "the database elsewhere": ("database_private", set_field("region", "ohio", database=True)),
    "a public database": ("database_private", set_field("ipAllowList", None, database=True)),
    "another PostgreSQL": (
        "database_version",
        set_field("postgresMajorVersion", "16", database=True),
    ),
    "a timeout as long as the delay": (
        "shutdown",
        set_env("GRACEFUL_SHUTDOWN_TIMEOUT", {"value": "30"}),
    ),
    "a timeout past the default delay": (
        "shutdown",
        both(
            set_field("maxShutdownDelaySeconds", None),
            set_env("GRACEFUL_SHUTDOWN_TIMEOUT", {"value": "45"}),
        ),
    ),
    "an untested Python": ("python", set_env("PYTHON_VERSION", {"value": "3.9"})),
    "Render's default Python": ("python", set_env("PYTHON_VERSION", None)),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_blueprint_is_caught(broken: str) -> None:
    """Each check fails on a Blueprint with its fact broken, and passes on render.yaml."""
    check_name, change = BROKEN[broken]
    check = CHECKS[check_name]
    check(load())
    blueprint = load()
    change(blueprint)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        check(blueprint)
