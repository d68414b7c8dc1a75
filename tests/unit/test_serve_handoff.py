"""How backend/server.py hands its reserved socket to uvicorn: as a socket object
(``sockets=``), the same object in every mode, which works where uvicorn's ``fd=`` (an
AF_UNIX rebuild) does not: on Windows. uvicorn's server and supervisors are fakes here
that record what they were given; tests/test_serve.py runs the real ones."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
import uvicorn.supervisors

from backend import server

Given = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Given:
    calls: Given = []

    class Server:
        started = True

        def __init__(self, config: object) -> None:
            self.config = config

        def run(self, sockets: list[object] | None = None) -> None:
            calls.append(("server", {"sockets": sockets}))

    class ChangeReload:
        def __init__(self, config: object, target: object, sockets: list[object]) -> None:
            calls.append(("reload", {"target": target, "sockets": sockets}))

        def run(self) -> None: ...

    class Multiprocess:  # uvicorn after 0.30: each worker builds its own server
        def __init__(self, config: object, sockets: list[object]) -> None:
            calls.append(("workers", {"sockets": sockets}))

        def run(self) -> None: ...

    monkeypatch.setattr(uvicorn, "Server", Server)
    monkeypatch.setattr(uvicorn.supervisors, "ChangeReload", ChangeReload)
    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Multiprocess)
    return calls


def config(*, reload: bool = False, workers: int = 1) -> Any:
    return SimpleNamespace(should_reload=reload, workers=workers)


SOCKET: Any = object()  # the reserved socket: only ever passed on, never rebound


def test_a_single_server_serves_the_reserved_socket(given: Given) -> None:
    assert server.serve_on(config(), SOCKET) == 0
    assert given == [("server", {"sockets": [SOCKET]})]


def test_the_reloader_passes_the_reserved_socket_on(given: Given) -> None:
    assert server.serve_on(config(reload=True), SOCKET) == 0
    ((kind, arguments),) = given
    assert kind == "reload" and arguments["sockets"] == [SOCKET]


def test_the_worker_supervisor_passes_the_reserved_socket_on(given: Given) -> None:
    assert server.serve_on(config(workers=3), SOCKET) == 0
    assert given == [("workers", {"sockets": [SOCKET]})]


def test_uvicorn_0_30s_worker_supervisor_also_takes_the_server(
    given: Given, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Multiprocess:  # uvicorn 0.30, the lowest in requirements.txt
        def __init__(self, config: object, target: object, sockets: list[object]) -> None:
            given.append(("workers", {"target": target, "sockets": sockets}))

        def run(self) -> None: ...

    monkeypatch.setattr(uvicorn.supervisors, "Multiprocess", Multiprocess)
    assert server.serve_on(config(workers=2), SOCKET) == 0
    ((kind, arguments),) = given
    assert kind == "workers" and arguments["sockets"] == [SOCKET]
    assert callable(arguments["target"])


def test_an_app_that_never_started_exits_as_uvicorn_would(
    given: Given, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvicorn.Server, "started", False)
    assert server.serve_on(config(), SOCKET) == server.STARTUP_FAILURE
