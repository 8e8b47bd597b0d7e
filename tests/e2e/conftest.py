"""Shared pieces for end-to-end campaigns against the real simulator over loopback TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bulksend.config import CampaignSettings
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults, Simulator


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(faults=Faults(seed=1234)) as sim:
        yield sim


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., CampaignSettings]:
    def make(sim: Simulator, input_path: Path, **overrides: Any) -> CampaignSettings:
        values: dict[str, Any] = {
            "input_path": input_path,
            "text": "Hello from the tests",
            "endpoint": sim.url,
            "user": DEFAULT_USER,
            "api_id": DEFAULT_API_ID,
            "password": DEFAULT_PASSWORD,
            "concurrency": 8,
            "install_signal_handlers": False,
            "retry_max_seconds": 30.0,
        }
        values.update(overrides)
        return CampaignSettings(**values)

    return make
