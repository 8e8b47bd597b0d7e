"""Delivery receipts end to end over loopback: the simulator pushes callbacks, the receiver stores
them durably and exactly once, and the report agrees with the simulator's ledger."""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import signal
import socket
import stat
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bulksend import run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.receipts import (
    FINAL_STATUSES,
    LISTENING,
    RECEIPTS_HEADER,
    ReceiptServer,
    parse_callback,
    receipts_path_for,
)
from bulksend.report import build_report
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults, Simulator
from tests.e2e.support import write_numbers

CREDENTIALS = {"user": DEFAULT_USER, "password": DEFAULT_PASSWORD, "api_id": DEFAULT_API_ID}
API_MSG_ID = "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_receipts(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sendmsg(
    http: aiohttp.ClientSession, sim: Simulator, numbers: list[str], callback: int
) -> None:
    for start in range(0, len(numbers), 600):
        form = {
            **CREDENTIALS,
            "to": ",".join(numbers[start : start + 600]),
            "text": "hello",
            "callback": str(callback),
        }
        async with http.post(f"{sim.url}/http/sendmsg", data=form) as response:
            assert response.status == 200
            assert "ERR" not in await response.text()


def callback_form(**overrides: str) -> dict[str, str]:
    form = {
        "api_id": DEFAULT_API_ID,
        "apiMsgId": API_MSG_ID,
        "cliMsgId": "",
        "to": "27821234567",
        "timestamp": "1700000000",
        "status": "004",
        "charge": "1.0",
    }
    form.update(overrides)
    return form


# -- end to end --------------------------------------------------------------------------------


async def test_campaign_with_callbacks_collects_every_final_status(tmp_path: Path) -> None:
    numbers = write_numbers(tmp_path / "to.csv", 1500, seed=4)
    port = free_port()
    faults = Faults(
        seed=11, delivery_delay=0.01, delivery_failure_rate=0.2, reject_suffixes=("13",)
    )
    async with Simulator(faults=faults, callback_url=f"http://127.0.0.1:{port}/") as sim:
        settings = CampaignSettings(
            input_path=tmp_path / "to.csv",
            text="Your parcel is on its way",
            endpoint=sim.url,
            **CREDENTIALS,
            callback=7,
            receipts_listen=f"127.0.0.1:{port}",
            progress="off",
            install_signal_handlers=False,
        )
        summary = await run_campaign_async(settings)
        assert sim.callbacks is not None
        await asyncio.wait_for(sim.callbacks.drained(), 5)
        assert sim.callbacks.stats.gave_up == 0
        ledger = {e.api_msg_id: sim.ledger.status(e.api_msg_id) for e in sim.ledger}

    assert summary.exit_code == 0
    rejected = sum(n.endswith("13") for n in numbers)
    assert summary.accepted == len(ledger) == len(numbers) - rejected
    receipts_path = receipts_path_for(settings.results_path)
    assert receipts_path == tmp_path / "to.receipts.csv"
    assert stat.S_IMODE(receipts_path.stat().st_mode) == 0o600

    receipts = read_receipts(receipts_path)
    finals = [(r["api_msg_id"], r["status"]) for r in receipts if r["status"] in FINAL_STATUSES]
    assert sorted(finals) == sorted(ledger.items()), "each final status exactly once"
    assert Counter(r["status"] for r in receipts)["003"] == len(ledger)

    report = build_report(settings.results_path, receipts_path)
    expected = Counter(ledger.values())
    assert report.accepted == len(ledger)
    assert report.rejected == rejected and report.rejected_by_code == {"114": rejected}
    assert report.delivered == expected.pop("004")
    assert report.failed_by_status == dict(sorted(expected.items()))
    assert report.failed > 0
    assert report.pending == 0 and report.unmatched_receipts == 0
    assert report.credits == len(ledger)


@pytest.mark.parametrize(
    ("callback", "pushed"),
    [
        (1, {"003"}),
        (2, {"004", "005", "007", "009", "010"}),
        (4, {"005", "007", "009", "010"}),
        (5, {"003", "005", "007", "009", "010"}),
        (7, {"003", "004", "005", "007", "009", "010"}),
    ],
)
async def test_simulator_pushes_only_the_statuses_the_callback_value_selects(
    tmp_path: Path, http: aiohttp.ClientSession, callback: int, pushed: set[str]
) -> None:
    numbers = [f"2783{i:07d}" for i in range(400)]
    out = tmp_path / "r.csv"
    faults = Faults(seed=5, delivery_delay=0.0, delivery_failure_rate=0.3)
    async with (
        ReceiptServer(out) as server,
        Simulator(faults=faults, callback_url=server.url) as sim,
    ):
        await sendmsg(http, sim, numbers, callback)
        assert sim.callbacks is not None
        await asyncio.wait_for(sim.callbacks.drained(), 5)
        ledger = {e.api_msg_id: sim.ledger.status(e.api_msg_id) for e in sim.ledger}
    seen = Counter(r["status"] for r in read_receipts(out))
    assert set(seen) == pushed
    for status in pushed - {"003"}:
        assert seen[status] == sum(s == status for s in ledger.values())
    assert all(s in FINAL_STATUSES for s in ledger.values()), "the ledger moves on regardless"


async def test_receiver_killed_mid_stream_loses_no_acknowledged_receipt(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "kill.receipts.csv"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bulksend",
        "receipts",
        "--listen",
        f"127.0.0.1:{port}",
        "--out",
        str(out),
    ]

    async def start_receiver() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.decode().startswith(LISTENING)
        return process

    numbers = [f"4477{i:07d}" for i in range(3000)]
    faults = Faults(seed=9, delivery_delay=0.01, callback_tries=8, callback_backoff=0.1)
    receiver = await start_receiver()
    try:
        async with Simulator(faults=faults, callback_url=f"http://127.0.0.1:{port}/") as sim:
            await sendmsg(http, sim, numbers, 7)
            while not out.exists() or out.stat().st_size < 60_000:  # some hundreds stored
                await asyncio.sleep(0.01)
            receiver.send_signal(signal.SIGKILL)
            await receiver.wait()
            assert sim.callbacks is not None and sim.callbacks.outstanding > 0
            await asyncio.sleep(0.2)  # the simulator's pushes fail and back off meanwhile
            receiver = await start_receiver()
            await asyncio.wait_for(sim.callbacks.drained(), 20)
            assert sim.callbacks.stats.retries > 0
            assert sim.callbacks.stats.gave_up == 0
            ledger = {e.api_msg_id: sim.ledger.status(e.api_msg_id) for e in sim.ledger}
    finally:
        if receiver.returncode is None:
            receiver.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(receiver.wait(), 10) == 0

    receipts = read_receipts(out)
    keys = Counter((r["api_msg_id"], r["status"]) for r in receipts)
    assert max(keys.values()) == 1, "a receipt stored twice"
    finals = {k[0]: k[1] for k in keys if k[1] in FINAL_STATUSES}
    assert finals == ledger
    assert sum(k[1] == "003" for k in keys) == len(ledger)


# -- the receiver on its own --------------------------------------------------------------------


async def test_forged_callbacks_without_the_token_are_refused(
    tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "r.csv"
    token = "Tok3nOfTheAccount"
    async with ReceiptServer(out, token=token) as server:
        assert server.url.endswith(f"/{token}")
        base = server.url.rsplit("/", 1)[0]
        for path in ("/", "/wrong", f"/{token}x", f"/{token[:-1]}"):
            async with http.get(base + path, params=callback_form()) as response:
                assert response.status == 403
        async with http.post(server.url, data=callback_form()) as response:
            assert response.status == 200
        assert server.stats.forbidden == 4
    assert len(read_receipts(out)) == 1
    assert token not in caplog.text
    assert token not in out.read_text()
    assert token not in repr(server)


@pytest.mark.parametrize(
    "bad",
    [
        {"apiMsgId": ""},
        {"apiMsgId": "x" * 65},
        {"apiMsgId": "abc-def"},
        {"status": "4"},
        {"status": "abc"},
        {"status": ""},
        {"timestamp": "yesterday"},
        {"charge": "lots"},
        {"charge": "nan"},
        {"to": "+27821234567"},
        {"cliMsgId": "a,b"},
    ],
)
async def test_malformed_callbacks_get_400_and_are_not_stored(
    tmp_path: Path, http: aiohttp.ClientSession, bad: dict[str, str]
) -> None:
    out = tmp_path / "r.csv"
    async with ReceiptServer(out) as server:
        async with http.post(server.url, data=callback_form(**bad)) as response:
            assert response.status == 400
        async with http.get(server.url, params=callback_form()) as response:
            assert response.status == 200, "still serving after a bad callback"
        assert server.stats.invalid == 1
    assert len(read_receipts(out)) == 1


async def test_duplicate_callbacks_are_stored_once_and_names_are_case_insensitive(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "r.csv"
    async with ReceiptServer(out) as server:
        upper = {name.upper(): value for name, value in callback_form().items()}
        answers = await asyncio.gather(
            *(http.post(server.url, data=callback_form()) for _ in range(5)),
            http.get(server.url, params=upper),
            http.get(server.url, params=callback_form(status="003")),
        )
        assert [a.status for a in answers] == [200] * 7
        for answer in answers:
            answer.release()
        assert (server.stats.stored, server.stats.duplicates) == (2, 5)
    rows = read_receipts(out)
    assert sorted(r["status"] for r in rows) == ["003", "004"]
    assert rows[0]["api_msg_id"] == API_MSG_ID and rows[0]["to"] == "27821234567"


async def test_a_restarted_receiver_remembers_what_it_stored(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "r.csv"
    async with (
        ReceiptServer(out) as server,
        http.post(server.url, data=callback_form()) as response,
    ):
        assert response.status == 200
    with out.open("a", encoding="utf-8") as f:
        f.write("2026-01-01T00:00:00.000Z,abc,,2782")  # a line torn by a kill
    async with ReceiptServer(out) as server:
        assert server.stats.on_file == 1
        for status in ("004", "007"):
            async with http.post(server.url, data=callback_form(status=status)) as response:
                assert response.status == 200
        assert (server.stats.stored, server.stats.duplicates) == (1, 1)
    lines = out.read_text().splitlines()
    assert lines[0] == RECEIPTS_HEADER
    assert [line.split(",")[4] for line in lines[1:]] == ["004", "007"]


def test_parse_callback_keeps_canonical_values() -> None:
    receipt = parse_callback(
        {"apimsgid": API_MSG_ID, "status": "004", "charge": "1.50", "timestamp": "0017"}
    )
    assert not isinstance(receipt, str)
    assert (receipt.charge, receipt.timestamp, receipt.to) == ("1.5", "17", "")
    assert parse_callback({"status": "004"}) == "apiMsgId must be 1-64 letters or digits"


def test_receipts_path_sits_beside_the_results() -> None:
    assert receipts_path_for(Path("a/b.results.csv")) == Path("a/b.receipts.csv")
    assert receipts_path_for(Path("out.csv")) == Path("out.receipts.csv")
    assert os.fspath(receipts_path_for("x.results.csv")) == "x.receipts.csv"
