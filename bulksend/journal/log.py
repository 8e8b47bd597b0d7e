"""The results file as the campaign's journal: intents before sending, outcomes after, resume state.

Two files make the journal:

* the **results file** (``--out``, the public contract): CSV with the header
  ``row,to,status,api_msg_id,error_code,error,attempts,sent_at`` and one line per input row that
  reached the sender, ``status`` being ``accepted``, ``rejected`` or ``unknown``;
* the **intent log** (``<out>.journal``, private): a JSON header naming the campaign (a fingerprint of
  the text, sender and message options), then one ``I <seq> <rows> <numbers>`` line per batch,
  written and made durable *before* the batch's request leaves; ``D <seq>`` once its outcomes are
  in the results file, ``A <seq>`` when it was abandoned (certainly not processed); ``W <bytes>``
  when that much of the results file is known to be on stable storage; ``S <seq>`` after a
  compaction.

What survives a **process kill** (``kill -9``, OOM, a second Ctrl-C): everything written. Every
write is a single unbuffered ``os.write``, in the kernel once it returns.

What survives a **machine crash** (power loss, kernel panic): only what reached stable storage, and
the writes are ordered so that this is always enough (write-ahead, as databases do it):

* an intent is durable (``fdatasync``, :meth:`Journal.durable`) before its request may leave. The
  flushes run on a thread of their own and the writers of the same moment share one (group
  commit, :class:`~bulksend.groupcommit.GroupCommit`): one flush per round, not per batch. A sender
  writes its next batch's intent as its answer comes back and starts the flush
  (:meth:`Journal.flush_soon`) before recording the answer, so the flush overlaps that work;
* the intent log ends in reserved space (NUL bytes, :class:`~bulksend.journal.files.ReservedLog`)
  that appends overwrite in place: its size changes once a megabyte, so flushing an intent writes
  data only, without the file system's journal commit. Its readers keep complete lines without NUL
  bytes: a crash may keep a later overwrite and lose an earlier one, and what it lost was never
  relied on (a request leaves only after a flush, which covers every earlier write);
* a ``D`` line is never trusted alone: the rows of every intent still in the log that have no line
  in the results file become ``unknown`` (a crash can keep the ``D`` line and lose the results line
  it followed); only ``A`` returns rows to pending;
* the results file is fsynced on a timer (``fsync_interval``) and before every compaction, which is
  what lets a compaction drop settled intents; after a timer fsync a ``W`` line records the size
  now durable, so a later run can tell an older copy of the results file put back (or one cut
  short) from a crash, and refuses it;
* creating the journal (the journal, then the directory, then the results file, then the
  directory), compaction, re-keying and ``--resend-unknown``'s rewrite all write a new file, fsync
  it, rename it, and fsync the directory: after a crash the old file or the new one, each complete.

So, after either:

* rows present in the results file are done and are never sent again;
* rows of a batch whose intent is in the log but whose outcome is not in the results file may have
  been accepted by the gateway: :meth:`Journal.open` records them ``unknown`` (reason given) and
  they are only re-sent with ``resend_unknown``;
* everything else is pending and will be sent;
* a torn last line (a write cut by the kill or the crash) is cut off before appending, and so is
  the intent log's reserve;
* a results file missing while its journal logged batches, or shorter than the journal's ``W``, is
  refused (:class:`~bulksend.errors.ConfigError`: put the file back, or ``restart``): the rows it
  no longer holds are never sent as pending. A results file the crash left empty or holding part
  of its header is made again (nothing was sent before it was on disk).

The cost: one ``fdatasync`` per round of senders (see the README's numbers), and the outcomes of
the last ``fsync_interval`` may come back ``unknown`` after a machine crash (never sent twice).

Resume memory is a bitmap of done rows (one bit per row number) plus the counters; the results file
is read once, streaming. Journal files are created with mode 0600.

The journal's header also records the input it was made from (:class:`InputIdentity`: real path,
size, mtime, SHA-256 and the reading settings). When a resume finds a different input, rows can no
longer be trusted to hold the numbers they held: the campaign either re-keys the results by number
(:meth:`Journal.number_remap`, :meth:`Journal.apply_remap`: each line moves to the row its number
stands on now, lines of numbers that left the file go to ``<out>.removed.csv``; a commit marker
makes it crash-safe) or, without dedupe, checks that every handled row still holds its number
(:meth:`Journal.row_check`) before anything is sent.

(:class:`InputIdentity` and the re-keying are :mod:`bulksend.journal.identity`'s; :class:`Journal`
has these methods from its base :class:`~bulksend.journal.identity.Rekeying`.)

Every failed create, write or fsync raises :class:`~bulksend.errors.StorageError` naming the file;
after one, :meth:`Journal.intend` refuses, so no request leaves whose outcome could not be written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bulksend.errors import ConfigError, InputError, StorageError
from bulksend.groupcommit import GroupCommit, datasync
from bulksend.journal.checks import (
    check_watermark,
    holds_results,
    refuse_without_results,
    unsettled_intents,
)
from bulksend.journal.files import (
    ReservedLog,
    append_durably,
    cut_torn_tail,
    fsync_dir,
    move_aside,
    open_append,
    rewrite_without,
    write_all,
    write_file,
)
from bulksend.journal.identity import InputIdentity, Rekeying
from bulksend.journal.state import HEADER_FIELDS, RESULTS_HEADER, ResumeState, utc_now
from bulksend.journal.sync import TimedSync
from bulksend.reconcile import reconcile_unknown

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "ResultLine",
    "campaign_fingerprint",
    "expand_rows",
    "format_result",
    "read_results",
]


JOURNAL_VERSION = 1


def campaign_fingerprint(**identity: object) -> str:
    """A stable digest of what makes a campaign "the same campaign" (text, sender, options)."""
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One line of the results file."""

    row: int
    to: str
    status: str
    api_msg_id: str = ""
    error_code: int | None = None
    error: str = ""
    attempts: int = 1
    sent_at: str = ""


def _csv_field(text: str) -> str:
    if not text:
        return ""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""').replace("\r", " ").replace("\n", " ") + '"'
    return text


def format_result(line: ResultLine) -> str:
    """One results-file line (with its newline)."""
    code = "" if line.error_code is None else f"{line.error_code:03d}"
    return (
        f"{line.row},{line.to},{line.status},{line.api_msg_id},{code},"
        f"{_csv_field(line.error)},{line.attempts},{line.sent_at}\n"
    )


def _compress(rows: Sequence[int]) -> str:
    """``[1,2,3,7,9,10]`` -> ``1-3,7,9-10`` (rows of a batch are mostly consecutive)."""
    parts: list[str] = []
    start = prev = rows[0]
    for r in rows[1:]:
        if r == prev + 1:
            prev = r
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = r
    parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def expand_rows(spec: str) -> Iterator[int]:
    """``1-3,7`` -> 1, 2, 3, 7 (the row list of an intent line)."""
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            yield from range(int(a), int(b) + 1)
        elif part:
            yield int(part)


class Journal(TimedSync, Rekeying):
    """The results file plus its intent log. One owner (the campaign); not thread-safe.

    Every failure to create, write or fsync one of its files raises
    :class:`~bulksend.errors.StorageError` naming the file; after one, :meth:`intend` refuses
    (raises again), so no request leaves whose outcome could not be recorded.
    """

    def __init__(
        self, results_path: Path, *, fsync_interval: float = 1.0, compact_every: int = 2000
    ) -> None:
        self.results_path = results_path
        self.intent_path = results_path.with_name(results_path.name + ".journal")
        self.removed_path = results_path.with_name(results_path.name + ".removed.csv")
        self._commit_marker = results_path.with_name(results_path.name + ".remap-commit")
        self.fsync_interval = fsync_interval
        self.state = ResumeState()
        self.header: dict[str, object] = {}
        self.recorded_input: InputIdentity | None = None
        self.failed: StorageError | None = None  # a write of this journal failed
        self.refuse_intents: StorageError | None = None  # another file of the campaign failed
        self._results_fd = -1
        self._intent_fd = -1
        self._intent_log: ReservedLog | None = None
        self._seq = 0
        self._open_intents: dict[int, str] = {}
        self._recovered: list[ResultLine] = []
        self._reconciled: list[ResultLine] = []
        self._since_compact = 0
        self.compact_every = compact_every
        self._init_sync()
        self._ticket = 0  # the group-commit ticket of the last intent
        self._tickets: dict[int, int] = {}  # open intent -> its ticket
        self.commit = GroupCommit(lambda: self._intent_fd, str(self.intent_path))
        """Group commit of the intent log: :meth:`durable` waits on it."""

    # -- opening and resuming ----------------------------------------------------------------------

    def open(
        self,
        fingerprint: str,
        *,
        describe: dict[str, object],
        restart: bool = False,
        resend_unknown: bool = False,
        receipts_path: Path | None = None,
        input_identity: InputIdentity | None = None,
    ) -> ResumeState:
        """Open (creating or resuming) the journal for the campaign identified by ``fingerprint``.

        Refuses a results file that belongs to another campaign (other text or sender) unless
        ``restart``, which moves the old files aside (``.1``, ``.2``, ...) and never deletes.
        On a resume, ``state.input_changes`` says how ``input_identity`` differs from the input
        the journal was made from; the caller must then check the rows (:meth:`row_check`) or
        re-key them (:meth:`number_remap`, :meth:`apply_remap`) before sending anything.
        """
        parent = self.results_path.parent
        if not parent.is_dir():
            raise InputError(f"the output directory {parent} does not exist")
        if self.results_path.is_dir():
            raise InputError(f"the output path {self.results_path} is a directory")
        self._recover_remap()
        exists = holds_results(self.results_path)
        if not exists and self.intent_path.exists() and not restart:
            refuse_without_results(self.results_path, self.intent_path)
        if restart and (exists or self.intent_path.exists()):
            move_aside((self.results_path, self.intent_path, self.removed_path))
            fsync_dir(self.results_path.parent)
            exists = False
        if exists:
            self._check_same_campaign(fingerprint)
            self._resume(resend_unknown=resend_unknown, receipts_path=receipts_path)
            if input_identity is not None:
                self.state.input_changes = input_identity.changes_since(self.recorded_input)
        else:
            self._create(fingerprint, describe, input_identity)
        self._opened()
        if self.state.resumed:
            if self._reconciled:
                self.write_results(self._reconciled)
                for line in self._reconciled:
                    self.state.done.add(line.row)
                self.state.counts["accepted"] = self.state.counts.get("accepted", 0) + len(
                    self._reconciled
                )
                self._reconciled = []
            self._settle_recovered()
        return self.state

    def _create(
        self, fingerprint: str, describe: dict[str, object], identity: InputIdentity | None
    ) -> None:
        self.header = {
            "bulksend_journal": JOURNAL_VERSION,
            "fingerprint": fingerprint,
            "created": utc_now(),
            **describe,
        }
        if identity is not None:
            self.header["input_identity"] = identity.as_json()
            self.recorded_input = identity
        # The journal first, durable with its name: after a crash, a results file never stands
        # without its journal (which the next run would refuse to resume).
        write_file(self.intent_path, (json.dumps(self.header, sort_keys=True) + "\n").encode())
        fsync_dir(self.results_path.parent)
        write_file(self.results_path, (RESULTS_HEADER + "\n").encode())
        fsync_dir(self.results_path.parent)

    def _opened(self) -> None:
        """Open both files for appending (after creating, resuming or re-keying them)."""
        self._results_fd = open_append(self.results_path)
        self._intent_log = ReservedLog(self.intent_path)
        self._intent_fd = self._intent_log.fd
        self._results_bytes = self._durable_bytes = self.results_path.stat().st_size
        self.commit.covered()

    def _check_same_campaign(self, fingerprint: str) -> None:
        try:
            with self.intent_path.open("r", encoding="utf-8") as f:
                header = json.loads(f.readline())
        except FileNotFoundError:
            raise ConfigError(
                f"{self.results_path} exists but its journal {self.intent_path.name} is missing, "
                "so it cannot be resumed safely; use --restart to move it aside and start over, "
                "or --out to write elsewhere"
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{self.intent_path} is not a bulksend journal") from None
        if not isinstance(header, dict) or header.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"{self.results_path} belongs to another campaign (different text, sender or "
                "message options); rerun with the same settings to resume, or pass --restart to "
                "move the old results aside and start a new campaign"
            )
        self.header = header
        self.recorded_input = InputIdentity.from_json(header.get("input_identity"))

    def _resume(self, *, resend_unknown: bool, receipts_path: Path | None) -> None:
        state = self.state
        state.resumed = True
        check_watermark(self.results_path, self.intent_path)
        try:
            cut_torn_tail(self.results_path)
            cut_torn_tail(self.intent_path)
        except OSError as exc:
            raise StorageError(str(self.results_path), exc, "repair") from None
        unknown_rows: dict[int, str] = {}
        with self.results_path.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != HEADER_FIELDS:
                raise ConfigError(f"{self.results_path} is not a bulksend results file")
            for record in reader:
                if len(record) != len(HEADER_FIELDS) or not record[0].isdigit():
                    continue
                row = int(record[0])
                status = record[2]
                state.max_row = max(state.max_row, row)
                if resend_unknown and status == "unknown":
                    unknown_rows[row] = record[1]
                    continue
                state.done.add(row)
                state.counts[status] = state.counts.get(status, 0) + 1
        if unknown_rows:
            self._reconciled = self._reconcile(unknown_rows, receipts_path)
            state.reconciled = len(self._reconciled)
            state.resent_unknown = len(unknown_rows) - state.reconciled
            # The watermark comes down before the file shrinks (a crash between the two leaves
            # a file longer than its mark, which is fine).
            rewrite_without(
                self.results_path,
                set(unknown_rows),
                before_replace=lambda size: append_durably(self.intent_path, f"W {size}\n"),
            )

        # Rows of an intent without their result line may have been processed (see
        # unsettled_intents: a D line is never trusted alone).
        pending, self._seq = unsettled_intents(self.intent_path)
        now = utc_now()
        for seq, spec in pending.items():
            self._seq = max(self._seq, seq)
            rows_spec, _, numbers = spec.partition(" ")
            rows = list(expand_rows(rows_spec))
            msisdns = numbers.split(",") if numbers else []
            if len(msisdns) != len(rows):
                msisdns = [""] * len(rows)
            for row, msisdn in zip(rows, msisdns, strict=True):
                if row in state.done:
                    continue
                state.max_row = max(state.max_row, row)
                self._recovered.append(
                    ResultLine(
                        row,
                        msisdn,
                        "unknown",
                        error="in flight when a previous run stopped; may have been sent",
                        attempts=1,
                        sent_at=now,
                    )
                )

    def _reconcile(self, unknown: dict[int, str], receipts_path: Path | None) -> list[ResultLine]:
        """Unknown rows a delivery receipt shows the gateway did accept (by the row's
        clientMessageId, else by number: :mod:`bulksend.reconcile`). They become ``accepted``
        with that id instead of being sent again."""
        found = reconcile_unknown(unknown, self.results_path, receipts_path, self.header)
        now = utc_now()
        return [
            ResultLine(r.row, r.to, "accepted", r.api_msg_id, None, r.how, 1, now) for r in found
        ]

    def _settle_recovered(self) -> None:
        """Record ``unknown`` the rows of batches a previous run left in flight."""
        lines = self._recovered
        if lines:
            self.write_results(lines)
            for line in lines:
                self.state.done.add(line.row)
            self.state.counts["unknown"] = self.state.counts.get("unknown", 0) + len(lines)
            self.state.recovered_unknown += len(lines)
        self._recovered = []
        self.compact()

    def _write_intent_log(self, path: Path, watermark: int) -> None:
        body = [
            json.dumps(self.header, sort_keys=True) + "\n",
            f"S {self._seq}\n",
            f"W {watermark}\n",
            *self._open_intents.values(),
        ]
        write_file(path, "".join(body).encode())

    def compact(self) -> None:
        """Rewrite the intent log as its header plus the intents still open.

        The intents it drops are those whose results are written: the results file is fsynced
        first, so none of them can be lost by a crash afterwards. Then the new log is written
        and fsynced, renamed over the old one, and the directory fsynced (after a crash: the
        old log or the new one, each complete)."""
        if self._results_fd >= 0:
            try:
                datasync(self._results_fd)
            except OSError as exc:
                raise self._failed(self.results_path, exc, "fsync") from None
        else:
            self._results_bytes = self.results_path.stat().st_size
        self._durable_bytes = self._results_bytes
        tmp = self.intent_path.with_name(self.intent_path.name + ".tmp")
        self._write_intent_log(tmp, self._durable_bytes)
        if self._intent_fd >= 0:
            os.close(self._intent_fd)
            self._intent_fd = -1
            self._intent_log = None
        try:
            os.replace(tmp, self.intent_path)
        except OSError as exc:
            raise StorageError(str(self.intent_path), exc, "replace") from None
        fsync_dir(self.intent_path.parent)
        self._intent_log = ReservedLog(self.intent_path)
        self._intent_fd = self._intent_log.fd
        self.commit.covered()
        self._since_compact = 0

    # -- the hot path ------------------------------------------------------------------------------

    def _failed(self, path: Path, exc: OSError, action: str = "write") -> StorageError:
        self.failed = self.failed or StorageError(str(path), exc, action)
        return self.failed

    def intend(self, rows: Sequence[int], msisdns: Sequence[str]) -> int:
        """Record that a batch is about to be sent; returns its sequence number.

        Must return before the request is written to the network. The line carries the numbers
        too, so that a later run can write complete ``unknown`` lines without the input file.
        Raises :class:`StorageError` (and the request must not leave) if the journal cannot be
        written, or if any earlier write of this journal failed.
        """
        refusal = self.failed or self.refuse_intents
        if refusal is not None:
            raise refusal
        self._seq += 1
        line = f"I {self._seq} {_compress(rows)} {','.join(msisdns)}\n"
        try:
            self._append_intent_log(line.encode())
        except OSError as exc:
            raise self._failed(self.intent_path, exc) from None
        self._open_intents[self._seq] = line
        self._dirty = True
        self._ticket = self._tickets[self._seq] = self.commit.wrote()
        return self._seq

    async def durable(self, seq: int = 0, *, in_place: bool = True) -> None:
        """Wait until the intent ``seq`` (default: the last) is on stable storage (group commit:
        the senders waiting at the same moment share one ``fdatasync``). The request may leave once
        this returns; a machine crash after that finds the intent, and the next run records its
        rows ``unknown`` instead of sending them again. ``in_place``: see
        :meth:`~bulksend.groupcommit.GroupCommit.durable`."""
        try:
            await self.commit.durable(self._tickets.get(seq, self._ticket), in_place=in_place)
        except StorageError as exc:
            self.failed = self.failed or exc
            raise

    def flush_soon(self) -> None:
        """Start making the intents so far durable, without waiting (:meth:`durable` then finds
        the work done or under way)."""
        try:
            self.commit.flush()
        except StorageError as exc:
            self.failed = self.failed or exc
            raise

    def _settle(self, seq: int, mark: str = "D") -> None:
        self._open_intents.pop(seq, None)
        self._tickets.pop(seq, None)
        try:
            self._append_intent_log(f"{mark} {seq}\n".encode())
        except OSError as exc:
            raise self._failed(self.intent_path, exc) from None
        self._since_compact += 1
        if self._since_compact >= self.compact_every:
            try:
                self.compact()
            except StorageError as exc:
                self.failed = self.failed or exc
                raise

    def abandon(self, seq: int) -> None:
        """The batch was certainly not processed (e.g. a fatal whole-request error): its rows stay
        pending for a later run (an ``A`` line: the only mark that returns rows to pending)."""
        self._settle(seq, "A")

    def complete(self, seq: int, lines: Iterable[ResultLine]) -> None:
        """Record a batch's outcomes (one write) and settle its intent."""
        self.write_results(lines)
        self._settle(seq)

    def complete_text(self, seq: int, text: str) -> None:
        """:meth:`complete` for lines already formatted with :func:`format_result`."""
        if text:
            self._write_results_bytes(text.encode("utf-8"))
        self._settle(seq)

    def write_results(self, lines: Iterable[ResultLine]) -> None:
        data = "".join(map(format_result, lines)).encode("utf-8")
        if data:
            self._write_results_bytes(data)

    def _write_results_bytes(self, data: bytes) -> None:
        if self.failed is not None:
            raise self.failed
        try:
            write_all(self._results_fd, data)
        except OSError as exc:
            raise self._failed(self.results_path, exc) from None
        self._results_bytes += len(data)
        self._dirty = True

    @property
    def in_flight(self) -> int:
        return len(self._open_intents)

    def _close_fds(self) -> None:
        for fd in (self._results_fd, self._intent_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._results_fd = self._intent_fd = -1
        self._intent_log = None

    def close(self) -> None:
        """fsync and close. Open intents stay in the log: a later run records them ``unknown``.

        After a storage failure it only closes: what could be written is in the files, and the
        next run (once there is space) recovers the rest from the open intents.
        """
        try:
            if self.failed is None:
                if self._intent_fd >= 0:
                    self.compact()  # fsyncs the results, writes and fsyncs the new log
                else:
                    self.fsync()
        finally:
            self.commit.close()
            self._close_fds()


def read_results(path: Path) -> Iterator[dict[str, str]]:
    """Stream the results file as dicts (for reports and tests)."""
    with path.open("r", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)
