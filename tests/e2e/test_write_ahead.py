"""Write-ahead in the pipeline: the next intent written as an answer comes back, one flush for the
senders of the same moment, the summary's count of flushes, and the early intent of a stopped run
abandoned (its rows pending, never ``unknown``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bulksend.campaign import Campaign, run_campaign_async
from bulksend.campaign.control import EXIT_SIGINT
from bulksend.campaign.pipeline import Recorder
from bulksend.config import CampaignSettings
from bulksend.groupcommit import GroupCommit
from bulksend.journal import Journal
from bulksend.journal.checks import unsettled_intents
from bulksend.simulator import Simulator
from tests.e2e.support import check_against_ledger, read_results, write_numbers

MakeSettings = Callable[..., CampaignSettings]


async def test_against_a_gateway_with_latency_the_next_intent_is_ready_when_the_answer_is(
    tmp_path: Path,
    simulator: Simulator,
    make_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_numbers(tmp_path / "in.csv", 2000)
    simulator.faults.latency = 0.05
    early: list[int] = []
    flush_soon = Journal.flush_soon

    def spy(self: Journal) -> None:
        early.append(self.commit.written)
        flush_soon(self)

    monkeypatch.setattr(Journal, "flush_soon", spy)
    # However slow a loaded machine makes the flushes, they count as quick here (the policy
    # itself is tested in tests/test_groupcommit.py).
    monkeypatch.setattr(GroupCommit, "SPIN", 10.0)
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", concurrency=4, batch_size=100)
    )
    assert summary.exit_code == 0 and summary.accepted == 2000 and summary.batches == 20
    assert check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator) == {
        "accepted": 2000
    }
    # Of the 16 batches after each sender's first, those still to come when an answer came back
    # (all but the last few) had their intents written, and their flush started, then (a loop
    # with time on its hands); no request waited for its flush on the loop.
    assert 12 <= len(early) <= 16
    assert sum(summary.flush_waits.values()) == 20
    assert summary.flush_waits.get("on the loop", 0) == 0
    assert 1 <= summary.journal_flushes <= 20


async def test_a_stopped_run_leaves_no_early_intent_open(
    tmp_path: Path,
    simulator: Simulator,
    make_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while a sender records an answer, its next batch's intent already written: the
    batches in flight finish and are recorded, that next batch is abandoned, so nothing is left
    "maybe sent" and the resume sends its rows as pending, none ``unknown``."""
    write_numbers(tmp_path / "in.csv", 3000)
    simulator.faults.latency = 0.03
    settings = make_settings(simulator, tmp_path / "in.csv", concurrency=4, batch_size=50)
    campaign = Campaign(settings)
    record = Recorder.record
    calls: list[int] = []

    def record_then_stop(self: Recorder, seq: int, batch: Any, outcome: Any) -> None:
        calls.append(seq)
        record(self, seq, batch, outcome)
        if len(calls) == 12:  # this sender's next intent is written (the gateway has latency)
            campaign.stop("interrupted", EXIT_SIGINT)

    monkeypatch.setattr(Recorder, "record", record_then_stop)
    summary = await campaign.run()
    assert summary.exit_code == EXIT_SIGINT and summary.pending > 0
    pending, last_seq = unsettled_intents(tmp_path / "in.results.csv.journal")
    assert pending == {}  # nothing is "maybe sent"
    assert last_seq > len(calls)  # intents written early were abandoned, not left open
    monkeypatch.undo()
    again = await run_campaign_async(settings)
    assert again.exit_code == 0 and again.unknown == 0 and again.accepted == 3000
    assert check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator) == {
        "accepted": 3000
    }
