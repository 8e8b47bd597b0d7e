"""The simulator's rate-limited account: burst apart from rate, Retry-After styles, processing
time per recipient and a cap on requests in progress. Real loopback TCP, no mocks."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bulksend.simulator import Faults, Simulator
from bulksend.simulator.cli import add_arguments, faults_from_args

USER, PASSWORD, API_ID = "acme", "s3cret-demo", "3000042"
CREDENTIALS = {"user": USER, "password": PASSWORD, "api_id": API_ID}


def numbers(count: int, start: int = 27_820_000_000) -> str:
    return ",".join(str(start + i) for i in range(count))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(seed=1)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, sim: Simulator, count: int
) -> tuple[int, dict[str, str], str]:
    data = {**CREDENTIALS, "to": numbers(count), "text": "x"}
    async with http.post(f"{sim.url}/http/sendmsg", data=data) as response:
        return response.status, dict(response.headers), await response.text()


async def test_burst_is_set_apart_from_the_rate(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.throttle_mps = 100
    sim.faults.throttle_burst = 300  # three seconds' worth at once, then 100/s
    assert (await post(http, sim, 300))[0] == 200
    status, headers, _ = await post(http, sim, 100)
    assert status == 429 and int(headers["Retry-After"]) == 1  # 100 tokens: about a second
    assert len(sim.ledger) == 300 and sim.stats.http_429 == 1


async def test_burst_smaller_than_a_second_refuses_sooner(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.throttle_mps = 1000
    sim.faults.throttle_burst = 100
    assert (await post(http, sim, 100))[0] == 200
    assert (await post(http, sim, 100))[0] == 429  # a 1000/s account, but only 100 at once


@pytest.mark.parametrize(
    ("style", "check"),
    [
        ("integer", lambda v: v is not None and v.isdigit() and int(v) >= 1),
        ("fractional", lambda v: v is not None and 0 < float(v) < 1 and "." in v),
        ("absent", lambda v: v is None),
    ],
)
async def test_retry_after_styles(
    sim: Simulator, http: aiohttp.ClientSession, style: str, check: object
):
    sim.faults.throttle_mps = 1000
    sim.faults.throttle_retry_after = style
    assert (await post(http, sim, 600))[0] == 200
    status, headers, _ = await post(http, sim, 600)  # 400 left of the 600 needed: 0.2 s away
    assert status == 429
    assert check(headers.get("Retry-After"))  # type: ignore[operator]


@pytest.mark.serial
async def test_processing_time_grows_with_recipients(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.per_recipient_latency = 0.001  # 1 ms per number
    started = time.monotonic()
    await post(http, sim, 1)
    one = time.monotonic() - started
    started = time.monotonic()
    await post(http, sim, 400)
    many = time.monotonic() - started
    assert many >= 0.4 and many > one + 0.3


@pytest.mark.serial  # the first two must reach the simulator within the 0.1 s the test waits
@pytest.mark.parametrize("answer", ["503", "refuse"])
async def test_connection_cap_refuses_requests_over_it_unprocessed(
    sim: Simulator, http: aiohttp.ClientSession, answer: str
):
    sim.faults.latency = 0.3
    sim.faults.max_connections = 2
    sim.faults.over_connections = answer

    async def one(start: int) -> int | str:
        data = {**CREDENTIALS, "to": str(27_820_000_000 + start), "text": "x"}
        try:
            async with http.post(f"{sim.url}/http/sendmsg", data=data) as response:
                await response.read()
                return response.status
        except aiohttp.ClientError:
            return "closed"

    first = [asyncio.create_task(one(i)) for i in range(2)]
    await asyncio.sleep(0.1)  # both are in progress now
    over = await asyncio.gather(one(10), one(11))
    assert await asyncio.gather(*first) == [200, 200]
    assert over == ([503, 503] if answer == "503" else ["closed", "closed"])
    assert len(sim.ledger) == 2 and sim.stats.over_connections == 2


def test_cli_flags_set_the_throttle_knobs():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--throttle",
            "1000",
            "--throttle-burst",
            "250",
            "--retry-after",
            "fractional",
            "--per-recipient-latency",
            "0.0001",
            "--max-connections",
            "8",
            "--over-connections",
            "refuse",
        ]
    )
    faults = faults_from_args(args)
    assert (faults.throttle_mps, faults.throttle_burst, faults.burst) == (1000, 250, 250)
    assert faults.throttle_retry_after == "fractional"
    assert faults.per_recipient_latency == 0.0001
    assert (faults.max_connections, faults.over_connections) == (8, "refuse")


def test_bad_throttle_knobs_fail_where_they_are_set():
    faults = Faults()
    with pytest.raises(ValueError):
        faults.throttle_retry_after = "sometimes"
    with pytest.raises(ValueError):
        faults.max_connections = 0
    with pytest.raises(ValueError):
        faults.throttle_burst = -1
