"""Opt-out lists and the credit pre-flight (issue 11), against the real simulator over loopback."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bulksend import optout
from bulksend.campaign import run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.simulator import Simulator
from tests.e2e.support import check_against_ledger, read_results, write_numbers

MakeSettings = Callable[..., CampaignSettings]


@pytest.mark.parametrize("compact", [False, True], ids=["dict", "compact"])
async def test_opt_out_lists_in_any_format_are_never_texted(
    tmp_path: Path,
    simulator: Simulator,
    make_settings: MakeSettings,
    compact: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if compact:
        monkeypatch.setattr(optout, "FAST_LIMIT", -1)
    numbers = write_numbers(tmp_path / "in.csv", 2_000)
    # A CSV list with a header and national numbers, and a bare one-per-line list: the reader's
    # formats and the campaign's --default-country apply.
    (tmp_path / "crm.csv").write_text(
        "name,mobile\n"
        + "".join(f"x{i},0{n[2:5]} {n[5:8]} {n[8:]}\n" for i, n in enumerate(numbers[:300]))
    )
    (tmp_path / "stop.txt").write_text(
        "".join(f"00{n}\n" for n in numbers[250:400]) + "not a number\n"
    )
    summary = await run_campaign_async(
        make_settings(
            simulator,
            tmp_path / "in.csv",
            exclude=(tmp_path / "crm.csv", tmp_path / "stop.txt"),
            default_country="ZA",
        )
    )
    assert summary.exit_code == 0
    assert summary.opted_out == 400 and summary.opt_out_lists == 400
    sent = {e.to for e in simulator.ledger.entries}
    assert sent == set(numbers[400:])
    rejects = read_results(tmp_path / "in.rejects.csv")
    reasons = Counter(r["reason"] for r in rejects)
    assert reasons[f"opted out ({tmp_path / 'crm.csv'})"] == 300  # the first list names it
    assert reasons[f"opted out ({tmp_path / 'stop.txt'})"] == 100
    results = read_results(tmp_path / "in.results.csv")
    assert len(results) + len(rejects) == 2_000


async def test_err_122_answers_are_recorded_and_excluded_next_time(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 1_000)
    simulator.faults.reject_suffixes = ("7",)
    simulator.faults.reject_code = 122
    record = tmp_path / "opted-out.txt"
    first = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", record_opt_outs=record)
    )
    refused = {n for n in numbers if n.endswith("7")}
    assert first.rejected == len(refused) == first.recorded_opt_outs
    assert {line.lstrip("+") for line in record.read_text().split()} == refused

    # The next campaign (another text) excludes them before they reach the gateway.
    simulator.faults.reject_suffixes = ()
    before = len(simulator.ledger)
    second = await run_campaign_async(
        make_settings(
            simulator,
            tmp_path / "in.csv",
            text="second campaign",
            out=tmp_path / "two.csv",
            exclude=(record,),
        )
    )
    assert second.opted_out == len(refused)
    assert {e.to for e in simulator.ledger.entries[before:]} == set(numbers) - refused


async def test_an_opt_out_list_added_on_resume_keeps_each_row_in_one_file(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 1_200)
    simulator.faults.credit = 600
    first = await run_campaign_async(
        make_settings(
            simulator, tmp_path / "in.csv", batch_size=100, concurrency=1, check_balance=False
        )
    )
    assert first.exit_code == 2 and first.accepted == 600
    simulator.faults.credit = None
    (tmp_path / "stop.txt").write_text("".join(f"+{n}\n" for n in numbers[500:700]))
    second = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", exclude=(tmp_path / "stop.txt",))
    )
    assert second.exit_code == 0
    results = read_results(tmp_path / "in.results.csv")
    rejects = read_results(tmp_path / "in.rejects.csv")
    # 500..599 were sent before the list came: they stay in the results, not in the rejects.
    assert {r["raw"].lstrip("+") for r in rejects} == set(numbers[600:700])
    assert len(results) + len(rejects) == 1_200
    check_against_ledger(results, simulator)


async def test_credit_short_refuses_before_the_first_message(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 1_500)
    simulator.faults.credit = 1_000
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", text="x" * 200)  # 2 parts a message
    )
    assert summary.exit_code == 2
    assert "1,000.00" in summary.stopped and "3,000 credits" in summary.stopped
    assert "--allow-partial" in summary.stopped
    assert len(simulator.ledger) == 0
    assert summary.balance_before == 1_000 and summary.credits_needed == 3_000


async def test_allow_partial_sends_what_the_credit_covers_then_resumes_after_a_top_up(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 1_500)
    simulator.faults.credit = 1_001
    settings: dict[str, Any] = {"text": "x" * 200, "allow_partial": True, "batch_size": 200}
    first = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", **settings))
    assert first.exit_code == 2 and first.credit_limit == 500
    assert first.accepted == 500 and len(simulator.ledger) == 500
    assert first.balance_after == 1
    simulator.faults.credit = 10_000
    second = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", **settings))
    assert second.exit_code == 0 and second.credit_limit is None
    assert second.balance_before == 10_000 and second.balance_after == 10_000 - 2_000
    results = read_results(tmp_path / "in.results.csv")
    assert {r["to"] for r in results} == set(numbers)
    check_against_ledger(results, simulator)
