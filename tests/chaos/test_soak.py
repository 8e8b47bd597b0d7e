"""Fault soak: a 200 000-row campaign through every fault at once.

503s, ERR 901, connections dropped before and after processing, throttling below the sender's
rate and sessions revoked every second. Every row must be accounted for, the ledger must hold no
duplicate, and the ``unknown`` rows must be exactly the rows of the dropped requests: those the
gateway processed (dropped after) and those it did not (dropped before) — a client cannot tell a
connection closed before processing from one closed after, so it must not claim either as sent
or resend either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults, Simulator
from tests.e2e.support import check_against_ledger, read_results, write_numbers

pytestmark = pytest.mark.slow

ROWS = 200_000
THROTTLE = 40_000


async def test_fault_soak_accounts_for_every_row(tmp_path: Path) -> None:
    numbers = write_numbers(tmp_path / "in.csv", ROWS, seed=99)
    faults = Faults(
        http_503_rate=0.05,
        err_901_rate=0.02,
        drop_before_rate=0.02,
        drop_after_rate=0.01,
        throttle_mps=THROTTLE,
        seed=4242,
    )
    async with Simulator(faults=faults) as sim:

        async def revoke_sessions() -> None:
            while True:
                await asyncio.sleep(1.0)
                sim.expire_sessions()

        revoker = asyncio.create_task(revoke_sessions())
        try:
            settings = CampaignSettings(
                input_path=tmp_path / "in.csv",
                text="soak",
                endpoint=sim.url,
                user=DEFAULT_USER,
                api_id=DEFAULT_API_ID,
                password=DEFAULT_PASSWORD,
                auth="session",
                concurrency=32,
                retry_attempts=40,
                retry_max_seconds=240.0,
                install_signal_handlers=False,
            )
            summary = await run_campaign_async(settings)
        finally:
            revoker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await revoker

        results = read_results(tmp_path / "in.results.csv")
        statuses = check_against_ledger(results, sim)
        assert summary.exit_code == 0, summary.stopped
        assert len(results) == ROWS and {r["to"] for r in results} == set(numbers)
        stats = sim.stats
        assert stats.http_503 and stats.err_901 and stats.http_429
        assert stats.dropped_before and stats.dropped_after

        ledger_numbers = {e.to for e in sim.ledger.entries}
        unknown = {r["to"] for r in results if r["status"] == "unknown"}
        accepted = {r["to"] for r in results if r["status"] == "accepted"}
        # Dropped after processing: in the ledger, recorded unknown (never as accepted).
        seen_unknown = unknown & ledger_numbers
        assert seen_unknown == ledger_numbers - accepted
        # Dropped before processing: not in the ledger, recorded unknown, not resent.
        unseen_unknown = unknown - ledger_numbers
        batch = settings.effective_batch_size
        # Exactly the dropped requests' rows (the last batch of the file may be short). A request
        # dropped after processing may have been refused as a whole (an expired session), so
        # only the total is exact; the ledger splits it.
        dropped = stats.dropped_before + stats.dropped_after
        assert dropped * batch - batch < len(unknown) <= dropped * batch
        assert len(seen_unknown) <= stats.dropped_after * batch
        assert len(unseen_unknown) >= stats.dropped_before * batch - batch
        assert len(unknown) > 0 and statuses["unknown"] == len(unknown)
        assert statuses["accepted"] + statuses["unknown"] == ROWS

        # The throttle: no whole second saw more than the bucket allows (rate + one burst).
        per_second = Counter(int(e.time) for e in sim.ledger.entries)
        assert max(per_second.values()) <= 2 * THROTTLE
