"""The simulator takes every ``sendmsg`` option as the real gateway does and its ledger shows them.

Over real loopback TCP (a :class:`Simulator` on port 0, a plain ``aiohttp`` client): ``mo=1``
without ``from``, ``msg_callback``, ``msg_type``, binary ``udh``/``data``, ``validity``,
``max_credits``, the ledger's ``options`` column (and reading an old six-column ledger),
``getmsgcharge`` in the corrected format, ``/utils/routeCoverage.php``, and the call shapes of a
widely used third-party PHP client. The pure option rules are checked with hypothesis.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bulksend.simulator import DEFAULT_TWO_WAY_NUMBER, Faults, Simulator, read_ledger
from bulksend.simulator.message import (
    MAX_BINARY_OCTETS,
    NOT_OPTIONS,
    options_of,
    parse_message,
    parse_options,
)
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

ROUTED = re.compile(
    r"OK: This prefix is currently supported\. Messages sent to this prefix will be routed\. "
    r"Charge: (\d+(?:\.\d+)?)"
)
NOT_ROUTED = (
    "ERR: This prefix is not currently supported. Messages sent to this prefix will fail. "
    "Please contact support for assistance."
)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(seed=1)) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


# -- mo=1 and the two-way number ---------------------------------------------------------------


async def test_mo_without_from_is_sent_from_the_accounts_two_way_number(
    http: aiohttp.ClientSession,
):
    seen = []
    async with Simulator(USER, PASSWORD, API_ID, two_way_number="27820009999") as sim:
        sim.ledger.listeners.append(seen.append)
        body = await send(http, sim, to="27821234567", text="hi", mo="1", callback="7")
        assert ID_LINE.fullmatch(body)
        await send(http, sim, to="27821234567", text="hi", mo="1", **{"from": "ACME"})
        await send(http, sim, to="27821234567", text="hi")
    assert [batch.sender for batch in seen] == ["27820009999", "ACME", ""]
    first = sim.ledger.entries[0]
    assert first.option_map == {"callback": "7", "mo": "1"}  # as sent: no from was sent


async def test_the_default_two_way_number_is_a_valid_international_number(sim: Simulator):
    assert sim.two_way_number == DEFAULT_TWO_WAY_NUMBER
    assert re.fullmatch(r"[1-9]\d{7,14}", DEFAULT_TWO_WAY_NUMBER)
    with pytest.raises(ValueError, match="two-way"):
        Simulator(two_way_number="+2782")


async def test_msg_callback_is_an_alias_of_callback(sim: Simulator, http: aiohttp.ClientSession):
    seen = []
    sim.ledger.listeners.append(seen.append)
    await send(http, sim, to="27821234567", text="x", msg_callback="3")
    await send(http, sim, to="27821234567", text="x", callback="5", msg_callback="3")
    assert [batch.callback for batch in seen] == [3, 5]
    assert sim.ledger.entries[0].option_map == {"msg_callback": "3"}


# -- message types, binary, validity, max_credits ----------------------------------------------


@pytest.mark.parametrize(
    "msg_type",
    [
        "SMS_TEXT",
        "SMS_FLASH",
        "sms_flash",
        "SMS_NOKIA_OLOGO",
        "SMS_NOKIA_GLOGO",
        "SMS_NOKIA_PICTURE",
        "SMS_NOKIA_RINGTONE",
        "SMS_NOKIA_RTTL",
        "SMS_NOKIA_CLEAN",
        "SMS_NOKIA_VCARD",
        "SMS_NOKIA_VCAL",
    ],
)
async def test_every_documented_msg_type_is_accepted_and_recorded(
    sim: Simulator, http: aiohttp.ClientSession, msg_type: str
):
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x", msg_type=msg_type))
    assert sim.ledger.entries[0].option_map == {"msg_type": msg_type}


async def test_binary_message_up_to_140_octets_is_one_part_and_recorded(
    sim: Simulator, http: aiohttp.ClientSession
):
    udh = "0B0504158200000003AA0201"  # UDHL 0x0B = 11 octets follow: 12 octets in all
    data = "C0FFEE" * 42 + "00" * 2  # 128 octets: 140 with the UDH
    assert len(udh) // 2 + len(data) // 2 == MAX_BINARY_OCTETS
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", udh=udh, data=data))
    assert (await send(http, sim, to="27821234567", udh=udh, data=data + "00")).startswith(
        "ERR: 113"
    )
    [entry] = sim.ledger.entries
    assert (entry.parts, entry.text) == (1, "")
    assert entry.option_map == {"udh": udh, "data": data}
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", data="48656C6C6F"))
    assert ID_LINE.fullmatch(  # data wins over text; text is not the message any more
        await send(http, sim, to="27821234567", data="00", text="ignored", unicode="1")
    )
    assert sim.ledger.entries[-1].text == ""


async def test_max_credits_refuses_a_message_dearer_than_allowed_and_charges_nothing(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.credit = 10
    three_parts = {"text": "z" * 400, "concat": "3"}
    assert await send(http, sim, to="27821234567", max_credits="2.5", **three_parts) == (
        "ERR: 113, Maximum message parts exceeded"
    )
    assert sim.faults.credit == 10
    assert ID_LINE.fullmatch(
        await send(http, sim, to="27821234567", max_credits="3", **three_parts)
    )
    assert sim.faults.credit == 7


async def test_every_option_is_recorded_as_sent_but_never_the_credentials(
    tmp_path: Path, http: aiohttp.ClientSession
):
    path = tmp_path / "ledger.csv"
    options = {
        "from": "ACME Ltd",
        "mo": "0",
        "callback": "7",
        "msg_type": "SMS_FLASH",
        "deliv_time": "10080",
        "validity": "60",
        "max_credits": "1.5",
        "concat": "1",
        "escalate": "1",
        "queue": "3",
        "req_feat": "48",
        "deliv_ack": "1",
        "unknown_knob": 'a&b=c, "d"\n',
    }
    async with Simulator(USER, PASSWORD, API_ID, ledger_path=path) as sim:
        body = await send(http, sim, to="27821234567,27831234567", text="x", **options)
        assert len(ID_TO_LINE.findall(body)) == 2
        sid = (await call(http, sim, "auth", **CREDENTIALS))[1][4:]
        await call(http, sim, "sendmsg", session_id=sid, to="27841234567", text="y", climsgid="c7")
        on_disk = read_ledger(path)
        assert on_disk == sim.ledger.entries
    assert [e.option_map for e in on_disk] == [options, options, {"climsgid": "c7"}]
    raw = path.read_text(encoding="utf-8")
    assert PASSWORD not in raw
    assert sid not in raw
    assert "api_id" not in raw


def test_an_old_six_column_ledger_still_reads(tmp_path: Path):
    path = tmp_path / "old.csv"
    path.write_text(
        "to,api_msg_id,climsgid,parts,time,text\n"
        f'27821234567,{"a" * 32},c1,2,1700000000.000000,"hello, you"\n'
        f"27831234567,{'b' * 32},,1,17000",
        encoding="utf-8",
    )
    [entry] = read_ledger(path)
    assert (entry.to, entry.parts, entry.text, entry.options, entry.status) == (
        "27821234567",
        2,
        "hello, you",
        "",
        "003",
    )
    assert entry.option_map == {}
    assert not entry.cancelled
    (tmp_path / "other.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a simulator ledger"):
        read_ledger(tmp_path / "other.csv")


# -- getmsgcharge, routeCoverage ---------------------------------------------------------------


async def test_getmsgcharge_has_the_lower_case_keys_of_the_corrected_doc(
    sim: Simulator, http: aiohttp.ClientSession
):
    body = await send(http, sim, to="27821234567", text="x" * 200, concat="2", climsgid="k1")
    api_msg_id = ID_LINE.fullmatch(body).group(1)  # type: ignore[union-attr]
    for query in ({"apimsgid": api_msg_id}, {"apiMsgId": api_msg_id}, {"climsgid": "k1"}):
        assert await call(http, sim, "getmsgcharge", method="GET", **CREDENTIALS, **query) == (
            200,
            f"apiMsgId: {api_msg_id} charge: 2.0 status: 003",
        )
    assert await call(http, sim, "getmsgcharge", **CREDENTIALS, apimsgid="0" * 32) == (
        200,
        "ERR: 103, Unknown API message ID",
    )
    assert await call(http, sim, "getmsgcharge", **CREDENTIALS) == (
        200,
        "ERR: 109, Missing message ID",
    )


async def test_route_coverage_follows_the_reject_prefixes(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.reject_prefixes = ("2783", "447")
    coverage = f"{sim.url}/utils/routeCoverage.php"
    for msisdn in ("27821234567", "2782", "+27821234567", "27"):
        async with http.post(coverage, data={**CREDENTIALS, "msisdn": msisdn}) as response:
            assert response.status == 200
            match = ROUTED.fullmatch(await response.text())
        assert match is not None, msisdn
        assert float(match.group(1)) == 1.0
    for msisdn in ("27831234567", "2783", "4471234"):
        query = urlencode({**CREDENTIALS, "msisdn": msisdn})
        assert await get(http, f"{coverage}?{query}") == (200, NOT_ROUTED)
    sim.faults.reject_prefixes = ()
    query = urlencode({**CREDENTIALS, "msisdn": "27831234567"})
    assert ROUTED.fullmatch((await get(http, f"{coverage}?{query}"))[1])


async def test_route_coverage_needs_auth_and_a_msisdn(sim: Simulator, http: aiohttp.ClientSession):
    coverage = f"{sim.url}/utils/routeCoverage.php"
    assert await get(http, f"{coverage}?msisdn=2782") == (200, "ERR: 005, Missing session ID")
    bad = urlencode({**CREDENTIALS, "password": "nope", "msisdn": "2782"})
    assert await get(http, f"{coverage}?{bad}") == (200, "ERR: 001, Authentication failed")
    assert await get(http, f"{coverage}?{urlencode(CREDENTIALS)}") == (
        200,
        "ERR: 101, Invalid or missing parameters",
    )
    query = urlencode({**CREDENTIALS, "msisdn": "27-82"})
    assert await get(http, f"{coverage}?{query}") == (200, "ERR: 105, Invalid destination address")
    assert sim.stats.requests == 4
    assert len(sim.ledger) == 0


# -- a third-party client's call shapes --------------------------------------------------------


async def test_the_call_shapes_of_a_widely_used_php_client_all_work(
    sim: Simulator, http: aiohttp.ClientSession
):
    """GET with ``http_build_query``: extra args first, then user, password, api_id; every
    sendmsg carries ``mo=1&callback=7`` and no ``from``; ``apiMsgId`` camel-cased; routeCoverage
    called without ``.php``. Answers are read with the client's own ``Key: value`` regex."""

    def php_query(args: dict[str, str]) -> str:
        return urlencode({**args, "user": USER, "password": PASSWORD, "api_id": API_ID})

    def unwrap_legacy(body: str) -> dict[str, str]:
        line = body.strip("\n").split("\n")[0]
        return {k: v.strip() for k, v, _ in re.findall(r"([A-Za-z]+):((.(?![A-Za-z]+:))*)", line)}

    sent = {"mo": "1", "callback": "7", "to": "27821234567,27831234567", "text": "Hello"}
    status, body = await get(http, f"{sim.url}/http/sendmsg?{php_query(sent)}")
    assert status == 200
    rows = [unwrap_legacy(line) for line in body.strip("\n").split("\n")]
    assert [row["To"] for row in rows] == ["27821234567", "27831234567"]
    api_msg_id = rows[0]["ID"]

    deliver_later = {"mo": "1", "callback": "7", "to": "27841234567", "text": "Later"}
    status, body = await get(
        http, f"{sim.url}/http/sendmsg?{php_query({**deliver_later, 'deliv_time': '60'})}"
    )
    later_id = unwrap_legacy(body)["ID"]

    charge = unwrap_legacy((await get(http, f"{sim.url}/http/getmsgcharge?{php_query({'apiMsgId': api_msg_id})}"))[1])  # fmt: skip
    assert charge == {"apiMsgId": api_msg_id, "charge": "1.0", "status": "003"}
    assert float(charge["charge"]) == 1.0

    stop = unwrap_legacy((await get(http, f"{sim.url}/http/delmsg?{php_query({'apiMsgId': later_id})}"))[1])  # fmt: skip
    assert stop == {"ID": later_id, "Status": "006"}

    route = unwrap_legacy((await get(http, f"{sim.url}/utils/routeCoverage?{php_query({'msisdn': '2782'})}"))[1])  # fmt: skip
    assert route["OK"].startswith("This prefix is currently supported")
    assert float(route["Charge"]) == 1.0

    balance = unwrap_legacy((await get(http, f"{sim.url}/http/getbalance?{php_query({})}"))[1])
    assert float(balance["Credit"]) > 0
    assert [e.option_map for e in sim.ledger.entries] == [
        {"mo": "1", "callback": "7"},
        {"mo": "1", "callback": "7"},
        {"mo": "1", "callback": "7", "deliv_time": "60"},
    ]
    assert [e.status for e in sim.ledger.entries] == ["003", "003", "006"]


# -- CLI knobs ---------------------------------------------------------------------------------


async def test_cli_two_way_number_and_minute_seconds_reach_the_server(tmp_path: Path):
    ledger = tmp_path / "ledger.csv"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bulksend.simulator", "--port", "0", "--ledger", str(ledger)),
        *("--user", USER, "--password", PASSWORD, "--api-id", API_ID),
        *("--two-way-number", "27820004444", "--minute-seconds", "0.05"),
        *("--delivery-delay", "3600"),  # no delivery played meanwhile: 003 once it left
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = line.split("listening on ")[1].strip()
        async with aiohttp.ClientSession() as http:
            form = {**CREDENTIALS, "to": "27821234567", "text": "x", "mo": "1", "deliv_time": "20"}
            async with http.post(f"{url}/http/sendmsg", data=form) as response:
                api_msg_id = (await response.text())[4:]
            query = {**CREDENTIALS, "apimsgid": api_msg_id}
            async with http.post(f"{url}/http/querymsg", data=query) as response:
                assert await response.text() == f"ID: {api_msg_id} Status: 011"
            await asyncio.sleep(1.1)  # 20 scaled minutes: 1 s
            async with http.post(f"{url}/http/querymsg", data=query) as response:
                assert await response.text() == f"ID: {api_msg_id} Status: 003"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    [entry] = read_ledger(ledger)
    assert (entry.to, entry.status, entry.option_map) == (
        "27821234567",
        "011",
        {"mo": "1", "deliv_time": "20"},
    )


@pytest.mark.parametrize(
    "flags", [["--two-way-number", "+2782"], ["--minute-seconds", "-1"], ["--minute-seconds", "x"]]
)
async def test_cli_refuses_a_bad_two_way_number_or_time_scale(flags: list[str]):
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bulksend.simulator", "--port", "0", *flags),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 2
    assert flags[0] in stderr.decode()


# -- the pure rules ----------------------------------------------------------------------------

hex_octets = st.binary(max_size=160).map(lambda b: b.hex().upper())


@given(udh_body=st.binary(max_size=20), data=hex_octets)
def test_a_binary_message_is_accepted_iff_it_fits_140_octets(udh_body: bytes, data: str):
    udh = (bytes([len(udh_body)]) + udh_body).hex() if udh_body else ""
    message = parse_message({"udh": udh, "data": data}, time.time())
    octets = len(udh) // 2 + len(data) // 2
    if octets == 0:
        assert message == 107
    elif octets > MAX_BINARY_OCTETS:
        assert message == 113
    else:
        assert not isinstance(message, int)
        assert (message.parts, message.text) == (1, "")


@given(udh_body=st.binary(min_size=1, max_size=20), length_octet=st.integers(0, 255))
def test_a_udh_whose_length_octet_lies_is_102(udh_body: bytes, length_octet: int):
    assume(length_octet != len(udh_body))
    udh = (bytes([length_octet]) + udh_body).hex()
    assert parse_message({"udh": udh, "data": "00"}, time.time()) == 102


option_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda name: name not in NOT_OPTIONS
)


@given(st.dictionaries(option_names, st.text(max_size=20), max_size=8))
def test_options_round_trip_and_never_hold_a_comma_quote_or_newline(options: dict[str, str]):
    rendered = options_of({**options, "password": "p", "to": "1", "text": "t", "user": "u"})
    assert rendered == urlencode(sorted(options.items()))
    assert parse_options(rendered) == options
    assert not {",", '"', "\n", "\r"} & set(rendered)


@given(minutes=st.integers(0, 20000), ahead=st.integers(-86400, 8 * 86400))
def test_delivery_time_limits(minutes: int, ahead: int):
    now = 1_800_000_000.0
    by_minutes = parse_message({"text": "x", "deliv_time": str(minutes)}, now)
    assert (by_minutes == 120) == (minutes > 10080)
    if not isinstance(by_minutes, int):
        assert by_minutes.delay_minutes == minutes
    by_time = parse_message({"text": "x", "scheduled_time": str(int(now) + ahead)}, now)
    assert (by_time == 120) == (ahead > 7 * 86400)
    if not isinstance(by_time, int):
        assert by_time.delay_minutes == max(0, ahead) / 60
    both = {"text": "x", "deliv_time": "5", "scheduled_time": str(int(now) + ahead)}
    if not isinstance(by_time, int):  # the absolute time decides
        assert parse_message(both, now) == by_time._replace(options=options_of(both))
