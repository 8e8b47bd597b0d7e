"""``OneAccount``: the One API balance over real loopback against the real One API simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bulksend.account import OneAccount
from bulksend.client import ClientSettings, RetryPolicy
from bulksend.errors import ErrorClass, GatewayError
from bulksend.simulator import Faults
from bulksend.simulator.one_api import OneApiSimulator
from bulksend.wire.legacy import Auth
from bulksend.wire.one import ApiKey

KEY = "test-one-account-Km42"
FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, jitter=0.0)


def client_settings(endpoint: str, retry: RetryPolicy = FAST) -> ClientSettings:
    return ClientSettings(endpoint=endpoint, auth=Auth("", "", ""), retry=retry)


@pytest.fixture
async def sim() -> AsyncIterator[OneApiSimulator]:
    async with OneApiSimulator(KEY, Faults(seed=3, credit=1234.5)) as simulator:
        yield simulator


async def test_balance_is_the_simulated_credit(sim: OneApiSimulator) -> None:
    async with OneAccount(client_settings(sim.url), ApiKey(KEY)) as account:
        assert await account.balance() == 1234.5
        sim.faults.credit = 7.0
        assert await account.balance() == 7.0


async def test_balance_on_a_shared_session_leaves_it_open(sim: OneApiSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with OneAccount(client_settings(sim.url), ApiKey(KEY), session) as account:
            assert await account.balance() == 1234.5
        assert not session.closed


async def test_bad_key_is_fatal_and_never_quoted(sim: OneApiSimulator) -> None:
    wrong = "wrong-one-key-Yy17"
    async with OneAccount(client_settings(sim.url), ApiKey(wrong)) as account:
        with pytest.raises(GatewayError) as info:
            await account.balance()
    assert info.value.code == 1 and info.value.error_class is ErrorClass.FATAL
    assert wrong not in str(info.value) and KEY not in str(info.value)
    assert wrong not in repr(account)
    assert sim.stats.requests == 1  # a refusal is not retried


async def test_429_is_retried_after_retry_after_then_succeeds(sim: OneApiSimulator) -> None:
    """A front server answers the first call 429/43 (as the One API throttles), then passes
    every call on to the simulator."""
    calls: list[str] = []

    async def front(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Authorization", ""))
        if len(calls) == 1:
            return web.json_response(
                {"error": {"code": 43, "description": "Rate limit"}},
                status=429,
                headers={"Retry-After": "0"},
            )
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": request.headers["Authorization"]}
            async with http.get(sim.url + request.path, headers=headers) as answer:
                return web.Response(
                    status=answer.status,
                    body=await answer.read(),
                    content_type="application/json",
                )

    app = web.Application()
    app.router.add_get("/v1/balance", front)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with OneAccount(client_settings(f"http://127.0.0.1:{port}"), ApiKey(KEY)) as account:
            assert await account.balance() == 1234.5
    finally:
        await runner.cleanup()
    assert calls == [KEY, KEY]


async def test_internal_error_19_is_retried(sim: OneApiSimulator) -> None:
    sim.faults.commands = frozenset({"getbalance"})
    sim.faults.err_901_rate = 1.0
    async with OneAccount(client_settings(sim.url), ApiKey(KEY)) as account:
        with pytest.raises(GatewayError) as info:
            await account.balance()
        assert info.value.error_class is ErrorClass.TRANSIENT
        assert "kept failing" in str(info.value) and KEY not in str(info.value)
        assert sim.stats.err_19 == FAST.max_attempts  # bounded
        sim.faults.err_901_rate = 0.0
        assert await account.balance() == 1234.5


async def test_503_waits_for_retry_after(sim: OneApiSimulator) -> None:
    sim.faults.commands = frozenset({"getbalance"})
    sim.faults.http_503_rate = 1.0
    two_tries = RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0.0)
    async with OneAccount(client_settings(sim.url, two_tries), ApiKey(KEY)) as account:
        started = time.monotonic()
        with pytest.raises(GatewayError, match="HTTP 503"):
            await account.balance()
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 honoured between the 2 attempts
    assert sim.stats.http_503 == 2


async def test_refused_connection_is_retried_then_reported(sim: OneApiSimulator) -> None:
    url = sim.url
    await sim.stop()
    async with OneAccount(client_settings(url), ApiKey(KEY)) as account:
        with pytest.raises(GatewayError, match="cannot connect") as info:
            await account.balance()
    assert KEY not in str(info.value)
