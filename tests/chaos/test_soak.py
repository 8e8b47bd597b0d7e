"""Fault soak: a campaign through every fault at once, over every wire protocol.

503s, ERR 901 (the One API's error 19), connections dropped before and after processing,
throttling below the sender's rate and, on the legacy API, sessions revoked every second (the
batch interface's batch ids also expire every few hundred items, so they are renewed midway; the
One API has no sessions). Every row must be accounted for, the ledger must hold no duplicate and
each message the text of its row, and the ``unknown`` rows must be exactly the rows of the dropped
requests: those the gateway processed (dropped after) and those it did not (dropped before) — a
client cannot tell a connection closed before processing from one closed after, so it must not
claim either as sent or resend either.

Sizes keep each wire under a minute: 120 000 rows for ``sendmsg``, fewer for the One API, a few
thousand for the batch interface (one recipient per request).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.simulator import Faults
from tests.e2e.protocols import WIRES, Wire
from tests.e2e.support import check_against_ledger, read_results

# serial: the sender must outrun the throttle (HTTP 429s are asserted), so the CPU to itself.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,
    pytest.mark.parametrize("wire", WIRES, ids=str),
]


@dataclass(frozen=True)
class Soak:
    rows: int
    throttle: int
    """Messages per second the simulator lets through: below what the sender manages."""
    batch_expire_every: int | None = None
    """The batch interface: a batch id answers ``ERR: 201`` after this many items."""
    concurrency: int = 32


SOAKS = {
    "sendmsg": Soak(120_000, 40_000),
    "one": Soak(100_000, 20_000),
    "one-personalised": Soak(50_000, 10_000),
    # One recipient per request, each 503 holding its slot for a second: more in flight.
    "batch": Soak(3_000, 250, batch_expire_every=200, concurrency=64),
}


@contextlib.asynccontextmanager
async def _revoking_sessions(wire: Wire, sim: Any) -> AsyncIterator[None]:
    """Every second, forget every session (the legacy API; the One API has none)."""
    if wire.api == "one":
        yield
        return

    async def revoke_sessions() -> None:
        while True:
            await asyncio.sleep(1.0)
            sim.expire_sessions()

    revoker = asyncio.create_task(revoke_sessions())
    try:
        yield
    finally:
        revoker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revoker


async def test_fault_soak_accounts_for_every_row(wire: Wire, tmp_path: Path) -> None:
    soak = SOAKS[wire.name]
    path = tmp_path / "in.csv"
    numbers = wire.write_input(path, soak.rows, seed=99)
    texts = wire.expected_texts(path)
    faults = Faults(
        http_503_rate=0.05,
        err_901_rate=0.02,
        drop_before_rate=0.02,
        drop_after_rate=0.01,
        throttle_mps=soak.throttle,
        batch_expire_every=soak.batch_expire_every,
        seed=4242,
    )
    async with wire.simulator(faults) as sim:
        legacy = {"auth": "session"} if wire.api == "legacy" else {}
        settings = wire.settings(
            sim,
            path,
            batch_size=None,  # the wire's own: 600 for sendmsg, 100 for the One API
            concurrency=soak.concurrency,
            retry_attempts=40,
            retry_max_seconds=240.0,
            **legacy,
        )
        async with _revoking_sessions(wire, sim):
            summary = await run_campaign_async(settings)

        results = read_results(tmp_path / "in.results.csv")
        statuses = check_against_ledger(results, sim)
        assert summary.exit_code == 0, summary.stopped
        assert len(results) == soak.rows and {r["to"] for r in results} == set(numbers)
        wrong = [(e.to, e.text) for e in sim.ledger.entries if e.text != texts[e.to]]
        assert not wrong, f"messages with the wrong text: {wrong[:5]}"
        stats = sim.stats
        errors = stats.err_19 if wire.api == "one" else stats.err_901
        assert stats.http_503 and errors and stats.http_429
        assert stats.dropped_before and stats.dropped_after

        ledger_numbers = {e.to for e in sim.ledger.entries}
        unknown = {r["to"] for r in results if r["status"] == "unknown"}
        accepted = {r["to"] for r in results if r["status"] == "accepted"}
        # Dropped after processing: in the ledger, recorded unknown (never as accepted).
        seen_unknown = unknown & ledger_numbers
        assert seen_unknown == ledger_numbers - accepted
        # Dropped before processing: not in the ledger, recorded unknown, not resent.
        unseen_unknown = unknown - ledger_numbers
        batch = wire.per_request
        # Exactly the dropped requests' rows (the last batch of the file may be short). A request
        # dropped after processing may have been refused as a whole (an expired session or batch
        # id), so only the total is exact; the ledger splits it.
        dropped = stats.dropped_before + stats.dropped_after
        assert dropped * batch - batch < len(unknown) <= dropped * batch
        assert len(seen_unknown) <= stats.dropped_after * batch
        assert len(unseen_unknown) >= stats.dropped_before * batch - batch
        assert len(unknown) > 0 and statuses["unknown"] == len(unknown)
        assert statuses["accepted"] + statuses["unknown"] == soak.rows

        # The throttle: no whole second saw more than the bucket allows (rate + one burst).
        per_second = Counter(int(e.time) for e in sim.ledger.entries)
        assert max(per_second.values()) <= 2 * soak.throttle
        if soak.batch_expire_every is not None:
            # Batch ids expired midway and the campaign started new ones: each id carried at
            # most ``batch_expire_every`` items.
            per_batch = Counter(e.option_map["batch_id"] for e in sim.ledger.entries)
            assert len(per_batch) >= -(-len(sim.ledger) // soak.batch_expire_every)
            assert max(per_batch.values()) <= soak.batch_expire_every
        print(f"{wire}: {summary.requests} requests, {dict(statuses)}, {stats}")
