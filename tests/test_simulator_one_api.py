"""The One API simulator serves every route, knob and error code it documents.

Everything goes over real loopback TCP: a :class:`OneApiSimulator` started in the test, a plain
``aiohttp.ClientSession`` sending hand-written JSON (not ``bulksend.wire``: the two check each
other), a real aiohttp receiver for the delivery callbacks, and the CLI as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.simulator import Faults, read_ledger
from bulksend.simulator.one_api import (
    DEFAULT_API_KEY,
    DESCRIPTIONS,
    MAX_CONTENT_CHARS,
    STATUS_NAMES,
    UNLIMITED_CREDIT,
    OneApiSimulator,
)

KEY = "test-one-key-Zx81"
API_MSG_ID = re.compile(r"[0-9a-f]{32}")
ROOT = Path(__file__).resolve().parent.parent


def msg(to: str, content: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"channel": "sms", "to": to, "content": content, **fields}


def numbers(count: int, start: int = 27_820_000_000) -> list[str]:
    return [str(start + i) for i in range(count)]


@pytest.fixture
async def sim() -> AsyncIterator[OneApiSimulator]:
    async with OneApiSimulator(KEY, Faults(seed=1)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def doc(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> int | None:
        error = self.doc.get("error")
        return None if error is None else int(error["code"])


async def send(
    http: aiohttp.ClientSession,
    sim: OneApiSimulator,
    messages: list[dict[str, Any]] | None = None,
    *,
    key: str | None = KEY,
    raw: bytes | None = None,
) -> Reply:
    body = raw if raw is not None else json.dumps({"messages": messages}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key is not None:
        headers["Authorization"] = key
    async with http.post(f"{sim.url}/v1/message", data=body, headers=headers) as response:
        return Reply(response.status, dict(response.headers), await response.read())


async def get(
    http: aiohttp.ClientSession, sim: OneApiSimulator, path: str, key: str | None = KEY
) -> Reply:
    headers = {} if key is None else {"Authorization": key}
    async with http.get(f"{sim.url}{path}", headers=headers) as response:
        return Reply(response.status, dict(response.headers), await response.read())


def entry_codes(reply: Reply) -> list[int | None]:
    return [None if e["accepted"] else e["error"]["code"] for e in reply.doc["messages"]]


# -- POST /v1/message ------------------------------------------------------------------------------


async def test_send_accepts_each_message_with_its_own_content_in_request_order(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    to = numbers(3)
    reply = await send(
        http,
        sim,
        [msg(n, f"Hi {i}", clientMessageId=f"c{i}", **{"from": "ACME"}) for i, n in enumerate(to)],
    )
    assert reply.status == 202
    assert reply.headers["Content-Type"].startswith("application/json")
    doc = reply.doc
    assert doc["error"] is None
    assert [e["to"] for e in doc["messages"]] == to
    assert all(e["accepted"] is True and e["error"] is None for e in doc["messages"])
    ids = [e["apiMessageId"] for e in doc["messages"]]
    assert all(API_MSG_ID.fullmatch(i) for i in ids) and len(set(ids)) == 3
    for i, (number, api_msg_id) in enumerate(zip(to, ids, strict=True)):
        entry = sim.ledger.find(api_msg_id)
        assert entry is not None
        assert (entry.to, entry.text, entry.climsgid, entry.parts) == (
            number,
            f"Hi {i}",
            f"c{i}",
            1,
        )
        assert entry.option_map == {"from": "ACME"}
    assert (sim.stats.requests, sim.stats.answered, sim.stats.accepted) == (1, 1, 3)


async def test_repeated_numbers_are_separate_messages(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    reply = await send(http, sim, [msg("27820000001", "a"), msg("27820000001", "b")])
    assert [e["accepted"] for e in reply.doc["messages"]] == [True, True]
    assert [e.text for e in sim.ledger.by_number()["27820000001"]] == ["a", "b"]


async def test_options_are_recorded_as_sent_and_the_key_never(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    ledger = tmp_path / "one-ledger.csv"
    async with OneApiSimulator(KEY, ledger_path=ledger) as sim:
        fields = {"validityPeriod": 90, "charset": "UTF-8", "from": "27999000111"}
        reply = await send(http, sim, [msg("27820000001", "hi", **fields)])
        assert reply.status == 202
        binary = msg("27820000002", "48656c6c6f", binary=True, udh="050003cc0201")
        assert (await send(http, sim, [binary])).status == 202
    [text, bin_entry] = read_ledger(ledger)
    assert text.option_map == {"charset": "UTF-8", "from": "27999000111", "validityPeriod": "90"}
    assert bin_entry.option_map == {"binary": "true", "udh": "050003cc0201"}
    assert KEY not in ledger.read_text()


async def test_a_leading_plus_is_accepted_and_answered_as_sent(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    reply = await send(http, sim, [msg("+27820000001")])
    assert reply.doc["messages"][0]["to"] == "+27820000001"
    assert reply.doc["messages"][0]["accepted"] is True
    assert sim.ledger.entries[0].to == "27820000001"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (msg("2782"), 25),
        (msg("0821234567"), 25),
        (msg("27 82 000 0001"), 25),
        (msg("2782000000123456"), 25),
        (msg("27820000001", channel="whatsapp"), 23),
        (msg("27820000001", ""), 23),
        ({"to": "27820000001"}, 23),
        (msg("27820000001", 5), 23),
        (msg("27820000001", "x" * (MAX_CONTENT_CHARS + 1)), 24),
        (msg("27820000001", "x" * (153 * 10 + 1)), 100),
        (msg("27820000001", "ж" * (67 * 10 + 1)), 100),
        (msg("27820000001", charset="EBCDIC"), 40),
        (msg("27820000001", **{"from": "Not-Valid!"}), 23),
        (msg("27820000001", validityPeriod=0), 23),
        (msg("27820000001", validityPeriod=True), 23),
        (msg("27820000001", clientMessageId=7), 23),
        (msg("27820000001", binary="yes"), 23),
        (msg("27820000001", "zz", binary=True), 23),
        (msg("27820000001", "00" * 141, binary=True), 100),
        (msg("27820000001", "00" * 135, binary=True, udh="050003cc0201"), 100),
        (msg("27820000001", udh="050003cc0201"), 23),
    ],
    ids=lambda v: v if isinstance(v, int) else None,
)
async def test_an_invalid_message_is_refused_alone_with_its_code(
    sim: OneApiSimulator, http: aiohttp.ClientSession, message: dict[str, Any], code: int
) -> None:
    reply = await send(http, sim, [msg("27830000001"), message, msg("27830000002")])
    assert reply.status == 207  # some accepted, some not
    assert reply.error_code is None
    entries = reply.doc["messages"]
    assert entry_codes(reply) == [None, code, None]
    assert entries[1] == {
        "apiMessageId": "",
        "accepted": False,
        "to": message["to"],
        "error": {"code": code, "description": DESCRIPTIONS[code]},
    }
    assert [e.to for e in sim.ledger] == ["27830000001", "27830000002"]
    assert (sim.stats.recipients, sim.stats.rejected) == (3, 1)


async def test_content_at_the_limits_is_accepted_and_charged_per_part(
    http: aiohttp.ClientSession,
) -> None:
    async with OneApiSimulator(KEY, Faults(credit=100.0)) as sim:
        reply = await send(
            http,
            sim,
            [
                msg("27820000001", "x" * 160),
                msg("27820000002", "x" * 161),
                msg("27820000003", "x" * 1530),
                msg("27820000004", "ж" * 70),
                msg("27820000005", "00" * 140, binary=True),
            ],
        )
        assert entry_codes(reply) == [None] * 5
        assert [e.parts for e in sim.ledger] == [1, 2, 10, 1, 1]
        assert sim.faults.credit == 100.0 - 15


async def test_max_parts_is_a_knob(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY, max_parts=2) as sim:
        reply = await send(
            http, sim, [msg("27820000001", "x" * 306), msg("27820000002", "x" * 307)]
        )
        assert entry_codes(reply) == [None, 100]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"not json", 400, 21),
        (b"[]", 400, 21),
        (b'{"messages": {}}', 400, 21),
        (b'{"message": []}', 400, 21),
        (b'{"messages": ["27820000001"]}', 400, 21),
        (b'{"messages": [{"content": "no to"}]}', 400, 21),
        (b'{"messages": [{"to": 27820000001, "content": "x"}]}', 400, 21),
        (b'{"messages": []}', 400, 23),
        (json.dumps({"messages": [msg(n) for n in numbers(201)]}).encode(), 400, 22),
    ],
    ids=[
        "not_json",
        "array",
        "messages_object",
        "no_messages",
        "message_not_object",
        "no_to",
        "to_not_string",
        "empty",
        "201_messages",
    ],
)
async def test_a_malformed_request_is_refused_as_a_whole(
    sim: OneApiSimulator, http: aiohttp.ClientSession, raw: bytes, status: int, code: int
) -> None:
    reply = await send(http, sim, raw=raw)
    assert reply.status == status
    assert reply.doc == {
        "messages": [],
        "error": {"code": code, "description": DESCRIPTIONS[code]},
    }
    assert len(sim.ledger) == 0
    assert sim.stats.refused == 1


async def test_200_messages_is_the_limit_not_an_error(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    reply = await send(http, sim, [msg(n) for n in numbers(200)])
    assert reply.status == 202 and len(reply.doc["messages"]) == 200
    assert len(sim.ledger) == 200
    # One content for all: one ledger batch, still one id per message, each for its number.
    ids = [e["apiMessageId"] for e in reply.doc["messages"]]
    assert len(set(ids)) == 200
    for entry in reply.doc["messages"]:
        found = sim.ledger.find(entry["apiMessageId"])
        assert found is not None and found.to == entry["to"]
    reply = await send(http, sim, [msg(n) for n in numbers(201)])
    assert (reply.status, reply.error_code) == (400, 22)
    assert len(sim.ledger) == 200


async def test_the_per_request_maximum_is_a_knob(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY, max_messages=50) as sim:
        reply = await send(http, sim, [msg(n) for n in numbers(51)])
        assert (reply.status, reply.error_code) == (400, 22)
        reply = await send(http, sim, [msg(n) for n in numbers(50)])
        assert reply.status == 202 and len(sim.ledger) == 50
    with pytest.raises(ValueError, match="max_messages"):
        OneApiSimulator(KEY, max_messages=0)


async def test_the_status_says_how_the_messages_fared_202_207_400(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    """As the reference: 202 all accepted, 207 some, 400 with entries and a null global error
    when none was (each refused with its own code)."""
    sim.faults.reject_prefixes = ("2783",)
    sim.reject_code = 26
    reply = await send(http, sim, [msg("27820000001"), msg("27820000002")])
    assert reply.status == 202
    reply = await send(http, sim, [msg("27820000003"), msg("27830000001"), msg("2782")])
    assert reply.status == 207 and reply.doc["error"] is None
    assert [(e["accepted"], (e["error"] or {}).get("code")) for e in reply.doc["messages"]] == [
        (True, None),
        (False, 26),
        (False, 25),
    ]
    reply = await send(http, sim, [msg("27830000002"), msg("123")])
    assert reply.status == 400 and reply.doc["error"] is None
    assert [(e["accepted"], e["error"]["code"]) for e in reply.doc["messages"]] == [
        (False, 26),
        (False, 25),
    ]
    assert len(sim.ledger) == 3 and sim.stats.refused == 0


@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY.lower(), KEY[:-1], f"Bearer {KEY}"])
async def test_a_missing_or_wrong_key_is_401_code_1_and_nothing_is_sent(
    sim: OneApiSimulator, http: aiohttp.ClientSession, key: str | None
) -> None:
    reply = await send(http, sim, [msg("27820000001")], key=key)
    assert (reply.status, reply.error_code) == (401, 1)
    assert reply.doc["messages"] == []
    assert len(sim.ledger) == 0
    for path in ("/v1/balance", "/v1/message/" + "0" * 32):
        assert (await get(http, sim, path, key=key)).status == 401


async def test_a_rotated_key_refuses_the_old_one(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.set_api_key("new-key-0042")
    assert (await send(http, sim, [msg("27820000001")])).status == 401
    assert (await send(http, sim, [msg("27820000001")], key="new-key-0042")).status == 202
    assert KEY not in repr(sim) and "new-key-0042" not in repr(sim)


async def test_unknown_routes_and_methods(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    assert (await get(http, sim, "/v1/nothing")).status == 404
    assert (await get(http, sim, "/v1/message")).status == 405
    async with http.post(f"{sim.url}/v1/balance", headers={"Authorization": KEY}) as response:
        assert response.status == 405


# -- per-recipient rejections ----------------------------------------------------------------------


async def test_rejected_prefixes_and_suffixes_get_the_reject_code(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.reject_prefixes = ("2783",)
    sim.faults.reject_suffixes = ("99",)
    to = ["27830000001", "27820000001", "27820000099", "27840000002"]
    assert entry_codes(await send(http, sim, [msg(n) for n in to])) == [25, None, 25, None]
    sim.reject_code = 26
    assert entry_codes(await send(http, sim, [msg(n) for n in to])) == [26, None, 26, None]
    with pytest.raises(ValueError, match="reject_code"):
        sim.reject_code = 114  # a legacy code: not a One API recipient code
    assert sim.faults.reject_code == 114  # the legacy knob is untouched and unused here


# -- faults ----------------------------------------------------------------------------------------


async def test_latency_delays_the_answer(sim: OneApiSimulator, http: aiohttp.ClientSession) -> None:
    sim.faults.latency = 0.2
    started = time.monotonic()
    assert (await send(http, sim, [msg("27820000001")])).status == 202
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert (await get(http, sim, "/v1/balance")).status == 200
    assert time.monotonic() - started < 0.2  # getbalance is not in faults.commands
    sim.faults.commands = {"sendmsg", "getbalance"}
    started = time.monotonic()
    await get(http, sim, "/v1/balance")
    assert time.monotonic() - started >= 0.2


async def test_http_503_processes_nothing(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.http_503_rate = 1.0
    reply = await send(http, sim, [msg("27820000001")])
    assert (reply.status, reply.headers["Retry-After"]) == (503, "1")
    assert len(sim.ledger) == 0 and sim.stats.http_503 == 1


async def test_internal_error_19_processes_nothing(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.err_901_rate = 1.0
    reply = await send(http, sim, [msg("27820000001")])
    assert (reply.status, reply.error_code, reply.doc["messages"]) == (500, 19, [])
    assert len(sim.ledger) == 0 and sim.stats.err_19 == 1


async def test_drop_before_processes_nothing(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.drop_before_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, sim, [msg("27820000001")])
    assert len(sim.ledger) == 0 and sim.stats.dropped_before == 1


async def test_drop_after_loses_the_answer_but_the_messages_were_accepted(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.drop_after_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, sim, [msg(n) for n in numbers(3)])
    assert len(sim.ledger) == 3 and sim.stats.dropped_after == 1
    assert sim.stats.processed == 1


async def test_throttle_answers_429_code_43_with_retry_after_and_processes_nothing(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    sim.faults.throttle_mps = 10.0
    assert (await send(http, sim, [msg(n) for n in numbers(10)])).status == 202
    reply = await send(http, sim, [msg(n) for n in numbers(5, 27_830_000_000)])
    assert (reply.status, reply.error_code) == (429, 43)
    assert int(reply.headers["Retry-After"]) >= 1
    assert len(sim.ledger) == 10
    assert (sim.stats.http_429, sim.stats.answered) == (1, 1)


async def test_credit_is_charged_and_a_request_it_cannot_pay_is_refused_whole(
    http: aiohttp.ClientSession,
) -> None:
    async with OneApiSimulator(KEY, Faults(credit=3.0)) as sim:
        assert (await send(http, sim, [msg(n) for n in numbers(2)])).status == 202
        reply = await send(http, sim, [msg(n) for n in numbers(2, 27_830_000_000)])
        assert (reply.status, reply.error_code) == (402, 20)
        assert len(sim.ledger) == 2
        balance = await get(http, sim, "/v1/balance")
        assert balance.doc == {"balance": 1.0, "currency": "ZAR"}
        # Rejected messages cost nothing: one good + one bad number fit in the last credit.
        reply = await send(http, sim, [msg("27840000001"), msg("12")])
        assert entry_codes(reply) == [None, 25]
        assert sim.faults.credit == 0.0


# -- balance and status ----------------------------------------------------------------------------


async def test_balance_is_unlimited_by_default(
    sim: OneApiSimulator, http: aiohttp.ClientSession
) -> None:
    reply = await get(http, sim, "/v1/balance")
    assert (reply.status, reply.doc) == (200, {"balance": UNLIMITED_CREDIT, "currency": "ZAR"})


async def test_message_status_by_id(sim: OneApiSimulator, http: aiohttp.ClientSession) -> None:
    sent = await send(
        http, sim, [msg("27820000001", "hi", clientMessageId="c1", **{"from": "ACME"})]
    )
    api_msg_id = sent.doc["messages"][0]["apiMessageId"]
    reply = await get(http, sim, f"/v1/message/{api_msg_id}")
    assert reply.status == 200
    doc = reply.doc
    assert {k: v for k, v in doc.items() if k != "timestamp"} == {
        "apiMessageId": api_msg_id,
        "clientMessageId": "c1",
        "to": "27820000001",
        "from": "ACME",
        "statusCode": 3,
        "status": "DELIVERED_TO_GATEWAY",
        "charge": 1.0,
        "error": None,
    }
    assert abs(doc["timestamp"] / 1000 - time.time()) < 60
    sim.ledger.set_status(api_msg_id, "004")
    assert (await get(http, sim, f"/v1/message/{api_msg_id}")).doc["status"] == (
        "RECEIVED_BY_RECIPIENT"
    )
    unknown = await get(http, sim, "/v1/message/" + "f" * 32)
    assert (unknown.status, unknown.error_code) == (404, 23)


# -- delivery callbacks ----------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A real callback receiver: its URL and the (content type, JSON body) of every push."""
    pushes: list[tuple[str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        pushes.append((request.content_type, await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/receipts", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/receipts", pushes
    finally:
        await runner.cleanup()


async def test_delivery_callbacks_are_json_with_the_documented_fields(
    receiver: tuple[str, list[tuple[str, dict[str, Any]]]], http: aiohttp.ClientSession
) -> None:
    url, pushes = receiver
    faults = Faults(seed=3, delivery_delay=0.01, delivery_failure_rate=0.0)
    async with OneApiSimulator(KEY, faults, callback_url=url) as sim:
        sent = await send(
            http,
            sim,
            [msg("27820000001", "a", clientMessageId="c1", **{"from": "ACME"}), msg("27820000002")],
        )
        assert sim.callbacks is not None
        await asyncio.wait_for(sim.callbacks.drained(), 5)
        ids = [e["apiMessageId"] for e in sent.doc["messages"]]
        assert sim.ledger.status(ids[0]) == "004"
    assert {content_type for content_type, _ in pushes} == {"application/json"}
    bodies = [body for _, body in pushes]
    assert sorted((b["messageId"], b["statusCode"]) for b in bodies) == sorted(
        [(i, 3) for i in ids] + [(i, 4) for i in ids]
    )
    first = next(b for b in bodies if b["messageId"] == ids[0] and b["statusCode"] == 4)
    assert set(first) == {
        "integrationName",
        "messageId",
        "clientMessageId",
        "to",
        "from",
        "statusCode",
        "status",
        "timestamp",
        "charge",
    }
    assert (first["clientMessageId"], first["to"], first["from"]) == ("c1", "27820000001", "ACME")
    assert first["status"] == STATUS_NAMES["004"] == "RECEIVED_BY_RECIPIENT"
    assert abs(first["timestamp"] / 1000 - time.time()) < 60


async def test_callback_statuses_select_what_is_pushed(
    receiver: tuple[str, list[tuple[str, dict[str, Any]]]], http: aiohttp.ClientSession
) -> None:
    url, pushes = receiver
    faults = Faults(seed=3, delivery_delay=0.01, delivery_failure_rate=1.0)
    async with OneApiSimulator(KEY, faults, callback_url=url, callback_statuses=4) as sim:
        await send(http, sim, [msg(n) for n in numbers(5)])
        assert sim.callbacks is not None
        await asyncio.wait_for(sim.callbacks.drained(), 5)
    codes = [body["statusCode"] for _, body in pushes]
    assert len(codes) == 5  # errors only: no 003, and every final status is an error
    assert all(code in (5, 7, 9, 10) for code in codes)


async def test_callbacks_are_retried_on_5xx_and_not_after_a_4xx(
    http: aiohttp.ClientSession,
) -> None:
    answers = [503, 500, 200, 400]  # first message: two failures then success; second: refused
    seen: list[int] = []

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        status = answers[len(seen)] if len(seen) < len(answers) else 200
        seen.append(status)
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    faults = Faults(
        seed=4,
        delivery_delay=0.01,
        delivery_failure_rate=0.0,
        callback_tries=3,
        callback_backoff=0.01,
    )
    try:
        async with OneApiSimulator(KEY, faults, callback_url=url, callback_statuses=2) as sim:
            await send(http, sim, [msg("27820000001")])
            assert sim.callbacks is not None
            await asyncio.wait_for(sim.callbacks.drained(), 5)
            first = sim.callbacks.stats
            assert (first.sent, first.retries, first.refused, first.gave_up) == (1, 2, 0, 0)
            await send(http, sim, [msg("27820000002")])
            await asyncio.wait_for(sim.callbacks.drained(), 5)
            assert (first.sent, first.refused) == (1, 1)
    finally:
        await runner.cleanup()
    assert seen == [503, 500, 200, 400]


# -- shuffled answers and the answer's invariants --------------------------------------------------


async def test_shuffled_answers_keep_each_numbers_order(http: aiohttp.ClientSession) -> None:
    async with OneApiSimulator(KEY, Faults(seed=5), shuffle=True) as sim:
        to = [n for n in numbers(30) for _ in range(2)]
        messages = [msg(n, f"{n}-{k}") for k, n in enumerate(to)]
        reply = await send(http, sim, messages)
        answered = [e["to"] for e in reply.doc["messages"]]
        assert answered != to and sorted(answered) == sorted(to)
        for entry in reply.doc["messages"]:
            ledger_entry = sim.ledger.find(entry["apiMessageId"])
            assert ledger_entry is not None and ledger_entry.to == entry["to"]
        for number in set(to):
            texts = [
                sim.ledger.find(e["apiMessageId"]).text  # type: ignore[union-attr]
                for e in reply.doc["messages"]
                if e["to"] == number
            ]
            assert texts == [m["content"] for m in messages if m["to"] == number]


VALID = st.sampled_from([f"2782000{n:04d}" for n in range(8)])
DEFECTS: dict[str, tuple[int, Any]] = {
    "bad_to": (25, lambda m: {**m, "to": "12"}),
    "empty": (23, lambda m: {**m, "content": ""}),
    "too_long": (24, lambda m: {**m, "content": "y" * (MAX_CONTENT_CHARS + 1)}),
    "rejected": (25, lambda m: {**m, "to": "2799" + m["to"][4:]}),
}


@st.composite
def requests(draw: st.DrawFn) -> list[tuple[dict[str, Any], int | None]]:
    size = draw(st.integers(1, 100))
    out: list[tuple[dict[str, Any], int | None]] = []
    for k in range(size):
        shared = draw(st.booleans())  # shared content: messages grouped in one ledger batch
        message = msg(draw(VALID), "same" if shared else f"m{k} " + draw(st.text(max_size=20)))
        defect = draw(st.sampled_from([None, None, None, *DEFECTS]))
        if defect is None:
            out.append((message, None))
        else:
            code, spoil = DEFECTS[defect]
            out.append((spoil(message), code))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.integers(0, 2**32 - 1))
def test_every_answer_accounts_for_each_message_once_by_to(
    planned: list[tuple[dict[str, Any], int | None]], seed: int
) -> None:
    async def run() -> None:
        faults = Faults(seed=seed, reject_prefixes=("2799",))
        async with (
            OneApiSimulator(KEY, faults, shuffle=True) as sim,
            aiohttp.ClientSession() as http,
        ):
            messages = [m for m, _ in planned]
            reply = await send(http, sim, messages)
            assert reply.doc["error"] is None
            refused = sum(1 for e in reply.doc["messages"] if not e["accepted"])
            expected = 202 if not refused else 400 if refused == len(messages) else 207
            assert reply.status == expected
            entries = reply.doc["messages"]
            # One entry per message; the same numbers as asked, each as often.
            assert sorted(e["to"] for e in entries) == sorted(m["to"] for m in messages)
            # Each number's entries, in order, are its messages' outcomes in order.
            for number in {m["to"] for m in messages}:
                got = [e for e in entries if e["to"] == number]
                want = [(m, code) for m, code in planned if m["to"] == number]
                for entry, (message, code) in zip(got, want, strict=True):
                    if code is None:
                        assert entry["accepted"] is True and entry["error"] is None
                        found = sim.ledger.find(entry["apiMessageId"])
                        assert found is not None
                        assert (found.to, found.text) == (number, message["content"])
                    else:
                        assert entry["accepted"] is False and entry["apiMessageId"] == ""
                        assert entry["error"]["code"] == code
            accepted = [e["apiMessageId"] for e in entries if e["accepted"]]
            assert len(accepted) == len(set(accepted)) == len(sim.ledger)
            assert sim.stats.accepted + sim.stats.rejected == len(messages)

    asyncio.run(run())


# -- CLI and independence --------------------------------------------------------------------------


def test_cli_serves_the_one_api_and_never_prints_the_key(tmp_path: Path) -> None:
    ledger = tmp_path / "cli-one-ledger.csv"
    secret = "cli-one-key-5551"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bulksend.simulator", "--api", "one", "--port", "0"),
            *("--api-key", secret, "--ledger", str(ledger), "--access-log"),
            *("--reject-prefix", "2783", "--one-reject-code", "26"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"bulksend simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line

        async def use() -> Any:
            body = {"messages": [msg("27820000001", "hi"), msg("27830000001", "hi")]}
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{match.group(1)}/v1/message", json=body, headers={"Authorization": secret}
                ) as response,
            ):
                assert response.status == 207
                return await response.json()

        answer = asyncio.run(use())
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert out == ""
    assert '"POST /v1/message" 207' in err
    assert "requests=1 answered=1" in err and "accepted=1 rejected=1" in err
    assert [e["accepted"] for e in answer["messages"]] == [True, False]
    assert answer["messages"][1]["error"]["code"] == 26
    [entry] = read_ledger(ledger)
    assert (entry.to, entry.api_msg_id) == ("27820000001", answer["messages"][0]["apiMessageId"])
    assert secret not in err and secret not in ledger.read_text()


def test_the_default_key_is_documented_in_the_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bulksend.simulator", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--api {legacy,one}" in result.stdout
    assert DEFAULT_API_KEY in result.stdout


def test_the_simulator_never_imports_the_client_side() -> None:
    code = (
        "import sys, bulksend.simulator.one_api, bulksend.simulator.cli; "
        "bad = [m for m in sys.modules if m.startswith(('bulksend.wire', 'bulksend.client', "
        "'bulksend.wire.legacy', 'bulksend.campaign'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
