"""Flow control towards a rate-limited gateway: when may the next request leave, and how big.

A Clickatell account allows a number of messages per second; over it the gateway answers HTTP 429
(``Retry-After``) and processes nothing. :class:`FlowControl` admits each request through three
gates, in order, and learns from what comes back:

1. **pause** — after a 429 nothing leaves until ``Retry-After`` has passed (the gateway's wish;
   when it sends none, the time one request's worth of messages takes to come back at the
   estimated rate);
2. **window** — at most ``window`` requests in flight. Without a known rate the window starts at
   :data:`INITIAL_WINDOW` and grows by :data:`SLOW_START_GROWTH` per answered request (×6 per round
   trip) up to ``maximum``: a first wave of ``maximum`` 600-number requests would meet an empty
   bucket on every account below ~20 000 msg/s. Once a rate is known (``--rate``, or learned) the
   window is ``maximum`` and pacing governs;
3. **pacing** — requests leave one at a time, ``messages / rate`` seconds apart (a bucket of one
   request). The gateway's bucket holds a second's worth (the documented semantics: R messages,
   one per recipient, per second, refilled continuously), so a client that never bursts leaves
   the gateway ``burst - batch`` messages of slack for arrival jitter; :meth:`batch_limit` keeps
   batches at half a second's worth or less for that reason (a quarter of a learned rate, for a
   tighter estimate). An account slower than one batch (200/s against 600-number batches) thus
   gets 100-number requests every half second and never has to refuse one.

A throttled request's pacing slot is given back (the gateway processed nothing), but never before
the pause ends: pacing counts only what the gateway processed, so a retried batch is charged once,
and what reaches the gateway never exceeds the rate.

Learning (no ``--rate``, or a ``--rate`` above what the account allows): a 429 on a request
admitted since the last pause is a *throttle event*. The gateway's bucket (``burst`` seconds of
``R``) held less than the refused request's ``n`` messages, and at any earlier moment ``s`` it held
at most ``burst·R``; with ``A`` messages admitted from ``s`` to the refusal, ``Δ`` seconds later,
``burst·R + R·Δ - A < n`` for the ``s`` where the bucket was last full, and ``>= 0`` before the
refusal: ``A / (burst + Δ) <= R < (A + n) / (burst + Δ)``; and the bucket lacked at most ``n``,
refilled in ``Retry-After`` seconds (rounded up when whole): ``R <= n / (Retry-After - 1)``. The
``s`` taken is the one giving the highest bound (the busiest stretch: an idle spell refills the
bucket), and the rate estimated as ``(A + n/2) / (burst + Δ)``. When ``n`` is large against ``A`` (an early event) the estimate is
loose and the sender paces at the upper bound, which makes the next event come soon and precise;
once tight, it paces at the estimate and grows it by :data:`GROWTH_PER_SECOND` to follow an account
whose limit rises (the pace is :data:`MARGIN` of the estimate, which is within ``n/2`` of the
truth, so that the gateway's bucket is not slowly drained into another pause). Stale 429s
(requests that left before the pause) refine the event they belong to instead of starting new
ones.

Everything here runs on one event loop; the clock is injectable for tests.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
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
SLOW_START_GROWTH = 5.0
"""Window growth per answered request during slow start (×6 per round trip: 2, 12, 72)."""
ASSUMED_BURST_SECONDS = 1.0
"""The gateway's bucket, in seconds of its rate (Clickatell-style: one second's worth)."""
GROWTH_PER_SECOND = 0.002
"""A learned rate grows by this share of itself per second until the next throttle event: slow
enough that a tight estimate is not overrun within a typical campaign (+6 % in 30 s), fast enough
to follow a limit that rises or an estimate biased low (a smaller bucket than assumed)."""
MARGIN = 0.97
"""A tight estimate is paced at this share of itself: the estimate is within about ±n/2 of R."""
LOOSE = 0.15
"""An event is loose when the refused request is more than this share of what was admitted."""
MIN_PAUSE = 0.05
"""Shortest pause after a 429 without ``Retry-After``."""
BATCH_SECONDS = 0.5
"""With a known rate a request carries at most this many seconds of it: the gateway's bucket (a
second's worth) keeps half of itself as slack for arrival jitter."""
LEARNED_BATCH_SECONDS = 0.25
"""With a learned rate, a quarter second: a throttle event then pins the rate to within an
eighth of a second's worth, over the few seconds since the last pause."""
HISTORY = 4096
"""Admissions remembered per epoch for the estimate (older ones only lengthen the stretch)."""


@dataclass(slots=True, eq=False)
class Ticket:
    """One admitted request: when it left, how many messages, and its pacing slot."""

    messages: int
    admitted_at: float
    epoch: int
    seq: int  # admission order
    slot: float = 0.0  # seconds of pacing it took
    refused: bool = False


@dataclass(slots=True)
class _Event:
    """The last throttle event: the refused request and the admissions before it."""

    refused: Ticket
    history: deque[Ticket]
    retry_after: float | None


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
        self._history: deque[Ticket] = deque(maxlen=HISTORY)
        self._seq = 0
        self._event: _Event | None = None
        self._turn = asyncio.Lock()  # FIFO: one request at a time waits for its turn
        self._freed = asyncio.Event()

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
        """The largest batch to send now: ``requested``, or :data:`BATCH_SECONDS` of the rate
        when less (:data:`LEARNED_BATCH_SECONDS` of a learned one)."""
        rate = self.rate
        if rate is None:
            return requested
        seconds = BATCH_SECONDS if self._learned is None else LEARNED_BATCH_SECONDS
        return max(1, min(requested, math.floor(rate * seconds)))

    # -- admission -----------------------------------------------------------------------------

    def admits_now(self) -> bool:
        """Whether a request asking now would be admitted without waiting (no pause, a free
        place in the window, no pacing due, nobody ahead in line). A hint: it may change before
        the request asks."""
        now = self.clock()
        return (
            self.paused_until <= now
            and self.in_flight < max(1, int(self.window))
            and (self.rate is None or self._next_free <= now)
            and not self._turn.locked()
        )

    async def acquire(self, messages: int) -> Ticket:
        """Wait for the turn of a request of ``messages``; the caller must :meth:`release` it.

        Requests wait in arrival order; only the first in line sleeps on the pause, the window
        and the pacing clock, so a rate learned meanwhile applies to the very next request."""
        async with self._turn:
            while True:
                now = self.clock()
                if self.paused_until > now:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                if self.in_flight >= max(1, int(self.window)):
                    self._freed.clear()
                    await self._freed.wait()
                    continue
                if self._next_free > now and self.rate is not None:
                    await asyncio.sleep(self._next_free - now)
                    continue
                break
            rate = self.rate
            slot = messages / rate if rate is not None else 0.0
            # Keep to the schedule when woken a little late (timer and loop latency would
            # otherwise add up at thousands of requests a second); after an idle spell, start
            # from now rather than bursting to catch up.
            previous = self._next_free
            self._next_free = (previous if now - previous < slot else now) + slot
            self.in_flight += 1
            self._seq += 1
            ticket = Ticket(messages, now, self._epoch, self._seq, slot)
            self._history.append(ticket)
            return ticket

    async def release(self, ticket: Ticket) -> None:
        """The request is over (answered, refused or failed): free its window slot."""
        self.in_flight -= 1
        self._freed.set()

    # -- what came back ------------------------------------------------------------------------

    def succeeded(self, ticket: Ticket) -> None:
        """The gateway processed the request."""
        if self.window < self.maximum:
            self.window = min(float(self.maximum), self.window + SLOW_START_GROWTH)

    def failed(self, ticket: Ticket, *, processed: bool = True) -> None:
        """The request failed otherwise (503, ERR 901 or 003, a drop...): it says nothing about
        the rate. ``processed=False`` (the gateway certainly did not act on it) gives its pacing
        slot back, so that a resend after a session renewal need not wait for it."""
        ticket.refused = True
        if not processed:
            self._refund(ticket, self.clock())

    def throttled_by_gateway(self, ticket: Ticket, retry_after: float | None) -> float:
        """A 429 for ``ticket``: learn, pause, give back its pacing slot. Returns the pause."""
        ticket.refused = True
        self.throttled += 1
        now = self.clock()
        event = self._event
        if ticket.epoch != self._epoch:
            # Left before the last pause: it refines that event's count instead of starting one.
            if (
                event is not None
                and ticket.epoch == event.refused.epoch
                and ticket.seq < event.refused.seq
            ):
                self._set_learned(_estimate(event), now, refine=True)
            return self._pause(ticket, retry_after, now)
        self.events += 1
        event = _Event(ticket, self._history, retry_after)
        self._event = event
        self._set_learned(_estimate(event), now, refine=False)
        self.window = float(self.maximum)  # the rate governs from now on
        pause = self._pause(ticket, retry_after, now)
        self._epoch += 1  # requests admitted from now on count towards the next event
        self._history = deque(maxlen=HISTORY)
        return pause

    def _set_learned(self, estimate: float, now: float, *, refine: bool) -> None:
        current = self.rate
        if current is not None and (self._learned is not None or refine):
            estimate = min(estimate, current)
        self._learned = estimate if self.cap is None else min(self.cap, estimate)
        self._learned_at = now

    def _pause(self, ticket: Ticket, retry_after: float | None, now: float) -> float:
        pause = retry_after
        if pause is None:
            pause = min(1.0, max(MIN_PAUSE, ticket.messages / (self.rate or 1.0)))
        self.paused_until = max(self.paused_until, now + pause)
        self._refund(ticket, now)
        return pause

    def _refund(self, ticket: Ticket, now: float) -> None:
        """Give back a request's pacing slot (the gateway processed nothing), never into the
        past and never before a pause ends."""
        floor = max(now, self.paused_until)
        self._next_free = max(floor, self._next_free - ticket.slot)
        ticket.slot = 0.0


def _estimate(event: _Event) -> float:
    """The rate a throttle event implies (module docstring): over every stretch from an earlier
    admission to the refused request, take the one with the highest upper bound."""
    refused = event.refused
    n = float(refused.messages)
    burst = ASSUMED_BURST_SECONDS
    best_high, best_admitted, best_span = n / burst, 0.0, burst
    admitted = 0.0
    for ticket in reversed(event.history):
        if ticket.seq >= refused.seq or ticket.refused:
            continue
        admitted += ticket.messages
        span = burst + max(0.0, refused.admitted_at - ticket.admitted_at)
        high = (admitted + n) / span
        if high > best_high:
            best_high, best_admitted, best_span = high, admitted, span
    if best_admitted <= 0 or n > LOOSE * best_admitted:
        # Loose: probe the upper bound, or what Retry-After allows if less. The bucket lacked at
        # most n messages and refills them in Retry-After seconds (rounded up when whole).
        high = best_high
        wait = event.retry_after
        if wait is not None and wait > 0:
            whole = wait == math.floor(wait)
            if not whole or wait >= 2:
                high = min(high, n / (wait - 1 if whole else wait))
        return max(1.0, high)
    return MARGIN * (best_admitted + n / 2) / best_span
