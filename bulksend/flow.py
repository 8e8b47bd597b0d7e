"""Flow control towards a rate-limited gateway: when may the next request leave, and how big.

A Clickatell account allows a number of messages per second; over it the gateway answers HTTP 429
(``Retry-After``) and processes nothing. :class:`FlowControl` admits each request through three
gates, in order, and learns from what comes back:

1. **pause** — after a 429 nothing leaves until ``Retry-After`` has passed (the gateway's wish;
   when it sends none, the time one request's worth of messages takes to come back at the
   estimated rate);
2. **window** — at most ``window`` requests in flight. Without a known rate the window starts at
   :data:`INITIAL_WINDOW` and grows by :data:`SLOW_START_GROWTH` per answered request (×4 per round
   trip) up to ``maximum``: a first wave of ``maximum`` 600-number requests would meet an empty
   bucket on every account below ~20 000 msg/s. Once a rate is known (``--rate``, or learned) the
   window is ``maximum`` and pacing governs;
3. **pacing** — requests leave one at a time, ``messages / rate`` seconds apart (a bucket of one
   request). The gateway's bucket holds a second's worth (the documented semantics: R messages,
   one per recipient, per second, refilled continuously), so a client that never bursts leaves
   the gateway ``burst - batch`` messages of slack for arrival jitter; :meth:`batch_limit` keeps
   batches at half a second's worth or less for that reason.

A throttled request's pacing slot is given back (the gateway processed nothing), but never before
the pause ends: pacing counts only what the gateway processed, so a retried batch is charged once,
and what reaches the gateway never exceeds the rate.

Learning (no ``--rate``, or a ``--rate`` above what the account allows): a 429 on a request
admitted since the last pause is a *throttle event*. Between two events the gateway's bucket went
from (assumed) full to empty, so with ``A`` messages admitted in the ``Δ`` seconds before the refused
request of ``n``, a bucket of ``burst`` seconds gives ``A <= R·(burst + Δ) < A + n``: the rate is
estimated as ``(A + n/2) / (burst + Δ)``. When ``n`` is large against ``A`` (an early event) the
estimate is loose and the sender paces at the upper bound ``(A + n) / (burst + Δ)``, which makes the
next event come soon and precise; once tight, it paces at the estimate and grows it by
:data:`GROWTH_PER_SECOND` to follow an account whose limit rises. Stale 429s (requests that left
before the pause) refine the event they belong to instead of starting new ones.

Everything here runs on one event loop; the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ASSUMED_BURST_SECONDS",
    "INITIAL_WINDOW",
    "FlowControl",
    "Ticket",
]

INITIAL_WINDOW = 2
"""Requests in flight before the first answers, when no rate is known."""
SLOW_START_GROWTH = 3.0
"""Window growth per answered request during slow start (×4 per round trip)."""
ASSUMED_BURST_SECONDS = 1.0
"""The gateway's bucket, in seconds of its rate (Clickatell-style: one second's worth)."""
GROWTH_PER_SECOND = 0.005
"""A learned rate grows by this share of itself per second until the next throttle event."""
LOOSE = 0.25
"""An event is loose when the refused request is more than this share of what was admitted."""
MIN_PAUSE = 0.05
"""Shortest pause after a 429 without ``Retry-After``."""


@dataclass(slots=True, eq=False)
class Ticket:
    """One admitted request: when it left and how many messages it carried."""

    messages: int
    admitted_at: float
    epoch: int
    seq: int  # admission order
    settled: bool = False


@dataclass(slots=True)
class _Event:
    """What the last throttle event measured (see the module docstring)."""

    epoch: int
    admitted: float  # A: messages admitted in the epoch before the refused request
    span: float  # burst + Δ, seconds
    refused_seq: int  # the refused request's admission order
    refused: int  # n: the refused request's messages


class FlowControl:
    """Pause, window and pacing for one gateway; see the module docstring."""

    def __init__(
        self,
        maximum: int,
        rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.cap = rate
        """The hard cap (``--rate``), messages per second; ``None``: none."""
        self.clock = clock
        self.in_flight = 0
        self.throttled = 0
        """429 answers so far."""
        self.events = 0
        """Throttle events so far (429s on requests sent after the last pause)."""
        self.window = float(maximum if rate else min(maximum, INITIAL_WINDOW))
        self.paused_until = 0.0
        self._learned: float | None = None
        self._learned_at = 0.0
        self._next_free = 0.0
        self._epoch = 0
        self._epoch_start = clock()
        self._epoch_credit = ASSUMED_BURST_SECONDS
        self._epoch_total = 0.0  # messages admitted this epoch and not refused
        self._flying: set[Ticket] = set()
        self._seq = 0
        self._event: _Event | None = None
        self._cond = asyncio.Condition()

    # -- what governs now ----------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The pacing rate now (messages per second), or ``None`` when unpaced."""
        learned = self._learned
        if learned is not None:
            grown = learned * (1.0 + GROWTH_PER_SECOND * max(0.0, self.clock() - self._learned_at))
            return grown if self.cap is None else min(self.cap, grown)
        return self.cap

    def batch_limit(self, requested: int) -> int:
        """The largest batch to send now: ``requested``, or half a second's worth when less."""
        rate = self.rate
        if rate is None:
            return requested
        return max(1, min(requested, math.floor(rate / 2)))

    # -- admission -----------------------------------------------------------------------------

    async def acquire(self, messages: int) -> Ticket:
        """Wait until a request of ``messages`` may leave; the caller must :meth:`release` it."""
        async with self._cond:
            while True:
                now = self.clock()
                if self.paused_until > now:
                    await self._sleep_unlocked(self.paused_until - now)
                    continue
                if self.in_flight >= max(1, int(self.window)):
                    await self._cond.wait()
                    continue
                rate = self.rate
                if rate is None:
                    break
                start = max(now, self._next_free)
                self._next_free = start + messages / rate
                if start <= now:
                    break
                self.in_flight += 1  # hold the window slot while waiting for the pacing slot
                try:
                    await self._sleep_unlocked(start - now)
                finally:
                    self.in_flight -= 1
                if self.paused_until <= self.clock():
                    break
                # A pause began meanwhile: this slot is void, queue again after it.
            self.in_flight += 1
            self._seq += 1
            ticket = Ticket(messages, self.clock(), self._epoch, self._seq)
            self._flying.add(ticket)
            self._epoch_total += messages
            return ticket

    async def _sleep_unlocked(self, seconds: float) -> None:
        self._cond.release()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self._cond.acquire()

    async def release(self, ticket: Ticket) -> None:
        """The request is over (answered, refused or failed): free its window slot."""
        self._flying.discard(ticket)
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify(1)

    # -- what came back ------------------------------------------------------------------------

    def succeeded(self, ticket: Ticket) -> None:
        """The gateway processed the request."""
        ticket.settled = True
        if self.window < self.maximum:
            self.window = min(float(self.maximum), self.window + SLOW_START_GROWTH)

    def failed(self, ticket: Ticket, *, processed: bool = True) -> None:
        """The request failed otherwise (503, ERR 901 or 003, a drop...): it says nothing about
        the rate. ``processed=False`` (the gateway certainly did not act on it) gives its pacing
        slot back, so that a resend after a session renewal need not wait for it."""
        ticket.settled = True
        self._forget(ticket)
        rate = self.rate
        if not processed and rate is not None:
            self._next_free = max(self.clock(), self._next_free - ticket.messages / rate)

    def throttled_by_gateway(self, ticket: Ticket, retry_after: float | None) -> float:
        """A 429 for ``ticket``: learn, pause, give back its pacing slot. Returns the pause."""
        ticket.settled = True
        self.throttled += 1
        now = self.clock()
        self._forget(ticket)
        event = self._event
        if ticket.epoch != self._epoch:
            # Left before the last pause: it refines that event's count instead of starting one.
            if event is not None and ticket.epoch == event.epoch and ticket.seq < event.refused_seq:
                event.admitted = max(0.0, event.admitted - ticket.messages)
                self._set_learned(self._estimate(event), now)
            return self._pause(ticket, retry_after, now)
        self.events += 1
        later = sum(
            t.messages for t in self._flying if t.epoch == self._epoch and t.seq > ticket.seq
        )
        admitted = max(0.0, self._epoch_total - later)
        span = self._epoch_credit + max(0.0, ticket.admitted_at - self._epoch_start)
        event = _Event(self._epoch, admitted, span, ticket.seq, ticket.messages)
        self._event = event
        self._set_learned(self._estimate(event), now)
        self.window = float(self.maximum)  # the rate governs from now on
        pause = self._pause(ticket, retry_after, now)
        # A new epoch begins when the pause ends; the gateway's bucket refilled meanwhile.
        self._epoch += 1
        self._epoch_start = self.paused_until
        self._epoch_credit = min(
            ASSUMED_BURST_SECONDS, pause + max(0.0, now - ticket.admitted_at) / 2
        )
        self._epoch_total = 0.0
        return pause

    def start(self) -> None:
        """The campaign starts now: the gateway's bucket is taken as full."""
        self._epoch_start = self.clock()

    def _estimate(self, event: _Event) -> float:
        lo_count, refused = event.admitted, event.refused
        if lo_count <= 0 or refused > LOOSE * lo_count:
            return max(1.0, (lo_count + refused) / event.span)  # loose: probe the upper bound
        return (lo_count + refused / 2) / event.span

    def _set_learned(self, estimate: float, now: float) -> None:
        current = self.rate
        if current is not None and self._learned is not None:
            estimate = min(estimate, current)
        self._learned = estimate if self.cap is None else min(self.cap, estimate)
        self._learned_at = now

    def _pause(self, ticket: Ticket, retry_after: float | None, now: float) -> float:
        pause = retry_after
        if pause is None:
            pause = min(1.0, max(MIN_PAUSE, ticket.messages / (self.rate or 1.0)))
        until = now + pause
        if until > self.paused_until:
            self.paused_until = until
        rate = self.rate
        if rate is not None:
            # Give the refused request's slot back, but nothing leaves before the pause ends.
            self._next_free = max(self.paused_until, self._next_free - ticket.messages / rate)
        else:
            self._next_free = max(self._next_free, self.paused_until)
        return pause

    def _forget(self, ticket: Ticket) -> None:
        if ticket.epoch == self._epoch:
            self._epoch_total = max(0.0, self._epoch_total - ticket.messages)
