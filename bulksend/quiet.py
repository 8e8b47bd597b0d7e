"""Quiet hours in a campaign: which rows of a block may go now, and the count of the others.

:class:`QuietHours` is built from the settings only when ``send_window`` is set
(:meth:`QuietHours.of` returns None otherwise, and the campaign's hot path does not change). Per
block of input rows it reads the campaign's clock once and asks the window's gate
(:class:`bulksend.window.WindowGate`) about each row still to send: open now -> the row goes on to
a batch; closed -> it is deferred (:class:`bulksend.deferral.Deferrals`, by the minute its window
opens) and recorded nowhere, so it stays pending for the next run or for ``--wait``. A row whose
time-zone column holds no zone name is refused with a reason, as the input's other bad rows are.

``--timezone-column COL`` (:class:`ZoneColumn`) reads that column with the recipient file's own
reading loop (:class:`~bulksend.source.RecipientSource`, asked for COL as if it held numbers: its
cells come back as the rows' "raw" values), a second pass over the file in step with the
campaign's blocks, so rows line up by number and memory stays at one block. An empty cell means
"from the numbering plan". Both passes must agree on the header row: a column named by its header
does; an index into a file whose zone cells look like a header row is refused before any row goes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bulksend.deferral import Deferrals, WindowRecord
from bulksend.errors import ConfigError, InputError
from bulksend.numbers import Reason
from bulksend.rows import Block, SourceStats
from bulksend.source import RecipientSource
from bulksend.window import NumberZones, WindowGate

if TYPE_CHECKING:
    from bulksend.clock import Clock
    from bulksend.config import CampaignSettings

__all__ = ["QuietHours", "ZoneColumn"]

_NO_ZONE = (Reason.EMPTY.value, "missing column")


class ZoneColumn:
    """The cells of the time-zone column, row by row, in step with the campaign's blocks."""

    def __init__(self, path: str, column: str | int) -> None:
        self.column = column
        self._source = RecipientSource(path, column=column, dedupe=False, block_rows=8192)
        self._blocks = self._read()
        self._ahead: dict[int, str] = {}
        self._read_to = 0  # the last row read from the column
        self._checked = False

    def _read(self) -> Iterator[tuple[int, list[tuple[int, str]]]]:
        for block in self._source.blocks():
            cells = [(r.row, "" if r.reason.startswith(_NO_ZONE) else r.raw) for r in block.rejects]
            cells += zip(block.rows, block.msisdns, strict=True)  # a "zone" that is a number
            yield block.last_row, cells

    def zones(self, block: Block, stats: SourceStats) -> list[str]:
        """The zone cell of each row of ``block`` to send (``""`` when empty)."""
        ahead = self._ahead
        while self._read_to < block.last_row:
            last_row, cells = next(self._blocks, (block.last_row, []))
            ahead.update(cells)
            self._read_to = last_row
        if not self._checked:
            self._checked = True
            if self._source.stats.header != stats.header:
                raise InputError(
                    f"--timezone-column {self.column!r}: its cells read as "
                    f"{'a header row' if self._source.stats.header else 'data'} where the numbers "
                    "do not; name the column by its header",
                    path=self._source.path,
                )
        zones = [ahead.pop(row, "") for row in block.rows]
        for row in [r for r in ahead if r <= block.last_row]:
            del ahead[row]
        return zones


class QuietHours:
    """One run's send window: the gate, the clock and what was deferred."""

    __slots__ = ("clock", "deferrals", "gate", "settings", "zone_column", "zone_rejected")

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
        self.zone_column: ZoneColumn | None = None
        """``--timezone-column``: opened by :meth:`start_pass` for each pass over the input."""

    @classmethod
    def of(cls, settings: CampaignSettings) -> QuietHours | None:
        return cls(settings) if settings.send_window is not None else None

    def start_pass(self) -> None:
        """Before a pass over the input: nothing deferred yet, the zone column from its start."""
        self.deferrals.clear()
        self.gate.defaulted = 0
        self.zone_rejected = 0
        column = self.settings.timezone_column
        if column is not None:
            self.zone_column = ZoneColumn(str(self.settings.input_path), column)

    def block_sendable(
        self, block: Block, stats: SourceStats, indices: Sequence[int] | None = None
    ) -> tuple[list[int], list[tuple[int, str]]]:
        """:meth:`sendable` for a block of the input (its zone column read alongside)."""
        zones = None if self.zone_column is None else self.zone_column.zones(block, stats)
        return self.sendable(block.msisdns, indices, zones)

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
            name = zone_names[i].strip() or None if zone_names is not None else None
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
