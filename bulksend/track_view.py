"""``bulksend track`` for people: the drawn bar on a terminal, plain lines otherwise, the summary.

Fed by :class:`~bulksend.track.TrackSnapshot` events; owns no state of the run. The bar is
:func:`bulksend.progress.bar_line`, the one ``send`` draws.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from bulksend.progress import bar_line, format_eta
from bulksend.receipts import STATUS_TEXT
from bulksend.track import TrackSnapshot, TrackSummary

__all__ = ["PlainTrackProgress", "RichTrackProgress", "make_track_progress", "print_track_summary"]


def _eta(snap: TrackSnapshot) -> str:
    if snap.waiting:
        return f"next round in {format_eta(snap.waiting)}"
    left = snap.to_ask - snap.asked
    if snap.done or not snap.rate or left <= 0:
        return "ETA -"
    return f"ETA {format_eta(left / snap.rate)}"


class PlainTrackProgress:
    """One line every ``interval`` seconds, and a last one at the end (logs, pipes)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last = 0.0

    def __call__(self, snap: TrackSnapshot) -> None:
        now = time.monotonic()
        if not snap.done and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write(
            f"[bulksend track] {snap.elapsed:7.1f}s round={snap.round} "
            f"asked={snap.asked}/{snap.to_ask} delivered={snap.delivered} failed={snap.failed} "
            f"not_final={snap.not_final} unknown_to_gateway={snap.gone} "
            f"unanswered={snap.unanswered} throttled={snap.throttled} rate={snap.rate:.1f}/s "
            f"eta={_eta(snap).removeprefix('ETA ').replace(' ', '_')}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass


class RichTrackProgress:
    """The drawn bar, refreshed from snapshots."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live = Live(console=self.console, refresh_per_second=4, transient=False)
        self._started = False

    def __call__(self, snap: TrackSnapshot) -> None:
        if not self._started:
            self._live.start()
            self._started = True
        counts = (
            f"[green]{snap.delivered:,} delivered[/] [red]{snap.failed:,} failed[/] "
            f"[yellow]{snap.not_final:,} not final[/]"
            + (f" [dim]{snap.gone:,} unknown to gateway[/]" if snap.gone else "")
            + (f" [magenta]{snap.throttled:,} throttled[/]" if snap.throttled else "")
        )
        self._live.update(
            bar_line(
                f"track round {snap.round}",
                snap.fraction_done if snap.to_ask else None,
                f"{snap.rate:,.1f} q/s",
                _eta(snap),
                counts,
            )
        )

    def close(self) -> None:
        if self._started:
            self._live.stop()


def make_track_progress(
    mode: str, stream: TextIO | None = None
) -> PlainTrackProgress | RichTrackProgress | None:
    """``auto`` on a TTY: the bar; ``auto`` otherwise: plain lines; ``off``: nothing."""
    stream = stream or sys.stderr
    if mode == "off":
        return None
    if stream.isatty():
        return RichTrackProgress(Console(file=stream))
    return PlainTrackProgress(stream)


def print_track_summary(summary: TrackSummary, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="bulksend track", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows: list[tuple[str, str]] = [
        ("api", "One API (GET /v1/message)" if summary.api == "one" else "legacy API (querymsg)"),
        ("accepted messages", f"{summary.accepted:,}"),
        ("final before this run", f"{summary.settled_before:,}"),
        ("rounds", f"{summary.rounds:,}"),
        ("queries sent", f"{summary.queries:,}"),
        ("  answered", f"{summary.answered:,}"),
        ("  throttled (429, retried)", f"{summary.throttled:,}"),
        ("  unanswered (rerun asks again)", f"{summary.unanswered:,}"),
    ]
    for status, count in sorted(summary.by_status.items()):
        rows.append((f"  {status} {STATUS_TEXT.get(status, '')}".rstrip(), f"{count:,}"))
    rows += [
        ("delivered now", f"{summary.delivered:,}"),
        ("failed now", f"{summary.failed:,}"),
        ("unknown to the gateway (001)", f"{summary.gone:,}"),
        ("still not final", f"{summary.still_pending:,}"),
        ("too old to ask (--max-age)", f"{summary.too_old:,}"),
        ("receipts written", f"{summary.receipts_written:,}"),
        ("rate", f"{summary.queries_per_second:,.1f} queries/s"),
        ("elapsed", f"{summary.elapsed:.1f} s"),
        ("receipts", summary.receipts_path),
    ]
    if summary.stopped:
        rows.append(("stopped", summary.stopped))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
