"""``bulksend demo``: a sample file, the embedded simulator on a free loopback port, a campaign.

Needs no credentials and no network: the simulator listens on 127.0.0.1 with its documented demo
credentials, with realistic latency and a few numbers it refuses per recipient. The campaign asks
for every delivery callback (``callback=7``) and runs a receipt receiver on another loopback port
(``receipts_listen``), which the simulator's ``callback_url`` points at; once the callbacks have
drained, the delivery report (:mod:`bulksend.report`) is printed after the campaign summary.

A few recipients reply (the simulator's ``reply_rate``: about 30 replies, a mix of STOPs and
chatter), in the API's reply format, to the same receiver, which stores them in the replies file
and appends the numbers that opted out to ``optouts.txt`` (``bulksend receipts
--record-opt-outs``). The report lists them; then a follow-up campaign to the same sample, with
``--exclude optouts.txt``, texts everyone but them. The demo's receipts, replies and opt-out files
are started afresh on each run (the results are moved aside, as ``--restart`` does).

``api="one"`` runs the One API simulator instead (its demo key; JSON delivery callbacks to the same
receiver); ``personalised`` sends ``Hi #name#, ...`` filled from the sample's name column (through
the legacy batch interface, one request per row, or the One API's per-message content).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
from pathlib import Path
from typing import Any

from bulksend import aio
from bulksend.campaign import CampaignSummary, run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.inbox import replies_path_for
from bulksend.progress import make_progress, print_summary
from bulksend.receipts import ReceiptServer, receipts_path_for
from bulksend.report import build_report, print_report
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults, Simulator
from bulksend.simulator.one_api import DEFAULT_API_KEY, OneApiSimulator

__all__ = ["run_demo", "write_sample"]

DEMO_TEXT = "Hello from bulksend! Your order has shipped. Reply STOP to opt out."
DEMO_TEMPLATE = "Hi #name#, your order has shipped. Reply STOP to opt out."
OPT_OUTS_FILE = "optouts.txt"
REPLIES = 30
"""About this many recipients reply (at most 1 %)."""
BATCH_INTERFACE_RECIPIENTS = 2_000
"""The personalised legacy demo's default size: one request per row is ~400 rows/s at 32 x 80 ms."""


def write_sample(path: Path, recipients: int, seed: int = 7) -> None:
    """A CSV with a header, a name column, and ~1% invalid and ~1% duplicate numbers."""
    rng = random.Random(seed)
    prefixes = ("2782", "2783", "2784", "2772", "4477", "4479", "1202", "3161")
    lines = ["name,phone\n"]
    seen: list[str] = []
    for i in range(recipients):
        roll = rng.random()
        if roll < 0.005:
            number = rng.choice(["12345", "2.78212E+11", "=+27821234567", "not a number", ""])
        elif roll < 0.015 and seen:
            number = rng.choice(seen)
        else:
            prefix = rng.choice(prefixes)
            number = "+" + prefix + f"{rng.randrange(10**7):07d}"
            if len(seen) < 1000:
                seen.append(number)
        lines.append(f"Customer {i},{number}\n")
    path.write_text("".join(lines), encoding="utf-8")


async def _demo(
    *,
    recipients: int,
    directory: Path,
    progress: str,
    latency: float,
    jitter: float,
    concurrency: int,
    api: str = "legacy",
    personalised: bool = False,
) -> CampaignSummary:
    directory.mkdir(parents=True, exist_ok=True)
    sample = directory / f"recipients-{recipients}.csv"
    write_sample(sample, recipients)
    # An account with a real balance (five credits a row), so the credit pre-flight and the
    # balance before and after mean something.
    faults = Faults(
        latency=latency,
        jitter=jitter,
        reject_suffixes=("13", "666"),
        seed=7,
        credit=float(10 * recipients),  # two campaigns
        reply_rate=min(0.01, REPLIES / recipients),
    )
    receipts_port = _free_port()
    callback_url = f"http://127.0.0.1:{receipts_port}/"
    results = directory / f"recipients-{recipients}.results.csv"
    receipts = receipts_path_for(results)
    opt_outs = directory / OPT_OUTS_FILE
    for stale in (receipts, replies_path_for(receipts), opt_outs):
        stale.unlink(missing_ok=True)  # the demo's own files: each run starts afresh
    receiver = ReceiptServer(receipts, "127.0.0.1", receipts_port, opt_out_path=opt_outs)
    sim: Simulator | OneApiSimulator
    if api == "one":
        sim = OneApiSimulator(faults=faults, callback_url=callback_url, callback_statuses=2)
    else:
        sim = Simulator(
            user=DEFAULT_USER,
            password=DEFAULT_PASSWORD,
            api_id=DEFAULT_API_ID,
            faults=faults,
            callback_url=callback_url,
        )
    async with receiver, sim:
        print(
            f"{'One API ' if api == 'one' else ''}simulator listening on {sim.url} "
            f"(latency {latency * 1000:.0f} ms ± {jitter * 1000:.0f})"
        )
        print(f"sending to {sample} ({recipients:,} rows); delivery receipts follow the campaign")
        credentials: dict[str, Any] = (
            {"api": "one", "api_key": DEFAULT_API_KEY}
            if api == "one"
            else {"user": DEFAULT_USER, "api_id": DEFAULT_API_ID, "password": DEFAULT_PASSWORD}
        )
        settings = CampaignSettings(
            input_path=sample,
            text=DEMO_TEMPLATE if personalised else DEMO_TEXT,
            endpoint=sim.url,
            **credentials,
            concurrency=concurrency,
            restart=True,
            # The demo's own campaign registry: a showcase against a local simulator is not a
            # campaign the user's registry should remember.
            state_dir=directory / "state",
            progress=progress,  # type: ignore[arg-type]
            # Final statuses only (delivered / failed): one callback per message keeps the
            # demo short; `--callback 7` adds the intermediate 003 too. (The One API's
            # callbacks are the integration's: the simulator pushes final statuses.)
            callback=2 if api == "legacy" else 0,
            out=results,
        )
        reporter = make_progress(progress)
        try:
            summary = await run_campaign_async(settings, on_progress=reporter)
        finally:
            if reporter is not None:
                reporter.close()
        print(f"the simulator's ledger holds {len(sim.ledger):,} accepted messages")
        if sim.callbacks is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.callbacks.drained(), DRAIN_SECONDS)
            stats = sim.callbacks.stats
            print(
                f"delivery callbacks: {stats.sent:,} pushed, {stats.retries:,} retried, "
                f"{stats.gave_up:,} given up, {sim.callbacks.outstanding:,} outstanding; "
                f"{stats.replies:,} recipients replied"
            )
        print(
            f"replies: {receiver.stats.replies:,} in {receiver.replies_path}; "
            f"{receiver.stats.opt_outs:,} opted out into {opt_outs}"
        )
        if summary.exit_code == 0:
            await _follow_up(settings, opt_outs, sim, directory)
    return summary


async def _follow_up(
    first: CampaignSettings, opt_outs: Path, sim: Simulator | OneApiSimulator, directory: Path
) -> None:
    """A second campaign to the same sample that excludes the numbers which replied STOP."""
    before = len(sim.ledger)
    sim.faults.reply_rate = 0.0  # the replies shown are the first campaign's
    settings = dataclasses.replace(
        first,
        text="Second notice: your order arrives tomorrow.",
        out=directory / "followup.results.csv",
        exclude=(opt_outs,),
        callback=0,
        progress="off",
    )
    summary = await run_campaign_async(settings)
    print(
        f"follow-up campaign with --exclude {opt_outs}: {summary.accepted:,} sent, "
        f"{summary.opted_out:,} opted-out rows not texted "
        f"({len(sim.ledger) - before:,} new messages in the ledger) -> {summary.results_path}"
    )


DRAIN_SECONDS = 30.0
"""How long the demo waits for the last callbacks and replies before reporting."""


def _free_port() -> int:
    """A loopback port free right now (for the receiver, known before the simulator starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_demo(
    *,
    recipients: int | None = None,
    directory: Path = Path("bulksend-demo"),
    progress: str = "auto",
    latency: float = 0.08,
    jitter: float = 0.04,
    concurrency: int = 32,
    api: str = "legacy",
    personalised: bool = False,
) -> int:
    if recipients is None:
        batch_interface = personalised and api == "legacy"
        recipients = BATCH_INTERFACE_RECIPIENTS if batch_interface else 100_000
    coro = _demo(
        api=api,
        personalised=personalised,
        recipients=recipients,
        directory=directory,
        progress=progress,
        latency=latency,
        jitter=jitter,
        concurrency=concurrency,
    )
    summary = aio.run(coro)
    print_summary(summary)
    receipts = receipts_path_for(summary.results_path)
    print(f"results: {summary.results_path}\nrejects: {summary.rejects_path}")
    print(f"receipts: {receipts}")
    if receipts.exists():
        print_report(build_report(summary.results_path, receipts))
    return summary.exit_code
