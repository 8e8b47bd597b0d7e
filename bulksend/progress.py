"""Progress for people: a live rich display on a terminal, plain periodic lines otherwise,
and the end-of-campaign summary table. Fed by :class:`~bulksend.campaign.Snapshot` events; owns no
campaign state. On a terminal the display is a drawn bar (:func:`bar_line`: percentage, rate,
ETA and the status counts beside it) above the table of figures; ``bulksend track`` draws the
same bar (:mod:`bulksend.track_view`)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from bulksend.campaign import CampaignSummary, Snapshot
from bulksend.deferral import describe_deferred

__all__ = [
    "PlainProgress",
    "RichProgress",
    "bar_line",
    "format_eta",
    "make_progress",
    "print_summary",
]


def format_eta(remaining: float | None) -> str:
    """Seconds left as ``<1s``, ``4m07s``, ``1h05m``; ``-`` when unknown."""
    if remaining is None or remaining < 0:
        return "-"
    if remaining < 1:
        return "<1s"
    minutes, seconds = divmod(int(remaining), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def bar_line(description: str, fraction: float | None, rate: str, eta: str, counts: str) -> Table:
    """One line: ``description [bar] 42.0% rate ETA 1m05s counts`` (``eta`` is shown as given:
    ``ETA 1m05s``). ``fraction`` None (the total is not known yet) draws a pulsing bar without a
    percentage."""
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1, min_width=10)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    done = 0.0 if fraction is None else max(0.0, min(1.0, fraction))
    grid.add_row(
        description,
        ProgressBar(total=1.0, completed=done, pulse=fraction is None),
        "" if fraction is None else f"{done * 100:5.1f}%",
        rate,
        eta,
        counts,
    )
    return grid


def _eta(snap: Snapshot) -> str:
    done = snap.fraction_done
    if done is None or done <= 0 or snap.done:
        return "-"
    return format_eta(snap.elapsed * (1 - done) / done)


class PlainProgress:
    """One log line every ``interval`` seconds (and a last one at the end), for logs and pipes."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0

    def __call__(self, snap: Snapshot) -> None:
        now = time.monotonic()
        if not snap.done and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(
            f"[bulksend] {snap.elapsed:7.1f}s read={snap.rows_read} sent={snap.sent} "
            f"accepted={snap.accepted} rejected={snap.rejected + snap.input_rejected} "
            f"unknown={snap.unknown} in_flight={snap.in_flight} rate={snap.rate:.0f}/s "
            f"eta={_eta(snap)}"
            + (f" deferred={snap.deferred}" if snap.deferred else "")
            + (f" waiting: the next window opens at {snap.next_window}" if snap.next_window else "")
            + "\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass


class RichProgress:
    """A live table on the terminal, refreshed from snapshots."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live = Live(console=self.console, refresh_per_second=4, transient=False)
        self._started = False

    def _render(self, snap: Snapshot) -> Group:
        counts = (
            f"[green]{snap.accepted:,} accepted[/] [red]{snap.rejected + snap.input_rejected:,} "
            f"rejected[/] [yellow]{snap.unknown:,} unknown[/]"
        )
        bar = bar_line(
            "send", snap.fraction_done, f"{snap.rate:,.0f} msg/s", f"ETA {_eta(snap)}", counts
        )
        return Group(bar, self._figures(snap))

    def _figures(self, snap: Snapshot) -> Table:
        table = Table.grid(padding=(0, 2))
        for _ in range(6):
            table.add_column(justify="right")
        pct = f"{snap.fraction_done * 100:5.1f}%" if snap.fraction_done is not None else ""
        table.add_row(
            "[bold]read[/]",
            f"{snap.rows_read:,}",
            "[bold]sent[/]",
            f"{snap.sent:,}",
            "[bold]rate[/]",
            f"{snap.rate:,.0f} msg/s",
        )
        table.add_row(
            "[green]accepted[/]",
            f"{snap.accepted:,}",
            "[red]rejected[/]",
            f"{snap.rejected:,} (+{snap.input_rejected:,} input)",
            "[bold]ETA[/]",
            f"{_eta(snap)} {pct}",
        )
        table.add_row(
            "[yellow]unknown[/]",
            f"{snap.unknown:,}",
            "in flight",
            f"{snap.in_flight}",
            "skipped (done)",
            f"{snap.skipped:,}",
        )
        if snap.deferred or snap.next_window:
            table.add_row(
                "[cyan]deferred[/]",
                f"{snap.deferred:,}",
                "next window",
                snap.next_window or "-",
                "",
                "",
            )
        return table

    def __call__(self, snap: Snapshot) -> None:
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(self._render(snap))

    def close(self) -> None:
        if self._started:
            self._live.stop()


def make_progress(mode: str, stream: TextIO | None = None) -> PlainProgress | RichProgress | None:
    """``on``/``auto`` on a TTY: rich; ``auto`` otherwise: plain lines; ``off``: nothing."""
    stream = stream or sys.stderr
    if mode == "off":
        return None
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)


_PROTOCOLS = {
    "sendmsg": "legacy API, sendmsg",
    "batch": "legacy API, batch interface (senditem)",
    "one": "One API",
}


def print_summary(summary: CampaignSummary, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(
        title="bulksend dry run" if summary.dry_run else "bulksend campaign", show_header=False
    )
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows: list[tuple[str, str]] = [
        ("input rows", f"{summary.rows:,}"),
        ("valid numbers", f"{summary.valid:,}"),
        ("rejected before sending", f"{summary.input_rejected:,}"),
    ]
    for reason, count in sorted(summary.input_rejected_by_reason.items(), key=lambda kv: -kv[1]):
        rows.append((f"  {reason}", f"{count:,}"))
    if summary.personalised:
        spread = (
            f"{summary.parts_min}"
            if summary.parts_min == summary.parts_max
            else f"{summary.parts_min}-{summary.parts_max}"
        )
        message = "personalised" + (f", {spread} part(s) a row" if summary.parts_max else "")
    else:
        message = f"{summary.encoding}, {summary.parts} part(s)"
    rows.append(("message", message))
    if summary.protocol:
        rows.append(("protocol", _PROTOCOLS.get(summary.protocol, summary.protocol)))
    for name, value in summary.options.items():
        shown = f"{len(str(value)) // 2} octets" if name in ("udh", "data") else str(value)
        rows.append((f"  {name.replace('_', '-')}", "yes" if value is True else shown))
    if summary.opt_out_lists:
        rows.append(("numbers in opt-out lists", f"{summary.opt_out_lists:,}"))
    if summary.balance_before is not None:
        rows.append(("credit before", f"{summary.balance_before:,.2f}"))
    if summary.credits_needed is not None:
        rows.append(("credits needed", f"{summary.credits_needed:,}"))
    if summary.dry_run:
        rows += [
            ("requests" if summary.protocol == "batch" else "batches", f"{summary.batches:,}"),
            ("credits (1 per part)", f"{summary.credits_estimate:,}"),
        ]
    else:
        rows += [
            ("accepted", f"{summary.accepted:,}"),
            ("rejected by the gateway", f"{summary.rejected:,}"),
        ]
        for code, count in sorted(summary.rejected_by_code.items()):
            # The One API's codes are plain numbers ("error 25"); the legacy API's read "ERR 105".
            label = f"error {int(code)}" if summary.protocol == "one" else f"ERR {code}"
            rows.append((f"  {label}", f"{count:,}"))
        rows += [
            ("unknown (maybe sent)", f"{summary.unknown:,}"),
            (
                "pending (not sent yet)",
                f"{summary.pending:,}" + ("" if summary.input_complete else " + rest of file"),
            ),
        ]
        if summary.resumed:
            rows.append(("done by earlier runs", f"{summary.previously_done:,}"))
        if summary.input_changes:
            rows.append(("input changed since last run", "yes (see the warning above)"))
            rows.append(("  results re-keyed to new rows", f"{summary.moved_rows:,}"))
            if summary.removed_rows:
                rows.append(
                    ("  numbers no longer in the file", f"{summary.removed_rows:,} (see removed)")
                )
                rows.append(("removed", summary.removed_path))
        if summary.balance_after is not None:
            rows.append(("credit after", f"{summary.balance_after:,.2f}"))
        if summary.recorded_opt_outs:
            rows.append(("opt-outs recorded (ERR 122)", f"{summary.recorded_opt_outs:,}"))
        rows += [
            ("requests", f"{summary.requests:,}"),
            ("throttled answers", f"{summary.throttled:,}"),
            ("elapsed", f"{summary.elapsed_seconds:.1f} s"),
            ("rate", f"{summary.messages_per_second:,.0f} msg/s"),
            ("results", summary.results_path),
            ("rejects", summary.rejects_path),
        ]
    if summary.window:
        rows.append(("send window", summary.window))
        if summary.deferred:
            rows.append(("deferred (window closed)", f"{summary.deferred:,}"))
            for opening, count in summary.deferred_by_opening.items():
                rows.append((f"  opens {opening}", f"{count:,}"))
        if summary.window_rejected:
            rows.append(("  no such time zone", f"{summary.window_rejected:,}"))
        rows.append(
            (
                f"default zone ({summary.default_timezone})",
                f"{summary.default_timezone_rows:,} rows",
            )
        )
    if summary.stopped:
        rows.append(("stopped", summary.stopped))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if summary.deferred:
        console.print(
            describe_deferred(
                summary.deferred, summary.deferred_by_opening, summary.next_window_opens
            )
            + ("" if summary.dry_run else " (rerun the same command then, or use --wait)")
        )
