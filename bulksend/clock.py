"""The campaign's clock: now, and waiting, for the send window (``--send-window``, ``--wait``).

A campaign reads the time of day and waits for a window through ``settings.clock``, never through
the wall clock directly, so that tests and simulations drive it: :data:`SYSTEM_CLOCK` is
:func:`time.time` and :func:`asyncio.sleep`; :class:`ManualClock` stands still until it is moved,
and its :meth:`~ManualClock.sleep` moves it (a campaign waiting for 09:00 gets there at once).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told (:meth:`advance`, :meth:`set`) or slept on."""

    def __init__(self, start: float | datetime) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self.slept: list[float] = []
        """Every sleep asked for, in seconds (tests check what a run waited for)."""

    def now(self) -> float:
        return self._now

    def set(self, when: float | datetime) -> None:
        self._now = when.timestamp() if isinstance(when, datetime) else float(when)

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
