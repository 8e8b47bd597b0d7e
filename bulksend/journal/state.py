"""What reading the journal yields, and the parts of the results file both rooms write.

:class:`ResumeState` is what an existing journal says (rows done, statuses counted, rows turned
``unknown``); its :class:`RowBitmap` holds the done rows at one bit per row number (10 M rows in
1.25 MB). :data:`RESULTS_HEADER` is the results file's header line and :func:`utc_now` the
timestamp format of its ``sent_at`` column. Pure: no I/O, nothing of ours imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["HEADER_FIELDS", "RESULTS_HEADER", "ResumeState", "RowBitmap", "utc_now"]

RESULTS_HEADER = "row,to,status,api_msg_id,error_code,error,attempts,sent_at"
HEADER_FIELDS = RESULTS_HEADER.split(",")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RowBitmap:
    """A growable set of non-negative row numbers, one bit each (10 M rows: 1.25 MB)."""

    __slots__ = ("_bits", "count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, row: int) -> None:
        byte, bit = row >> 3, 1 << (row & 7)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits) // 2 + 64)))
        if not self._bits[byte] & bit:
            self._bits[byte] |= bit
            self.count += 1

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int) or row < 0:
            return False
        byte = row >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (row & 7)))

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return len(self._bits)


@dataclass
class ResumeState:
    """What an existing journal says: rows done, statuses counted, rows turned ``unknown``."""

    done: RowBitmap = field(default_factory=RowBitmap)
    counts: dict[str, int] = field(default_factory=dict)
    recovered_unknown: int = 0
    resent_unknown: int = 0
    reconciled: int = 0  # unknown rows found in the delivery receipts: accepted after all
    resumed: bool = False
    input_changes: list[str] = field(default_factory=list)  # empty: same input, same reading
    max_row: int = 0
