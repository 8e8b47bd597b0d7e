"""Group commit: many writers, one ``fdatasync`` per round, off the event loop.

A campaign's senders each write their batch's intent and must not let the request leave before
that line is on stable storage. One ``fdatasync`` per batch would cost a disk flush per request;
instead, every sender that asks while a flush is running waits for the next one, and that one
covers them all (the technique databases use for their write-ahead logs). The cost is one
``fdatasync`` per round of senders, not per batch.

What :class:`GroupCommit` promises:

* :meth:`GroupCommit.durable` returns only once an ``fdatasync`` that *started after* the caller's
  write (:meth:`GroupCommit.wrote`) has returned: the write is on stable storage;
* at most one ``fdatasync`` runs at a time, in a worker thread (the loop keeps serving answers);
  it works on a duplicate of the descriptor, so the owner may close or replace the file meanwhile
  (then :meth:`GroupCommit.covered` records that the replacement made everything durable);
* a failed ``fdatasync`` raises :class:`~bulksend.errors.StorageError` naming the file in every
  waiter of that round; nothing it covered may be treated as durable.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from bulksend.errors import StorageError

__all__ = ["GroupCommit", "datasync"]


def datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (the data and the size, not the mtime), else
    ``fsync`` (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


def _sync_and_close(fd: int) -> None:
    try:
        datasync(fd)
    finally:
        os.close(fd)


class GroupCommit:
    """Rounds of ``fdatasync`` on the file ``fd()`` names (see the module docstring)."""

    OVERLAP = 2
    """Rounds that may run at once: a write made while a round runs starts its own round at once
    (up to this many) instead of waiting for the running one to end, so a writer waits about one
    ``fdatasync``, not one and a half."""

    def __init__(self, fd: Callable[[], int], path: str) -> None:
        self._fd = fd
        self.path = path
        self.written = 0  # writes so far
        self.synced = 0  # writes known durable
        self.rounds = 0  # fdatasync calls made
        self._running: dict[int, asyncio.Future[None]] = {}  # target -> its round

    def wrote(self) -> int:
        """Count a write; returns its ticket for :meth:`durable`."""
        self.written += 1
        return self.written

    def covered(self) -> None:
        """Every write so far is durable by other means (the file was fsynced and replaced)."""
        self.synced = self.written

    async def durable(self, ticket: int) -> None:
        """Return once the write ``ticket`` is on stable storage."""
        while self.synced < ticket:
            covering = [r for target, r in self._running.items() if target >= ticket]
            if covering:
                round_ = covering[0]
            elif len(self._running) < self.OVERLAP:
                target = self.written
                round_ = asyncio.ensure_future(self._sync(target))
                self._running[target] = round_
            else:  # wait for a running round to end, then look again
                round_ = next(iter(self._running.values()))
            # One waiter cancelled (its campaign aborting) must not cancel the others' round.
            await asyncio.shield(round_)

    async def _sync(self, target: int) -> None:
        try:
            try:
                fd = os.dup(self._fd())
                await asyncio.to_thread(_sync_and_close, fd)
            except OSError as exc:
                raise StorageError(self.path, exc, "fdatasync") from None
            self.rounds += 1
            self.synced = max(self.synced, target)
        finally:
            del self._running[target]
