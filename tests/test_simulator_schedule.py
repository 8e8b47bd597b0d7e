"""Scheduled messages and ``delmsg``: 011 until their time, stoppable until then, never delivered
once stopped, refunded, and recorded as stopped in the ledger file.

Over real loopback TCP: a :class:`Simulator` on port 0 with a small time scale
(``minute_seconds``), a plain ``aiohttp`` client, and a real aiohttp server standing in for the
account's callback URL. The ledger's stop rules are also checked against a model with hypothesis.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.simulator import Faults, Ledger, Simulator, read_ledger
from tests.test_simulator import (
    API_ID,
    CREDENTIALS,
    ID_LINE,
    ID_TO_LINE,
    PASSWORD,
    USER,
    call,
    send,
)

MINUTE = 0.05
"""Real seconds per scheduled minute in these tests."""
LATER = 20
"""Minutes of delay (one real second): long enough for a loaded machine to query in time."""


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(USER, PASSWORD, API_ID, minute_seconds=MINUTE) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def query(http: aiohttp.ClientSession, sim: Simulator, command: str, **params: str) -> str:
    status, body = await call(http, sim, command, **CREDENTIALS, **params)
    assert status == 200
    return body


@dataclass
class Receiver:
    """The account's callback URL: a real HTTP server that records every push."""

    url: str = ""
    pushes: list[tuple[float, dict[str, str]]] = field(default_factory=list)

    def statuses(self, api_msg_id: str) -> list[str]:
        return [form["status"] for _, form in self.pushes if form["apiMsgId"] == api_msg_id]

    def first_push(self, api_msg_id: str) -> float:
        return min(at for at, form in self.pushes if form["apiMsgId"] == api_msg_id)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()

    async def record(request: web.Request) -> web.Response:
        form = await request.post()
        recorder.pushes.append((time.monotonic(), {k: str(v) for k, v in form.items()}))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/cb", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    try:
        yield recorder
    finally:
        await runner.cleanup()


# -- status 011 and the time scale -------------------------------------------------------------


async def test_a_scheduled_message_is_011_until_its_time_then_003(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.delivery_delay = 3600.0  # no delivery played meanwhile: 003 once it left
    by_minutes = ID_LINE.fullmatch(
        await send(http, sim, to="27821234567", text="x", deliv_time=str(LATER))
    )
    by_time = ID_LINE.fullmatch(
        await send(
            http, sim, to="27831234567", text="x", scheduled_time=str(int(time.time()) + 60 * LATER)
        )
    )
    at_once = ID_LINE.fullmatch(await send(http, sim, to="27841234567", text="x"))
    assert by_minutes and by_time and at_once
    ids = [m.group(1) for m in (by_minutes, by_time, at_once)]
    answers = [await query(http, sim, "querymsg", apimsgid=i) for i in ids]
    assert answers == [
        f"ID: {i} Status: {s}" for i, s in zip(ids, ["011", "011", "003"], strict=True)
    ]
    await asyncio.sleep(LATER * MINUTE + 0.1)
    for api_msg_id in ids:
        assert await query(http, sim, "querymsg", apimsgid=api_msg_id) == (
            f"ID: {api_msg_id} Status: 003"
        )
    assert [e.status for e in sim.ledger.entries] == ["011", "011", "003"]  # as recorded


async def test_a_scheduled_time_in_the_past_is_sent_at_once(
    sim: Simulator, http: aiohttp.ClientSession
):
    body = await send(http, sim, to="27821234567", text="x", scheduled_time="1000000000")
    api_msg_id = body[4:]
    assert (
        await query(http, sim, "querymsg", apimsgid=api_msg_id) == f"ID: {api_msg_id} Status: 003"
    )
    assert await query(http, sim, "delmsg", apimsgid=api_msg_id) == f"ID: {api_msg_id} Status: 003"


# -- delmsg ------------------------------------------------------------------------------------


async def test_delmsg_stops_a_scheduled_message_refunds_it_and_it_stays_006(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.delivery_delay = 3600.0  # no delivery played meanwhile: 003 once it left
    sim.faults.credit = 10
    two_parts = {"text": "y" * 200, "concat": "2", "deliv_time": str(LATER)}
    body = await send(http, sim, to="27821234567,27831234567", **two_parts)
    stopped, kept = (api_msg_id for api_msg_id, _ in ID_TO_LINE.findall(body))
    assert sim.faults.credit == 6
    assert await query(http, sim, "delmsg", apimsgid=stopped) == f"ID: {stopped} Status: 006"
    assert sim.faults.credit == 8  # two parts back
    assert await query(http, sim, "delmsg", apimsgid=stopped) == f"ID: {stopped} Status: 006"
    assert sim.faults.credit == 8  # no second refund
    assert await query(http, sim, "getmsgcharge", apimsgid=stopped) == (
        f"apiMsgId: {stopped} charge: 0.0 status: 006"
    )
    await asyncio.sleep(LATER * MINUTE + 0.1)
    assert await query(http, sim, "querymsg", apimsgid=stopped) == f"ID: {stopped} Status: 006"
    assert await query(http, sim, "querymsg", apimsgid=kept) == f"ID: {kept} Status: 003"
    assert await query(http, sim, "delmsg", apimsgid=kept) == f"ID: {kept} Status: 003"  # too late
    assert await query(http, sim, "querymsg", apimsgid=kept) == f"ID: {kept} Status: 003"
    assert sim.faults.credit == 8
    assert await query(http, sim, "getbalance") == "Credit: 8.000"
    assert [(e.api_msg_id, e.status, e.cancelled) for e in sim.ledger.entries] == [
        (stopped, "006", True),
        (kept, "011", False),
    ]


async def test_delmsg_cannot_stop_a_message_that_left_and_answers_its_status(
    sim: Simulator, http: aiohttp.ClientSession
):
    api_msg_id = (await send(http, sim, to="27821234567", text="x"))[4:]
    assert await query(http, sim, "delmsg", apimsgid=api_msg_id) == f"ID: {api_msg_id} Status: 003"
    sim.ledger.set_status(api_msg_id, "004")
    assert await query(http, sim, "delmsg", apimsgid=api_msg_id) == f"ID: {api_msg_id} Status: 004"
    assert not sim.ledger.entries[0].cancelled


async def test_delmsg_finds_by_client_id_and_refuses_like_querymsg(
    sim: Simulator, http: aiohttp.ClientSession
):
    body = await send(http, sim, to="27821234567", text="x", climsgid="later1", deliv_time="60")
    api_msg_id = body[4:]
    assert await query(http, sim, "delmsg", climsgid="later1") == f"ID: {api_msg_id} Status: 006"
    assert await query(http, sim, "delmsg", apimsgid="f" * 32) == "ERR: 103, Unknown API message ID"
    assert (
        await query(http, sim, "delmsg", climsgid="nope") == "ERR: 104, Unknown client message ID"
    )
    assert await query(http, sim, "delmsg") == "ERR: 109, Missing message ID"
    assert await call(http, sim, "delmsg", apimsgid=api_msg_id) == (
        200,
        "ERR: 005, Missing session ID",
    )
    sid = (await query(http, sim, "auth"))[4:]
    assert await call(http, sim, "delmsg", method="GET", session_id=sid, apiMsgId=api_msg_id) == (
        200,
        f"ID: {api_msg_id} Status: 006",
    )


async def test_faults_can_hit_delmsg_and_a_lost_answer_still_stopped_the_message(
    sim: Simulator, http: aiohttp.ClientSession
):
    api_msg_id = (await send(http, sim, to="27821234567", text="x", deliv_time="60"))[4:]
    sim.faults.commands = frozenset({"delmsg"})
    sim.faults.drop_after_rate = 1.0
    with pytest.raises(aiohttp.ClientError):
        await call(http, sim, "delmsg", **CREDENTIALS, apimsgid=api_msg_id)
    sim.faults.drop_after_rate = 0.0
    assert await query(http, sim, "delmsg", apimsgid=api_msg_id) == f"ID: {api_msg_id} Status: 006"
    assert sim.stats.dropped_after == 1


# -- callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("callback", "pushed_on_stop"), [(7, ["006"]), (2, ["006"]), (5, [])])
async def test_a_stopped_message_is_never_delivered_and_only_006_is_pushed(
    receiver: Receiver, http: aiohttp.ClientSession, callback: int, pushed_on_stop: list[str]
):
    faults = Faults(delivery_delay=0.02, delivery_failure_rate=0.0)
    async with Simulator(
        USER, PASSWORD, API_ID, faults=faults, callback_url=receiver.url, minute_seconds=MINUTE
    ) as sim:
        assert sim.callbacks is not None
        numbers = "27821234567,27831234567,27841234567"
        sent_at = time.monotonic()
        later = await send(
            http, sim, to=numbers, text="x", deliv_time=str(LATER), callback=str(callback)
        )
        stopped, kept, stopped_too = (i for i, _ in ID_TO_LINE.findall(later))
        at_once = (await send(http, sim, to="27851234567", text="x", callback=str(callback)))[4:]
        for api_msg_id in (stopped, stopped_too):
            assert await query(http, sim, "delmsg", apimsgid=api_msg_id) == (
                f"ID: {api_msg_id} Status: 006"
            )
        await asyncio.wait_for(sim.callbacks.drained(), 5)
        assert sim.callbacks.stats.cancelled == 2
        assert sim.callbacks.stats.decided == 2
        for api_msg_id in (stopped, stopped_too):
            assert receiver.statuses(api_msg_id) == pushed_on_stop
            assert sim.ledger.status(api_msg_id) == "006"
        delivered = {7: ["003", "004"], 2: ["004"], 5: ["003"]}[callback]
        assert receiver.statuses(kept) == delivered
        assert receiver.statuses(at_once) == delivered
        assert receiver.first_push(kept) >= sent_at + LATER * MINUTE  # not before its time
        assert sim.ledger.status(kept) == "004"
    stop_pushes = [form for _, form in receiver.pushes if form["status"] == "006"]
    assert all(form["to"] in numbers.split(",") for form in stop_pushes)
    assert all(float(form["charge"]) == 1.0 for form in stop_pushes)


# -- the ledger file ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep_numbers", [True, False])
async def test_a_stop_is_appended_to_the_ledger_file_and_folded_by_read_ledger(
    tmp_path: Path, http: aiohttp.ClientSession, keep_numbers: bool
):
    path = tmp_path / "ledger.csv"
    async with Simulator(
        USER, PASSWORD, API_ID, ledger_path=path, keep_numbers=keep_numbers, minute_seconds=MINUTE
    ) as sim:
        body = await send(http, sim, to="27821234567,27831234567", text="x", deliv_time="60")
        first, second = (i for i, _ in ID_TO_LINE.findall(body))
        await send(http, sim, to="27841234567", text="now")
        if keep_numbers:
            before = sim.ledger.entries  # materialised before the stop: must still be updated
            assert [e.status for e in before] == ["011", "011", "003"]
        assert await query(http, sim, "delmsg", apimsgid=second) == f"ID: {second} Status: 006"
        lines = path.read_text(encoding="utf-8").splitlines()  # flushed before the answer
        assert len(lines) == 1 + 3 + 1
        assert lines[-1].startswith(f"27831234567,{second},,,")
        assert lines[-1].endswith(',"",,006')
        on_disk = read_ledger(path)
        if keep_numbers:
            assert on_disk == sim.ledger.entries
            assert sim.ledger.by_number()["27831234567"][0].cancelled
    assert [(e.to, e.api_msg_id, e.status) for e in on_disk] == [
        ("27821234567", first, "011"),
        ("27831234567", second, "006"),
        ("27841234567", on_disk[2].api_msg_id, "003"),
    ]
    assert [e.option_map for e in on_disk] == [{"deliv_time": "60"}] * 2 + [{}]


# -- the stop rules against a model ------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(1, 3), st.sampled_from([0.0, 1.0, 5.0])),
        st.tuples(st.just("stop"), st.integers(0, 30), st.just(0.0)),
        st.tuples(st.just("tick"), st.integers(0, 3), st.just(0.0)),
        st.tuples(st.just("decide"), st.integers(0, 30), st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_a_message_can_be_stopped_iff_it_waits_for_its_time_and_a_stop_is_for_good(
    ops: list[tuple[str, int, float]],
):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.csv"
        ledger = Ledger()
        ledger.open(path)
        now = 1000.0
        ids: list[str] = []
        due: dict[str, float] = {}
        decided: set[str] = set()
        stopped: set[str] = set()
        for kind, n, delay in ops:
            if kind == "send":
                numbers = [str(27_820_000_000 + len(ids) + k) for k in range(n)]
                new = ledger.accept(numbers, "x", due=now + delay if delay else 0.0)
                ids += new
                due.update(dict.fromkeys(new, now + delay if delay else 0.0))
            elif kind == "tick":
                now += n
            elif ids:
                api_msg_id = ids[n % len(ids)]
                if kind == "decide":
                    if api_msg_id not in stopped and not due[api_msg_id] > now:
                        ledger.set_status(api_msg_id, "004")
                        decided.add(api_msg_id)
                    continue
                can_stop = due[api_msg_id] > now and api_msg_id not in stopped | decided
                assert (ledger.cancel(api_msg_id, now) is not None) == can_stop
                if can_stop:
                    stopped.add(api_msg_id)
            for api_msg_id in ids:
                expected = (
                    "006"
                    if api_msg_id in stopped
                    else "004"
                    if api_msg_id in decided
                    else "011"
                    if due[api_msg_id] > now
                    else "003"
                )
                assert ledger.status(api_msg_id, now) == expected
        ledger.close()
        entries = read_ledger(path)
        assert entries == ledger.entries
        assert len(entries) == len(ids)
        assert {e.api_msg_id for e in entries if e.cancelled} == stopped
