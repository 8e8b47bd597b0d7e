"""The campaign's journal: the results file and its intent log, and the input they were made from.

Two rooms, and the small shared floor under them:

* :mod:`~bulksend.journal.log`: :class:`Journal`, the durable log. Intents before sending,
  outcomes after, the resume state, compaction; what survives a ``kill -9`` and an fsync.
* :mod:`~bulksend.journal.identity`: which input the journal was made from
  (:class:`InputIdentity`) and following it when it changes: re-keying the results by number
  (:class:`NumberRemap`) or checking the rows (:class:`RowCheck`), crash-safe.
* :mod:`~bulksend.journal.state` (the resume state and the results file's header, no I/O) and
  :mod:`~bulksend.journal.files` (writes, fsyncs, torn tails): the floor both rooms stand on;
  :mod:`~bulksend.journal.checks` (a results file that does not go with its journal: missing, or
  an older copy) and :mod:`~bulksend.journal.sync` (the timer fsync and its ``W`` watermark)
  beside the log.

The names below are the package's public surface; import them from ``bulksend.journal``.
"""

from __future__ import annotations

from bulksend.journal.files import FILE_MODE
from bulksend.journal.identity import (
    InputIdentity,
    NumberRemap,
    Rekeying,
    RemapResult,
    RowCheck,
    input_identity,
)
from bulksend.journal.log import (
    JOURNAL_VERSION,
    Journal,
    ResultLine,
    campaign_fingerprint,
    expand_rows,
    format_result,
    read_results,
)
from bulksend.journal.state import RESULTS_HEADER, ResumeState, RowBitmap, utc_now

__all__ = [
    "FILE_MODE",
    "JOURNAL_VERSION",
    "RESULTS_HEADER",
    "InputIdentity",
    "Journal",
    "NumberRemap",
    "Rekeying",
    "RemapResult",
    "ResultLine",
    "ResumeState",
    "RowBitmap",
    "RowCheck",
    "campaign_fingerprint",
    "expand_rows",
    "format_result",
    "input_identity",
    "read_results",
    "utc_now",
]
