"""The simulator's batch interface (``/http_batch/``) over loopback with a plain aiohttp client:
every command and error code, the UCS-2 convention, expiry, faults, the ledger and callbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bulksend.gsm import encode_ucs2_hex
from bulksend.simulator import Faults, Simulator, read_ledger
from bulksend.simulator.cli import add_arguments, faults_from_args
from tests.test_simulator import API_ID, API_MSG_ID, CREDENTIALS, ID_LINE, ID_TO_LINE, PASSWORD
from tests.test_simulator import USER as USER_NAME

TEMPLATE = "Hi #field1#, your code is #field2#"
NUMBER = "27821234567"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(USER_NAME, PASSWORD, API_ID, faults=Faults(seed=3)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    sim: Simulator,
    command: str,
    *,
    method: str = "POST",
    auth: dict[str, str] | None = None,
    **params: str,
) -> tuple[int, str]:
    url = f"{sim.url}/http_batch/{command}"
    sent = {**(CREDENTIALS if auth is None else auth), **params}
    if method == "POST":
        response = await http.post(url, data=sent)
    else:
        response = await http.get(url, params=sent)
    async with response:
        return response.status, await response.text()


async def answer(http: aiohttp.ClientSession, sim: Simulator, command: str, **params: str) -> str:
    status, body = await call(http, sim, command, **params)
    assert status == 200, body
    return body


async def start(
    http: aiohttp.ClientSession, sim: Simulator, template: str = TEMPLATE, **params: str
) -> str:
    body = await answer(http, sim, "startbatch", template=template, **params)
    assert body.startswith("ID: "), body
    batch_id = body[4:]
    assert API_MSG_ID.fullmatch(batch_id)
    return batch_id


async def item(
    http: aiohttp.ClientSession, sim: Simulator, batch_id: str, to: str = NUMBER, **fields: str
) -> str:
    return await answer(http, sim, "senditem", batch_id=batch_id, to=to, **fields)


# -- startbatch --------------------------------------------------------------------------------


async def test_startbatch_answers_a_fresh_32_hex_batch_id_on_get_and_post(
    sim: Simulator, http: aiohttp.ClientSession
):
    first = await start(http, sim)
    status, body = await call(http, sim, "startbatch", method="GET", template=TEMPLATE)
    assert status == 200 and body.startswith("ID: ")
    assert body[4:] != first
    assert len(sim.batches) == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "202, No batch template"),
        ({"template": ""}, "202, No batch template"),
        ({"template": "x", "unicode": "2"}, "101, Invalid or missing parameters"),
        ({"template": "00zz", "unicode": "1"}, "116, Invalid Unicode data"),
        ({"template": "x", "from": "not a valid sender!"}, "106, Invalid source address"),
        ({"template": "x", "callback": "9"}, "101, Invalid or missing parameters"),
        ({"template": "x", "concat": "0"}, "101, Invalid or missing parameters"),
        ({"template": "x", "deliv_time": "99999"}, "120, Invalid delivery time"),
        ({"template": "x", "msg_type": "SMS_NOPE"}, "101, Invalid or missing parameters"),
        ({"template": "x", "data": "00"}, "101, Invalid or missing parameters"),
    ],
)
async def test_startbatch_refuses_what_sendmsg_would(
    sim: Simulator, http: aiohttp.ClientSession, params: dict[str, str], code: str
):
    assert await answer(http, sim, "startbatch", **params) == f"ERR: {code}"
    assert len(sim.batches) == 0


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        ({"user": USER_NAME, "password": "wrong", "api_id": API_ID}, "001"),
        ({"user": USER_NAME, "password": PASSWORD, "api_id": "1"}, "108"),
        ({}, "005"),
        ({"session_id": "f" * 32}, "003"),
    ],
)
@pytest.mark.parametrize("command", ["startbatch", "senditem", "quicksend", "endbatch"])
async def test_every_batch_command_authenticates_like_http(
    sim: Simulator, http: aiohttp.ClientSession, auth: dict[str, str], code: str, command: str
):
    batch_id = await start(http, sim, "no placeholders")
    status, body = await call(
        http, sim, command, auth=auth, template="x", batch_id=batch_id, to=NUMBER
    )
    assert (status, body[:8]) == (200, f"ERR: {code}")
    assert len(sim.ledger) == 0


async def test_a_session_id_works_for_the_batch_commands(
    sim: Simulator, http: aiohttp.ClientSession
):
    async with http.post(f"{sim.url}/http/auth", data=CREDENTIALS) as response:
        session = {"session_id": (await response.text())[4:]}
    status, body = await call(http, sim, "startbatch", auth=session, template=TEMPLATE)
    batch_id = body[4:]
    status, body = await call(
        http, sim, "senditem", auth=session, batch_id=batch_id, to=NUMBER, field1="A", field2="1"
    )
    assert status == 200 and ID_LINE.fullmatch(body)
    assert await call(http, sim, "endbatch", auth=session, batch_id=batch_id) == (200, "OK")


# -- senditem ----------------------------------------------------------------------------------


async def test_senditem_renders_the_template_and_records_text_options_and_batch_id(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim, **{"from": "ACME", "callback": "3", "validity": "60"})
    body = await item(http, sim, batch_id, field1="Ann & Bob", field2="#name#")
    m = ID_LINE.fullmatch(body)
    assert m is not None
    (entry,) = sim.ledger.entries
    assert (entry.to, entry.api_msg_id, entry.parts) == (NUMBER, m.group(1), 1)
    assert entry.text == "Hi Ann & Bob, your code is #name#"  # one pass: values are not expanded
    assert entry.option_map == {
        "batch_id": batch_id,
        "from": "ACME",
        "callback": "3",
        "validity": "60",
    }
    assert sim.stats.accepted == 1


async def test_senditem_over_get_works_too(sim: Simulator, http: aiohttp.ClientSession):
    batch_id = await start(http, sim)
    status, body = await call(
        http, sim, "senditem", method="GET", batch_id=batch_id, to=NUMBER, field1="A", field2="1"
    )
    assert status == 200 and ID_LINE.fullmatch(body)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"batch_id": "0" * 32}, "201, Invalid batch ID"),
        ({"batch_id": ""}, "201, Invalid batch ID"),
        ({"field1": ""}, "101, Invalid or missing parameters"),
        ({"field2": None}, "101, Invalid or missing parameters"),
        ({"to": ""}, "101, Invalid or missing parameters"),
        ({"to": f"{NUMBER},27831234567"}, "101, Invalid or missing parameters"),
        ({"to": "2782"}, "105, Invalid destination address"),
        ({"to": "0027821234567"}, "105, Invalid destination address"),
        ({"field1": "x" * 200}, "113, Maximum message parts exceeded"),
    ],
)
async def test_senditem_refusals(
    sim: Simulator, http: aiohttp.ClientSession, params: dict[str, str | None], code: str
):
    batch_id = await start(http, sim)
    sent = {"batch_id": batch_id, "to": NUMBER, "field1": "Ann", "field2": "1"}
    sent.update({k: v for k, v in params.items() if v is not None})
    for k in [k for k, v in params.items() if v is None]:
        del sent[k]
    assert await answer(http, sim, "senditem", **sent) == f"ERR: {code}"
    assert len(sim.ledger) == 0


async def test_senditem_applies_the_reject_rules_with_their_code(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.reject_prefixes = ("2783",)
    sim.faults.reject_code = 122
    batch_id = await start(http, sim)
    assert await item(http, sim, batch_id, "27831234567", field1="A", field2="1") == (
        "ERR: 122, Destination mobile opted out"
    )
    assert sim.stats.rejected == 1 and len(sim.ledger) == 0


async def test_concat_allows_longer_items_and_credit_is_charged_per_part(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.credit = 5.0
    batch_id = await start(http, sim, concat="2")
    assert ID_LINE.fullmatch(await item(http, sim, batch_id, field1="x" * 150, field2="1"))
    assert sim.ledger.entries[0].parts == 2
    assert sim.faults.credit == 3.0
    assert ID_LINE.fullmatch(await item(http, sim, batch_id, field1="short", field2="1"))
    assert sim.faults.credit == 2.0
    sim.faults.credit = 1.5  # pays for a one-part item, not for a two-part one
    assert (
        await item(http, sim, batch_id, field1="x" * 150, field2="1") == "ERR: 301, No credit left"
    )
    assert sim.faults.credit == 1.5 and len(sim.ledger) == 2


async def test_max_credits_refuses_an_item_that_costs_more(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim, concat="3", max_credits="1")
    assert await item(http, sim, batch_id, field1="x" * 150, field2="1") == (
        "ERR: 113, Maximum message parts exceeded"
    )


async def test_field_parameters_are_read_in_any_letter_case(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    assert ID_LINE.fullmatch(await item(http, sim, batch_id, FIELD1="A", Field2="9"))
    assert sim.ledger.entries[0].text == "Hi A, your code is 9"


async def test_only_positional_fields_are_filled_any_other_name_stays_as_written(
    sim: Simulator, http: aiohttp.ClientSession
):
    """As Clickatell documents it: ``#field1#`` … ``#fieldN#`` from ``field1`` … ``fieldN``. A
    template naming its placeholders after columns goes out with the placeholders in the text."""
    template = "Hi #first_name#, #field1# #Field2# #field02# #field3#"
    batch_id = await start(http, sim, template)
    body = await item(http, sim, batch_id, first_name="Ann", field1="A", field3="C", field2="B")
    assert ID_LINE.fullmatch(body)
    assert sim.ledger.entries[0].text == "Hi #first_name#, A #Field2# #field02# C"
    # A named placeholder needs no value; a missing #fieldN# value is the item's error.
    assert await item(http, sim, batch_id, field1="A") == "ERR: 101, Invalid or missing parameters"


async def test_a_unicode_batch_takes_template_and_values_as_utf16_hex(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim, encode_ucs2_hex("你好 #field1# 🎉 #field2#"), unicode="1")
    body = await item(
        http, sim, batch_id, field1=encode_ucs2_hex("王芳"), field2=encode_ucs2_hex("7")
    )
    assert ID_LINE.fullmatch(body)
    (entry,) = sim.ledger.entries
    assert entry.text == "你好 王芳 🎉 7"
    assert entry.option_map["unicode"] == "1"
    assert (
        await item(http, sim, batch_id, field1="zz", field2="0037")
        == "ERR: 116, Invalid Unicode data"
    )
    assert await item(http, sim, batch_id, field1="", field2="0037") == (
        "ERR: 101, Invalid or missing parameters"
    )
    assert await item(http, sim, batch_id, field1="00" * 2 * 70, field2="0037") == (
        "ERR: 113, Maximum message parts exceeded"
    )


async def test_a_message_sent_by_senditem_answers_querymsg_and_delmsg(
    http: aiohttp.ClientSession,
):
    async with Simulator(USER_NAME, PASSWORD, API_ID, minute_seconds=0.05) as sim:
        batch_id = await start(http, sim, deliv_time="10")
        api_msg_id = (await item(http, sim, batch_id, field1="A", field2="1"))[4:]
        async with http.post(
            f"{sim.url}/http/querymsg", data={**CREDENTIALS, "apimsgid": api_msg_id}
        ) as response:
            assert await response.text() == f"ID: {api_msg_id} Status: 011"
        async with http.post(
            f"{sim.url}/http/delmsg", data={**CREDENTIALS, "apimsgid": api_msg_id}
        ) as response:
            assert await response.text() == f"ID: {api_msg_id} Status: 006"


async def test_a_senditem_message_gets_its_delivery_callbacks(http: aiohttp.ClientSession):
    pushes: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        pushes.append({k: str(v) for k, v in (await request.post()).items()})
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_post("/cb", record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    faults = Faults(delivery_delay=0.01, delivery_failure_rate=0.0)
    try:
        async with Simulator(USER_NAME, PASSWORD, API_ID, faults=faults, callback_url=url) as sim:
            assert sim.callbacks is not None
            batch_id = await start(http, sim, callback="7", **{"from": "ACME"})
            api_msg_id = (await item(http, sim, batch_id, field1="A", field2="1"))[4:]
            await asyncio.wait_for(sim.callbacks.drained(), 5)
            assert sim.ledger.status(api_msg_id) == "004"
    finally:
        await runner.cleanup()
    assert [(p["apiMsgId"], p["status"], p["to"], p["from"]) for p in pushes] == [
        (api_msg_id, "003", NUMBER, "ACME"),
        (api_msg_id, "004", NUMBER, "ACME"),
    ]


# -- quicksend ---------------------------------------------------------------------------------


async def test_quicksend_answers_like_a_multi_number_sendmsg(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.reject_prefixes = ("2783",)
    batch_id = await start(http, sim, "Same text for all", **{"from": "ACME"})
    numbers = ["27821234567", "27831234567", "2782", "27841234567"]
    body = await answer(http, sim, "quicksend", batch_id=batch_id, to=",".join(numbers))
    assert body.splitlines()[1:3] == [
        "ERR: 114, Cannot route message To: 27831234567",
        "ERR: 105, Invalid destination address To: 2782",
    ]
    accepted = ID_TO_LINE.findall(body)
    assert [to for _, to in accepted] == ["27821234567", "27841234567"]
    assert {e.api_msg_id: (e.to, e.text) for e in sim.ledger.entries} == {
        api_msg_id: (to, "Same text for all") for api_msg_id, to in accepted
    }
    assert all(e.option_map["batch_id"] == batch_id for e in sim.ledger.entries)
    single = await answer(http, sim, "quicksend", batch_id=batch_id, to=NUMBER)
    assert ID_LINE.fullmatch(single)


async def test_quicksend_refuses_a_template_with_placeholders_and_too_many_numbers(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    assert await answer(http, sim, "quicksend", batch_id=batch_id, to=NUMBER) == (
        "ERR: 202, No batch template"
    )
    plain = await start(http, sim, "plain")
    numbers = ",".join(str(27820000000 + i) for i in range(301))
    status, body = await call(http, sim, "quicksend", method="GET", batch_id=plain, to=numbers)
    assert status == 200 and body == "ERR: 101, Invalid or missing parameters"
    assert await answer(http, sim, "quicksend", batch_id="nope", to=NUMBER) == (
        "ERR: 201, Invalid batch ID"
    )
    assert len(sim.ledger) == 0


# -- endbatch and expiry -----------------------------------------------------------------------


async def test_endbatch_answers_ok_and_the_id_is_invalid_afterwards(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    assert await answer(http, sim, "endbatch", batch_id=batch_id) == "OK"
    assert await answer(http, sim, "endbatch", batch_id=batch_id) == "ERR: 201, Invalid batch ID"
    assert await item(http, sim, batch_id, field1="A", field2="1") == "ERR: 201, Invalid batch ID"
    assert await answer(http, sim, "endbatch") == "ERR: 201, Invalid batch ID"


async def test_a_batch_expires_after_every_k_items(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.batch_expire_every = 3
    batch_id = await start(http, sim)
    answers = [await item(http, sim, batch_id, field1="A", field2=str(i)) for i in range(4)]
    assert [a[:3] for a in answers] == ["ID:", "ID:", "ID:", "ERR"]
    assert answers[3] == "ERR: 201, Invalid batch ID"
    fresh = await start(http, sim)
    assert ID_LINE.fullmatch(await item(http, sim, fresh, field1="A", field2="1"))
    assert sim.batches.expired == 1


async def test_a_batch_expires_after_its_ttl(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.batch_ttl = 0.2
    batch_id = await start(http, sim)
    assert ID_LINE.fullmatch(await item(http, sim, batch_id, field1="A", field2="1"))
    await asyncio.sleep(0.3)
    assert await item(http, sim, batch_id, field1="A", field2="1") == "ERR: 201, Invalid batch ID"


async def test_expire_batches_invalidates_every_batch(sim: Simulator, http: aiohttp.ClientSession):
    batch_id = await start(http, sim)
    sim.expire_batches()
    assert await item(http, sim, batch_id, field1="A", field2="1") == "ERR: 201, Invalid batch ID"


# -- faults ------------------------------------------------------------------------------------


async def test_err_901_and_503_hit_senditem_without_processing_it(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    sim.faults.err_901_rate = 1.0
    assert (await item(http, sim, batch_id, field1="A", field2="1")).startswith("ERR: 901")
    sim.faults.err_901_rate = 0.0
    sim.faults.http_503_rate = 1.0
    status, _ = await call(
        http, sim, "senditem", batch_id=batch_id, to=NUMBER, field1="A", field2="1"
    )
    assert status == 503
    sim.faults.http_503_rate = 0.0
    assert await start(http, sim)  # startbatch is not in the default fault commands
    assert len(sim.ledger) == 0
    assert (sim.stats.err_901, sim.stats.http_503) == (1, 1)


async def test_a_dropped_after_senditem_is_in_the_ledger(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    sim.faults.drop_after_rate = 1.0
    with pytest.raises(aiohttp.ClientError):
        await call(http, sim, "senditem", batch_id=batch_id, to=NUMBER, field1="A", field2="1")
    assert len(sim.ledger) == 1 and sim.stats.dropped_after == 1


async def test_senditem_is_throttled_by_messages_per_second(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    sim.faults.throttle_mps = 2.0
    statuses = []
    for i in range(4):
        status, _ = await call(
            http, sim, "senditem", batch_id=batch_id, to=NUMBER, field1="A", field2=str(i)
        )
        statuses.append(status)
    assert statuses == [200, 200, 429, 429]
    assert len(sim.ledger) == 2


async def test_quicksend_is_throttled_by_its_numbers(sim: Simulator, http: aiohttp.ClientSession):
    batch_id = await start(http, sim, "plain")
    sim.faults.throttle_mps = 3.0
    status, _ = await call(http, sim, "quicksend", batch_id=batch_id, to="27821234567,27821234568")
    assert status == 200
    status, _ = await call(http, sim, "quicksend", batch_id=batch_id, to="27821234567,27821234568")
    assert status == 429


async def test_latency_applies_to_senditem(sim: Simulator, http: aiohttp.ClientSession):
    batch_id = await start(http, sim)
    sim.faults.latency = 0.2
    started = time.monotonic()
    await item(http, sim, batch_id, field1="A", field2="1")
    assert time.monotonic() - started >= 0.2


# -- ledger file and CLI -----------------------------------------------------------------------


async def test_the_ledger_file_holds_each_items_rendered_text(
    tmp_path: Path, http: aiohttp.ClientSession
):
    path = tmp_path / "ledger.csv"
    async with Simulator(USER_NAME, PASSWORD, API_ID, ledger_path=path) as sim:
        batch_id = await start(http, sim)
        for name in ("Ann", 'Bob "the" Builder', "Zoë, Jr."):
            await item(http, sim, batch_id, field1=name, field2="1")
    texts = [entry.text for entry in read_ledger(path)]
    assert texts == [
        "Hi Ann, your code is 1",
        'Hi Bob "the" Builder, your code is 1',
        "Hi Zoë, Jr., your code is 1",
    ]


def test_the_cli_has_the_batch_expiry_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    faults = faults_from_args(parser.parse_args(["--batch-ttl", "5", "--batch-expire-every", "50"]))
    assert (faults.batch_ttl, faults.batch_expire_every) == (5.0, 50)
    assert {"sendmsg", "senditem", "quicksend"} <= faults.commands
    with pytest.raises(ValueError):
        faults_from_args(parser.parse_args(["--batch-expire-every", "0"]))


async def test_the_connection_cap_and_the_commands_knob_apply_to_senditem(
    sim: Simulator, http: aiohttp.ClientSession
):
    batch_id = await start(http, sim)
    sim.faults.latency = 0.2
    sim.faults.max_connections = 1
    both = await asyncio.gather(
        *(
            call(http, sim, "senditem", batch_id=batch_id, to=NUMBER, field1="A", field2=str(i))
            for i in range(2)
        )
    )
    assert sorted(status for status, _ in both) == [200, 503]
    assert sim.stats.over_connections == 1
    sim.faults.max_connections = None
    sim.faults.latency = 0.0
    sim.faults.err_901_rate = 1.0
    sim.faults.commands = frozenset({"sendmsg"})  # senditem taken out of the faults' reach
    assert ID_LINE.fullmatch(await item(http, sim, batch_id, field1="A", field2="1"))
    assert len(sim.ledger) == 2


async def test_reject_suffixes_apply_to_senditem(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.reject_suffixes = ("99",)
    batch_id = await start(http, sim)
    assert await item(http, sim, batch_id, "27821234599", field1="A", field2="1") == (
        "ERR: 114, Cannot route message"
    )
