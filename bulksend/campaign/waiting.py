"""``--wait``: between two passes of a campaign with a send window, wait for the next opening.

The entry point (:func:`bulksend.campaign.run_campaign_async`) runs a pass, and when the pass
deferred rows and ``settings.wait`` is set, :func:`next_opening` says when the first deferred group
may go and :func:`wait_for_window` waits for it, on the settings' clock (:mod:`bulksend.clock`:
the wall clock, or a test's), before the next pass resumes the campaign like any rerun. While it
waits it holds the campaign's lock (``bulksend status`` shows the run; a cron job's rerun is
refused instead of racing it), tells the progress display when the window opens, and a SIGINT or
SIGTERM ends the wait with exit code 130 or 143 and the summary as it stands (rerun to resume).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from bulksend.campaign.control import EXIT_OK, RunControl
from bulksend.campaign.summary import CampaignSummary, Snapshot
from bulksend.config import CampaignSettings
from bulksend.deferral import utc_minute
from bulksend.lock import FileLock

__all__ = ["next_opening", "wait_for_window"]

log = logging.getLogger("bulksend.campaign")


def next_opening(settings: CampaignSettings, summary: CampaignSummary) -> float | None:
    """When the next pass may send (unix seconds), or None when there is no next pass: no
    ``--wait``, a dry run, a pass that ended otherwise than 0, or nothing deferred that will open."""
    if not settings.wait or settings.dry_run or summary.exit_code != EXIT_OK:
        return None
    if not summary.deferred or not summary.next_window_opens:
        return None
    return datetime.fromisoformat(summary.next_window_opens.replace("Z", "+00:00")).timestamp()


async def wait_for_window(
    settings: CampaignSettings,
    summary: CampaignSummary,
    opening: float,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> bool:
    """Wait until ``opening`` on the settings' clock; False when interrupted (``summary`` then
    says so, with exit code 130 or 143)."""
    clock = settings.clock
    when = utc_minute(opening)
    log.info(
        "%d rows deferred; waiting for the next window, which opens at %s", summary.deferred, when
    )
    if on_progress is not None:
        on_progress(
            Snapshot(
                elapsed=summary.elapsed_seconds,
                rows_read=summary.rows,
                valid=summary.valid,
                input_rejected=summary.input_rejected,
                skipped=summary.previously_done,
                sent=summary.accepted + summary.rejected + summary.unknown,
                accepted=summary.accepted,
                rejected=summary.rejected,
                unknown=summary.unknown,
                in_flight=0,
                rate=0.0,
                done=True,  # a line now, whatever the display's interval
                deferred=summary.deferred,
                next_window=when,
            )
        )
    control = RunControl()
    lock = FileLock(settings.results_path, "campaign").acquire()
    try:
        with control.signals(settings.install_signal_handlers):
            sleeping = asyncio.ensure_future(clock.sleep(max(0.0, opening - clock.now())))
            stopping = asyncio.ensure_future(control.stopping.wait())
            try:
                await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeping, stopping):
                    task.cancel()
                await asyncio.gather(sleeping, stopping, return_exceptions=True)
    finally:
        lock.release()
    if control.stopping.is_set():
        summary.exit_code = control.exit_code
        summary.stopped = (
            f"{control.reason} while waiting for the send window ({summary.deferred:,} rows "
            "deferred); rerun to resume"
        )
        return False
    return True
