"""The deployment files agree with the code they deploy.

No container engine or cluster is needed: every file is parsed and held against the real
application (``backend.app.create_app()``'s routes), the real settings
(``backend.settings.Settings``), the real nox sessions (``noxfile``) and ``.ci/run``.
A renamed endpoint, setting, port or session makes one of these tests fail.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nox
import nox.project
import pytest
import yaml
from fastapi.routing import APIRoute
from nox import registry
from pydantic import ValidationError

import noxfile
from backend import app as app_module
from backend import server
from backend.app import create_app
from backend.settings import Settings
from tests.conftest import POSIX_SHELL
from utils.port_manager import DEFAULT_PORT

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = ROOT / ".ci" / "run"

# Variables of the interpreter and its tools, not of the backend's settings.
TOOL_VARIABLES = re.compile(r"^(PATH|PYTHON\w*|PIP_\w+|VIRTUAL_ENV|LANG|LC_\w+)$")


# --------------------------------------------------------------------------- the code


@pytest.fixture(scope="module")
def app_routes() -> dict[str, set[str]]:
    """Path -> HTTP methods, read from the application itself."""
    routes: dict[str, set[str]] = {}
    for route in create_app().routes:
        if isinstance(route, APIRoute):
            routes.setdefault(route.path, set()).update(route.methods)
    return routes


def settings_variables() -> dict[str, str]:
    """Environment variable name -> Settings field name, as pydantic-settings reads them."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[(alias or prefix + name).upper()] = name
    return names


def default_port() -> int:
    """The project's one default port; the settings' default is it."""
    assert Settings.model_fields["port"].default == DEFAULT_PORT
    return DEFAULT_PORT


def assert_known_variables(names: set[str], where: str) -> None:
    unknown = {name for name in names if not TOOL_VARIABLES.match(name)} - set(settings_variables())
    assert not unknown, (
        f"{where} sets {sorted(unknown)}, which backend/settings.py does not read "
        f"(it reads {sorted(settings_variables())})"
    )


def assert_valid_values(values: dict[str, str], where: str) -> None:
    """Settings accepts every literal value (errors about other, unset fields do not count)."""
    variables = settings_variables()
    given = {name: value for name, value in values.items() if name in variables}
    with pytest.MonkeyPatch.context() as patch:
        for name in variables:
            patch.delenv(name, raising=False)
        for name, value in given.items():
            patch.setenv(name, value)
        try:
            Settings()
        except ValidationError as invalid:
            fields = {variables[name] for name in given}
            bad = [e for e in invalid.errors() if e["loc"] and e["loc"][0] in fields]
            assert not bad, f"{where}: Settings rejects {bad}"


def assert_served(path: str, routes: dict[str, set[str]], where: str) -> None:
    assert "GET" in routes.get(path, set()), (
        f"{where} requests GET {path}, which the app does not serve (it serves {sorted(routes)})"
    )


def stdlib_only(code: str) -> set[str]:
    """The top-level modules a snippet imports; fails unless all are in the standard library."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names)
    assert not outside, f"health check imports {sorted(outside)}: not in the standard library"
    return imported


def requested_url(code: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    """Run a ``python -c`` health check with urlopen replaced; return the URL it opens."""
    opened: list[str] = []

    def fake_urlopen(url: object, *args: object, **kwargs: object) -> None:
        opened.append(url if isinstance(url, str) else getattr(url, "full_url", str(url)))

    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    exec(compile(code, "<healthcheck>", "exec"), {"__name__": "__healthcheck__"})
    assert len(opened) == 1, f"the health check opened {opened}"
    return opened[0]


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: args.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def dockerfile_stages() -> list[Stage]:
    """The stages of the Dockerfile, instructions joined over line continuations."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        scope = stages[-1].args if stages else global_args
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            scope[name] = substitute(default, scope)
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, f"cannot read FROM {rest!r}"
            stages.append(
                Stage(substitute(match.group(1), global_args), match.group(2) or "", [], {})
            )
        elif stages:
            stages[-1].instructions.append((keyword, substitute(rest, stages[-1].args)))
        else:
            assert keyword == "ARG", f"{keyword} before the first FROM"
    return stages


def exec_form(value: str) -> list[str]:
    try:
        argv = json.loads(value)
    except json.JSONDecodeError:
        pytest.fail(f"{value!r} is not in exec (JSON) form")
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def env_instructions(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for value in stage.all("ENV"):
        for token in shlex.split(value):
            name, equals, setting = token.partition("=")
            assert equals, f"write ENV as NAME=value: {value!r}"
            values[name] = setting
    return values


def healthcheck_code(stage: Stage) -> str:
    healthchecks = stage.all("HEALTHCHECK")
    assert len(healthchecks) == 1, "the image needs exactly one HEALTHCHECK"
    options, command, argv_text = healthchecks[0].partition("CMD ")
    assert command, f"HEALTHCHECK without CMD: {healthchecks[0]!r}"
    assert "--interval" in options and "--timeout" in options
    argv = exec_form(argv_text)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3, argv
    return argv[2]


def test_dockerfile_is_multi_stage_on_a_slim_python_that_ci_tests() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "build and runtime stages"
    assert all(stage.name for stage in stages), "every stage is named (FROM ... AS name)"
    runtime = stages[-1]
    repository, _, tag = runtime.base.partition(":")
    assert repository in {"python", "docker.io/library/python"}, runtime.base
    assert "slim" in tag, f"the runtime base {runtime.base} is not a slim image"
    version = tag.split("-")[0]
    assert version in noxfile.PYTHONS, (
        f"the image runs Python {version}; CI tests {noxfile.PYTHONS}"
    )
    earlier = {stage.name for stage in stages[:-1]}
    copied_from = {
        option.removeprefix("--from=")
        for value in runtime.all("COPY")
        for option in value.split()
        if option.startswith("--from=")
    }
    assert copied_from & earlier, "the runtime stage copies its dependencies from a build stage"


def test_dockerfile_installs_requirements_txt() -> None:
    stages = dockerfile_stages()
    copied = {
        dest
        for stage in stages
        for value in stage.all("COPY")
        if not value.startswith("--from")
        for *sources, dest in [value.split()]
        if "requirements.txt" in sources
    }
    assert copied, "requirements.txt is copied into a stage"
    targets = {
        match.group(1)
        for stage in stages
        for run in stage.all("RUN")
        if (match := re.search(r"pip\b.*\binstall\b.*\s-r\s+(\S+)", run))
    }
    assert targets, "a RUN installs with pip install -r"
    assert targets <= copied, f"pip installs {targets}; requirements.txt is copied to {copied}"
    assert "requirements-dev" not in DOCKERFILE.read_text(), "dev tooling stays out of the image"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    runtime = dockerfile_stages()[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"
    keywords = [key for key, _ in runtime.instructions]
    last_user = max(i for i, key in enumerate(keywords) if key == "USER")
    assert "RUN" not in keywords[last_user:], "no RUN after USER: the image ends non-root"


def test_dockerfile_cmd_starts_production_from_the_environment() -> None:
    runtime = dockerfile_stages()[-1]
    assert not runtime.all("ENTRYPOINT")
    commands = runtime.all("CMD")
    assert len(commands) == 1
    argv = exec_form(commands[0])
    assert argv == ["python", "-m", "backend", "--production"], argv
    # Nothing pins what HOST, PORT and WEB_CONCURRENCY decide.
    assert not {"--host", "--port", "--workers"} & set(argv)


def test_dockerfile_port_and_environment_match_the_settings() -> None:
    runtime = dockerfile_stages()[-1]
    env = env_instructions(runtime)
    assert_known_variables(set(env), "Dockerfile ENV")
    assert_valid_values(env, "Dockerfile ENV")
    assert {"HOST", "PORT", "WEB_CONCURRENCY"} <= set(settings_variables())
    exposed = {int(port.split("/")[0]) for value in runtime.all("EXPOSE") for port in value.split()}
    assert exposed == {default_port()}, f"EXPOSE {exposed}, default PORT {default_port()}"
    assert int(env.get("PORT", default_port())) == default_port()


def test_dockerfile_healthcheck_uses_stdlib_and_a_served_path(
    app_routes: dict[str, set[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = healthcheck_code(dockerfile_stages()[-1])
    assert "urllib" in stdlib_only(code)
    # It follows PORT: run it with another port and see where it goes.
    url = urlsplit(requested_url(code, monkeypatch, {"PORT": "18123"}))
    assert (url.hostname, url.port) == ("127.0.0.1", 18123), url
    assert_served(url.path, app_routes, "the Dockerfile HEALTHCHECK")
    unset = urlsplit(requested_url(code, monkeypatch, {}))
    assert unset.port == default_port()
    monkeypatch.undo()
    assert get_status(url.path) == 200


def get_status(path: str) -> int:
    """GET ``path`` from the application in process (no server, no network)."""

    async def request() -> int:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return (await client.get(path)).status_code

    return asyncio.run(request())


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern):
            if part in {"**", "**/"}:
                regex += "(?:.*/)?" if part == "**/" else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((negate, re.compile(regex)))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_private() -> None:
    sources: set[str] = set()
    for stage in dockerfile_stages():
        for value in stage.all("COPY"):
            if "--from=" not in value:
                sources.update(s.rstrip("/") for s in value.split()[:-1] if not s.startswith("--"))
    assert sources, "the Dockerfile copies files from the context"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*.py")
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not dockerignore_excludes(relative), f".dockerignore drops {relative}"
    for private in (
        ".git/HEAD",
        ".venv/bin/python",
        ".ci-venv/bin/python",
        ".nox/tests-3-11/bin/python",
        ".env",
        "tests/test_serve.py",
        "backend/__pycache__/app.cpython-313.pyc",
        "compose.yaml",
    ):
        assert dockerignore_excludes(private), f".dockerignore lets {private} into the context"


# --------------------------------------------------------------------------- compose


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default ($$ is a literal $)."""
    result = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)
    assert not re.search(r"\$(?!\$)", result), f"{text!r} needs a variable without a default"
    return result.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def backend_service(compose: dict[str, Any]) -> dict[str, Any]:
    service = compose["services"]["backend"]
    assert isinstance(service, dict)
    return service


def compose_environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] if "=" in item else (item, None) for item in env)
    return {name: None if value is None else interpolate(str(value)) for name, value in env.items()}


def test_compose_backend_is_the_dev_server_on_mounted_source(compose: dict[str, Any]) -> None:
    service = backend_service(compose)
    build = service["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else command
    assert argv[:3] == ["python", "-m", "backend"] and "--dev" in argv, argv
    assert "--no-reload" not in argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0", "127.0.0.1 is unreachable from outside"
    workdir = dockerfile_stages()[-1].all("WORKDIR")[-1]
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    for watched in server.WATCHED_DIRS:  # what --dev reloads on
        target = f"{workdir}/{watched}"
        assert target in mounts, f"{watched}/ is not mounted at {target}: no reload on edit"
        assert (ROOT / mounts[target]).resolve() == ROOT / watched


def test_compose_environment_is_the_settings(compose: dict[str, Any]) -> None:
    env = compose_environment(backend_service(compose))
    assert_known_variables(set(env), "compose.yaml backend environment")
    assert_valid_values({k: v for k, v in env.items() if v is not None}, "compose.yaml")


def test_compose_port_and_healthcheck_match_the_code(
    compose: dict[str, Any], app_routes: dict[str, set[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = backend_service(compose)
    env = compose_environment(service)
    container_port = int(env.get("PORT") or default_port())
    assert container_port == default_port()
    (mapping,) = service["ports"]
    published = re.fullmatch(
        r"(?:(?P<ip>[\d.]+|\[[\da-fA-F:]+\]):)?(?P<host>\$\{\w+:-\d+\}):(?P<container>\d+)(?:/tcp)?",
        str(mapping),
    )
    assert published, f"{mapping!r}: publish HOST_IP:${{VARIABLE:-default}}:CONTAINER_PORT"
    assert int(published["container"]) == container_port
    assert int(interpolate(published["host"])) == default_port(), "host port's default"
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:3] == ["python", "-c"], test
    assert "urllib" in stdlib_only(test[3])
    url = urlsplit(requested_url(test[3], monkeypatch, {}))
    assert url.port == container_port
    assert_served(url.path, app_routes, "the compose health check")


def test_compose_backend_uses_the_postgres_service(compose: dict[str, Any]) -> None:
    service = backend_service(compose)
    url = urlsplit(compose_environment(service)["DATABASE_URL"] or "")
    assert url.scheme.startswith("postgres"), url
    database = compose["services"][url.hostname]
    assert "postgres" in database["image"], database["image"]
    db_env = database["environment"]
    assert (url.username, url.password, url.path.lstrip("/"), url.port or 5432) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
        db_env["POSTGRES_DB"],
        5432,
    )
    assert service["depends_on"][url.hostname]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])


# --------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """kind -> the one object of that kind under deploy/kubernetes."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert isinstance(document, dict) and "kind" in document, path
            assert document["kind"] not in found, f"two {document['kind']} objects"
            found[document["kind"]] = document
    return found


def container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def literal_env(spec: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in spec.get("env", []):
        if "value" in item:
            assert isinstance(item["value"], str), f"{item['name']}: Kubernetes needs a string"
            env[item["name"]] = item["value"]
    return env


def quantity(text: object) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([\d.]+)([A-Za-z]*)", str(text))
    assert match, f"not a quantity: {text!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def test_kubernetes_objects_fit_together(manifests: dict[str, dict[str, Any]]) -> None:
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(manifests)
    deployment, service, hpa = (
        manifests[kind] for kind in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {port["name"]: port["containerPort"] for port in container(manifests)["ports"]}
    for port in service["spec"]["ports"]:
        target = port["targetPort"]
        assert target in port_names or target in port_names.values(), target
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    kustomization = manifests.get("Kustomization")
    if kustomization:
        listed = set(kustomization["resources"])
        assert listed == {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
        image_names = {image["name"] for image in kustomization.get("images", [])}
        assert container(manifests)["image"].split(":")[0] in image_names


def test_kubernetes_resources_fit_the_autoscaler(manifests: dict[str, dict[str, Any]]) -> None:
    resources = container(manifests)["resources"]
    for name in ("cpu", "memory"):
        request, limit = resources["requests"][name], resources["limits"][name]
        assert quantity(request) <= quantity(limit), f"{name}: request {request} > limit {limit}"
    for metric in manifests["HorizontalPodAutoscaler"]["spec"]["metrics"]:
        if metric["type"] == "Resource":
            assert metric["resource"]["name"] in resources["requests"], (
                "a utilization target needs a request to be relative to"
            )


def test_kubernetes_port_and_environment_match_the_settings(
    manifests: dict[str, dict[str, Any]],
) -> None:
    spec = container(manifests)
    ports = [port["containerPort"] for port in spec["ports"]]
    assert ports == [default_port()], f"containerPort {ports}, default PORT {default_port()}"
    env = literal_env(spec)
    assert int(env["PORT"]) == default_port(), "PORT must be the container port"
    assert_known_variables({item["name"] for item in spec["env"]}, "the Deployment")
    assert_valid_values(env, "the Deployment")


def test_kubernetes_probes_ask_paths_the_app_serves(
    manifests: dict[str, dict[str, Any]], app_routes: dict[str, set[str]]
) -> None:
    spec = container(manifests)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    expected = {"livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        get = spec[probe]["httpGet"]
        assert get["path"] == path, f"{probe} should ask {path}"
        assert get["port"] in ports or get["port"] in ports.values()
        assert_served(path, app_routes, f"the {probe}")
    # /ready bounds its own check; the probe waits longer, so it gets the answer. Read by
    # name: a renamed constant fails here (AttributeError) instead of skipping the check.
    ready_timeout = app_module.READY_TIMEOUT
    assert spec["readinessProbe"].get("timeoutSeconds", 1) > ready_timeout, (
        f"readinessProbe timeoutSeconds must exceed /ready's own bound of {ready_timeout} s"
    )
    if "startupProbe" in spec:
        assert_served(spec["startupProbe"]["httpGet"]["path"], app_routes, "the startupProbe")


def test_kubernetes_grace_period_outlasts_the_graceful_shutdown(
    manifests: dict[str, dict[str, Any]],
) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    spec = container(manifests)
    env = literal_env(spec)
    default = Settings.model_fields["graceful_shutdown_timeout"].default
    timeout = int(env.get("GRACEFUL_SHUTDOWN_TIMEOUT", default))
    pre_stop = 0
    command = spec.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if command:
        assert command[0] == "sleep", command
        pre_stop = int(command[1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pre_stop + timeout, (
        f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} s + "
        f"GRACEFUL_SHUTDOWN_TIMEOUT {timeout} s: requests would be cut by SIGKILL"
    )


def test_kubernetes_runs_the_image_user_on_writable_volumes(
    manifests: dict[str, dict[str, Any]],
) -> None:
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    spec = container(manifests)
    security = {**pod.get("securityContext", {}), **spec.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    image_uid = dockerfile_stages()[-1].all("USER")[-1].split(":")[0]
    assert str(security["runAsUser"]) == image_uid, "the pod and the image agree on the uid"
    assert security.get("allowPrivilegeEscalation") is False
    if security.get("readOnlyRootFilesystem"):
        mounts = {mount["mountPath"] for mount in spec.get("volumeMounts", [])}
        data_dir = literal_env(spec).get("DATA_DIR")
        assert data_dir in mounts, "with a read-only root, DATA_DIR must be a mounted volume"


# --------------------------------------------------------------------------- one source of Pythons
#
# pyproject.toml says which Pythons the project supports (requires-python and the classifiers)
# and which one runs the tooling ([tool.portkeeper.dev] python). Everything else reads them:
# noxfile.py through nox.project, .ci/run and the workflow through .ci/pythons.py. These tests
# fail when a second list of versions appears in one of them.

PYPROJECT_TOML = ROOT / "pyproject.toml"
PYTHONS_SCRIPT = ROOT / ".ci" / "pythons.py"
# A Python version written out: "3.12" or (3, 12), not part of a longer number or name.
VERSION_LITERAL = re.compile(r"(?<![\w.])3\.\d+(?![\d])|\(\s*3\s*,\s*\d+\s*\)")


def load_pyproject() -> dict[str, Any]:
    return nox.project.load_toml(PYPROJECT_TOML)


def classifier_versions(pyproject: dict[str, Any]) -> list[str]:
    """The ``Programming Language :: Python :: 3.X`` classifiers, read here independently."""
    versions = [
        classifier.rpartition(" :: ")[2]
        for classifier in pyproject["project"].get("classifiers", [])
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    ]
    return sorted(versions, key=lambda version: int(version.split(".")[1]))


def tooling_python(pyproject: dict[str, Any]) -> str:
    python = pyproject["tool"]["portkeeper"]["dev"]["python"]
    assert isinstance(python, str)
    return python


def test_pyproject_says_the_pythons_and_nox_runs_them() -> None:
    pyproject = load_pyproject()
    listed = classifier_versions(pyproject)
    assert len(listed) >= 2, f"the classifiers list the supported Pythons (found {listed})"
    # requires-python's lowest version and the classifiers make one range without gaps.
    assert nox.project.python_versions(pyproject, max_version=listed[-1]) == listed, (
        f"requires-python {pyproject['project']['requires-python']!r} and the classifiers "
        f"{listed} disagree"
    )
    sessions = registry.get()
    assert sessions["tests"].python == listed, "the tests run on every classifier's Python"
    tooling = tooling_python(pyproject)
    assert tooling in listed
    for name in ("lint", "typecheck", "bench"):
        assert sessions[name].python == tooling, f"{name} runs on the tooling's Python"


def test_tools_take_the_lowest_python_from_requires_python() -> None:
    pyproject = load_pyproject()
    lowest = classifier_versions(pyproject)[0]
    # ruff reads requires-python itself when target-version is not set.
    assert "target-version" not in pyproject["tool"]["ruff"], "ruff reads requires-python"
    # mypy does not: its python_version is the one copy, held here.
    assert str(pyproject["tool"]["mypy"]["python_version"]) == lowest


def test_noxfile_writes_no_python_version() -> None:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    written = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and VERSION_LITERAL.search(node.value)
    ]
    assert not written, f"noxfile.py writes Python versions {written}: read pyproject.toml"


def run_pythons_script(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    script = root / ".ci" / "pythons.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=30
    )


def test_pythons_script_prints_what_pyproject_says() -> None:
    pyproject = load_pyproject()
    listed, tooling = classifier_versions(pyproject), tooling_python(pyproject)
    assert run_pythons_script("versions").stdout.split() == listed
    assert run_pythons_script("default").stdout.strip() == tooling
    github = run_pythons_script("github")
    assert github.returncode == 0, github.stderr
    assert github.stdout.splitlines() == [f"versions={json.dumps(listed)}", f"default={tooling}"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: re.sub(r'\n    "Programming Language :: Python :: 3\.\d+",', "", text),
            "no 'Programming Language :: Python :: 3.X' classifier",
        ),
        (
            lambda text: re.sub(r'(\[tool\.portkeeper\.dev\]\npython = )"[^"]*"', r'\1"2.7"', text),
            "[tool.portkeeper.dev] python = '2.7' is not a supported version",
        ),
        (
            lambda text: text.replace("[tool.portkeeper.dev]", "[tool.elsewhere]"),
            "no [tool.portkeeper.dev] python",
        ),
        (lambda text: text + "\n[broken\n", "is not valid TOML"),
    ],
    ids=["no classifiers", "tooling not supported", "no tooling python", "not toml"],
)
def test_pythons_script_refuses_a_pyproject_it_cannot_read(
    tmp_path: Path, edit: Any, message: str
) -> None:
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "pythons.py").write_text(PYTHONS_SCRIPT.read_text())
    (tmp_path / "pyproject.toml").write_text(edit(PYPROJECT_TOML.read_text()))
    result = run_pythons_script("versions", root=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr
    usage = run_pythons_script("everything")
    assert usage.returncode == 2 and usage.stderr.startswith("error: usage:")


def ci_run_bash(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run BODY in bash after ``source .ci/run``: its functions and trap, not its CI run.

    ``python3`` is this interpreter and PYENV_ROOT an empty folder, so should sourcing ever
    start the run itself, it stops at the first interpreter check instead of running CI.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"  # a wrapper, not a link: a venv's Python stays in its venv
    python3.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python3.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
    }
    script = f"source {shlex.quote(str(CI_RUN))}\n{body}"
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert "==== CI environment" not in result.stdout, "sourcing .ci/run ran it"
    return result


@POSIX_SHELL  # .ci/run is the Linux CI's bash script
def test_ci_run_reads_its_pythons_from_pyproject(tmp_path: Path) -> None:
    pyproject = load_pyproject()
    result = ci_run_bash(
        'read_pythons\nprintf "%s\\n" "${REQUIRED_PYTHONS[*]}" "$CI_PYTHON"', tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        " ".join(classifier_versions(pyproject)),
        tooling_python(pyproject),
    ]
    code = "\n".join(
        line for line in CI_RUN.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    written = VERSION_LITERAL.findall(code)
    assert not written, f".ci/run writes Python versions {written}: read pyproject.toml"


@POSIX_SHELL  # .ci/run is the Linux CI's bash script
@pytest.mark.parametrize(
    ("stop", "status"),
    [
        ("kill -TERM $$", 143),
        ("kill -INT $$", 130),
        ("kill -HUP $$", 129),
        ("die 'something failed'", 1),
        ("exit 7", 7),
    ],
)
def test_ci_run_removes_its_temporary_files_however_it_stops(
    tmp_path: Path, stop: str, status: int
) -> None:
    temporary = tmp_path / "temporary"
    result = ci_run_bash(
        f"TEMPORARY_FILES+=({shlex.quote(str(temporary))})\n"
        f": >{shlex.quote(str(temporary))}\n"
        f"{stop}\n"
        "echo 'still running'",
        tmp_path,
    )
    assert result.returncode == status, result.stderr
    assert "still running" not in result.stdout
    assert not temporary.exists(), f"{stop}: the run left {temporary} behind"


@POSIX_SHELL  # .ci/run is the Linux CI's bash script
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
@pytest.mark.parametrize("signal_name", ["TERM", "INT"])
def test_ci_run_interrupted_while_installing_postgresql_removes_its_policy(
    tmp_path: Path, signal_name: str
) -> None:
    """As root, .ci/run denies service starts while PostgreSQL installs; a stop lifts that."""
    policy = tmp_path / "policy-rc.d"
    result = ci_run_bash(
        f"POLICY_RC_D={shlex.quote(str(policy))}\n"
        "find_postgres_bin() { :; }\n"  # no server yet: install one
        'apt_install() { [[ -x "$POLICY_RC_D" ]] && echo "policy during install"; '
        f"kill -{signal_name} $$; }}\n"
        "ensure_postgresql\n"
        "echo 'still running'",
        tmp_path,
    )
    assert "policy during install" in result.stdout, result.stdout + result.stderr
    assert "still running" not in result.stdout
    assert result.returncode == {"TERM": 143, "INT": 130}[signal_name], result.stderr
    assert f"interrupted by SIG{signal_name}" in result.stderr
    assert not policy.exists(), "an interrupted run left its policy-rc.d behind"


# --------------------------------------------------------------------------- nox sessions


class RecordingSession:
    """Stands in for a nox session: records the commands a session function would run."""

    def __init__(self) -> None:
        self.posargs: list[str] = []
        self.commands: list[list[str]] = []

    def install(self, *args: str, **kwargs: object) -> None:
        pass

    def run(self, *args: str, **kwargs: object) -> None:
        self.commands.append(list(args))


def test_default_sessions_are_declared_once() -> None:
    assert nox.options.sessions is None, "default sessions: `default=False`, not a second list"
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert listed.returncode == 0, listed.stderr
    defaults = {session["name"] for session in json.loads(listed.stdout)}
    assert defaults == {"tests", "tests_generic", "lint", "typecheck"}, "not bench"
    assert defaults == {name for name, func in registry.get().items() if func.default}


def test_typecheck_checks_what_mypy_config_lists() -> None:
    session = RecordingSession()
    noxfile.typecheck(session)
    (command,) = session.commands
    assert command[0] == "mypy" and all(arg.startswith("-") for arg in command[1:]), (
        f"typecheck runs {command}: the paths are [tool.mypy] files, written once"
    )
    files = set(load_pyproject()["tool"]["mypy"]["files"])
    code = {
        path.name
        for path in ROOT.iterdir()
        if (path.suffix == ".py" and path.name != "conftest.py") or (path / "__init__.py").exists()
    } - {"tests", "benchmarks"}
    code |= {f".ci/{path.name}" for path in (ROOT / ".ci").glob("*.py")}
    assert files == code, "[tool.mypy] files is every module of the project but the tests"


# --------------------------------------------------------------------------- CI workflow


def nox_invocations(script: str) -> Iterator[list[str]]:
    """The session names of every ``nox -s ...`` command a shell script runs."""
    for raw in re.sub(r"\\\n", " ", script).splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "echo", "printf", "section")):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        if not any(t == "nox" or t.endswith("/nox") for t in tokens):
            continue
        if "-s" not in tokens and "--sessions" not in tokens:
            continue
        start = tokens.index("-s" if "-s" in tokens else "--sessions") + 1
        names: list[str] = []
        for token in tokens[start:]:
            if token.startswith("-") or not re.fullmatch(r"[\w.\-]+", token):
                break
            names.append(token)
        yield names


def concrete(names: list[str]) -> set[tuple[str, str]]:
    """Expand session names to (session, python) pairs, as nox would run them."""
    sessions = registry.get()
    runs: set[tuple[str, str]] = set()
    for name in names:
        base, _, python = name.partition("-")
        assert base in sessions, f"nox has no session {base!r} (it has {sorted(sessions)})"
        pythons = sessions[base].python
        available = [pythons] if isinstance(pythons, str) else list(pythons or [])
        if python:
            assert python in available, f"{name}: {base} does not run on Python {python}"
        runs.update((base, p) for p in ([python] if python else available))
    return runs


def ci_run_sessions() -> set[tuple[str, str]]:
    runs: set[tuple[str, str]] = set()
    for names in nox_invocations(CI_RUN.read_text()):
        runs |= concrete(names)
    return runs


def workflow_jobs() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers), triggers
    jobs = workflow["jobs"]
    assert isinstance(jobs, dict)
    return jobs


EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The GitHub expressions the workflow uses: a context path, or fromJSON of one."""
    call = re.fullmatch(r"fromJSON\((.*)\)", expression)
    if call:
        return json.loads(evaluate(call.group(1).strip(), context))
    value: Any = context
    for part in expression.split("."):
        assert isinstance(value, dict) and part in value, f"cannot evaluate {expression!r}"
        value = value[part]
    return value


def expand(value: object, context: dict[str, Any]) -> Any:
    """VALUE with its ``${{ ... }}`` evaluated (those of contexts not given stay as written)."""
    if isinstance(value, list | dict):
        return value
    text = str(value)

    def known(expression: str) -> bool:
        inner = expression.removeprefix("fromJSON(").lstrip()
        return inner.split(".")[0] in context

    whole = EXPRESSION.fullmatch(text.strip())
    if whole and known(whole.group(1)):
        return evaluate(whole.group(1), context)
    return EXPRESSION.sub(
        lambda m: str(evaluate(m.group(1), context)) if known(m.group(1)) else m.group(0), text
    )


def job_outputs(job_name: str, job: dict[str, Any]) -> dict[str, str]:
    """Replay the steps that make a job's outputs; only ``.ci/pythons.py`` ones are run."""
    steps = {step["id"]: step for step in job["steps"] if "id" in step}
    outputs: dict[str, str] = {}
    for name, expression in job.get("outputs", {}).items():
        source = re.fullmatch(r"\$\{\{\s*steps\.([\w-]+)\.outputs\.([\w-]+)\s*\}\}", expression)
        assert source, f"{job_name}: output {name} is {expression!r}, not a step's output"
        tokens = shlex.split(steps[source.group(1)]["run"])
        assert tokens[:2] == ["python", ".ci/pythons.py"] and tokens[-2:] == [
            ">>",
            "$GITHUB_OUTPUT",
        ], f"{job_name}: only `python .ci/pythons.py ... >> $GITHUB_OUTPUT` is replayed"
        written = subprocess.run(
            [sys.executable, *tokens[1:-2]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        step_outputs = dict(line.split("=", 1) for line in written.splitlines())
        outputs[name] = step_outputs[source.group(2)]
    return outputs


def workflow_sessions() -> dict[str, set[tuple[str, str]]]:
    """Job name (one per matrix entry) -> the (session, python) pairs it runs."""
    per_job: dict[str, set[tuple[str, str]]] = {}
    jobs = workflow_jobs()
    outputs = {name: {"outputs": job_outputs(name, job)} for name, job in jobs.items()}
    for job_name, job in jobs.items():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        context: dict[str, Any] = {"needs": {need: outputs[need] for need in needs}}
        matrix = {
            key: expand(values, context)
            for key, values in job.get("strategy", {}).get("matrix", {}).items()
        }
        axes = {key: values for key, values in matrix.items() if isinstance(values, list)}
        assert len(axes) <= 1, f"{job_name}: one matrix axis expected"
        entries = [{key: str(value)} for key, values in axes.items() for value in values] or [{}]
        for entry in entries:
            entry_context = {**context, "matrix": entry}
            python = ""
            runs: set[tuple[str, str]] = set()
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/setup-python"):
                    python = str(expand(step["with"]["python-version"], entry_context))
                for names in nox_invocations(str(expand(step.get("run", ""), entry_context))):
                    runs |= concrete(names)
            for session, session_python in runs:
                assert session_python == python, (
                    f"{job_name}: {session} needs Python {session_python}; the job sets up {python}"
                )
            if runs:
                per_job[f"{job_name}{entry}"] = runs
    return per_job


def test_workflow_runs_the_sessions_of_ci_run() -> None:
    expected = ci_run_sessions()
    defaults = {name for name, func in registry.get().items() if func.default}
    assert {session for session, _ in expected} == defaults, ".ci/run runs nox's default sessions"
    jobs = workflow_sessions()
    ran = set().union(*jobs.values())
    assert ran == expected, f"the workflow runs {sorted(ran)}, .ci/run runs {sorted(expected)}"
    # Tests once per Python on Linux, each in its own job (macOS and Windows: below);
    # the generic reader's tests, lint and typecheck once.
    linux = [runs for name, runs in jobs.items() if name.startswith("tests{")]
    assert len(linux) == len(noxfile.PYTHONS) and all(len(r) == 1 for r in linux)
    assert sorted(python for runs in linux for _, python in runs) == sorted(noxfile.PYTHONS)
    for once in ("tests_generic", "lint", "typecheck"):
        assert sum(1 for runs in jobs.values() for s, _ in runs if s == once) == 1


OTHER_SYSTEMS = {"tests-macos": "macos-latest", "tests-windows": "windows-latest"}


def test_the_whole_suite_runs_on_macos_and_windows_too() -> None:
    """One job each, on the tooling's Python, running `nox -s tests` as it stands (no
    selection of tests): a test that cannot run there skips itself, with its reason."""
    from tests.tokens.conftest import SKIP_POSTGRES

    jobs, sessions = workflow_jobs(), workflow_sessions()
    tooling = tooling_python(load_pyproject())
    for name, runner in OTHER_SYSTEMS.items():
        job = jobs[name]
        assert job["runs-on"] == runner, name
        assert sessions[f"{name}{{}}"] == {("tests", tooling)}, name
        nox_steps = [step["run"] for step in job["steps"] if "nox -s" in step.get("run", "")]
        assert nox_steps == ["python -m nox -s tests-${{ needs.pythons.outputs.default }}"]
        # PostgreSQL: those runners serve none, so the job says why its tests skip there.
        assert str(job.get("env", {}).get(SKIP_POSTGRES, "")).strip(), name
    # Linux is where PostgreSQL is tested: no Linux job may skip it.
    for name, job in jobs.items():
        if name not in OTHER_SYSTEMS:
            assert SKIP_POSTGRES not in job.get("env", {}), name
    assert SKIP_POSTGRES not in (yaml.safe_load(WORKFLOW.read_text()).get("env") or {})


def test_workflow_reads_its_pythons_from_pyproject() -> None:
    def strings(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield str(key)
                yield from strings(value)
        elif isinstance(node, list):
            for item in node:
                yield from strings(item)
        else:
            yield str(node)

    written = [text for text in strings(workflow_jobs()) if VERSION_LITERAL.search(text)]
    assert not written, f"the workflow writes Python versions {written}: read pyproject.toml"
    tests_job = workflow_jobs()["tests"]
    assert tests_job["strategy"].get("fail-fast") is False, "one failing Python hides the others"
    # The matrix, as GitHub expands it from the first job's outputs, is pyproject's list.
    tested = [
        python
        for name, runs in workflow_sessions().items()
        if name.startswith("tests{")  # Linux's matrix (macOS and Windows: the tooling's)
        for session, python in runs
        if session == "tests"
    ]
    assert sorted(tested) == classifier_versions(load_pyproject())


# --------------------------------------------------------------------------- containers CI starts
#
# Every container a workflow job starts from the project's image (``docker run``, or
# ``docker compose up`` of a service built from the Dockerfile) must pass the backend's own
# start-up checks: ``python -m backend ARGS`` runs in process with the container's
# environment (the Dockerfile's ENV, then what the job passes), only binding and serving
# replaced. So what production requires is whatever backend/server.py and
# backend/settings.py refuse to start without (today TOKEN_ENCRYPTION_KEYS), not a list here.

# `docker run` options without a value; every other option takes one (`--opt=v` or `--opt v`).
DOCKER_RUN_FLAGS = frozenset(
    {"-d", "--detach", "--rm", "-i", "--interactive", "-t", "--tty", "-it", "-ti", "--init"}
    | {"--read-only", "--privileged", "-P", "--publish-all", "-q", "--quiet", "--no-healthcheck"}
)
COMPOSE_UP_FLAGS = frozenset(
    {"-d", "--detach", "--build", "--no-build", "--wait", "--no-deps", "--force-recreate"}
    | {"--no-recreate", "--remove-orphans", "--quiet-pull", "--abort-on-container-exit", "-V"}
    | {"--renew-anon-volumes", "--always-recreate-deps", "--no-start", "--no-color", "-y"}
)
PYTHONS = frozenset({"python", "python3"})
SHELL_VARIABLE = re.compile(r"\$\{(\w+)\}|\$\{(\w+):?-([^}]*)\}|\$(\w+)")


@dataclass
class ContainerStart:
    """One container a job starts: where, the command it runs and its environment."""

    where: str
    argv: list[str]
    env: dict[str, str | None]  # None: a value the workflow does not let this test know


def image_defaults() -> tuple[list[str], dict[str, str]]:
    """The runtime stage's CMD and ENV: what a container runs and has unless told otherwise."""
    runtime = dockerfile_stages()[-1]
    return exec_form(runtime.all("CMD")[-1]), env_instructions(runtime)


def builds_the_dockerfile(compose_file: Path, build: object) -> bool:
    spec = {"context": build} if isinstance(build, str) else dict(build)  # type: ignore[call-overload]
    context, dockerfile = spec.get("context", "."), spec.get("dockerfile", "Dockerfile")
    return (compose_file.parent / str(context) / str(dockerfile)).resolve() == DOCKERFILE


def declared_environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A compose service's ``environment`` (mapping or list); None: pass the shell's value."""
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        pairs = [item.partition("=") for item in declared]
        return {name: value if equals else None for name, equals, value in pairs}
    return {str(name): None if value is None else str(value) for name, value in declared.items()}


class StepShell:
    """Follows a step's script: the variables it sets and exports, the images it builds and
    every start of the project's image (what `$NAME`, `-e NAME` and compose resolve to)."""

    def __init__(self, inherited: dict[str, str | None], built: set[str], where: str) -> None:
        self.values = dict(inherited)
        self.exported = set(inherited)  # env: blocks reach the script as exported variables
        self.built = built
        self.where = where
        self.starts: list[ContainerStart] = []

    def expand(self, text: str, *, exported_only: bool = False) -> str | None:
        """``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``$$`` and a whole ``$(command)``."""
        substitution = re.fullmatch(r"\$\((.*)\)", text, re.DOTALL)
        if substitution:
            return self.output_of(substitution.group(1))
        if "$(" in text or "`" in text or "${{" in text:
            return None
        unknown: list[str] = []

        def variable(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2) or match.group(4)
            visible = name in self.exported or not exported_only
            value = self.values.get(name) if visible else None
            if value is None and match.group(3) is not None:
                return match.group(3)
            if value is None:
                unknown.append(name)
            return value or ""

        result = SHELL_VARIABLE.sub(variable, text.replace("$$", "\0")).replace("\0", "$")
        return None if unknown else result

    def passed(self, name: str, env: dict[str, str | None]) -> None:
        """``-e NAME`` / compose's ``NAME:``: the shell's value, only if it exports one."""
        if name in self.exported:
            env[name] = self.values.get(name)

    def output_of(self, command: str) -> str | None:
        """What a command substitution prints, for what this test can run itself:
        ``python -c CODE`` on the runner or in the project's image (the same code and
        requirements). Anything else is unknown (None)."""
        try:
            argv = shlex.split(command)
        except ValueError:
            return None
        if argv[:2] == ["docker", "run"]:
            image, argv = self.docker_run(argv[2:])
            if image not in self.built:
                return None
        if len(argv) < 3 or os.path.basename(argv[0]) not in PYTHONS or argv[1] != "-c":
            return None
        result = subprocess.run(
            [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{self.where}: $({command}) fails: {result.stderr}"
        return result.stdout.strip()

    def docker_run(self, words: list[str]) -> tuple[str, list[str]]:
        """``docker run``'s image and arguments; a start of the project's image is recorded."""
        env: dict[str, str | None] = {}
        entrypoint: list[str] = []
        position = 0
        while words[position].startswith("-"):
            option, equals, value = words[position].partition("=")
            position += 1
            if option in DOCKER_RUN_FLAGS:
                continue
            if not equals:
                value, position = words[position], position + 1
            if option in {"-e", "--env"} and "=" in value:
                name, _, given = value.partition("=")
                env[name] = self.expand(given)
            elif option in {"-e", "--env"}:
                self.passed(value, env)
            elif option == "--env-file":
                for line in (ROOT / value).read_text().splitlines():
                    if line.strip() and not line.lstrip().startswith("#"):
                        name, equals, given = line.strip().partition("=")
                        env[name] = given if equals else self.values.get(name)
            elif option == "--entrypoint":
                entrypoint = [value]
        image, args = words[position], words[position + 1 :]
        if image in self.built:
            cmd, image_env = image_defaults()
            argv = [*entrypoint, *args] if entrypoint or args else cmd
            self.record(argv, {**image_env, **env}, f"docker run {image}")
        return image, args

    def compose_up(self, words: list[str]) -> None:
        """``docker compose [-f FILE] up [OPTIONS] [SERVICE ...]``."""
        files: list[Path] = []
        position = 0
        while words[position] != "up":
            option, equals, value = words[position].partition("=")
            takes_value = option.startswith("-") and not equals
            if option in {"-f", "--file"}:
                files.append(ROOT / (value if equals else words[position + 1]))
            position += 2 if takes_value else 1
        services: list[str] = []
        rest = iter(words[position + 1 :])
        for word in rest:
            if not word.startswith("-"):
                services.append(word)
            elif word not in COMPOSE_UP_FLAGS and "=" not in word:
                next(rest, None)  # the option's value
        for path in files or [COMPOSE]:
            for name, service in yaml.safe_load(path.read_text())["services"].items():
                if not services or name in services:
                    self.compose_service(path, name, service)

    def compose_service(self, path: Path, name: str, service: dict[str, Any]) -> None:
        if "build" in service:
            if not builds_the_dockerfile(path, service["build"]):
                return
        elif service.get("image") not in self.built:
            return
        cmd, image_env = image_defaults()
        command = service.get("command") or cmd
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        env: dict[str, str | None] = dict(image_env)
        for variable, value in declared_environment(service).items():
            if value is None:
                self.passed(variable, env)
            else:  # compose interpolates from the shell's exported variables
                env[variable] = self.expand(value, exported_only=True)
        self.record(argv, env, f"compose service {name} of {path.name}")

    def record(self, argv: list[str], env: dict[str, str | None], what: str) -> None:
        """Keep the starts of the backend (``python -m backend ...``)."""
        if (
            len(argv) >= 3
            and os.path.basename(argv[0]) in PYTHONS
            and argv[1:3] == ["-m", "backend"]
        ):
            self.starts.append(ContainerStart(f"{self.where}: {what}", argv, env))

    def assign(self, words: list[str]) -> None:
        """``NAME=VALUE``, ``export NAME[=VALUE] ...``."""
        export = words[0] == "export"
        for word in words[1:] if export else words[:1]:
            name, equals, value = word.partition("=")
            if equals:
                self.values[name] = self.expand(value)
            if export:
                self.exported.add(name)

    def command(self, words: list[str]) -> None:
        """The docker commands of one line: build (its tags), run and compose up."""
        for start, word in enumerate(words):
            action = words[start + 1] if start + 1 < len(words) else ""
            if word == "docker" and action == "build":
                for index, option in enumerate(words[start + 2 :], start + 2):
                    if option in {"-t", "--tag"}:
                        self.built.add(words[index + 1])
                    elif option.startswith(("--tag=", "-t=")):
                        self.built.add(option.partition("=")[2])
            elif word == "docker" and action == "run":
                self.docker_run(words[start + 2 :])
            elif (word, action) == ("docker", "compose") or word == "docker-compose":
                tail = words[start + (2 if word == "docker" else 1) :]
                if "up" in tail:
                    self.compose_up(tail)

    def run_script(self, script: str) -> None:
        for raw in re.sub(r"\\\n", " ", script).splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(line)
            except ValueError:
                assert "docker" not in line, f"{self.where}: cannot read {line!r}"
                continue
            if words[0] == "export" or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0], re.DOTALL):
                self.assign(words)
            else:
                self.command(words)


def literal_values(block: dict[str, Any] | None) -> dict[str, str | None]:
    """An ``env:`` block; an expression (``${{ ... }}``) is a value this test cannot know."""
    values = (block or {}).items()
    return {str(name): None if "${{" in str(value) else str(value) for name, value in values}


def container_starts(
    jobs: dict[str, Any], workflow_env: dict[str, Any] | None = None
) -> list[ContainerStart]:
    """Every start of the project's image the jobs make, in order."""
    starts: list[ContainerStart] = []
    for job_name, job in jobs.items():
        built: set[str] = set()  # the image tags this job has built so far
        for number, step in enumerate(job.get("steps", []), start=1):
            if str(step.get("uses", "")).startswith("docker/build-push-action"):
                tags = str(step.get("with", {}).get("tags", ""))
                built.update(tag.strip() for tag in re.split(r"[,\n]", tags) if tag.strip())
            inherited = {
                **literal_values(workflow_env),
                **literal_values(job.get("env")),
                **literal_values(step.get("env")),
            }
            shell = StepShell(inherited, built, f"job {job_name}, step {step.get('name', number)}")
            shell.run_script(str(step.get("run", "")))
            starts.extend(shell.starts)
    return starts


def start_refusal(start: ContainerStart) -> str | None:
    """What ``python -m backend ARGS`` says in that environment; None when it would serve."""
    from backend import __main__ as backend_main

    variables = settings_variables()
    unknown = sorted(name for name in variables if name in start.env and start.env[name] is None)
    if unknown:
        return (
            f"the value of {', '.join(unknown)} cannot be told from the workflow: give a literal, "
            "or make it in the step with python -c (as the image job makes its key)"
        )
    served: list[object] = []

    def serve_nothing(request: server.StartRequest, settings: Settings) -> int:
        served.append(request)
        return 0

    errors = io.StringIO()
    saved = dict(os.environ)  # serve() itself sets APP_ENV=production in production
    try:
        for name in variables:
            os.environ.pop(name, None)
        os.environ.update({name: str(start.env[name]) for name in variables if name in start.env})
        with (
            pytest.MonkeyPatch.context() as patch,
            contextlib.redirect_stderr(errors),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            # Everything but binding and serving: settings, mode, production's keys.
            patch.setattr(server, "run", serve_nothing)
            status = backend_main.main(start.argv[3:])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if status == 0 and served:
        return None
    return errors.getvalue().strip() or f"exit status {status} without serving"


def test_workflow_starts_only_containers_the_backend_accepts() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    starts = container_starts(workflow_jobs(), workflow.get("env"))
    assert starts, "the workflow starts no container of the image: nothing was checked"
    for start in starts:
        refusal = start_refusal(start)
        assert refusal is None, f"{start.where} runs {start.argv} and would fail: {refusal}"


def one_step_job(script: str, **env: str) -> dict[str, Any]:
    return {"job": {"steps": [{"name": "try", "run": script, "env": env}]}}


PRODUCTION_STARTS_WITHOUT_KEYS = {
    "docker run": "docker build -t img .\ndocker run --detach -p 127.0.0.1:8000:8000 img",
    "-e NAME not exported": "docker build -t img .\nTOKEN_ENCRYPTION_KEYS=x\n"
    "docker run -d --env TOKEN_ENCRYPTION_KEYS img",
    "explicit command": "docker build --tag=img .\n"
    "docker run --rm img python -m backend --production",
    "compose up": "docker build -t img .\ndocker compose -f {compose} up --detach --wait backend",
}


@pytest.mark.parametrize("script", list(PRODUCTION_STARTS_WITHOUT_KEYS))
def test_a_production_start_without_keys_is_caught(script: str, tmp_path: Path) -> None:
    """The check above is not vacuous: the ways a job could forget the keys are all caught."""
    compose_file = tmp_path / "compose.yaml"
    service = {"image": "img", "command": ["python", "-m", "backend", "--production"]}
    compose_file.write_text(yaml.safe_dump({"services": {"backend": service}}))
    text = PRODUCTION_STARTS_WITHOUT_KEYS[script].replace("{compose}", str(compose_file))
    (start,) = container_starts(one_step_job(text))
    refusal = start_refusal(start)
    assert refusal is not None and "TOKEN_ENCRYPTION_KEYS" in refusal, refusal


def test_keys_made_in_the_step_or_from_a_secret_are_told_apart() -> None:
    generate = (
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )
    made = (
        "docker build -t img .\n"
        f'export TOKEN_ENCRYPTION_KEYS="$({generate})"\n'
        "docker run -d -e TOKEN_ENCRYPTION_KEYS img"
    )
    (start,) = container_starts(one_step_job(made))
    assert start_refusal(start) is None
    secret = "docker build -t img .\ndocker run -d -e TOKEN_ENCRYPTION_KEYS img"
    (start,) = container_starts(one_step_job(secret, TOKEN_ENCRYPTION_KEYS="${{ secrets.KEYS }}"))
    assert "cannot be told" in str(start_refusal(start))
    # The development stack (compose.yaml: the dev server) needs no keys.
    (start,) = container_starts(one_step_job("docker compose up --build --detach"))
    assert "--dev" in start.argv and start_refusal(start) is None
