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
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bulksend.dedupe import FirstRowTable
from bulksend.errors import ConfigError, InputError, StorageError
from bulksend.reconcile import reconcile_unknown

__all__ = [
    "RESULTS_HEADER",
    "InputIdentity",
    "Journal",
    "NumberRemap",
    "ResultLine",
    "RowBitmap",
    "RowCheck",
    "campaign_fingerprint",
    "expand_rows",
    "input_identity",
]

RESULTS_HEADER = "row,to,status,api_msg_id,error_code,error,attempts,sent_at"
_HEADER_FIELDS = RESULTS_HEADER.split(",")
JOURNAL_VERSION = 1
FILE_MODE = 0o600


def campaign_fingerprint(**identity: object) -> str:
    """A stable digest of what makes a campaign "the same campaign" (text, sender, options)."""
    blob = json.dumps(identity, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class InputIdentity:
    """What the journal knows of the input file it was made from, and how it was read.

    ``sha256`` decides whether the content is the same (size and mtime only say where it changed);
    ``reading`` holds the settings that decide which number a row yields (column, default
    country, strict, dedupe). Two identities that agree on both need no check on resume.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str
    reading: dict[str, object]

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "reading": self.reading,
        }

    @classmethod
    def from_json(cls, data: object) -> InputIdentity | None:
        if not isinstance(data, dict):
            return None
        try:
            reading = data.get("reading")
            return cls(
                str(data["path"]),
                int(data["size"]),
                int(data["mtime_ns"]),
                str(data["sha256"]),
                dict(reading) if isinstance(reading, dict) else {},
            )
        except (KeyError, TypeError, ValueError):
            return None

    def changes_since(self, before: InputIdentity | None) -> list[str]:
        """What differs from ``before`` (the identity recorded by an earlier run), in words."""
        if before is None:
            return ["the journal does not say which input it was made from"]
        out: list[str] = []
        if before.sha256.startswith("unknown: "):
            out.append(before.sha256.removeprefix("unknown: "))
        elif before.sha256 != self.sha256:
            when = datetime.fromtimestamp(self.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.append(
                f"the content of {self.path} changed ({before.size:,} -> {self.size:,} bytes, "
                f"modified {when} UTC)"
            )
        for key in sorted(set(before.reading) | set(self.reading)):
            old, new = before.reading.get(key), self.reading.get(key)
            if old != new:
                out.append(f"--{key.replace('_', '-')} changed from {old!r} to {new!r}")
        return out


def input_identity(path: str | os.PathLike[str], reading: dict[str, object]) -> InputIdentity:
    """Hash the input file (about 1.3 GB/s; run it off the event loop for big files)."""
    real = os.path.realpath(path)
    digest = hashlib.sha256()
    try:
        with open(real, "rb") as f:
            st = os.fstat(f.fileno())
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError("no such file", path=os.fspath(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=os.fspath(path)) from None
    except PermissionError:
        raise InputError("permission denied", path=os.fspath(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=os.fspath(path)) from None
    return InputIdentity(real, st.st_size, st.st_mtime_ns, digest.hexdigest(), dict(reading))


class RowBitmap:
    """A growable set of non-negative row numbers, one bit each (10 M rows: 1.25 MB)."""

    __slots__ = ("_bits", "count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, row: int) -> None:
        byte, bit = row >> 3, 1 << (row & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits) // 2 + 64)))
        if not self._bits[byte] & bit:
            self._bits[byte] |= bit
            self.count += 1

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int) or row < 0:
            return False
        byte = row >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (row & 7)))

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self._bits)


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


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


@dataclass
class ResumeState:
    """What an existing journal says: rows done, statuses counted, rows turned ``unknown``."""

    done: RowBitmap = field(default_factory=RowBitmap)
    counts: dict[str, int] = field(default_factory=dict)
    recovered_unknown: int = 0
    resent_unknown: int = 0
    reconciled: int = 0  # unknown rows found in the delivery receipts: accepted after all
    resumed: bool = False
    input_changes: list[str] = field(default_factory=list)  # empty: same input, same reading
    max_row: int = 0


@dataclass(frozen=True, slots=True)
class RemapResult:
    """What re-keying the results to a changed input did."""

    kept: int  # lines whose number is still in the file (``moved`` of them on another row now)
    moved: int
    removed: int  # lines whose number is no longer in the file: moved to ``removed_path``
    removed_path: str


def _open_append(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StorageError(str(path), exc, "open") from None


def _write_file(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data`` and fsync it (not atomic: see callers)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    except OSError as exc:
        raise StorageError(str(path), exc, "create") from None
    try:
        os.fchmod(fd, FILE_MODE)
        _write_all(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise StorageError(str(path), exc) from None
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line that has no newline (a write cut short by a kill)."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)


class NumberRemap:
    """Matches the numbers the campaign already handled to the rows of a changed input.

    Fed the changed file's valid rows in order (:meth:`see`), it learns the row each handled
    number is on now (its first row: dedupe makes later ones duplicates). Memory: a
    :class:`~bulksend.dedupe.FirstRowTable` of the handled numbers (27-35 bytes each) plus 8 bytes
    per row of the old numbering.
    """

    def __init__(self, handled: FirstRowTable, max_row: int) -> None:
        self.handled = handled
        self.new_row = array("q", bytes(8 * (max_row + 1)))
        self.found = 0

    def see(self, rows: Sequence[int], msisdns: Sequence[str]) -> None:
        get = self.handled.get
        new_row = self.new_row
        for row, msisdn in zip(rows, msisdns, strict=True):
            old = get(int(msisdn))
            if old and not new_row[old]:
                new_row[old] = row
                self.found += 1


class RowCheck:
    """Checks that every row the campaign already handled still holds the same number.

    Used without dedupe, where a number may stand on several rows and cannot say which row it was
    sent for. Fed the changed file's blocks in order; :attr:`first_difference` is then the first
    handled row that no longer holds its number (or ``None``). 8 bytes per row.
    """

    def __init__(self, numbers: array[int], handled: int) -> None:
        self.numbers = numbers
        self.handled = handled
        self.matched = 0
        self.first_difference: tuple[int, str, str] | None = None  # row, number then, now
        self.last_row = 0

    def _differs(self, row: int, now: str) -> None:
        if self.first_difference is None or row < self.first_difference[0]:
            self.first_difference = (row, str(self.numbers[row]), now)

    def see(
        self, rows: Sequence[int], msisdns: Sequence[str], rejected: Iterable[tuple[int, str]]
    ) -> None:
        numbers = self.numbers
        top = len(numbers)
        for row, msisdn in zip(rows, msisdns, strict=True):
            if row < top and numbers[row]:
                if numbers[row] == int(msisdn):
                    self.matched += 1
                else:
                    self._differs(row, msisdn)
        for row, reason in rejected:
            if row < top and numbers[row]:
                self._differs(row, f"refused now: {reason}")

    def finish(self, last_row: int) -> tuple[int, str, str] | None:
        """After the last block: beyond ``last_row`` handled rows do not exist any more."""
        self.last_row = last_row
        numbers = self.numbers
        for row in range(last_row + 1, len(numbers)):
            if numbers[row]:
                self._differs(row, "no such row now")
                break
        return self.first_difference


class Journal:
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
            self._move_aside()
            exists = False
        if exists:
            self._check_same_campaign(fingerprint)
            self._resume(resend_unknown=resend_unknown, receipts_path=receipts_path)
            if input_identity is not None:
                self.state.input_changes = input_identity.changes_since(self.recorded_input)
        else:
            self._create(fingerprint, describe, input_identity)
        self._results_fd = _open_append(self.results_path)
        self._intent_fd = _open_append(self.intent_path)
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

    def _move_aside(self) -> None:
        n = 1
        paths = (self.results_path, self.intent_path, self.removed_path)
        while any(p.with_name(f"{p.name}.{n}").exists() for p in paths):
            n += 1
        for path in paths:
            if path.exists():
                try:
                    path.rename(path.with_name(f"{path.name}.{n}"))
                except OSError as exc:
                    raise StorageError(str(path), exc, "move aside") from None

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
        _write_file(self.intent_path, (json.dumps(self.header, sort_keys=True) + "\n").encode())
        _write_file(self.results_path, (RESULTS_HEADER + "\n").encode())
        _fsync_dir(self.results_path.parent)

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
            _cut_torn_tail(self.results_path)
            _cut_torn_tail(self.intent_path)
        except OSError as exc:
            raise StorageError(str(self.results_path), exc, "repair") from None
        unknown_rows: dict[int, str] = {}
        with self.results_path.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != _HEADER_FIELDS:
                raise ConfigError(f"{self.results_path} is not a bulksend results file")
            for record in reader:
                if len(record) != len(_HEADER_FIELDS) or not record[0].isdigit():
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
            self._rewrite_without(set(unknown_rows))

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

    def _rewrite_without(self, rows: set[int]) -> None:
        tmp = self.results_path.with_name(self.results_path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with (
                os.fdopen(fd, "w", encoding="utf-8", newline="") as out,
                self.results_path.open("r", encoding="utf-8", newline="") as src,
            ):
                out.write(src.readline())
                for line in src:
                    head = line.split(",", 1)[0]
                    if head.isdigit() and int(head) in rows:
                        continue
                    out.write(line)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.results_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(str(tmp), exc) from None

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

    # -- a changed input ---------------------------------------------------------------------------

    def _handled(self) -> Iterator[tuple[int, str, str]]:
        """``(row, to, whole line)`` of every line of the results file."""
        with self.results_path.open("r", encoding="utf-8", newline="") as f:
            f.readline()
            for line in f:
                row, _, rest = line.partition(",")
                if row.isdigit():
                    yield int(row), rest.partition(",")[0], line

    def number_remap(self) -> NumberRemap:
        """Start re-keying the results by number (dedupe on): feed it the changed file."""
        handled = FirstRowTable(len(self.state.done))
        for row, to, _ in self._handled():
            if to.isdigit():
                handled.setdefault(int(to), row)
        return NumberRemap(handled, self.state.max_row)

    def row_check(self) -> RowCheck:
        """Start checking handled rows against the changed file (dedupe off)."""
        numbers = array("q", bytes(8 * (self.state.max_row + 1)))
        count = 0
        for row, to, _ in self._handled():
            if row < len(numbers) and to.isdigit():
                numbers[row] = int(to)
                count += 1
        return RowCheck(numbers, count)

    def apply_remap(self, remap: NumberRemap, identity: InputIdentity) -> RemapResult:
        """Rewrite the results so that every line names the row its number is on now; lines
        whose number left the file go to ``<results>.removed.csv``. Crash-safe: all new files are
        written and fsynced first, then a commit marker, then the renames (a later :meth:`open`
        finishes an interrupted commit, or discards one that never reached its marker)."""
        kept = moved = 0
        removed: list[str] = []
        results_tmp = self._remap_path(self.results_path)
        get = remap.handled.get
        new_row = remap.new_row
        try:
            fd = os.open(results_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(RESULTS_HEADER + "\n")
                for row, to, line in self._handled():
                    now = new_row[row] if to.isdigit() and get(int(to)) == row else 0
                    if not now:
                        removed.append(line)
                        continue
                    kept += 1
                    if now != row:
                        moved += 1
                        line = f"{now},{line.partition(',')[2]}"
                    out.write(line)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise StorageError(str(results_tmp), exc) from None
        if removed:
            old = b""
            if self.removed_path.exists():
                old = self.removed_path.read_bytes()
            body = old or (RESULTS_HEADER + "\n").encode()
            _write_file(self._remap_path(self.removed_path), body + "".join(removed).encode())
        self.header["input_identity"] = identity.as_json()
        history = self.header.setdefault("input_history", [])
        if isinstance(history, list):
            history.append(
                {
                    "replaced": utc_now(),
                    "sha256": identity.sha256,
                    "moved": moved,
                    "removed": len(removed),
                }
            )
        self._write_intent_log(self._remap_path(self.intent_path))
        _write_file(self._commit_marker, b"commit\n")
        _fsync_dir(self.results_path.parent)
        self._close_fds()
        self._recover_remap()
        self.recorded_input = identity
        self._reload_state()
        self._results_fd = _open_append(self.results_path)
        self._intent_fd = _open_append(self.intent_path)
        return RemapResult(kept, moved, len(removed), str(self.removed_path))

    def accept_input(self, identity: InputIdentity) -> None:
        """The changed input keeps every handled row as it was: record it as the input."""
        self.header["input_identity"] = identity.as_json()
        self.recorded_input = identity
        self.compact()

    def forget_input(self, why: str) -> None:
        """Make the next run check the input whatever it holds then (written at :meth:`close`)."""
        recorded = self.header.get("input_identity")
        if isinstance(recorded, dict):
            recorded["sha256"] = f"unknown: {why}"

    @staticmethod
    def _remap_path(path: Path) -> Path:
        return path.with_name(path.name + ".remap")

    def _recover_remap(self) -> None:
        """Finish a remap commit that reached its marker; drop the pieces of one that did not."""
        pieces = [
            self._remap_path(p) for p in (self.removed_path, self.results_path, self.intent_path)
        ]
        try:
            if self._commit_marker.exists():
                for piece in pieces:
                    if piece.exists():
                        os.replace(piece, piece.with_name(piece.name.removesuffix(".remap")))
                _fsync_dir(self.results_path.parent)
                self._commit_marker.unlink()
                _fsync_dir(self.results_path.parent)
            else:
                for piece in pieces:
                    with contextlib.suppress(FileNotFoundError):
                        piece.unlink()
        except OSError as exc:
            raise StorageError(str(self.results_path), exc, "finish re-keying") from None

    def _reload_state(self) -> None:
        """Rebuild ``done``, the counts and ``max_row`` from the results file."""
        state = self.state
        state.done = RowBitmap()
        state.counts = {}
        state.max_row = 0
        with self.results_path.open("r", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for record in reader:
                if len(record) != len(_HEADER_FIELDS) or not record[0].isdigit():
                    continue
                row = int(record[0])
                state.done.add(row)
                state.max_row = max(state.max_row, row)
                state.counts[record[2]] = state.counts.get(record[2], 0) + 1

    def _write_intent_log(self, path: Path) -> None:
        body = [
            json.dumps(self.header, sort_keys=True) + "\n",
            f"S {self._seq}\n",
            *self._open_intents.values(),
        ]
        _write_file(path, "".join(body).encode())

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
        self._intent_fd = _open_append(self.intent_path)
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
            _write_all(self._intent_fd, line.encode())
        except OSError as exc:
            raise self._failed(self.intent_path, exc) from None
        self._open_intents[self._seq] = line
        self._dirty = True
        return self._seq

    def _settle(self, seq: int) -> None:
        self._open_intents.pop(seq, None)
        try:
            _write_all(self._intent_fd, f"D {seq}\n".encode())
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
            _write_all(self._results_fd, data)
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
