"""A gateway that misbehaves on purpose, over real loopback TCP: wrong, missing and duplicated
lines, HTML with 200, truncated and huge bodies, answers trickled byte by byte. Nothing may crash
the run, attach an ID to the wrong number or lose a row; what cannot be known is ``unknown``."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from aiohttp import web

from bulksend.campaign import run_campaign_async
from bulksend.client import BatchStatus, ClientSettings, Gateway, RetryPolicy
from bulksend.config import CampaignSettings
from bulksend.wire import Verdict
from bulksend.wire.legacy import Auth, MessageOptions, SendmsgTemplate, SendmsgWire
from tests.e2e.support import read_results, write_numbers

Behaviour = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]


def _sendmsg(settings: ClientSettings, text: str = "hi") -> SendmsgWire:
    return SendmsgWire(
        SendmsgTemplate(MessageOptions(text=text)),
        settings.auth,
        use_session=settings.use_session,
        method=settings.method,
    )


def _id(number: str) -> str:
    return f"{int(number):032x}"


def _good(numbers: list[str]) -> str:
    return "".join(f"ID: {_id(n)} To: {n}\n" for n in numbers)


async def unknown_to(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    body = _good(numbers[1:]) + f"ID: {_id('1')} To: 27999999999\n"
    return web.Response(text=body)


async def missing_lines(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    return web.Response(text=_good(numbers[::2]))


async def duplicate_lines(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    return web.Response(text=_good(numbers) + f"ID: {'f' * 32} To: {numbers[0]}\n")


async def html_200(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    return web.Response(text="<html><body><h1>Bad gateway</h1></body></html>")


async def truncated(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    body = _good(numbers).encode()
    resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()
    return resp


async def cut_mid_line(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    text = _good(numbers)
    return web.Response(text=text[: len(text) // 2 + 7])


async def slowloris(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for byte in _good(numbers).encode()[:200]:
        await resp.write(bytes([byte]))
        await asyncio.sleep(0.05)
    return resp


async def huge(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk = b"ID: " + b"a" * 32 + b" To: 1\n"
    try:
        for _ in range(60_000):  # ~2.5 MB, past the client's cap
            await resp.write(chunk * 10)
    except (ConnectionResetError, RuntimeError):
        pass
    return resp


async def swapped_ids(request: web.Request, numbers: list[str]) -> web.StreamResponse:
    # Lines in reverse order: matching must use To:, never position.
    return web.Response(text="".join(reversed(_good(numbers).splitlines(keepends=True))))


BEHAVIOURS: dict[str, Behaviour] = {
    "unknown_to": unknown_to,
    "missing_lines": missing_lines,
    "duplicate_lines": duplicate_lines,
    "html_200": html_200,
    "truncated": truncated,
    "cut_mid_line": cut_mid_line,
    "slowloris": slowloris,
    "huge": huge,
    "swapped_ids": swapped_ids,
}


class HostileGateway:
    def __init__(self) -> None:
        self.behaviour: Behaviour = swapped_ids
        self.mixed = False
        self.rng = random.Random(7)
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = parse_qs((await request.read()).decode())
        numbers = form["to"][0].split(",")
        behaviour = self.behaviour
        if self.mixed:
            behaviour = self.rng.choice([b for k, b in BEHAVIOURS.items() if k != "slowloris"])
        return await behaviour(request, numbers)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileGateway]:
    gateway = HostileGateway()
    app = web.Application()
    app.router.add_post("/http/sendmsg", gateway.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    gateway.url = f"http://127.0.0.1:{port}"
    try:
        yield gateway
    finally:
        await runner.cleanup()


NUMBERS = [f"2782{i:07d}" for i in range(1, 11)]


async def _send(gateway: HostileGateway) -> tuple[BatchStatus, list[tuple[str, str, str]]]:
    settings = ClientSettings(
        endpoint=gateway.url,
        auth=Auth("1", "u", "pw-123456"),
        read_timeout=0.5,
        connect_timeout=1.0,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01),
    )
    async with Gateway(settings, _sendmsg(settings)) as client:
        outcome = await client.send(NUMBERS)
    if outcome.status is not BatchStatus.ANSWERED:
        assert outcome.attempts == 1  # maybe processed: never retried
        return outcome.status, []
    return outcome.status, [
        (n, r.verdict.value, r.api_msg_id) for n, r in zip(NUMBERS, outcome.results, strict=True)
    ]


def _never_misattributed(results: list[tuple[str, str, str]]) -> None:
    for number, verdict, api_id in results:
        if verdict == Verdict.ACCEPTED:
            assert api_id == _id(number)


@pytest.mark.parametrize(
    ("name", "status", "unknown"),
    [
        ("unknown_to", BatchStatus.ANSWERED, 1),
        ("missing_lines", BatchStatus.ANSWERED, 5),
        ("duplicate_lines", BatchStatus.ANSWERED, 1),
        ("html_200", BatchStatus.UNKNOWN, 10),
        ("truncated", BatchStatus.UNKNOWN, 10),
        ("cut_mid_line", BatchStatus.ANSWERED, 5),
        ("slowloris", BatchStatus.UNKNOWN, 10),
        ("huge", BatchStatus.UNKNOWN, 10),
        ("swapped_ids", BatchStatus.ANSWERED, 0),
    ],
)
async def test_misbehaving_answer_is_accounted_and_never_misattributed(
    hostile: HostileGateway, name: str, status: BatchStatus, unknown: int
) -> None:
    hostile.behaviour = BEHAVIOURS[name]
    got, results = await _send(hostile)
    assert got is status
    if got is BatchStatus.ANSWERED:
        assert sum(1 for _, v, _ in results if v == "unknown") == unknown
        _never_misattributed(results)


async def test_campaign_against_a_randomly_misbehaving_gateway_accounts_every_row(
    hostile: HostileGateway, tmp_path: Path
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 3000)
    hostile.mixed = True
    settings = CampaignSettings(
        input_path=tmp_path / "in.csv",
        text="hi",
        endpoint=hostile.url,
        password="pw-123456",
        batch_size=50,
        concurrency=4,
        read_timeout=2.0,
        install_signal_handlers=False,
    )
    summary = await run_campaign_async(settings)
    results = read_results(tmp_path / "in.results.csv")
    assert sorted(r["to"] for r in results) == sorted(numbers)
    assert summary.unknown > 0 and summary.accepted > 0
    for r in results:
        if r["status"] == "accepted":
            assert r["api_msg_id"] == _id(r["to"])
