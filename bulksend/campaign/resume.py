"""Taking up where earlier runs stopped: the registry asked, the journal opened, a changed input
followed.

:func:`resumed` is the journal's life in one run. Before anything is sent it

1. hashes the input (:func:`~bulksend.journal.input_identity`, with what decides which rows it
   holds) and asks the campaign registry (:mod:`bulksend.registry`) whether the same list and
   message already went out under another results file (refused, exit 3, unless ``--again``),
   recording this run there; then opens the journal under the campaign's fingerprint: an empty
   one, or the state of earlier runs (rows done, batches that were in flight and are now recorded
   ``unknown``);
2. when the journal was made from another input, finds the rows already handled in the file as it
   is now (:func:`follow_changed_input`, see the README, "Editing the input"): with dedupe by
   number, re-keying results to the row their number stands on now and moving away those of
   numbers no longer in the file; without it, row by row, refusing (nothing sent) when a handled
   row holds another number now;
3. takes the earlier runs' counts into the tally and the summary.

After the pipeline it closes the journal; an input edited while the run read it is forgotten, so
the next run checks it row by row whatever its digest says then. The registry records what the
run left (or, when it never got to send, is put back as it was).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from bulksend.campaign.control import EXIT_OK, RunControl
from bulksend.campaign.plan import Plan
from bulksend.campaign.summary import CampaignSummary, Tally
from bulksend.errors import InputError
from bulksend.journal import InputIdentity, Journal, ResumeState, input_identity
from bulksend.journal.checks import holds_results
from bulksend.receipts import receipts_path_for
from bulksend.registry import Admission, Registry, RegistryUnavailable, campaign_identity

__all__ = ["follow_changed_input", "resumed"]

log = logging.getLogger("bulksend.campaign")


@contextlib.asynccontextmanager
async def resumed(
    plan: Plan, control: RunControl, summary: CampaignSummary, tally: Tally
) -> AsyncIterator[tuple[Journal, ResumeState]]:
    """The campaign's journal, open and matched to the input, with what earlier runs did."""
    s = plan.settings
    identity = await asyncio.to_thread(input_identity, s.input_path, plan.reading())
    admission = _admit(plan, identity)
    journal = Journal(s.results_path, fsync_interval=s.fsync_interval)
    control.journal = journal
    sending = False
    try:
        state = journal.open(
            plan.fingerprint(),
            describe={
                "input": identity.path,
                "encoding": plan.shape.encoding.value,
                "parts": plan.shape.parts,
                "sender": s.sender or "",
                "options": plan.message_options(),
            },
            restart=s.restart,
            resend_unknown=s.resend_unknown,
            receipts_path=receipts_path_for(s.results_path),
            input_identity=identity,
        )
        if state.recovered_unknown:
            log.warning(
                "%d rows were in flight when a previous run stopped; recorded as unknown "
                "(use --resend-unknown on a later run to send them again)",
                state.recovered_unknown,
            )
        if state.input_changes:
            await follow_changed_input(plan, journal, identity, state.input_changes, summary)
        _take_over(state, summary, tally)
        sending = True
        yield journal, state
    finally:
        if admission is not None:
            _settle_admission(plan, admission, control, tally, sending)
        if _changed_since(identity):
            # Edited while this run read it: the rows sent may come from either version, so
            # the next run must check them whatever the digest says then.
            journal.forget_input("the input file changed while a run was reading it")
        journal.close()


def _admit(plan: Plan, identity: InputIdentity) -> Admission | None:
    """Ask the campaign registry (the same list and message under another results file is
    refused) and record this run; ``None`` without a registry."""
    s = plan.settings
    if s.state_dir is None:
        return None
    who = campaign_identity(
        input_sha256=identity.sha256,
        column=s.column,
        message=plan.fingerprint(),
        sender=s.sender,
        api=s.api,
        endpoint=s.endpoint,
        user=s.user,
        api_id=s.api_id,
        api_key=s.api_key,
    )
    results = Path(s.results_path)
    admission = Registry(s.state_dir).admit(
        who,
        results=str(results),
        input_path=str(s.input_path),
        sender=s.sender or "",
        again=s.again,
        # The results file already holds this campaign: a resume, whatever the registry knows.
        resuming=not s.restart
        and holds_results(results)
        and results.with_name(results.name + ".journal").exists(),
    )
    if admission.warning:
        log.warning("%s", admission.warning)
    for earlier in admission.repeats:
        log.warning(
            "--again: this list and message already went out with results in %s (%s); "
            "sending it again as asked",
            earlier.results,
            earlier.holds(),
        )
    return admission


def _settle_admission(
    plan: Plan, admission: Admission, control: RunControl, tally: Tally, sending: bool
) -> None:
    """After the run: what it left, for later runs; or, when it never got to send, the
    registry as it was."""
    state_dir = plan.settings.state_dir
    if state_dir is None or not admission.recorded:
        return
    registry = Registry(state_dir)
    try:
        if not sending:
            registry.withdraw(admission)
            return
        counts = {k: tally.counts[k] for k in ("accepted", "rejected", "unknown")}
        finished = control.exit_code == EXIT_OK and not control.reason
        registry.finish(admission.entry, state="finished" if finished else "stopped", counts=counts)
    except RegistryUnavailable as exc:
        log.warning("%s; this run's outcome is not recorded there", exc)


def _take_over(state: ResumeState, summary: CampaignSummary, tally: Tally) -> None:
    """What earlier runs recorded, into this run's counts."""
    summary.resumed = state.resumed
    summary.previously_done = len(state.done) - state.recovered_unknown
    summary.recovered_unknown = state.recovered_unknown
    tally.counts.update(state.counts)
    summary.reconciled = state.reconciled
    if state.reconciled or state.resent_unknown:
        log.warning(
            "--resend-unknown: %d unknown rows have a delivery receipt and are recorded "
            "accepted; %d will be sent again",
            state.reconciled,
            state.resent_unknown,
        )


async def follow_changed_input(
    plan: Plan,
    journal: Journal,
    identity: InputIdentity,
    changes: list[str],
    summary: CampaignSummary,
) -> None:
    """The input is not what the journal was made from: before anything is sent, find the
    rows already handled in the file as it is now (see the README, "Editing the input")."""
    s = plan.settings
    summary.input_changes = list(changes)
    log.warning(
        "the input changed since the last run of this campaign: %s; checking it against "
        "the rows already handled before sending anything",
        "; ".join(changes),
    )
    reader = plan.reader(opt_outs=False)
    try:
        if s.dedupe:
            remap = journal.number_remap()
            async for block in reader.blocks():
                remap.see(block.rows, block.msisdns)
            result = journal.apply_remap(remap, identity)
            summary.moved_rows = result.moved
            summary.removed_rows = result.removed
            if result.removed:
                summary.removed_path = result.removed_path
            log.warning(
                "resuming by number: %d numbers already handled are skipped, not sent again "
                "(%d of them stand on other rows now; their results were re-keyed to those "
                "rows); %d handled numbers are no longer in the file (their results were "
                "moved to %s); every other number is sent",
                result.kept,
                result.moved,
                result.removed,
                result.removed_path,
            )
            return
        check = journal.row_check()
        last_row = 0
        async for block in reader.blocks():
            check.see(block.rows, block.msisdns, ((r.row, r.reason) for r in block.rejects))
            last_row = block.last_row
        difference = check.finish(last_row)
    finally:
        reader.close()
    if difference is not None:
        row, then, now = difference
        raise InputError(
            f"this row held {then} when the campaign handled it and now holds {now} "
            f"({'; '.join(changes)}). Without dedupe a changed file cannot be matched by "
            "number, so nothing was sent. Choose: put back the file the campaign started "
            "with; or rerun without --no-dedupe to resume by number (numbers already handled "
            "are skipped, new ones are sent); or --restart to start a new campaign (which "
            "texts every row again)",
            path=str(s.input_path),
            row=row,
        )
    journal.accept_input(identity)
    log.warning(
        "every row this campaign already handled still holds the same number "
        "(%d rows checked): resuming by row",
        check.handled,
    )


def _changed_since(identity: InputIdentity) -> bool:
    try:
        st = os.stat(identity.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (identity.size, identity.mtime_ns)
