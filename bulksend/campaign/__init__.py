"""One campaign: a recipient file and one message (or a ``#field#`` template), sent and recorded.

This package is one room per stage, read top to bottom; the entry point only sequences them:

1. **lock**: one runner per campaign (:mod:`bulksend.lock`), from before its first write to its
   end (the rejects, the journal, the receipts file, the metrics port);
2. **plan** (:mod:`~bulksend.campaign.plan`): the settings become what is sent: the message's
   shape, template and options, its identity, the protocol;
3. **preflight** (:mod:`~bulksend.campaign.preflight`): the dry run; the credit check and the
   login, which run in the pipeline's connection pool before the first batch leaves;
4. **resume** (:mod:`~bulksend.campaign.resume`): the journal opened and what earlier runs did
   taken over; a changed input matched to the rows already handled, before anything is sent;
5. **pipeline** (:mod:`~bulksend.campaign.pipeline`): producer -> batches -> senders -> recording;
6. **summary** (:mod:`~bulksend.campaign.summary`): the counters, the snapshots, the report.

:mod:`~bulksend.campaign.control` (stop, abort, storage failure, exit codes, signals) is the floor
every room reports to. Imports point one way: control <- summary <- plan <- preflight <- resume
<- pipeline <- this module; a room never imports the one that sequences it, and the settings go
down once, inside the :class:`~bulksend.campaign.plan.Plan`.

The public API: :func:`run_campaign` / :func:`run_campaign_async` return a
:class:`CampaignSummary`; :class:`Campaign` is the same run as an object (its :attr:`metrics`
server, :meth:`Campaign.snapshot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from bulksend import aio
from bulksend.campaign.control import (
    EXIT_FATAL,
    EXIT_INPUT,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_STORAGE,
    RunControl,
)
from bulksend.campaign.pipeline import Pipeline
from bulksend.campaign.plan import Plan
from bulksend.campaign.preflight import dry_run
from bulksend.campaign.resume import resumed
from bulksend.campaign.summary import CampaignSummary, Snapshot, Tally, count_window, finish
from bulksend.campaign.waiting import next_opening, wait_for_window
from bulksend.client import Gateway
from bulksend.config import CampaignSettings
from bulksend.deferral import write_record
from bulksend.errors import GatewayError, InputError, ProtocolError
from bulksend.lock import FileLock
from bulksend.metrics import MetricsServer, campaign_metrics, serve_metrics
from bulksend.reader import InlineReader
from bulksend.receipts import collect_receipts
from bulksend.replies import OptOutKeywords
from bulksend.wire import WireProtocol

log = logging.getLogger("bulksend.campaign")

__all__ = [
    "EXIT_FATAL",
    "EXIT_INPUT",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "EXIT_STORAGE",
    "Campaign",
    "CampaignSummary",
    "Snapshot",
    "run_campaign",
    "run_campaign_async",
]


class Campaign:
    """One run of a campaign. Build it, ``await run()``, read the summary."""

    def __init__(
        self,
        settings: CampaignSettings,
        *,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.plan = Plan(settings)
        self.summary = self.plan.new_summary()
        self.tally = Tally(InlineReader(self.plan.source()))
        self.control = RunControl()
        self.pipeline: Pipeline | None = None
        self.metrics: MetricsServer | None = None

    @property
    def gateway(self) -> Gateway | None:
        """The gateway once sending has begun (the metrics read its flow control)."""
        return self.pipeline.gateway if self.pipeline is not None else None

    def snapshot(self, done: bool = False) -> Snapshot:
        return self.tally.snapshot(done)

    def stop(self, reason: str, exit_code: int) -> None:
        """Stop reading and sending new batches; in-flight batches finish (see
        :meth:`~bulksend.campaign.control.RunControl.stop`)."""
        self.control.stop(reason, exit_code)

    async def run(self) -> CampaignSummary:
        s = self.settings
        plan, control = self.plan, self.control
        self.tally.start(s.input_path)
        if s.exclude:
            await plan.load_opt_outs(self.summary)
            self.tally.reader = InlineReader(plan.source())
        if s.dry_run:
            if plan.protocol_name() == "batch":
                plan.checked_wire()  # the batch interface's own checks apply to a dry run too
            await dry_run(plan, self.tally.reader, self.summary)
            return self.finish()
        # The protocol's own checks (a field the batch interface cannot carry, the One API key's
        # form) come before anything is written.
        wire = plan.checked_wire()
        parent = Path(s.results_path).parent
        if not parent.is_dir():
            raise InputError(f"the output directory {parent} does not exist")
        # One runner per campaign, before anything is written or bound (rejects, journal,
        # receipts, the metrics port).
        lock = FileLock(s.results_path, "campaign").acquire()
        try:
            registry, request_seconds = campaign_metrics(self) if s.metrics_listen else (None, None)
            async with (
                serve_metrics(s.metrics_listen, registry) as self.metrics,
                collect_receipts(
                    s.receipts_listen,
                    s.results_path,
                    on_storage_error=control.fail_storage,
                    token=s.receipts_token,
                    basic_auth=s.receipts_basic_auth,
                    opt_out_path=s.record_opt_outs,
                    keywords=None
                    if s.opt_out_keywords is None
                    else OptOutKeywords(s.opt_out_keywords),
                ),
            ):
                await self._send(wire, None if request_seconds is None else request_seconds.observe)
                summary = self.finish()  # before the receiver lingers for late receipts
                self._keep_window_record()
                if s.check_balance and summary.balance_before is not None:
                    # Reporting, after the campaign's clock stopped.
                    with contextlib.suppress(GatewayError, ProtocolError):
                        async with plan.account() as account:
                            summary.balance_after = await account.balance()
        finally:
            lock.release()
        if control.storage_error is not None and summary.exit_code != EXIT_STORAGE:
            # The receipts file failed while the receiver lingered after the campaign.
            summary.exit_code = EXIT_STORAGE
            summary.stopped = str(control.storage_error)
        return summary

    async def _send(self, wire: WireProtocol, on_request: Callable[[float], None] | None) -> None:
        async with resumed(self.plan, self.control, self.summary, self.tally) as (journal, state):
            self.pipeline = Pipeline(
                self.plan,
                self.control,
                self.tally,
                self.summary,
                on_progress=self.on_progress,
                progress_interval=self.progress_interval,
            )
            await self.pipeline.run(journal, state.done, wire, on_request)

    def finish(self) -> CampaignSummary:
        """The summary as it stands: the counts, why the run stopped, its exit code."""
        count_window(self.summary, self.plan.quiet)
        return finish(self.summary, self.tally, self.control)

    def _keep_window_record(self) -> None:
        """What the send window deferred, beside the results for ``bulksend status``."""
        quiet = self.plan.quiet
        if quiet is None:
            return
        try:
            write_record(self.settings.results_path, quiet.record())
        except OSError as exc:  # only `status` reads it: the run itself is sound
            log.warning("could not keep the send window's record: %s", exc)


async def run_campaign_async(
    settings: CampaignSettings,
    *,
    on_progress: Callable[[Snapshot], None] | None = None,
    progress_interval: float = 0.5,
) -> CampaignSummary:
    """Run a campaign on the current event loop and return its summary.

    With a send window and ``settings.wait``, a run that deferred rows waits (on
    ``settings.clock``, holding the campaign's lock) until the next group's window opens, then
    resumes, until nothing is deferred but rows whose window never opens; interrupted while it
    waits, it returns with exit code 130 or 143 (rerun to resume).

    Raises :class:`~bulksend.errors.InputError` / :class:`~bulksend.errors.ConfigError` for inputs
    that cannot be used, :class:`~bulksend.errors.CampaignLocked` when another run holds the
    campaign (nothing sent or written), and :class:`~bulksend.errors.StorageError` when an output
    file cannot be created before the first request. Gateway trouble, and a storage failure once
    sending has begun, are reported in the summary (``exit_code`` 2 or 4, ``stopped``).
    """
    while True:
        campaign = Campaign(settings, on_progress=on_progress, progress_interval=progress_interval)
        try:
            summary = await campaign.run()
        except asyncio.CancelledError:
            if campaign.control.interrupted:
                return campaign.finish()
            raise
        opening = next_opening(settings, summary)
        if opening is None or not await wait_for_window(settings, summary, opening, on_progress):
            return summary
        settings = dataclasses.replace(settings, restart=False)  # the next pass resumes


def run_campaign(
    settings: CampaignSettings, *, on_progress: Callable[[Snapshot], None] | None = None
) -> CampaignSummary:
    """Run a campaign to the end on a fresh event loop (uvloop where available)."""
    return aio.run(run_campaign_async(settings, on_progress=on_progress))
