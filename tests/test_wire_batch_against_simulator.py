"""``BatchInterfaceWire`` driven by the real client (:class:`bulksend.client.Gateway`) against the
real simulator over loopback: neither imports the other, each checks the other.

Batches expire every 50 items, sessions are revoked while the campaign runs, ``ERR: 901`` and HTTP
503 hit ``senditem``: every row must still end ``ACCEPTED`` exactly once, with the ledger holding
the text the campaign rendered, and ``finish`` must end the batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from bulksend.client import BatchStatus, ClientSettings, Gateway, RetryPolicy
from bulksend.simulator import Faults, Simulator
from bulksend.wire import Batch, Verdict
from bulksend.wire.batch import BatchInterfaceWire, render_template
from bulksend.wire.legacy import Auth, MessageOptions

USER, PASSWORD, API_ID = "acme", "batch-wire-secret", "3000077"
TEMPLATE = "Dear #name#, your order #order# ships today"
FIELDS = ("name", "order")

NAMES_GSM = ("Ann", "Bob & Co", "Zoé", "Ümit", "#order#", "100% sure")
NAMES_UCS2 = ("王芳", "Σωκράτης", "Ολγα 🎉", "Ярослав")


def rows(count: int, names: Sequence[str], start: int = 27_820_000_000) -> list[Batch]:
    out = []
    for row in range(count):
        values = (names[row % len(names)], f"A-{row:05d}")
        text = render_template(TEMPLATE, dict(zip(FIELDS, values, strict=True)))
        out.append(Batch([row], [str(start + row)], [text], [values]))
    return out


def settings(sim: Simulator) -> ClientSettings:
    return ClientSettings(
        endpoint=sim.url,
        auth=Auth(api_id=API_ID, user=USER, password=PASSWORD),
        use_session=True,
        concurrency=16,
        retry=RetryPolicy(
            max_attempts=12, max_total_seconds=60, initial_backoff=0.01, max_backoff=0.05
        ),
    )


def wire(**kwargs: object) -> BatchInterfaceWire:
    return BatchInterfaceWire(
        TEMPLATE,
        FIELDS,
        Auth(api_id=API_ID, user=USER, password=PASSWORD),
        options=MessageOptions("", sender="ACME", callback=3),
        max_parts=2,
        use_session=True,
        **kwargs,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def revoking_sessions(sim: Simulator, every: float) -> AsyncIterator[None]:
    """Revoke every session now and then while the campaign runs (a short session expiry)."""

    async def revoke() -> None:
        while True:
            await asyncio.sleep(every)
            sim.expire_sessions()

    task = asyncio.create_task(revoke())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(sim: Simulator, protocol: BatchInterfaceWire, batches: list[Batch]) -> list[str]:
    """Send every row, finish; the api message id of each row (asserting it was accepted)."""
    async with Gateway(settings(sim), protocol) as gateway:
        await gateway.login()
        async with revoking_sessions(sim, 0.15):
            outcomes = await asyncio.gather(*(gateway.send(batch) for batch in batches))
        live = set(protocol.batch_ids.values())
        assert live
        await gateway.finish()
    assert protocol.batch_ids == {}
    assert all(bid not in sim.batches for bid in live)  # ended by finish
    ids = []
    for batch, outcome in zip(batches, outcomes, strict=True):
        assert outcome.status is BatchStatus.ANSWERED, (batch.rows, outcome.reason)
        (result,) = outcome.results
        assert result.verdict is Verdict.ACCEPTED, (batch.rows, result)
        ids.append(result.api_msg_id)
    return ids


def check_ledger(sim: Simulator, batches: list[Batch], ids: list[str]) -> None:
    by_number = sim.ledger.by_number()
    assert len(sim.ledger) == len(batches)
    for batch, api_msg_id in zip(batches, ids, strict=True):
        (entry,) = by_number[batch.msisdns[0]]  # exactly once
        assert entry.api_msg_id == api_msg_id
        assert entry.text == batch.contents[0]  # type: ignore[index]
        assert entry.option_map["from"] == "ACME"
        assert entry.option_map["batch_id"]


@pytest.mark.serial  # 50 items must fit in one 0.15 s session, or no batch id expires
@pytest.mark.parametrize(
    "names", [NAMES_GSM, NAMES_GSM + NAMES_UCS2], ids=["gsm7", "gsm7-and-ucs2"]
)
async def test_every_row_is_accepted_exactly_once_through_expiry_revocation_and_faults(
    names: Sequence[str],
) -> None:
    faults = Faults(
        seed=5,
        batch_expire_every=50,
        err_901_rate=0.05,
        http_503_rate=0.02,
        jitter=0.002,
        latency=0.002,
    )
    async with Simulator(USER, PASSWORD, API_ID, faults=faults) as sim:
        batches = rows(300, names)
        protocol = wire()
        ids = await run(sim, protocol, batches)
        check_ledger(sim, batches, ids)
        assert sim.stats.err_901 > 0 and sim.stats.http_503 > 0
        assert sim.batches.expired >= 1  # a batch ran out of items and was renewed
        assert sim.batches.started >= 300 // 50
        assert sim.batches.ended >= 1
    encodings = {entry.option_map.get("unicode", "0") for entry in sim.ledger.entries}
    assert encodings == ({"0", "1"} if NAMES_UCS2[0] in names else {"0"})


async def test_a_batch_that_expires_by_ttl_mid_campaign_is_renewed() -> None:
    async with Simulator(USER, PASSWORD, API_ID, faults=Faults(seed=2, batch_ttl=0.1)) as sim:
        batches = rows(60, NAMES_GSM + NAMES_UCS2)
        protocol = wire()
        ids = []
        async with Gateway(settings(sim), protocol) as gateway:
            for chunk in (batches[:30], batches[30:]):
                outcomes = await asyncio.gather(*(gateway.send(batch) for batch in chunk))
                ids += [outcome.results[0].api_msg_id for outcome in outcomes]
                await asyncio.sleep(0.15)  # every batch id expires between the chunks
            await gateway.finish()
        check_ledger(sim, batches, ids)
        assert sim.batches.expired >= 1


async def test_a_recipient_refusal_rejects_that_row_only() -> None:
    faults = Faults(seed=1, reject_prefixes=("2783",), reject_code=122)
    async with Simulator(USER, PASSWORD, API_ID, faults=faults) as sim:
        batches = rows(4, NAMES_GSM, start=27_820_000_000) + rows(2, NAMES_GSM, 27_830_000_000)
        async with Gateway(settings(sim), wire()) as gateway:
            outcomes = [await gateway.send(batch) for batch in batches]
            await gateway.finish()
        verdicts = [(o.results[0].verdict, o.results[0].code) for o in outcomes]
        assert verdicts == [(Verdict.ACCEPTED, 0)] * 4 + [(Verdict.REJECTED, 122)] * 2
        assert len(sim.ledger) == 4
