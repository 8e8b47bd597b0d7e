"""The results file as the campaign's journal: intents before sending, outcomes after, resume state.

Two files make the journal:

* the **results file** (``--out``, the public contract): CSV with the header
  ``row,to,status,api_msg_id,error_code,error,attempts,sent_at`` and one line per input row that
  reached the sender, ``status`` being ``accepted``, ``rejected`` or ``unknown``;
* the **intent log** (``<out>.journal``, private): a JSON header naming the campaign (a fingerprint of
  the text, sender and message options), then one ``I <seq> <rows>`` line per batch, written *before*
  the batch's request leaves, and ``D <seq>`` once its outcomes are in the results file.

What it promises, after a ``kill -9`` at any moment (every write is a single unbuffered ``os.write``,
so whatever returned from ``write`` is in the kernel; an ``fsync`` runs on a timer and at close for
power loss):

* rows present in the results file are done and are never sent again;
* rows of a batch whose intent was written but whose outcome is not in the results file may have
  been accepted by the gateway: :meth:`Journal.open` records them ``unknown`` (reason given) and
  they are only re-sent with ``resend_unknown``;
* everything else is pending and will be sent;
* a torn last line (a write cut by the kill) is cut off before appending.

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
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bulksend.errors import ConfigError, InputError, StorageError
from bulksend.journal.files import (
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


class Journal(Rekeying):
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
        self._seq = 0
        self._open_intents: dict[int, str] = {}
        self._recovered: list[ResultLine] = []
        self._reconciled: list[ResultLine] = []
        self._since_compact = 0
        self.compact_every = compact_every
        self._last_fsync = time.monotonic()
        self._dirty = False

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
        exists = self.results_path.exists() and self.results_path.stat().st_size > 0
        if exists and restart:
            move_aside((self.results_path, self.intent_path, self.removed_path))
            exists = False
        if exists:
            self._check_same_campaign(fingerprint)
            self._resume(resend_unknown=resend_unknown, receipts_path=receipts_path)
            if input_identity is not None:
                self.state.input_changes = input_identity.changes_since(self.recorded_input)
        else:
            self._create(fingerprint, describe, input_identity)
        self._results_fd = open_append(self.results_path)
        self._intent_fd = open_append(self.intent_path)
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
        # The journal first: a results file without its journal cannot be resumed.
        write_file(self.intent_path, (json.dumps(self.header, sort_keys=True) + "\n").encode())
        write_file(self.results_path, (RESULTS_HEADER + "\n").encode())
        fsync_dir(self.results_path.parent)

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
            rewrite_without(self.results_path, set(unknown_rows))

        # Intents without a matching result: those batches may have been processed.
        pending: dict[int, str] = {}
        with self.intent_path.open("r", encoding="utf-8") as f:
            f.readline()
            for line in f:
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "I":
                    seq_text, _, spec = rest.partition(" ")
                    pending[int(seq_text)] = spec
                elif kind == "D":
                    pending.pop(int(rest), None)
                    self._seq = max(self._seq, int(rest))
                elif kind == "S":
                    self._seq = max(self._seq, int(rest))
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

    def _write_intent_log(self, path: Path) -> None:
        body = [
            json.dumps(self.header, sort_keys=True) + "\n",
            f"S {self._seq}\n",
            *self._open_intents.values(),
        ]
        write_file(path, "".join(body).encode())

    def compact(self) -> None:
        """Rewrite the intent log as its header plus the intents still open (atomic replace)."""
        tmp = self.intent_path.with_name(self.intent_path.name + ".tmp")
        self._write_intent_log(tmp)
        if self._intent_fd >= 0:
            os.close(self._intent_fd)
            self._intent_fd = -1
        try:
            os.replace(tmp, self.intent_path)
        except OSError as exc:
            raise StorageError(str(self.intent_path), exc, "replace") from None
        self._intent_fd = open_append(self.intent_path)
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
            write_all(self._intent_fd, line.encode())
        except OSError as exc:
            raise self._failed(self.intent_path, exc) from None
        self._open_intents[self._seq] = line
        self._dirty = True
        return self._seq

    def _settle(self, seq: int) -> None:
        self._open_intents.pop(seq, None)
        try:
            write_all(self._intent_fd, f"D {seq}\n".encode())
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
        pending for a later run."""
        self._settle(seq)

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
        self._dirty = True

    def fsync_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_fsync >= self.fsync_interval

    def fds(self) -> tuple[tuple[int, str], ...]:
        """The open file descriptors with their paths, for an fsync off the event loop; marks
        them synced."""
        self._last_fsync = time.monotonic()
        self._dirty = False
        return tuple(
            (fd, str(path))
            for fd, path in (
                (self._results_fd, self.results_path),
                (self._intent_fd, self.intent_path),
            )
            if fd >= 0
        )

    def fsync(self) -> None:
        """Push both files to stable storage (the campaign calls this on a timer, off the loop)."""
        self._last_fsync = time.monotonic()
        self._dirty = False
        for fd, path in (
            (self._results_fd, self.results_path),
            (self._intent_fd, self.intent_path),
        ):
            if fd >= 0:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise self._failed(path, exc, "fsync") from None

    @property
    def in_flight(self) -> int:
        return len(self._open_intents)

    def _close_fds(self) -> None:
        for fd in (self._results_fd, self._intent_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._results_fd = self._intent_fd = -1

    def close(self) -> None:
        """fsync and close. Open intents stay in the log: a later run records them ``unknown``.

        After a storage failure it only closes: what could be written is in the files, and the
        next run (once there is space) recovers the rest from the open intents.
        """
        try:
            if self.failed is None:
                if self._intent_fd >= 0:
                    self.compact()
                self.fsync()
        finally:
            self._close_fds()


def read_results(path: Path) -> Iterator[dict[str, str]]:
    """Stream the results file as dicts (for reports and tests)."""
    with path.open("r", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)
