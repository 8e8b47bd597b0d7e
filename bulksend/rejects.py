"""``FILE.rejects.csv``: every input row a campaign does not send, with the reason.

An edge beside the journal: the campaign's producer hands it each block's rejects. The file is
rewritten on every run from the input as it is now (``row,raw,reason``); rows an earlier run
already handled are not repeated here (their outcome is in the results file). Every failure to
create, write or fsync it is a :class:`~bulksend.errors.StorageError` naming the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from bulksend.errors import StorageError
from bulksend.journal import FILE_MODE
from bulksend.source import Reject

__all__ = ["RejectsFile"]


class RejectsFile:
    """``FILE.rejects.csv``, rewritten on every run from the input as it is now: ``row,raw,reason``
    for every row that is not sent. Buffered in memory up to 64 KiB, written with ``os.write``;
    every failure is a :class:`StorageError` naming the file."""

    LIMIT = 64 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        except OSError as exc:
            raise StorageError(str(path), exc, "create") from None
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self._csv.writerow(["row", "raw", "reason"])

    def write(self, rejects: Iterable[Reject]) -> None:
        self._csv.writerows((r.row, r.raw, r.reason) for r in rejects)
        if self._buffer.tell() >= self.LIMIT:
            self._flush()

    def _flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise StorageError(str(self.path), exc) from None

    def finish(self) -> None:
        """Write what is buffered and fsync."""
        self._flush()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(str(self.path), exc, "fsync") from None

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
