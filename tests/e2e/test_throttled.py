"""Campaigns against a rate-limited account: how close to the limit, how many refusals.

The simulator allows R = 1000 msg/s (a token bucket of one second's worth, HTTP 429 +
``Retry-After`` over it, nothing processed) with 50 ms latency, the issue's reference setting.
The targets are 95 % of R with ``--rate`` (at most 2 throttled requests) and 90 % adaptive (at
most 10 % of requests throttled); the assertions leave a margin below them so that a busy
2-core machine does not make them flaky, while the code before issue 10 (48-54 % of R, dozens
of 429s) fails them by far.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.simulator import Faults, Simulator
from tests.e2e.support import check_against_ledger, read_results, write_numbers

pytestmark = pytest.mark.serial  # shares of the account's rate: the CPU to themselves

MakeSettings = Callable[..., CampaignSettings]
R = 1000


def per_second_peak(sim: Simulator) -> int:
    """The most messages the gateway accepted in any one whole second."""
    return max(Counter(int(e.time) for e in sim.ledger.entries).values())


async def test_told_the_rate_it_stays_within_a_few_percent_of_it_without_refusals(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    rows = 6 * R
    write_numbers(tmp_path / "in.csv", rows)
    async with Simulator(faults=Faults(seed=3, throttle_mps=R, latency=0.05)) as sim:
        summary = await run_campaign_async(
            make_settings(sim, tmp_path / "in.csv", rate=float(R), concurrency=32)
        )
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        assert statuses == {"accepted": rows}
        assert summary.throttled == sim.stats.http_429 <= 2
        assert summary.accepted / summary.elapsed_seconds >= 0.9 * R
        assert per_second_peak(sim) <= 2 * R  # the rate plus one bucket, never more


@pytest.mark.slow
async def test_adaptive_learns_the_rate_from_429s_and_stays_close_to_it(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    rows = 20 * R
    write_numbers(tmp_path / "in.csv", rows)
    async with Simulator(faults=Faults(seed=4, throttle_mps=R, latency=0.05)) as sim:
        summary = await run_campaign_async(make_settings(sim, tmp_path / "in.csv", concurrency=32))
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        assert statuses == {"accepted": rows}
        assert summary.throttled == sim.stats.http_429
        assert summary.throttled <= 0.15 * summary.requests
        assert summary.accepted / summary.elapsed_seconds >= 0.8 * R
        assert per_second_peak(sim) <= 2 * R


async def test_an_account_slower_than_a_batch_gets_batches_it_can_take(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    rate = 200  # a 600-number batch is three seconds of this account
    rows = 1200
    write_numbers(tmp_path / "in.csv", rows)
    async with Simulator(faults=Faults(seed=5, throttle_mps=rate, latency=0.02)) as sim:
        summary = await run_campaign_async(
            make_settings(sim, tmp_path / "in.csv", rate=float(rate), concurrency=8)
        )
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        assert statuses == {"accepted": rows}
        assert summary.throttled == 0  # batches of 100, 0.5 s apart: never refused
        assert summary.batches == rows // (rate // 2)
