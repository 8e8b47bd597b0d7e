"""Group commit: many writers, one ``fdatasync`` per round, on a flusher thread.

A campaign's senders each write their batch's intent and must not let the request leave before
that line is on stable storage. One ``fdatasync`` per batch would cost a disk flush per request;
instead, every write made before a round starts is covered by that round, so senders answered at
the same moment share one flush (the technique databases use for their write-ahead logs). The
cost is one ``fdatasync`` per round of senders, not per batch.

The flush runs on a thread of its own, so it overlaps the loop's work. A sender that writes its
next intent first and then records its previous batch (:meth:`GroupCommit.flush` between the two)
usually finds the flush over when its request is due, and goes on without waiting at all. When it
must wait, the caller says which way (``in_place``):

* in place, the event loop held for the rest of the round (a fraction of a millisecond), when the
  loop has time and rounds have been quick (under half of :attr:`GroupCommit.SPIN`, as on a local
  disk): yielding instead would let every other ready sender run first, and a wave of answers then
  costs a wave's worth of delay before any request leaves. A wait in place gives up after
  :attr:`GroupCommit.SPIN` and awaits the round;
* on the loop, the loop serving the others meanwhile, when the loop is busy (answers come back at
  once: the loop, not the gateway, is then the limit) or the disk is slow.

A write that no round covers yet first yields once, so that the writers of the same moment write
theirs and share the round. :attr:`GroupCommit.waits` counts how the waits ended,
:attr:`GroupCommit.held` the time the loop was held.

What :class:`GroupCommit` promises:

* :meth:`GroupCommit.durable` returns only once an ``fdatasync`` that *started after* the caller's
  write (:meth:`GroupCommit.wrote`) has returned: the write is on stable storage;
* one ``fdatasync`` runs at a time, on a duplicate of the descriptor taken when its round was asked
  for, so the owner may close or replace the file meanwhile (then :meth:`GroupCommit.covered`
  records that the replacement made everything durable);
* a failed ``fdatasync`` raises :class:`~bulksend.errors.StorageError` naming the file, in every
  waiter and every later caller: nothing it covered may be treated as durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable

from bulksend.errors import StorageError

__all__ = ["GroupCommit", "datasync"]


def datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (the data and the size, not the mtime), else
    ``fsync`` (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


class GroupCommit:
    """Rounds of ``fdatasync`` on the file ``fd()`` names (see the module docstring).

    Call it from one event loop thread; :meth:`close` it when the file is done with."""

    SPIN = 0.005
    """Rounds that typically take at most half of this (seconds) are waited for in place; a wait
    in place gives up after this long and awaits the round instead."""

    HANDOVER = 0.001
    """How long :meth:`flush` waits for the flusher thread to take up a new round (seconds), so
    that the ``fdatasync`` runs while the caller goes on."""

    def __init__(self, fd: Callable[[], int], path: str) -> None:
        self._fd = fd
        self.path = path
        self.written = 0  # writes so far (loop thread)
        self.synced = 0  # writes known durable (set under the mutex)
        self.rounds = 0  # fdatasync calls made
        self.typical = 0.0  # a round's duration, smoothed (seconds)
        self.held = 0.0  # seconds the loop thread spent waiting in place (and handing over)
        self.waits = {"none": 0, "yield": 0, "in place": 0, "on the loop": 0}
        """How :meth:`durable` calls ended: durable already, after one yield to the loop, after
        waiting in place, after awaiting the round on the loop."""
        self._mutex = threading.Lock()
        self._changed = threading.Condition(self._mutex)
        self._requested = 0  # the write the next round covers
        self._next_fd = -1  # the next round's duplicate of the descriptor
        self._busy = False  # a round's fdatasync is running
        self._closing = False
        self._error: OSError | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def wrote(self) -> int:
        """Count a write; returns its ticket for :meth:`durable`."""
        self.written += 1
        return self.written

    def covered(self) -> None:
        """Every write so far is durable by other means (the file was fsynced and replaced)."""
        with self._mutex:
            self.synced = max(self.synced, self.written)
            self._drop_next_fd()
            self._changed.notify_all()
        self._resolve()

    def flush(self, *, handover: bool = True) -> None:
        """Start a round covering every write so far, unless one already does; returns at once
        (after handing the round to the flusher thread, so that it runs meanwhile, unless not
        ``handover``)."""
        if self.synced >= self.written or self._error is not None:
            return
        with self._changed:
            if self._requested >= self.written or self._closing:
                return  # a round that covers them is queued or running
            if self._next_fd < 0:
                try:
                    self._next_fd = os.dup(self._fd())
                except OSError as exc:
                    self._error = self._error or exc
                    raise self._storage_error() from None
            self._requested = self.written
            idle = not self._busy
            self._changed.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bulksend-group-commit", daemon=True
                )
                self._thread.start()
            if idle and handover:
                # Until the thread is inside its fdatasync it needs the GIL this thread holds:
                # without the handover the flush would start only at our next blocking call.
                held = time.monotonic()
                self._changed.wait_for(self._taken_up, self.HANDOVER)
                self.held += time.monotonic() - held

    async def durable(self, ticket: int, *, in_place: bool = True) -> None:
        """Return once the write ``ticket`` is on stable storage. ``in_place``: the caller has
        nothing better for the loop to do (see the module docstring); else it awaits the round."""
        if self.synced >= ticket:
            self.waits["none"] += 1
            return
        if self._error is not None:
            raise self._storage_error()
        if self._requested < ticket:
            # Nobody has asked for a round that covers it yet: the writers of this same moment
            # write theirs first, and they all share the round.
            await asyncio.sleep(0)
            if self.synced >= ticket:
                self.waits["yield"] += 1
                return
            self.flush(handover=in_place)
        if in_place and self.quick():
            held = time.monotonic()
            with self._changed:
                self._changed.wait_for(lambda: self.synced >= ticket or self._settled(), self.SPIN)
            self.held += time.monotonic() - held
            if self.synced >= ticket:
                self.waits["in place"] += 1
                return
            if self._error is not None:
                raise self._storage_error()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waits["on the loop"] += 1
        with self._mutex:
            if self.synced >= ticket:
                return
            waiting = not self._settled()
            if waiting:
                self._loop = loop
                self._waiters.append((ticket, waiter))
        if not waiting:
            raise self._storage_error()
        # One waiter cancelled (its campaign aborting) must not cancel the others' round.
        await asyncio.shield(waiter)

    def close(self) -> None:
        """Stop the flusher thread (after the round it is in, if any)."""
        with self._changed:
            self._closing = True
            self._drop_next_fd()
            self._changed.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=30)
        self._resolve()

    # -- the flusher thread ------------------------------------------------------------------------

    def _run(self) -> None:
        changed = self._changed
        with changed:
            while True:
                while not self._closing and self._requested <= self.synced:
                    changed.wait()
                if self._closing:
                    return
                target, fd = self._requested, self._next_fd
                self._next_fd = -1
                self._busy = True
                changed.notify_all()
                changed.release()
                error: OSError | None = None
                started = time.monotonic()
                try:
                    datasync(fd)
                except OSError as exc:
                    error = exc
                finally:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                took = time.monotonic() - started
                changed.acquire()
                self._busy = False
                if error is None:
                    self.synced = max(self.synced, target)
                    self.rounds += 1
                    self.typical = took if self.rounds == 1 else 0.8 * self.typical + 0.2 * took
                else:
                    self._error = self._error or error
                changed.notify_all()
                if self._waiters and self._loop is not None:
                    # A closed loop: nobody waits any more.
                    with contextlib.suppress(RuntimeError):
                        self._loop.call_soon_threadsafe(self._resolve)
                if self._error is not None:
                    return

    # -- helpers -------------------------------------------------------------------------------

    def quick(self) -> bool:
        """Whether rounds are quick (under half of :attr:`SPIN`): worth waiting for in place."""
        return self.typical <= self.SPIN / 2

    def _taken_up(self) -> bool:
        """The requested round has started, or is over (called under the mutex)."""
        return self._busy or self.synced >= self._requested or self._settled()

    def _settled(self) -> bool:
        """Nothing more will happen for a waiter in place (called under the mutex)."""
        return self._error is not None or self._closing

    def _drop_next_fd(self) -> None:
        if self._next_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._next_fd)
            self._next_fd = -1
            self._requested = min(self._requested, self.synced)

    def _resolve(self) -> None:
        """On the loop: wake the waiters the last round (or a failure, or closing) settled."""
        with self._mutex:
            synced, settled = self.synced, self._settled()
            ready = [(t, w) for t, w in self._waiters if settled or t <= synced]
            self._waiters = [(t, w) for t, w in self._waiters if not settled and t > synced]
        for ticket, waiter in ready:
            if waiter.done():
                continue
            if ticket <= synced:
                waiter.set_result(None)
            else:
                waiter.set_exception(self._storage_error())

    def _storage_error(self) -> StorageError:
        cause = self._error or OSError(errno.ESHUTDOWN, "closed before the write was flushed")
        return StorageError(self.path, cause, "fdatasync")
