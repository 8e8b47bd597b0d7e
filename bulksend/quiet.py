"""Quiet hours in a campaign: which rows of a block may go now, and the count of the others.

:class:`QuietHours` is built from the settings only when ``send_window`` is set
(:meth:`QuietHours.of` returns None otherwise, and the campaign's hot path does not change). Per
block of input rows it reads the campaign's clock once and asks the window's gate
(:class:`bulksend.window.WindowGate`) about each row still to send: open now -> the row goes on to
a batch; closed -> it is deferred (:class:`bulksend.deferral.Deferrals`, by the minute its window
opens) and recorded nowhere, so it stays pending for the next run or for ``--wait``. A row whose
time-zone column holds no zone name is refused with a reason, as the input's other bad rows are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bulksend.deferral import Deferrals, WindowRecord
from bulksend.errors import ConfigError
from bulksend.window import NumberZones, WindowGate

if TYPE_CHECKING:
    from bulksend.clock import Clock
    from bulksend.config import CampaignSettings

__all__ = ["QuietHours"]


class QuietHours:
    """One run's send window: the gate, the clock and what was deferred."""

    __slots__ = ("clock", "deferrals", "gate", "settings", "zone_rejected")

    def __init__(self, settings: CampaignSettings) -> None:
        window = settings.window
        if window is None:
            raise ValueError("QuietHours needs a send window")
        self.settings = settings
        self.clock: Clock = settings.clock
        self.gate = WindowGate(window, NumberZones(settings.default_timezone))
        self.deferrals = Deferrals()
        self.zone_rejected = 0
        """Rows refused because their time-zone column held no zone name."""

    @classmethod
    def of(cls, settings: CampaignSettings) -> QuietHours | None:
        return cls(settings) if settings.send_window is not None else None

    def start_pass(self) -> None:
        """Forget what an earlier pass over the input deferred (``--wait`` reads it again)."""
        self.deferrals.clear()
        self.gate.defaulted = 0
        self.zone_rejected = 0

    def sendable(
        self,
        msisdns: Sequence[str],
        indices: Sequence[int] | None = None,
        zone_names: Sequence[str] | None = None,
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """Of the rows ``indices`` of a block (all when None): those that may go now, and those
        refused as (index, reason). The rest are counted in :attr:`deferrals`."""
        now = self.clock.now()
        opening = self.gate.opening
        deferrals = self.deferrals
        keep: list[int] = []
        refused: list[tuple[int, str]] = []
        for i in range(len(msisdns)) if indices is None else indices:
            name = zone_names[i].strip() if zone_names is not None else None
            try:
                when = opening(msisdns[i], now, name)
            except ConfigError:
                refused.append((i, f"unknown time zone {name!r} in --timezone-column"))
                continue
            if when is None:
                keep.append(i)
            else:
                deferrals.add(when)
        self.zone_rejected += len(refused)
        return keep, refused

    def record(self) -> WindowRecord:
        s = self.settings
        column = s.timezone_column
        return WindowRecord.of(
            self.deferrals,
            window=str(self.gate.window),
            default_timezone=s.default_timezone,
            default_timezone_rows=self.gate.defaulted,
            timezone_column="" if column is None else str(column),
            now=self.clock.now(),
        )
