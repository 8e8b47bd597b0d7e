"""Test-wide set-up.

aioresponses 0.7.x builds ``aiohttp.ClientResponse`` without the ``stream_writer`` argument that
aiohttp 3.14 made required (pnuckowski/aioresponses#289). Until a release handles it, the mock's
response class gets a stand-in writer; this touches only the mock, never the code under test.
"""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _fresh_secret_registry() -> Any:
    """Secrets registered by one test (e.g. a short password) must not mask another's messages."""
    yield
    forget_secrets()


@pytest.fixture(autouse=True)
def _aioresponses_compat() -> Any:
    with mock.patch.object(aioresponses.core, "ClientResponse", _CompatResponse):
        yield
