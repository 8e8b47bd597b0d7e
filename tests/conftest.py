"""Test-wide set-up.

aioresponses 0.7.x builds ``aiohttp.ClientResponse`` without the ``stream_writer`` argument that
aiohttp 3.14 made required (pnuckowski/aioresponses#289). Until a release handles it, the mock's
response class gets a stand-in writer; this touches only the mock, never the code under test.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.core
import pytest

from bulksend.errors import forget_secrets


class _NoWriter:
    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(*args, **kwargs)


# The campaign registry (bulksend.registry) must never be the developer's own: point it, and that
# of every child process (XDG_STATE_HOME survives the tests' BULKSEND_*-free child environments),
# at a scratch directory for the whole session, and at the test's own one in each test.
_SESSION_STATE = tempfile.mkdtemp(prefix="bulksend-test-state-")
os.environ["BULKSEND_STATE_DIR"] = os.path.join(_SESSION_STATE, "bulksend")
os.environ["XDG_STATE_HOME"] = _SESSION_STATE


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> Path:
    """Each test its own registry: runs of one test never refuse those of another."""
    home = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    monkeypatch.setenv("BULKSEND_STATE_DIR", str(home / "bulksend"))
    return home / "bulksend"


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Any:
    """Secrets registered by one test (e.g. a short password) must not mask another's messages."""
    yield
    forget_secrets()


@pytest.fixture(autouse=True)
def _aioresponses_compat() -> Any:
    with mock.patch.object(aioresponses.core, "ClientResponse", _CompatResponse):
        yield
