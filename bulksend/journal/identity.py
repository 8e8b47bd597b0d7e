"""Which input a campaign was made from, and following it when it changes between runs.

The journal's header records the input it was made from (:class:`InputIdentity`: real path, size,
mtime, SHA-256 and the reading settings that decide which number a row yields). When a resume
finds a different input (:meth:`InputIdentity.changes_since` says how, in words), rows can no
longer be trusted to hold the numbers they held, and before anything is sent the campaign either

* **re-keys** the results by number (dedupe on): :meth:`Rekeying.number_remap` gives a
  :class:`NumberRemap` to feed the changed file's rows, then :meth:`Rekeying.apply_remap` moves
  each results line to the row its number stands on now and the lines of numbers that left the
  file to ``<out>.removed.csv``; or
* **checks rows** (dedupe off, where a number may stand on several rows):
  :meth:`Rekeying.row_check` gives a :class:`RowCheck` that finds the first handled row that no
  longer holds its number; when there is none, :meth:`Rekeying.accept_input` records the input.

What it promises: re-keying is crash-safe. Every new file (``.remap`` beside each original) is
written and fsynced first, then a commit marker (``<out>.remap-commit``), then the renames; the
next :meth:`~bulksend.journal.Journal.open` finishes a commit that reached its marker and drops
the pieces of one that did not (:meth:`Rekeying._recover_remap`), so the results are either all
old or all new. A failed write raises :class:`~bulksend.errors.StorageError` naming the file.

:class:`Rekeying` is the journal's side of this, a base of :class:`~bulksend.journal.Journal`
(which owns the files and the state it works on); it imports nothing of the log.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulksend.dedupe import FirstRowTable
from bulksend.errors import InputError, StorageError
from bulksend.journal.files import FILE_MODE, fsync_dir, write_file
from bulksend.journal.state import (
    HEADER_FIELDS,
    RESULTS_HEADER,
    ResumeState,
    RowBitmap,
    utc_now,
)

__all__ = [
    "InputIdentity",
    "NumberRemap",
    "Rekeying",
    "RemapResult",
    "RowCheck",
    "input_identity",
]


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


@dataclass(frozen=True, slots=True)
class RemapResult:
    """What re-keying the results to a changed input did."""

    kept: int  # lines whose number is still in the file (``moved`` of them on another row now)
    moved: int
    removed: int  # lines whose number is no longer in the file: moved to ``removed_path``
    removed_path: str


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


class Rekeying:
    """The journal's methods for a changed input (see the module docstring).

    A base of :class:`~bulksend.journal.Journal`, which sets the attributes below and provides the
    four methods that follow them (its own file handling).
    """

    results_path: Path
    intent_path: Path
    removed_path: Path
    _commit_marker: Path
    state: ResumeState
    header: dict[str, object]
    recorded_input: InputIdentity | None
    _results_fd: int
    _intent_fd: int

    def _write_intent_log(self, path: Path, watermark: int) -> None:
        raise NotImplementedError

    def _opened(self) -> None:
        raise NotImplementedError

    def _close_fds(self) -> None:
        raise NotImplementedError

    def compact(self) -> None:
        raise NotImplementedError

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
            write_file(self._remap_path(self.removed_path), body + "".join(removed).encode())
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
        self._write_intent_log(self._remap_path(self.intent_path), results_tmp.stat().st_size)
        write_file(self._commit_marker, b"commit\n")
        fsync_dir(self.results_path.parent)
        self._close_fds()
        self._recover_remap()
        self.recorded_input = identity
        self._reload_state()
        self._opened()
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
                fsync_dir(self.results_path.parent)
                self._commit_marker.unlink()
                fsync_dir(self.results_path.parent)
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
                if len(record) != len(HEADER_FIELDS) or not record[0].isdigit():
                    continue
                row = int(record[0])
                state.done.add(row)
                state.max_row = max(state.max_row, row)
                state.counts[record[2]] = state.counts.get(record[2], 0) + 1
