"""Replies and STOP end to end: a real simulator (each API) pushes its recipients' replies to a
standing receiver, the STOPs land in the opt-out list, the report lists them, and the next
campaign excludes them."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from bulksend import run_campaign_async
from bulksend.inbox import replies_path_for
from bulksend.receipts import ReceiptServer
from bulksend.report import build_report
from bulksend.simulator import Faults
from tests.e2e.protocols import Wire
from tests.e2e.support import run_bulksend


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("wire", [Wire("sendmsg"), Wire("one")], ids=str)
async def test_stop_replies_are_recorded_reported_and_excluded_next_time(
    tmp_path: Path, wire: Wire
) -> None:
    numbers = wire.write_input(tmp_path / "first.csv", 400, seed=18)
    receipts = tmp_path / "campaign.receipts.csv"
    opt_outs = tmp_path / "optouts.txt"
    faults = Faults(
        seed=18,
        delivery_delay=0.01,
        delivery_failure_rate=0.0,
        reply_rate=0.25,
        reply_texts=("STOP", "Thanks!", "Stopwatch?", "opt-out please"),
    )
    async with ReceiptServer(receipts, opt_out_path=opt_outs) as receiver:
        async with wire.simulator(faults, callback_url=receiver.url) as sim:
            first = wire.settings(
                sim,
                tmp_path / "first.csv",
                callback=7 if wire.api == "legacy" else 0,
                progress="off",
            )
            summary = await run_campaign_async(first)
            assert summary.exit_code == 0 and summary.accepted == len(numbers)
            assert sim.callbacks is not None
            await asyncio.wait_for(sim.callbacks.drained(), 20)
            pushed = sim.callbacks.stats.replies
            assert sim.callbacks.stats.gave_up == 0 and sim.callbacks.stats.refused == 0
        assert receiver.stats.invalid == 0
        assert receiver.stats.replies == pushed > 40

    replies = read_csv(replies_path_for(receipts))
    assert len(replies) == pushed
    assert {r["from"] for r in replies} <= set(numbers)
    stopped = sorted({r["from"] for r in replies if r["opt_out"] == "1"})
    assert stopped, "some recipients replied STOP"
    assert all(r["text"] in ("STOP", "opt-out please") for r in replies if r["opt_out"] == "1")
    assert all(r["opt_out"] == "0" for r in replies if r["text"] in ("Thanks!", "Stopwatch?"))
    assert sorted(opt_outs.read_text().split()) == sorted(f"+{n}" for n in stopped)

    report = build_report(first.results_path, receipts)
    assert report.replies == report.replies_from_recipients == pushed
    assert report.opt_outs == stopped and report.opt_outs_elsewhere == 0
    page = tmp_path / "report.html"
    shown = run_bulksend(
        "report", str(first.results_path), "--receipts", str(receipts), "--html", str(page)
    )
    assert shown.returncode == 0, shown.stderr
    assert f"opted out by reply: +{stopped[0]}" in " ".join(shown.stdout.split())
    assert f'id="fig-opt-outs" data-value="{len(stopped)}"' in page.read_text()

    # The next campaign, to the same audience, excludes them.
    async with wire.simulator(Faults(seed=19, delivery_failure_rate=0.0)) as sim:
        second = wire.settings(
            sim,
            tmp_path / "first.csv",
            out=tmp_path / "second.results.csv",
            exclude=(opt_outs,),
            progress="off",
        )
        summary = await run_campaign_async(second)
        texted = {entry.to for entry in sim.ledger}
    assert summary.exit_code == 0
    assert summary.opted_out == len(stopped)
    assert summary.accepted == len(numbers) - len(stopped)
    assert not texted & set(stopped)
