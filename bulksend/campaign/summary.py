"""What a run counts and what it reports: the counters, the snapshots, the summary.

* :class:`Tally` holds the run's counters. The producer and the senders bump them on the hot path
  (plain attributes: one event loop, no lock); the reader's own stats are the row counters.
* :meth:`Tally.snapshot` is what progress displays and the Prometheus collector read
  (:class:`Snapshot`): a copy at one moment, never a live view.
* :class:`CampaignSummary` is the report, for people (the CLI's table) and machines
  (``--summary-json``). Each room writes its part into it as it goes (the plan its message, the
  pre-flight the balance, the resume what was done before, the pipeline the batches);
  :func:`finish` adds the counts and decides the exit code: a run that left valid rows pending
  without another reason ends :data:`~bulksend.campaign.control.EXIT_FATAL`. Rows a send window
  deferred (:func:`count_window`) are not pending in that sense: they wait for their window, and
  a run that deferred some ends 0.

Of the campaign's rooms this imports only :mod:`~bulksend.campaign.control`; the others import it.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from bulksend.campaign.control import EXIT_FATAL, EXIT_OK, RunControl
from bulksend.deferral import iso_minute
from bulksend.errors import redact
from bulksend.reader import InlineReader, ProcessReader
from bulksend.source import SourceStats

if TYPE_CHECKING:
    from bulksend.quiet import QuietHours

__all__ = ["CampaignSummary", "Snapshot", "Tally", "count_input", "count_window", "finish"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters at one moment, for progress displays."""

    elapsed: float
    rows_read: int
    valid: int
    input_rejected: int
    skipped: int
    sent: int
    accepted: int
    rejected: int
    unknown: int
    in_flight: int
    rate: float
    fraction_done: float | None = None  # rows sent (or done before) / estimated total
    done: bool = False
    deferred: int = 0  # rows outside their send window so far (not sent, still pending)
    next_window: str = ""  # when the next deferred group may go (UTC), while --wait waits


@dataclass
class CampaignSummary:
    """What happened, for people (the CLI's table) and machines (``--summary-json``)."""

    input_path: str
    results_path: str
    rejects_path: str
    dry_run: bool = False
    encoding: str = ""
    parts: int = 0
    rows: int = 0
    valid: int = 0
    duplicates: int = 0
    input_rejected: int = 0
    input_rejected_by_reason: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    pending: int = 0  # valid rows read but not recorded; see input_complete
    input_complete: bool = True  # False: stopped before the end of the file (more rows pending)
    previously_done: int = 0
    input_changes: list[str] = field(default_factory=list)
    moved_rows: int = 0  # results re-keyed to the row their number is on in the changed input
    removed_rows: int = 0  # results of numbers no longer in the input (see removed_path)
    removed_path: str = ""
    recovered_unknown: int = 0
    reconciled: int = 0
    resumed: bool = False
    opted_out: int = 0  # rows refused because an --exclude list holds their number
    opt_out_lists: int = 0  # numbers in the --exclude lists
    opt_out_load_seconds: float = 0.0
    recorded_opt_outs: int = 0  # ERR 122 numbers appended to --record-opt-outs
    options: dict[str, object] = field(default_factory=dict)
    balance_before: float | None = None
    balance_after: float | None = None
    credits_needed: int | None = None  # counted when the balance might not cover the campaign
    credit_limit: int | None = None  # --allow-partial: messages the credit covers
    batches: int = 0
    requests: int = 0
    throttled: int = 0
    credits_estimate: int = 0
    personalised: bool = False  # a #field# template: each row its own text (parts per row below)
    parts_min: int = 0  # personalised: the fewest and most parts of one row's message
    parts_max: int = 0
    protocol: str = ""  # the wire protocol that sent it: sendmsg, batch, one
    elapsed_seconds: float = 0.0
    messages_per_second: float = 0.0
    # The journal's group commit (write-ahead): fdatasync rounds this run, and how the senders'
    # waits for them ended ("none": already durable; "yield", "in place", "on the loop").
    journal_flushes: int = 0
    flush_waits: dict[str, int] = field(default_factory=dict)
    # The send window (--send-window): rows outside it are deferred, not sent and not recorded.
    window: str = ""  # e.g. "08:00-21:00 Mon,Tue,Wed,Thu,Fri"; empty without one
    deferred: int = 0  # valid rows outside their window (pending for a later run or --wait)
    deferred_by_opening: dict[str, int] = field(default_factory=dict)  # "2026-12-07T13:00Z": n
    next_window_opens: str = ""  # the first of those openings (UTC); empty when none will
    default_timezone: str = ""  # the zone of numbers the numbering plan cannot place
    default_timezone_rows: int = 0  # rows it applied to
    window_rejected: int = 0  # rows whose --timezone-column held no zone name (in the rejects)
    stopped: str = ""
    exit_code: int = EXIT_OK

    def to_json(self) -> str:
        return redact(json.dumps(asdict(self), indent=2, sort_keys=True))


@dataclass(slots=True)
class Tally:
    """The run's counters. ``reader`` is the one reading the input now (its stats count the rows);
    ``counts`` holds the outcomes by kind (``accepted``, ``rejected``, ``unknown``), earlier runs'
    included; ``sent`` the rows this run recorded."""

    reader: InlineReader | ProcessReader
    started: float = 0.0
    bytes_total: int = 0  # the input's size, for the fraction done
    sent: int = 0
    in_flight: int = 0
    skipped: int = 0  # rows an earlier run already handled
    deferred: int = 0  # rows outside their send window (so far)
    counts: Counter[str] = field(default_factory=Counter)
    rejected_codes: Counter[str] = field(default_factory=Counter)

    def start(self, input_path: str | os.PathLike[str]) -> None:
        """The run's clock starts now."""
        self.started = time.monotonic()
        try:
            self.bytes_total = os.stat(input_path).st_size
        except OSError:
            self.bytes_total = 0

    def snapshot(self, done: bool = False) -> Snapshot:
        elapsed = max(1e-9, time.monotonic() - self.started)
        stats = self.reader.stats
        rejected_input = sum(stats.rejected.values()) + stats.duplicates
        fraction = min(1.0, self.reader.bytes_read / self.bytes_total) if self.bytes_total else 0.0
        done_fraction = None
        if fraction:
            # The reader runs ahead of the senders: estimate the total from what it has seen.
            expected = stats.valid / fraction
            if expected > 0:
                done_fraction = min(1.0, (self.sent + self.skipped) / expected)
        return Snapshot(
            elapsed=elapsed,
            rows_read=stats.rows,
            valid=stats.valid,
            input_rejected=rejected_input,
            skipped=self.skipped,
            sent=self.sent,
            accepted=self.counts["accepted"],
            rejected=self.counts["rejected"],
            unknown=self.counts["unknown"],
            in_flight=self.in_flight,
            rate=self.sent / elapsed,
            fraction_done=done_fraction,
            done=done,
            deferred=self.deferred,
        )


def count_input(summary: CampaignSummary, stats: SourceStats) -> None:
    """The input's counts into ``summary``: rows, valid, rejected by reason, opted out, and the
    credits estimate (the summary's ``parts`` each, or each row's own for a personalised text)."""
    summary.rows = stats.rows
    summary.valid = stats.valid
    summary.duplicates = stats.duplicates
    by_reason = dict(stats.rejected)
    if stats.duplicates:
        by_reason["duplicate"] = stats.duplicates
    summary.input_rejected = sum(stats.rejected.values()) + stats.duplicates
    summary.input_rejected_by_reason = by_reason
    summary.opted_out = sum(
        count for reason, count in stats.rejected.items() if reason.startswith("opted out")
    )
    if not summary.personalised:
        summary.credits_estimate = stats.valid * summary.parts
    else:
        summary.credits_estimate = stats.parts.credits
        summary.parts_min = stats.parts.min_parts
        summary.parts_max = stats.parts.max_parts


def count_window(summary: CampaignSummary, quiet: QuietHours | None) -> None:
    """What the send window deferred, into ``summary`` (nothing without a window)."""
    if quiet is None:
        return
    deferrals = quiet.deferrals
    opening = deferrals.next_opening
    summary.deferred = len(deferrals)
    summary.deferred_by_opening = deferrals.by_opening()
    summary.next_window_opens = "" if opening is None else iso_minute(opening)
    summary.default_timezone_rows = quiet.gate.defaulted
    summary.window_rejected = quiet.zone_rejected


def finish(summary: CampaignSummary, tally: Tally, control: RunControl) -> CampaignSummary:
    """The final summary: the counts, the rate, why the run stopped and its exit code."""
    count_input(summary, tally.reader.stats)
    if not summary.dry_run:
        summary.accepted = tally.counts["accepted"]
        summary.rejected = tally.counts["rejected"]
        summary.unknown = tally.counts["unknown"]
        summary.rejected_by_code = dict(tally.rejected_codes)
        summary.pending = max(
            0,
            summary.valid
            - summary.accepted
            - summary.rejected
            - summary.unknown
            - summary.deferred
            - summary.window_rejected,
        )
    elapsed = time.monotonic() - tally.started
    summary.elapsed_seconds = round(elapsed, 3)
    summary.messages_per_second = round(tally.sent / elapsed, 1) if elapsed > 0 else 0.0
    summary.stopped = control.reason
    summary.exit_code = control.exit_code
    if summary.exit_code == EXIT_OK and summary.pending and not summary.dry_run:
        summary.exit_code = EXIT_FATAL
        summary.stopped = summary.stopped or f"{summary.pending} rows left pending"
    return summary
