"""The same campaigns over every wire protocol: ``sendmsg``, the batch interface (personalised),
the One API (one text and personalised), each against its real simulator over loopback TCP.

Whatever the protocol: every row is sent at most once and accounted for, every accepted id is in
the results, what the gateway certainly did not process is retried, what it may have processed is
recorded ``unknown`` and never resent, a fatal refusal stops the campaign with the rest pending,
and each recipient gets its own text.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bulksend.campaign import Snapshot, run_campaign_async
from bulksend.simulator import Faults
from tests.e2e.protocols import WIRES, Wire
from tests.e2e.support import check_against_ledger, read_results

pytestmark = pytest.mark.parametrize("wire", WIRES, ids=str)


def _rows(wire: Wire, many: int = 3000) -> int:
    """Rows for a scenario: fewer for the batch interface (one recipient per request)."""
    return max(200, many // 10) if wire.per_request == 1 else many


def _check_texts(wire: Wire, input_path: Path, sim: object) -> None:
    expected = wire.expected_texts(input_path)
    for entry in sim.ledger.entries:  # type: ignore[attr-defined]
        assert entry.text == expected[entry.to], (entry.to, entry.text)


async def test_every_row_once_with_per_recipient_rejections(wire: Wire, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire)
    numbers = wire.write_input(path, n)
    async with wire.simulator() as sim:
        sim.faults.reject_suffixes = ("13",)
        summary = await run_campaign_async(wire.settings(sim, path))
        results = read_results(tmp_path / "in.results.csv")
        statuses = check_against_ledger(results, sim)
        _check_texts(wire, path, sim)
    refused = sum(1 for x in numbers if x.endswith("13"))
    assert refused > 0
    assert statuses == {"accepted": n - refused, "rejected": refused}
    assert summary.exit_code == 0 and summary.pending == 0
    assert {r["to"] for r in results} == set(numbers)
    assert all(r["error_code"] for r in results if r["status"] == "rejected")
    assert summary.requests >= -(-n // wire.per_request)


async def test_transient_failures_are_retried_without_duplicates(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire)
    wire.write_input(path, n)
    async with wire.simulator(Faults(http_503_rate=0.2, err_901_rate=0.1, seed=7)) as sim:
        # Retries back off (0.5 s and more): many in flight keep one-recipient requests quick.
        settings = wire.settings(
            sim, path, retry_attempts=30, retry_max_seconds=120.0, concurrency=64
        )
        summary = await run_campaign_async(settings)
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        _check_texts(wire, path, sim)
        assert sim.stats.http_503 > 0
    assert statuses == {"accepted": n}
    assert summary.requests > summary.batches  # retries happened


async def test_a_throttling_gateway_gets_everything_once(wire: Wire, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire, 4000)
    wire.write_input(path, n)
    rate = 2000 if wire.per_request > 1 else 200
    async with wire.simulator(Faults(throttle_mps=rate, seed=3)) as sim:
        summary = await run_campaign_async(wire.settings(sim, path, concurrency=16))
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        per_second = Counter(int(e.time) for e in sim.ledger.entries)
    assert statuses == {"accepted": n}
    assert summary.exit_code == 0
    assert max(per_second.values()) <= 2 * rate


async def test_answers_lost_after_processing_are_unknown_and_never_resent(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire)
    wire.write_input(path, n)
    async with wire.simulator(Faults(drop_after_rate=0.2, seed=11)) as sim:
        first = await run_campaign_async(wire.settings(sim, path))
        results = read_results(tmp_path / "in.results.csv")
        statuses = check_against_ledger(results, sim)
        assert statuses["unknown"] > 0 and first.unknown == statuses["unknown"]
        assert statuses["accepted"] + statuses["unknown"] == n
        assert len(sim.ledger) == n  # all processed, some answers lost
        sim.faults.drop_after_rate = 0.0
        again = await run_campaign_async(wire.settings(sim, path))
        assert again.batches == 0 and len(sim.ledger) == n  # nothing sent twice


async def test_connections_dropped_before_processing_resend_only_on_request(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire)
    wire.write_input(path, n)
    async with wire.simulator(Faults(drop_before_rate=0.2, seed=5)) as sim:
        await run_campaign_async(wire.settings(sim, path))
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        assert statuses["unknown"] > 0
        assert len(sim.ledger) == statuses["accepted"]
        sim.faults.drop_before_rate = 0.0
        await run_campaign_async(wire.settings(sim, path, resend_unknown=True))
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
        _check_texts(wire, path, sim)
    assert statuses == {"accepted": n}


async def test_revoked_credentials_stop_the_campaign_and_a_resume_sends_only_the_rest(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire, 6000)
    numbers = wire.write_input(path, n)
    revoked = {"done": False}
    async with wire.simulator(Faults(latency=0.01, seed=2)) as sim:

        def revoke(snap: Snapshot) -> None:
            if snap.sent >= n // 5 and not revoked["done"]:
                revoked["done"] = True
                wire.revoke(sim)

        settings = wire.settings(sim, path, concurrency=2)
        first = await run_campaign_async(settings, on_progress=revoke, progress_interval=0.005)
        assert first.exit_code == 2, first.stopped
        assert first.pending > 0
        assert 0 < len(sim.ledger) < n
        wire.restore(sim)
        second = await run_campaign_async(settings)
        assert second.exit_code == 0, second.stopped
        results = read_results(tmp_path / "in.results.csv")
        assert check_against_ledger(results, sim) == {"accepted": n}
        _check_texts(wire, path, sim)
    assert sorted(r["to"] for r in results) == sorted(numbers)


async def test_credit_running_out_midway_stops_with_the_rest_pending(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire)
    wire.write_input(path, n)
    async with wire.simulator(Faults(credit=n // 3, seed=9)) as sim:
        settings = wire.settings(sim, path, concurrency=1, check_balance=False)
        summary = await run_campaign_async(settings)
        statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), sim)
    assert summary.exit_code == 2, summary.stopped
    assert 0 < summary.accepted <= n // 3
    assert statuses == {"accepted": summary.accepted}  # the refused request left rows pending
    assert summary.pending > 0


async def test_a_rerun_sends_nothing_and_an_edited_input_only_the_new_rows(
    wire: Wire, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    n = _rows(wire, 1500)
    wire.write_input(path, n)
    async with wire.simulator() as sim:
        await run_campaign_async(wire.settings(sim, path))
        again = await run_campaign_async(wire.settings(sim, path))
        assert again.batches == 0 and len(sim.ledger) == n
        # Edit: new rows at the top (another seed), the last 10 rows gone.
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        extra = tmp_path / "extra.csv"
        new = wire.write_input(extra, 50, seed=77)
        extra_lines = extra.read_text(encoding="utf-8").splitlines(keepends=True)[1:]
        path.write_text("".join(lines[:1] + extra_lines + lines[1:-10]), encoding="utf-8")
        third = await run_campaign_async(wire.settings(sim, path))
        assert third.exit_code == 0
        per_number = Counter(e.to for e in sim.ledger.entries)
        assert all(c == 1 for c in per_number.values()), "a number was texted twice"
        assert all(per_number[x] == 1 for x in new)
        assert len(sim.ledger) == n + len(new)
