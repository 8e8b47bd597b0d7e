"""``bulksend.wire.one`` against the One API simulator over loopback: each checks the other.

Neither module imports the other; here the wire module's requests go to the real simulator app
through a plain ``aiohttp`` session (the pipeline's client is not built yet) and its parsers read
what the simulator really answers: sends with rejections and shuffled answers, every request-level
refusal and fault, the balance, a message's status and the JSON delivery callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.errors import ErrorClass, GatewayError
from bulksend.simulator import Faults
from bulksend.simulator.one_api import OneApiSimulator
from bulksend.wire import Answer, BatchItem, Request, Verdict
from bulksend.wire.one import (
    ApiKey,
    OneApi,
    OneOptions,
    parse_balance,
    parse_callback,
    parse_status,
)

KEY = "wire-vs-sim-key-77"


async def exchange(
    http: aiohttp.ClientSession, sim: OneApiSimulator, request: Request
) -> tuple[int, dict[str, str], bytes]:
    async with http.request(
        request.method, sim.url + request.path, data=request.body, headers=request.header_map()
    ) as response:
        return response.status, dict(response.headers), await response.read()


async def send(
    http: aiohttp.ClientSession, sim: OneApiSimulator, protocol: OneApi, batch: list[BatchItem]
) -> Answer:
    status, headers, body = await exchange(http, sim, protocol.build(batch))
    return protocol.parse(status, headers, body, batch)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def items(*numbers: str) -> list[BatchItem]:
    return [BatchItem(row, n, f"Hi row {row}") for row, n in enumerate(numbers, 2)]


async def test_a_batch_with_rejections_and_repeats_is_matched_by_to(
    http: aiohttp.ClientSession,
) -> None:
    faults = Faults(seed=11, reject_prefixes=("2783",))
    async with OneApiSimulator(KEY, faults, shuffle=True) as sim:
        protocol = OneApi(ApiKey(KEY), OneOptions(sender="ACME", client_message_id_prefix="r"))
        batch = items("27820000001", "27830000001", "27820000001", "2782", "27840000001")
        answer = await send(http, sim, protocol, batch)
        assert answer.error is None and answer.anomalies == ()
        verdicts = [(o.verdict, o.code, o.error_class) for o in answer.outcomes]
        assert verdicts == [
            (Verdict.ACCEPTED, 0, None),
            (Verdict.REJECTED, 25, ErrorClass.RECIPIENT),
            (Verdict.ACCEPTED, 0, None),
            (Verdict.REJECTED, 25, ErrorClass.RECIPIENT),
            (Verdict.ACCEPTED, 0, None),
        ]
        for item, outcome in zip(batch, answer.outcomes, strict=True):
            if outcome.verdict is Verdict.ACCEPTED:
                entry = sim.ledger.find(outcome.api_msg_id)
                assert entry is not None
                assert (entry.to, entry.text, entry.climsgid) == (
                    item.msisdn,
                    item.content,
                    f"r{item.row}",
                )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from([f"2782{n:07d}" for n in range(6)] + ["27990000001"]), max_size=100)
    .filter(bool)
    .map(lambda numbers: [BatchItem(row, n, f"text {row}") for row, n in enumerate(numbers)]),
    st.integers(0, 2**16),
)
def test_round_trip_through_the_simulator_gives_each_row_its_own_id(
    batch: list[BatchItem], seed: int
) -> None:
    async def run() -> None:
        faults = Faults(seed=seed, reject_prefixes=("2799",))
        async with (
            OneApiSimulator(KEY, faults, shuffle=True) as sim,
            aiohttp.ClientSession() as http,
        ):
            answer = await send(http, sim, OneApi(ApiKey(KEY)), batch)
            assert answer.error is None and answer.anomalies == ()
            for item, outcome in zip(batch, answer.outcomes, strict=True):
                if item.msisdn.startswith("2799"):
                    assert (outcome.verdict, outcome.code) == (Verdict.REJECTED, 25)
                    continue
                assert outcome.verdict is Verdict.ACCEPTED
                entry = sim.ledger.find(outcome.api_msg_id)
                assert entry is not None and (entry.to, entry.text) == (item.msisdn, item.content)
            accepted = [o.api_msg_id for o in answer.outcomes if o.api_msg_id]
            assert len(set(accepted)) == len(accepted) == len(sim.ledger)

    asyncio.run(run())


@pytest.mark.parametrize(
    ("knob", "code", "error_class", "http_status"),
    [
        ({"err_901_rate": 1.0}, 19, ErrorClass.TRANSIENT, 500),
        ({"http_503_rate": 1.0}, 0, ErrorClass.TRANSIENT, 503),
        ({"credit": 0.5}, 20, ErrorClass.FATAL, 402),
    ],
)
async def test_request_level_refusals_parse_to_their_class(
    http: aiohttp.ClientSession,
    knob: dict[str, Any],
    code: int,
    error_class: ErrorClass,
    http_status: int,
) -> None:
    async with OneApiSimulator(KEY, Faults(**knob)) as sim:
        answer = await send(http, sim, OneApi(ApiKey(KEY)), items("27820000001", "27820000002"))
        assert answer.error is not None
        assert (answer.error.code, answer.error.error_class, answer.error.http_status) == (
            code,
            error_class,
            http_status,
        )
        assert all(o.verdict is Verdict.UNKNOWN for o in answer.outcomes)
        assert len(sim.ledger) == 0


async def test_throttling_is_transient_code_43_with_the_wait(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY, Faults(throttle_mps=2.0)) as sim:
        protocol = OneApi(ApiKey(KEY))
        assert (await send(http, sim, protocol, items("27820000001", "27820000002"))).error is None
        answer = await send(http, sim, protocol, items("27820000003"))
        assert answer.error is not None
        assert (answer.error.code, answer.error.error_class) == (43, ErrorClass.TRANSIENT)
        assert answer.error.retry_after is not None and answer.error.retry_after >= 1


async def test_a_wrong_key_is_fatal(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY) as sim:
        answer = await send(http, sim, OneApi(ApiKey("not-" + KEY)), items("27820000001"))
        assert answer.error is not None
        assert (answer.error.code, answer.error.error_class) == (1, ErrorClass.FATAL)
        with pytest.raises(GatewayError) as caught:
            status, _, body = await exchange(
                http, sim, OneApi(ApiKey("not-" + KEY)).balance_request()
            )
            parse_balance(status, body)
        assert caught.value.code == 1


async def test_content_too_long_and_too_many_parts_are_request_class_rejections(
    http: aiohttp.ClientSession,
) -> None:
    async with OneApiSimulator(KEY, max_parts=2) as sim:
        batch = [
            BatchItem(1, "27820000001", "x" * 1601),
            BatchItem(2, "27820000002", "x" * 400),
            BatchItem(3, "27820000003", "fine"),
        ]
        answer = await send(http, sim, OneApi(ApiKey(KEY)), batch)
        assert [(o.verdict, o.code, o.error_class) for o in answer.outcomes] == [
            (Verdict.REJECTED, 24, ErrorClass.REQUEST),
            (Verdict.REJECTED, 100, ErrorClass.REQUEST),
            (Verdict.ACCEPTED, 0, None),
        ]


async def test_balance_and_status_parse(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY, Faults(credit=10.0)) as sim:
        protocol = OneApi(ApiKey(KEY), OneOptions(client_message_id_prefix="s"))
        answer = await send(http, sim, protocol, items("27820000001"))
        status, _, body = await exchange(http, sim, protocol.balance_request())
        assert parse_balance(status, body) == (9.0, "ZAR")
        api_msg_id = answer.outcomes[0].api_msg_id
        status, _, body = await exchange(http, sim, protocol.status_request(api_msg_id))
        report = parse_status(status, body)
        assert (report.api_msg_id, report.client_message_id, report.to, report.status_code) == (
            api_msg_id,
            "s2",
            "27820000001",
            "003",
        )
        status, _, body = await exchange(http, sim, protocol.status_request("f" * 32))
        with pytest.raises(GatewayError) as caught:
            parse_status(status, body)
        assert caught.value.code == 23


async def test_the_simulators_json_callbacks_parse(http: aiohttp.ClientSession) -> None:
    bodies: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    try:
        faults = Faults(seed=2, delivery_delay=0.01, delivery_failure_rate=0.0)
        async with OneApiSimulator(KEY, faults, callback_url=url) as sim:
            protocol = OneApi(ApiKey(KEY), OneOptions(client_message_id_prefix="cb"))
            answer = await send(http, sim, protocol, items("27820000001", "27820000002"))
            assert sim.callbacks is not None
            await asyncio.wait_for(sim.callbacks.drained(), 5)
    finally:
        await runner.cleanup()
    reports = [parse_callback(body) for body in bodies]
    ids = {o.api_msg_id for o in answer.outcomes}
    assert {r.api_msg_id for r in reports} == ids
    assert sorted(r.status_code for r in reports) == ["003", "003", "004", "004"]
    assert {r.client_message_id for r in reports} == {"cb2", "cb3"}
    assert all(
        r.status == ("RECEIVED_BY_RECIPIENT" if r.status_code == "004" else "DELIVERED_TO_GATEWAY")
        for r in reports
    )
