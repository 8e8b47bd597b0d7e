"""The simulator speaks the legacy Clickatell HTTP API faithfully and its knobs do what they say.

Everything goes over real loopback TCP: a :class:`Simulator` started in the test, a plain
``aiohttp.ClientSession`` talking to it, no mocks. The CLI is checked as a real subprocess.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bulksend.gsm import Encoding, part_count
from bulksend.simulator import (
    MAX_NUMBERS_GET,
    MAX_NUMBERS_POST,
    Fault,
    Faults,
    Ledger,
    Simulator,
    read_ledger,
)

USER, PASSWORD, API_ID = "acme", "s3cret-demo", "3000042"
CREDENTIALS = {"user": USER, "password": PASSWORD, "api_id": API_ID}
API_MSG_ID = re.compile(r"[0-9a-f]{32}")
ID_LINE = re.compile(r"ID: ([0-9a-f]{32})")
ID_TO_LINE = re.compile(r"ID: ([0-9a-f]{32}) To: (\d+)")
ROOT = Path(__file__).resolve().parent.parent


def numbers(count: int, start: int = 27_820_000_000) -> list[str]:
    return [str(start + i) for i in range(count)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(seed=1)) as simulator:
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
    **params: str,
) -> tuple[int, str]:
    url = f"{sim.url}/http/{command}"
    if method == "POST":
        response = await http.post(url, data=params)
    else:
        response = await http.get(url, params=params)
    async with response:
        return response.status, await response.text()


async def send(
    http: aiohttp.ClientSession, sim: Simulator, *, method: str = "POST", **params: str
) -> str:
    """A ``sendmsg`` with the account's credentials; the answer body (HTTP 200 asserted)."""
    status, body = await call(http, sim, "sendmsg", method=method, **CREDENTIALS, **params)
    assert status == 200, body
    return body


async def session_id(http: aiohttp.ClientSession, sim: Simulator) -> str:
    status, body = await call(http, sim, "auth", **CREDENTIALS)
    assert status == 200
    assert body.startswith("OK: ")
    return body[4:]


# -- auth, ping, sessions ----------------------------------------------------------------------


async def test_auth_answers_a_32_hex_session_id(sim: Simulator, http: aiohttp.ClientSession):
    sid = await session_id(http, sim)
    assert API_MSG_ID.fullmatch(sid)
    assert sid != await session_id(http, sim)


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({"user": USER, "password": "wrong", "api_id": API_ID}, "ERR: 001, Authentication failed"),
        (
            {"user": "nobody", "password": PASSWORD, "api_id": API_ID},
            "ERR: 001, Authentication failed",
        ),
        (
            {"user": USER, "password": PASSWORD, "api_id": "1"},
            "ERR: 108, Invalid or missing API ID",
        ),
        ({"user": USER, "password": PASSWORD}, "ERR: 108, Invalid or missing API ID"),
    ],
)
async def test_auth_refuses_bad_credentials(
    sim: Simulator, http: aiohttp.ClientSession, params: dict[str, str], answer: str
):
    assert await call(http, sim, "auth", method="GET", **params) == (200, answer)


@pytest.mark.serial
async def test_ping_extends_the_session_until_it_idles_past_the_ttl(http: aiohttp.ClientSession):
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(session_ttl=0.5)) as sim:
        sid = await session_id(http, sim)
        for _ in range(4):  # 0.8 s in all: alive only because every ping extends it
            await asyncio.sleep(0.2)
            assert await call(http, sim, "ping", session_id=sid) == (200, "OK:")
        await asyncio.sleep(0.6)
        assert await call(http, sim, "ping", session_id=sid) == (
            200,
            "ERR: 003, Session ID expired",
        )
        assert await call(http, sim, "ping") == (200, "ERR: 005, Missing session ID")


@pytest.mark.serial
async def test_sendmsg_with_a_session_extends_it_and_expired_sessions_are_003(
    http: aiohttp.ClientSession,
):
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(session_ttl=0.5)) as sim:
        sid = await session_id(http, sim)
        for _ in range(3):
            await asyncio.sleep(0.2)
            _, body = await call(http, sim, "sendmsg", session_id=sid, to="27821234567", text="hi")
            assert ID_LINE.fullmatch(body)
        await asyncio.sleep(0.6)
        _, body = await call(http, sim, "sendmsg", session_id=sid, to="27821234567", text="hi")
        assert body == "ERR: 003, Session ID expired"
        assert len(sim.ledger) == 3


async def test_expire_sessions_forces_003_and_a_new_auth_works(
    sim: Simulator, http: aiohttp.ClientSession
):
    sid = await session_id(http, sim)
    sim.expire_sessions()
    _, body = await call(http, sim, "sendmsg", session_id=sid, to="27821234567", text="hi")
    assert body == "ERR: 003, Session ID expired"
    _, body = await call(
        http, sim, "sendmsg", session_id=await session_id(http, sim), to="27821234567", text="hi"
    )
    assert ID_LINE.fullmatch(body)


async def test_set_credentials_mid_run_refuses_the_old_password_but_keeps_sessions(
    sim: Simulator, http: aiohttp.ClientSession
):
    sid = await session_id(http, sim)
    sim.set_credentials(password="rotated")
    assert await call(http, sim, "auth", **CREDENTIALS) == (200, "ERR: 001, Authentication failed")
    assert (await send(http, sim, to="27821234567", text="hi")) == "ERR: 001, Authentication failed"
    _, body = await call(http, sim, "auth", **{**CREDENTIALS, "password": "rotated"})
    assert body.startswith("OK: ")
    assert await call(http, sim, "ping", session_id=sid) == (200, "OK:")
    sim.set_credentials(api_id="999")
    assert (await send(http, sim, to="27821234567", text="hi")).startswith("ERR: 108,")


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({}, "ERR: 005, Missing session ID"),
        ({"session_id": "f" * 32}, "ERR: 003, Session ID expired"),
        ({"user": USER, "password": "nope", "api_id": API_ID}, "ERR: 001, Authentication failed"),
        (
            {"user": USER, "password": PASSWORD, "api_id": "7"},
            "ERR: 108, Invalid or missing API ID",
        ),
    ],
)
async def test_sendmsg_refuses_missing_or_bad_authentication(
    sim: Simulator, http: aiohttp.ClientSession, params: dict[str, str], answer: str
):
    assert await call(http, sim, "sendmsg", to="27821234567", text="hi", **params) == (200, answer)
    assert len(sim.ledger) == 0


# -- sendmsg answer shapes ---------------------------------------------------------------------


async def test_single_recipient_answer_is_an_id_without_to(
    sim: Simulator, http: aiohttp.ClientSession
):
    body = await send(http, sim, to="27821234567", text="Hello")
    match = ID_LINE.fullmatch(body)
    assert match
    [entry] = sim.ledger.entries
    assert (entry.to, entry.api_msg_id, entry.text, entry.parts) == (
        "27821234567",
        match.group(1),
        "Hello",
        1,
    )


@pytest.mark.parametrize(
    "bad",
    ["+27821234567", "0027821234567", "027821234", "2782123", "1234567890123456", "2782a234567"],
)
async def test_single_bad_number_is_a_105_line_without_to(
    sim: Simulator, http: aiohttp.ClientSession, bad: str
):
    assert await send(http, sim, to=bad, text="Hello") == "ERR: 105, Invalid destination address"
    assert len(sim.ledger) == 0
    assert sim.stats.rejected == 1


async def test_non_ascii_digits_are_invalid(sim: Simulator, http: aiohttp.ClientSession):
    answer = await send(http, sim, to="27821234567,٢٧٨٢١٢٣٤٥٦٧", text="Hello")
    assert answer.splitlines()[1] == "ERR: 105, Invalid destination address To: ٢٧٨٢١٢٣٤٥٦٧"


async def test_multi_recipient_answer_has_one_line_per_number_with_to(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.reject_prefixes = ("2799",)
    sim.faults.reject_suffixes = ["000"]  # type: ignore[assignment]  # normalised to a tuple
    to = ["27821234567", "2782", "27991234567", "27831234000", "27831234567", "27821234567"]
    body = await send(http, sim, to=",".join(to), text="Hello")
    lines = body.splitlines()
    assert body.endswith("\n")
    assert len(lines) == len(to)
    assert lines[1] == "ERR: 105, Invalid destination address To: 2782"
    assert lines[2] == "ERR: 114, Cannot route message To: 27991234567"
    assert lines[3] == "ERR: 114, Cannot route message To: 27831234000"
    accepted = [ID_TO_LINE.fullmatch(lines[i]) for i in (0, 4, 5)]
    assert [m.group(2) for m in accepted if m] == ["27821234567", "27831234567", "27821234567"]
    ids = [m.group(1) for m in accepted if m]
    assert len(set(ids)) == 3  # the duplicated number is two messages with two ids
    assert [(e.to, e.api_msg_id) for e in sim.ledger.entries] == list(
        zip(["27821234567", "27831234567", "27821234567"], ids, strict=True)
    )
    assert sim.ledger.count_for("27821234567") == 2
    assert sim.ledger.count_for("27991234567") == 0
    assert (sim.stats.accepted, sim.stats.rejected, sim.stats.recipients) == (3, 3, 6)


async def test_reject_code_is_configurable(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.reject_suffixes = ("99",)
    sim.faults.reject_code = 121
    assert await send(http, sim, to="27821234599", text="x") == (
        "ERR: 121, Destination mobile number blocked"
    )
    with pytest.raises(ValueError, match="reject_code"):
        sim.faults.reject_code = 301


async def test_get_and_post_decode_form_encoding_the_same_way(
    sim: Simulator, http: aiohttp.ClientSession
):
    text = "Tom & Jerry: 100% +fun=yes, see https://x.y/?a=1&b=2 ünïcødé"
    for method in ("GET", "POST"):
        body = await send(http, sim, method=method, to="27821234567, 27831234567,", text=text)
        assert len(ID_TO_LINE.findall(body)) == 2
    assert {e.text for e in sim.ledger.entries} == {text}
    assert {e.to for e in sim.ledger.entries} == {"27821234567", "27831234567"}
    raw = f"{sim.url}/http/sendmsg?user={USER}&password={PASSWORD}&api_id={API_ID}"
    async with http.get(raw + "&to=27821234567%2c27831234567&text=a+b%2Bc") as response:
        assert len(ID_TO_LINE.findall(await response.text())) == 2
    assert sim.ledger.entries[-1].text == "a b+c"


async def test_multipart_post_is_understood(sim: Simulator, http: aiohttp.ClientSession):
    form = aiohttp.FormData({**CREDENTIALS, "to": "27821234567", "text": "hi"})
    form.add_field("file", b"ignored", filename="x.bin")  # forces multipart/form-data
    async with http.post(f"{sim.url}/http/sendmsg", data=form) as response:
        assert ID_LINE.fullmatch(await response.text())


@pytest.mark.parametrize(("method", "limit"), [("GET", 300), ("POST", 600)])
async def test_numbers_per_request_limit(
    sim: Simulator, http: aiohttp.ClientSession, method: str, limit: int
):
    body = await send(http, sim, method=method, to=",".join(numbers(limit)), text="x")
    assert len(ID_TO_LINE.findall(body)) == limit
    body = await send(http, sim, method=method, to=",".join(numbers(limit + 1)), text="x")
    assert body == "ERR: 101, Invalid or missing parameters"
    assert len(sim.ledger) == limit
    assert sim.stats.refused == 1
    assert limit == (MAX_NUMBERS_GET if method == "GET" else MAX_NUMBERS_POST)


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({"text": "x"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "", "text": "x"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": ",,", "text": "x"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": ""}, "ERR: 107, Empty message"),
        ({"to": "27821234567", "text": "", "unicode": "1"}, "ERR: 107, Empty message"),
        ({"to": "27821234567", "text": "x", "unicode": "2"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "concat": "0"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "callback": "8"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "msg_callback": "x"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "climsgid": "a" * 33}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "climsgid": "a-b"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "deliv_time": "10081"}, "ERR: 120, Invalid delivery time"),
        ({"to": "27821234567", "text": "x", "deliv_time": "soon"}, "ERR: 120, Invalid delivery time"),
        ({"to": "27821234567", "text": "x", "scheduled_time": str(int(time.time()) + 8 * 86400)}, "ERR: 120, Invalid delivery time"),
        ({"to": "27821234567", "text": "x", "from": "+27821234567"}, "ERR: 106, Invalid source address"),
        ({"to": "27821234567", "text": "x", "from": "TwelveLetter"}, "ERR: 106, Invalid source address"),
        ({"to": "27821234567", "text": "x", "mo": "2"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "max_credits": "lots"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "max_credits": "nan"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "max_credits": "-1"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "validity": "a day"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "msg_type": "SMS_LOUD"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "data": "0G"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "data": "ABC"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "text": "x", "udh": "050003CC0201"}, "ERR: 101, Invalid or missing parameters"),
        ({"to": "27821234567", "data": "AB", "udh": "0500"}, "ERR: 102, Invalid user data header"),
        ({"to": "27821234567", "data": "AB", "udh": "05ZZ03CC0201"}, "ERR: 102, Invalid user data header"),
        ({"to": "27821234567", "data": "AB", "udh": "050003CC020"}, "ERR: 102, Invalid user data header"),
        ({"to": "27821234567", "data": ""}, "ERR: 107, Empty message"),
        ({"to": "27821234567", "data": "AB" * 135, "udh": "050003CC0201"}, "ERR: 113, Maximum message parts exceeded"),
        ({"to": "27821234567", "data": "AB" * 141}, "ERR: 113, Maximum message parts exceeded"),
    ],
)  # fmt: skip
async def test_whole_request_errors_are_one_line_and_process_nothing(
    sim: Simulator, http: aiohttp.ClientSession, params: dict[str, str], answer: str
):
    assert await send(http, sim, **params) == answer
    assert len(sim.ledger) == 0


async def test_optional_parameters_are_accepted(sim: Simulator, http: aiohttp.ClientSession):
    body = await send(
        http,
        sim,
        to="27821234567",
        text="x",
        **{"from": "ACME Ltd", "mo": "0", "callback": "7", "climsgid": "abc123"},
        **{"deliv_time": "10080", "scheduled_time": str(int(time.time()) + 3600), "validity": "60"},
        **{"escalate": "1", "queue": "3", "req_feat": "48", "max_credits": "1"},
    )
    assert ID_LINE.fullmatch(body)
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x", msg_callback="3"))
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x", **{"from": "27820001111", "mo": "1"}))  # fmt: skip


async def test_unicode_hex_is_decoded_and_bad_hex_is_116(
    sim: Simulator, http: aiohttp.ClientSession
):
    text = "Привет 👋"
    hex_text = text.encode("utf-16-be").hex().upper()
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text=hex_text, unicode="1"))
    assert sim.ledger.entries[0].text == text
    for bad in ("00G8", "004", "0048006", "D800"):
        answer = await send(http, sim, to="27821234567", text=bad, unicode="1")
        assert answer == "ERR: 116, Invalid Unicode data", bad
    assert len(sim.ledger) == 1


async def test_parts_above_concat_are_113(sim: Simulator, http: aiohttp.ClientSession):
    long_text = "x" * 161
    assert part_count(long_text, Encoding.GSM7) == 2
    assert await send(http, sim, to="27821234567", text=long_text) == (
        "ERR: 113, Maximum message parts exceeded"
    )
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text=long_text, concat="2"))
    assert sim.ledger.entries[0].parts == 2
    ucs2 = ("ж" * 71).encode("utf-16-be").hex()
    assert (await send(http, sim, to="27821234567", text=ucs2, unicode="1")).startswith("ERR: 113")
    four_parts = "x" * (153 * 3 + 1)
    assert (await send(http, sim, to="27821234567", text=four_parts, concat="4")).startswith(
        "ERR: 113"
    )  # the documented maximum is 3 parts, whatever concat says
    assert (
        await send(http, sim, to="27821234567", text=long_text, concat="3", max_credits="1")
    ) == ("ERR: 113, Maximum message parts exceeded")
    assert len(sim.ledger) == 1


# -- credit ------------------------------------------------------------------------------------


async def test_credit_is_charged_per_part_and_301_processes_nothing(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.credit = 5
    two_parts = {"text": "y" * 200, "concat": "2"}
    assert await send(http, sim, to=",".join(numbers(3)), **two_parts) == "ERR: 301, No credit left"
    assert len(sim.ledger) == 0
    assert sim.faults.credit == 5
    answer = await send(http, sim, to="27821234567,2782,27831234567", **two_parts)
    assert len(ID_TO_LINE.findall(answer)) == 2  # the bad number costs nothing
    assert sim.faults.credit == 1
    assert await call(http, sim, "getbalance", **CREDENTIALS) == (200, "Credit: 1.000")
    assert (
        await send(http, sim, to="27821234567", text="z")
        == "ID: " + sim.ledger.entries[-1].api_msg_id
    )
    assert await send(http, sim, to="27821234567", text="z") == "ERR: 301, No credit left"
    sim.faults.credit = 1234.5  # top up while running
    assert await call(http, sim, "getbalance", **CREDENTIALS) == (200, "Credit: 1234.500")


async def test_unlimited_credit_reports_a_large_balance(
    sim: Simulator, http: aiohttp.ClientSession
):
    status, body = await call(http, sim, "getbalance", session_id=await session_id(http, sim))
    assert status == 200
    assert re.fullmatch(r"Credit: \d+\.\d{3}", body)
    assert float(body.split()[1]) >= 1e9
    assert await call(http, sim, "getbalance") == (200, "ERR: 005, Missing session ID")


# -- querymsg / getmsgcharge -------------------------------------------------------------------


async def test_querymsg_by_api_and_client_message_id(sim: Simulator, http: aiohttp.ClientSession):
    sid = await session_id(http, sim)
    body = await send(http, sim, to="27821234567,27831234567", text="x", climsgid="order42")
    first, second = (m.group(1) for m in ID_TO_LINE.finditer(body))
    for api_msg_id in (first, second, second.upper()):
        assert await call(http, sim, "querymsg", session_id=sid, apimsgid=api_msg_id) == (
            200,
            f"ID: {api_msg_id.lower()} Status: 003",
        )
    assert await call(http, sim, "querymsg", session_id=sid, climsgid="order42") == (
        200,
        f"ID: {first} Status: 003",
    )
    sim.ledger.set_status(second, "004")
    assert (await call(http, sim, "querymsg", session_id=sid, apimsgid=second))[1].endswith("004")
    unknown = [
        first[:-1] + ("0" if first[-1] != "0" else "1"),
        "f" * 32,
        "nothex",
        first[:16] + "z" * 16,
    ]
    for api_msg_id in unknown:
        assert await call(http, sim, "querymsg", session_id=sid, apimsgid=api_msg_id) == (
            200,
            "ERR: 103, Unknown API message ID",
        )
    assert await call(http, sim, "querymsg", session_id=sid, climsgid="nope") == (
        200,
        "ERR: 104, Unknown client message ID",
    )
    assert await call(http, sim, "querymsg", session_id=sid) == (
        200,
        "ERR: 109, Missing message ID",
    )
    assert await call(http, sim, "querymsg", apimsgid=first) == (
        200,
        "ERR: 005, Missing session ID",
    )
    assert await call(http, sim, "getmsgcharge", session_id=sid, apimsgid=first) == (
        200,
        f"apiMsgId: {first} charge: 1.0 status: 003",
    )


async def test_unknown_command_is_404(sim: Simulator, http: aiohttp.ClientSession):
    status, _ = await call(http, sim, "cancelmsg", **CREDENTIALS)
    assert status == 404
    async with http.get(f"{sim.url}/nothing/here") as response:
        assert response.status == 404


# -- faults ------------------------------------------------------------------------------------


async def test_http_503_has_retry_after_and_processes_nothing(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.http_503_rate = 1.0
    async with http.post(
        f"{sim.url}/http/sendmsg", data={**CREDENTIALS, "to": "27821234567", "text": "x"}
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
    assert len(sim.ledger) == 0
    sim.faults.http_503_rate = 0.0  # changed mid-run
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x"))
    assert (sim.stats.http_503, sim.stats.answered, sim.stats.requests) == (1, 1, 2)


async def test_err_901_processes_nothing(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.err_901_rate = 1.0
    answer = await send(http, sim, to="27821234567,27831234567", text="x")
    assert answer == "ERR: 901, Internal error - please retry"
    assert len(sim.ledger) == 0
    assert sim.stats.err_901 == 1


async def test_drop_before_aborts_the_connection_and_processes_nothing(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.drop_before_rate = 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, sim, to="27821234567,27831234567", text="x")
    assert len(sim.ledger) == 0
    assert sim.stats.dropped_before == 1
    sim.faults.drop_before_rate = 0.0
    assert (
        len(ID_TO_LINE.findall(await send(http, sim, to="27821234567,27831234567", text="x"))) == 2
    )


async def test_drop_after_loses_the_answer_but_the_messages_were_accepted(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.drop_after_rate = 1.0
    sim.faults.credit = 10
    with pytest.raises(aiohttp.ClientConnectionError):
        await send(http, sim, to="27821234567,27831234567", text="x")
    assert [e.to for e in sim.ledger.entries] == ["27821234567", "27831234567"]
    assert sim.faults.credit == 8
    assert (sim.stats.dropped_after, sim.stats.processed, sim.stats.answered) == (1, 1, 0)


async def test_throttle_answers_429_with_retry_after_and_processes_nothing(
    sim: Simulator, http: aiohttp.ClientSession
):
    sim.faults.throttle_mps = 10
    assert len(ID_TO_LINE.findall(await send(http, sim, to=",".join(numbers(10)), text="x"))) == 10
    async with http.post(  # needs a full bucket again: a whole second away
        f"{sim.url}/http/sendmsg", data={**CREDENTIALS, "to": ",".join(numbers(10)), "text": "x"}
    ) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 1
    assert len(sim.ledger) == 10
    await asyncio.sleep(0.25)  # 2.5 tokens back: enough for one message
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x"))
    sim.faults.throttle_mps = 100  # a new rate refills the bucket
    body = await send(
        http, sim, to=",".join(numbers(600)), text="x"
    )  # larger than a second's worth
    assert len(ID_TO_LINE.findall(body)) == 600
    async with http.post(
        f"{sim.url}/http/sendmsg", data={**CREDENTIALS, "to": "27821234567", "text": "x"}
    ) as response:
        assert response.status == 429
        assert int(response.headers["Retry-After"]) >= 5  # the 500-message debt takes 5 s to repay
    assert len(sim.ledger) == 611
    assert sim.stats.http_429 == 2


@pytest.mark.serial
async def test_latency_delays_the_answer(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.latency = 0.2
    started = time.perf_counter()
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x"))
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    await session_id(http, sim)  # auth is not in faults.commands
    assert time.perf_counter() - started < 0.2


async def test_faults_can_reach_other_commands(sim: Simulator, http: aiohttp.ClientSession):
    sim.faults.commands = frozenset({"auth"})
    sim.faults.err_901_rate = 1.0
    assert await call(http, sim, "auth", **CREDENTIALS) == (
        200,
        "ERR: 901, Internal error - please retry",
    )
    assert ID_LINE.fullmatch(await send(http, sim, to="27821234567", text="x"))


def test_faults_are_reproducible_with_a_seed_and_rates_are_exact():
    def pattern(seed: int) -> list[Fault]:
        faults = Faults(seed=seed, http_503_rate=0.2, err_901_rate=0.2, drop_before_rate=0.1)
        return [faults.draw() for _ in range(2000)]

    first = pattern(5)
    assert first == pattern(5)
    assert first != pattern(6)
    assert 300 <= first.count(Fault.HTTP_503) <= 500
    assert 100 <= first.count(Fault.DROP_BEFORE) <= 300
    assert Fault.DROP_AFTER not in first


def test_jitter_never_makes_the_delay_negative():
    faults = Faults(latency=0.01, jitter=0.05, seed=3)
    delays = [faults.delay() for _ in range(1000)]
    assert min(delays) == 0.0
    assert 0.05 < max(delays) <= 0.06


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("http_503_rate", 1.5),
        ("drop_after_rate", -0.1),
        ("latency", -1),
        ("throttle_mps", 0),
        ("credit", -5),
        ("session_ttl", 0),
        ("reject_prefixes", ["27x"]),
        ("commands", {"sendmsg", "nope"}),
        ("latency", "fast"),
    ],
)
def test_bad_knob_values_fail_where_they_are_set(name: str, value: object):
    faults = Faults()
    with pytest.raises((ValueError, TypeError)):
        setattr(faults, name, value)
    with pytest.raises((ValueError, TypeError)):
        Faults(**{name: value})  # type: ignore[arg-type]


# -- ledger ------------------------------------------------------------------------------------


async def test_ledger_csv_is_flushed_before_the_answer(tmp_path: Path, http: aiohttp.ClientSession):
    path = tmp_path / "ledger.csv"
    tricky = 'He said "hi",\nthen left; 5€'
    async with Simulator(USER, PASSWORD, API_ID, ledger_path=path) as sim:
        await send(http, sim, to="27821234567,27831234567", text=tricky, climsgid="c1")
        hex_text = "Ωμέγα".encode("utf-16-be").hex()
        await send(http, sim, to="27841234567", text=hex_text, unicode="1")
        assert (
            path.read_text(encoding="utf-8").splitlines()[0]
            == "to,api_msg_id,climsgid,parts,time,text,options,status"
        )
        on_disk = read_ledger(path)  # while the simulator still runs: nothing buffered
        assert on_disk == sim.ledger.entries
        assert [e.text for e in on_disk] == [tricky, tricky, "Ωμέγα"]
        assert [e.climsgid for e in on_disk] == ["c1", "c1", ""]
    assert read_ledger(path) == sim.ledger.entries


def test_ledger_ids_stay_unique_and_findable_across_the_low_bits_wrap():
    ledger = Ledger()
    batch = numbers(600)
    ids: list[str] = []
    for _ in range(120):  # 72 000 messages: the low 16 bits of the serial wrap once
        ids += ledger.accept(batch, "x", parts=1)
    assert len(ledger) == len(ids) == 72_000
    assert len(set(ids)) == len(ids)
    assert all(API_MSG_ID.fullmatch(i) for i in ids[65_530:65_545])
    for serial in (0, 599, 65_535, 65_536, 71_999):
        entry = ledger.find(ids[serial])
        assert entry is not None
        assert (entry.api_msg_id, entry.to) == (ids[serial], batch[serial % 600])
    assert ledger.find(Ledger().accept(["27821234567"], "x")[0]) is None  # another ledger's id
    assert ledger.count_for(batch[0]) == 120
    assert len(ledger.by_number()) == 600


def test_a_ledger_without_numbers_still_finds_ids_but_has_no_entries():
    ledger = Ledger(keep_numbers=False)
    ids = ledger.accept(numbers(600), "x", climsgid="c9", parts=2)
    entry = ledger.find(ids[123])
    assert entry is not None
    assert (entry.api_msg_id, entry.to, entry.parts) == (ids[123], "", 2)
    found = ledger.find_by_climsgid("c9")
    assert found is not None
    assert found.api_msg_id == ids[0]
    assert len(ledger) == 600
    with pytest.raises(RuntimeError, match="CSV"):
        ledger.count_for("27820000000")


def test_ledger_listeners_see_each_accepted_batch():
    ledger = Ledger()
    seen = []
    ledger.listeners.append(seen.append)
    ids = ledger.accept(["27821234567", "27831234567"], "hello", climsgid="c", parts=1, callback=3)
    assert len(seen) == 1
    assert (seen[0].api_msg_ids, seen[0].callback, seen[0].text) == (ids, 3, "hello")
    assert ledger.status(ids[0]) == "003"


async def test_concurrent_requests_get_unique_ids(sim: Simulator, http: aiohttp.ClientSession):
    bodies = await asyncio.gather(
        *(
            send(http, sim, to=",".join(numbers(600, 27_820_000_000 + 600 * k)), text="x")
            for k in range(20)
        )
    )
    ids = [i for body in bodies for i, _ in ID_TO_LINE.findall(body)]
    assert len(ids) == len(set(ids)) == 12_000 == len(sim.ledger)
    assert all(count == 1 for count in map(len, sim.ledger.by_number().values()))


# -- CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_its_url_serves_and_exits_0_on_a_signal(tmp_path: Path, signum: int):
    ledger = tmp_path / "cli-ledger.csv"
    secret = "cli-secret-password"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bulksend.simulator", "--port", "0", "--password", secret),
            *("--user", USER, "--api-id", API_ID, "--ledger", str(ledger), "--access-log"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"bulksend simulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line

        async def use() -> str:
            params = {**CREDENTIALS, "password": secret, "to": "27821234567", "text": "hi"}
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{match.group(1)}/http/sendmsg", params=params) as response,
            ):
                return await response.text()

        answer = asyncio.run(use())
        assert ID_LINE.fullmatch(answer), answer
        process.send_signal(signum)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert out == ""
    assert '"GET /http/sendmsg" 200' in err  # the access log names the path...
    assert secret not in err  # ...but never the query string holding the password
    assert "requests=1 answered=1" in err
    [entry] = read_ledger(ledger)
    assert (entry.to, "ID: " + entry.api_msg_id, entry.text) == ("27821234567", answer, "hi")


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [(["--http-503-rate", "2"], "rate"), (["--throttle", "-5"], "> 0")],
)
def test_cli_refuses_an_out_of_range_knob(flags: list[str], complaint: str):
    result = subprocess.run(
        [sys.executable, "-m", "bulksend.simulator", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert complaint in result.stderr
    assert result.stdout == ""


async def test_cli_exits_1_when_the_port_is_taken(sim: Simulator):
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bulksend.simulator", "--port", str(sim.port)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    assert b"cannot listen" in err
    assert out == b""
