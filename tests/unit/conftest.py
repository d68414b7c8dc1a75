"""The fast loop (``pytest tests/unit``): pure rules on synthetic records, in seconds.

Every test here runs inside this one process: starting a subprocess or listening on a
socket fails the test, so a real-process test cannot slip in and slow the loop down.
A test bind (``bind`` without ``listen``) is allowed where the bind is the logic itself.
"""

from __future__ import annotations

import socket
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.unit.synthetic import FakeReader
from utils import _platform

if TYPE_CHECKING:
    from utils._common import Reader


class RealProcessInUnitTest(AssertionError):
    """A unit test reached for a real process or a listening socket."""


@pytest.fixture(autouse=True)
def _no_processes_or_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_process(*_args: object, **_kwargs: object) -> None:
        raise RealProcessInUnitTest("tests/unit starts no process: put this test beside the others")

    def refuse_listen(*_args: object, **_kwargs: object) -> None:
        raise RealProcessInUnitTest("tests/unit opens no listening socket")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse_process)
    monkeypatch.setattr(socket.socket, "listen", refuse_listen)


@pytest.fixture
def fake_reader(monkeypatch: pytest.MonkeyPatch) -> FakeReader:
    """The platform reader in force, replaced by one over synthetic records."""
    fake = FakeReader()
    chosen: Reader = fake
    monkeypatch.setattr(_platform, "_chosen", lambda: ("psutil", chosen))
    return fake
