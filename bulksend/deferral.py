"""Rows the send window deferred, counted by the time their window opens. Pure, but for the
small record file.

:class:`Deferrals` is what a run (or a dry run) learns about the rows it did not send because the
window was closed at their numbers: how many, by the UTC minute their window opens (``never`` for
a window that never holds in all of a number's zones), and the next opening. Deferred rows are not
recorded anywhere as handled: they stay pending, and the next run (or ``--wait``) sends them.

:func:`write_record` keeps the last run's deferrals beside the results (``<results>.window.json``,
written to a temporary file, fsynced and renamed: a reader sees the old or the new record, whole)
for ``bulksend status``; :func:`read_record` reads it back (None when there is none or it cannot
be read).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Deferrals",
    "WindowRecord",
    "describe_deferred",
    "iso_minute",
    "read_record",
    "record_path_for",
    "utc_minute",
    "write_record",
]

NEVER_KEY = "never"


def utc_minute(ts: float) -> str:
    """``2026-12-07 13:00 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_minute(ts: float) -> str:
    """``2026-12-07T13:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")


class Deferrals:
    """Deferred rows by the minute their window opens (see the module docstring)."""

    __slots__ = ("_by_minute", "never")

    def __init__(self) -> None:
        self._by_minute: dict[int, int] = {}
        self.never = 0
        """Rows whose window never holds in all their zones at once."""

    def add(self, opening: float, rows: int = 1) -> None:
        """``rows`` deferred until ``opening`` (unix seconds; ``math.inf``: never)."""
        if opening == math.inf:
            self.never += rows
            return
        minute = -int(-opening // 60)  # the window is open from this minute on
        self._by_minute[minute] = self._by_minute.get(minute, 0) + rows

    def __len__(self) -> int:
        return sum(self._by_minute.values()) + self.never

    def clear(self) -> None:
        self._by_minute.clear()
        self.never = 0

    @property
    def next_opening(self) -> float | None:
        """When the first deferred group may go (unix seconds), None when none will."""
        return min(self._by_minute) * 60.0 if self._by_minute else None

    def by_opening(self) -> dict[str, int]:
        """``{"2026-12-07T13:00Z": rows, ..., "never": rows}``, earliest first."""
        out = {iso_minute(m * 60.0): n for m, n in sorted(self._by_minute.items())}
        if self.never:
            out[NEVER_KEY] = self.never
        return out

    def message(self) -> str:
        """``N rows deferred; the next window opens at 2026-12-07 13:00 UTC`` (and the rows that
        never will, if any)."""
        waiting = len(self) - self.never
        parts = []
        if waiting:
            assert self.next_opening is not None
            parts.append(
                f"{waiting:,} rows deferred; the next window opens at "
                f"{utc_minute(self.next_opening)}"
            )
        if self.never:
            parts.append(
                f"{self.never:,} rows never in their window (it never holds in all of their "
                "numbers' time zones at once: widen --send-window)"
            )
        return "; ".join(parts)


def describe_deferred(deferred: int, by_opening: dict[str, int], next_opens: str) -> str:
    """:meth:`Deferrals.message` from a summary's figures (``next_opens``: ``...T13:00Z``)."""
    never = by_opening.get(NEVER_KEY, 0)
    deferrals = Deferrals()
    if deferred - never and next_opens:
        when = datetime.fromisoformat(next_opens.replace("Z", "+00:00")).timestamp()
        deferrals.add(when, deferred - never)
    deferrals.never = never
    return deferrals.message()


@dataclass
class WindowRecord:
    """What a run with a send window left for later (``<results>.window.json``)."""

    window: str
    default_timezone: str
    checked_at: str
    """When the run decided (UTC, ISO 8601)."""
    deferred: int = 0
    deferred_by_opening: dict[str, int] = field(default_factory=dict)
    next_window_opens: str = ""
    default_timezone_rows: int = 0
    timezone_column: str = ""

    @classmethod
    def of(
        cls,
        deferrals: Deferrals,
        *,
        window: str,
        default_timezone: str,
        default_timezone_rows: int,
        timezone_column: str,
        now: float,
    ) -> WindowRecord:
        opening = deferrals.next_opening
        return cls(
            window=window,
            default_timezone=default_timezone,
            checked_at=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            deferred=len(deferrals),
            deferred_by_opening=deferrals.by_opening(),
            next_window_opens="" if opening is None else iso_minute(opening),
            default_timezone_rows=default_timezone_rows,
            timezone_column=timezone_column,
        )


def record_path_for(results_path: str | os.PathLike[str]) -> Path:
    results = Path(results_path)
    return results.with_name(results.name + ".window.json")


def write_record(results_path: str | os.PathLike[str], record: WindowRecord) -> None:
    """Replace the record beside ``results_path`` (atomically; OSError on failure)."""
    path = record_path_for(results_path)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(asdict(record), indent=2, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_record(results_path: str | os.PathLike[str]) -> WindowRecord | None:
    path = record_path_for(results_path)
    with contextlib.suppress(OSError, ValueError, TypeError):
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return WindowRecord(**data)
    return None
