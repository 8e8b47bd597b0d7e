"""One API JSON delivery callbacks: the real One API simulator pushes them to a real
``ReceiptServer`` over loopback, they land in the receipts file exactly once, and ``report`` joins
them with the results file."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulksend.journal import RESULTS_HEADER
from bulksend.receipts import FINAL_STATUSES, RECEIPTS_HEADER, ReceiptServer, parse_json_callback
from bulksend.report import build_report
from bulksend.simulator import Faults
from bulksend.simulator.one_api import OneApiSimulator

KEY = "test-one-receipts-Jq55"
MSG_ID = "5f0c1d2e3a4b45c6978a0b1c2d3e4f50"


def read_receipts(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def callback(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "integrationName": "bulksend",
        "messageId": MSG_ID,
        "clientMessageId": "camp-1_17",
        "to": "+27821234567",
        "from": "ACME",
        "statusCode": 4,
        "status": "RECEIVED_BY_RECIPIENT",
        "timestamp": 1_700_000_000_123,
    }
    doc.update(overrides)
    return doc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes, content_type: str = "application/json"
) -> int:
    async with http.post(url, data=body, headers={"Content-Type": content_type}) as response:
        await response.read()
        return response.status


def test_parse_json_callback_maps_fields_to_a_receipt() -> None:
    receipt = parse_json_callback(json.dumps(callback(charge=2)).encode())
    assert not isinstance(receipt, str)
    assert receipt == (MSG_ID, "camp-1_17", "27821234567", "004", "2.0", "1700000000")
    assert parse_json_callback(json.dumps(callback(statusCode="007")).encode())[3] == "007"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "malformed JSON"),
        (json.dumps(callback(messageId="")).encode(), "messageId"),
        (json.dumps(callback(messageId="a,b")).encode(), "messageId"),
        (json.dumps(callback(statusCode="abc")).encode(), "statusCode"),
        (json.dumps(callback(statusCode=4000)).encode(), "statusCode"),
        (json.dumps(callback(timestamp="soon")).encode(), "timestamp"),
        (json.dumps(callback(clientMessageId="x,y")).encode(), "clientMessageId"),
        (json.dumps(callback(to="27x")).encode(), "to must be digits"),
        (json.dumps(callback(charge=-1)).encode(), "charge"),
    ],
)
def test_parse_json_callback_refuses_malformed_bodies(body: bytes, reason: str) -> None:
    refused = parse_json_callback(body)
    assert isinstance(refused, str) and reason in refused


async def test_json_callbacks_are_idempotent_and_malformed_ones_get_400(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "r.receipts.csv"
    async with ReceiptServer(out) as server:
        body = json.dumps(callback()).encode()
        assert await post(http, server.url, body) == 200
        assert await post(http, server.url, body) == 200  # the gateway's retry: one receipt
        # lenient: a JSON body without the JSON content type
        other = json.dumps(callback(statusCode=3, status="DELIVERED_TO_GATEWAY")).encode()
        assert await post(http, server.url, b"  " + other, "text/plain") == 200
        assert await post(http, server.url, b"{truncated", "application/json") == 400
        assert await post(http, server.url, b'{"messageId": 7}') == 400
        assert await post(http, server.url, b"[]", "application/json") == 400
        # the legacy form callbacks still work beside them
        form = {"apiMsgId": "1" * 32, "status": "004", "timestamp": "1700000001"}
        async with http.post(server.url, data=form) as response:
            assert response.status == 200
        stats = server.stats
        assert (stats.stored, stats.duplicates, stats.invalid) == (3, 1, 3)
    rows = read_receipts(out)
    assert out.read_text().splitlines()[0] == RECEIPTS_HEADER
    assert [(r["api_msg_id"], r["status"]) for r in rows] == [
        (MSG_ID, "004"),
        (MSG_ID, "003"),
        ("1" * 32, "004"),
    ]
    first = rows[0]
    assert (first["cli_msg_id"], first["to"], first["timestamp"], first["charge"]) == (
        "camp-1_17",
        "27821234567",
        "1700000000",
        "",
    )
    assert first["status_text"] == "Received by recipient"
    async with ReceiptServer(out) as server:  # a restart remembers the keys
        assert await post(http, server.url, json.dumps(callback()).encode()) == 200
        assert server.stats.duplicates == 1 and server.stats.stored == 0


async def test_simulated_one_api_callbacks_end_to_end_into_the_report(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    out = tmp_path / "campaign.receipts.csv"
    numbers = [str(27_820_000_000 + i) for i in range(230)]
    faults = Faults(seed=12, delivery_delay=0.01, delivery_failure_rate=0.2)
    async with ReceiptServer(out) as server:
        async with OneApiSimulator(KEY, faults, callback_url=server.url) as sim:
            ids: dict[str, str] = {}
            for start in range(0, len(numbers), 100):
                chunk = numbers[start : start + 100]
                messages = [
                    {"channel": "sms", "to": n, "content": f"Hi {n}", "clientMessageId": f"c-{n}"}
                    for n in chunk
                ]
                headers = {"Authorization": KEY, "Content-Type": "application/json"}
                async with http.post(
                    f"{sim.url}/v1/message", json={"messages": messages}, headers=headers
                ) as response:
                    assert response.status == 202
                    doc = await response.json()
                ids.update((e["to"], e["apiMessageId"]) for e in doc["messages"] if e["accepted"])
            assert sim.callbacks is not None
            await asyncio.wait_for(sim.callbacks.drained(), 10)
            assert sim.callbacks.stats.gave_up == 0 and sim.callbacks.stats.refused == 0
            ledger = {e.api_msg_id: sim.ledger.status(e.api_msg_id) for e in sim.ledger}
        assert server.stats.invalid == 0
    assert len(ids) == len(numbers) == len(ledger)

    receipts = read_receipts(out)
    finals = {r["api_msg_id"]: r["status"] for r in receipts if r["status"] in FINAL_STATUSES}
    assert finals == ledger, "each message's final status, exactly once"
    assert Counter(r["status"] for r in receipts)["003"] == len(ledger)
    assert all(r["cli_msg_id"] == f"c-{r['to']}" for r in receipts)

    # A hand-made results file of the campaign: every accepted row, one rejected, one unknown.
    results = tmp_path / "campaign.results.csv"
    lines = [RESULTS_HEADER]
    for row, number in enumerate(numbers, start=2):
        lines.append(f"{row},{number},accepted,{ids[number]},,,1,2026-11-27T14:00:00Z")
    lines.append("300,27829999998,rejected,,25,Invalid recipient address,1,2026-11-27T14:00:00Z")
    lines.append("301,27829999999,unknown,,,read timeout,1,2026-11-27T14:00:00Z")
    results.write_text("\n".join(lines) + "\n")
    failed_out = tmp_path / "failed.csv"
    report = build_report(results, out, failed_out)
    statuses = Counter(ledger.values())
    assert report.accepted == len(numbers) and report.rejected == 1 and report.unknown == 1
    assert report.delivered == statuses["004"] > 0
    assert report.failed == len(numbers) - statuses["004"] > 0
    assert report.pending == 0 and report.unmatched_receipts == 0
    assert report.malformed_lines == 0
    assert report.credits == len(numbers)  # the simulator's callbacks carry a charge of 1 part
    assert report.failed_written == report.failed + 1
