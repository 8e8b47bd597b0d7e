"""The journal's timer fsync and the watermark it leaves: how much of the results file is known
to be on stable storage.

Intents are made durable before their requests leave (group commit, in
:class:`~bulksend.journal.Journal`); outcomes need not be, since a row of a logged batch that the
results file lacks comes back ``unknown``, never pending. So the results file is fsynced on a
timer (``fsync_interval``, off the event loop: :meth:`TimedSync.fds`), and once that fsync
returned, :meth:`TimedSync.results_durable` appends ``W <bytes>`` to the intent log. A later run
that finds the results file shorter than the last ``W`` knows an older copy was put back (or the
file cut short), not a crash, and refuses it (:func:`~bulksend.journal.checks.check_watermark`).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from bulksend.errors import StorageError
from bulksend.journal.files import ReservedLog

__all__ = ["TimedSync"]


class TimedSync:
    """A base of :class:`~bulksend.journal.Journal`, which sets the attributes below and
    provides :meth:`_failed`."""

    results_path: Path
    intent_path: Path
    fsync_interval: float
    failed: StorageError | None
    _results_fd: int
    _intent_fd: int
    _intent_log: ReservedLog | None

    def _init_sync(self) -> None:
        self._last_fsync = time.monotonic()
        self._dirty = False
        self._results_bytes = 0  # size of the results file as this process wrote it
        self._durable_bytes = 0  # of which known on stable storage (the ``W`` watermark)
        self._syncing_bytes = 0  # its size when the running timer fsync started

    def _failed(self, path: Path, exc: OSError, action: str = "write") -> StorageError:
        raise NotImplementedError

    def _append_intent_log(self, data: bytes) -> None:
        """Append to the intent log (``OSError`` when it fails, or is not open)."""
        log = self._intent_log
        if log is None:
            raise OSError(errno.EBADF, "the journal is closed")
        log.append(data)

    def fsync_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_fsync >= self.fsync_interval

    def _paths(self) -> tuple[tuple[int, Path], ...]:
        return (self._results_fd, self.results_path), (self._intent_fd, self.intent_path)

    def fds(self) -> tuple[tuple[int, str], ...]:
        """The open file descriptors with their paths, for an fsync off the event loop; marks
        them synced. Once that fsync returned, :meth:`results_durable` records it."""
        self._last_fsync = time.monotonic()
        self._dirty = False
        self._syncing_bytes = self._results_bytes
        return tuple((fd, str(path)) for fd, path in self._paths() if fd >= 0)

    def results_durable(self) -> None:
        """The fsync of :meth:`fds` returned: the results written before it are on stable
        storage. A ``W`` line says so (see the module docstring)."""
        size = self._syncing_bytes
        if size <= self._durable_bytes or self._intent_fd < 0 or self.failed is not None:
            return
        self._durable_bytes = size
        try:
            self._append_intent_log(f"W {size}\n".encode())
        except OSError as exc:
            raise self._failed(self.intent_path, exc) from None
        self._dirty = True

    def fsync(self) -> None:
        """Push both files to stable storage, the results first (at close)."""
        self._last_fsync = time.monotonic()
        self._dirty = False
        for fd, path in self._paths():
            if fd >= 0:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise self._failed(path, exc, "fsync") from None
