"""Deferred rows counted by opening, the record beside the results, and the manual clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from bulksend.clock import ManualClock
from bulksend.deferral import Deferrals, WindowRecord, read_record, record_path_for, write_record


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_rows_are_counted_by_the_minute_their_window_opens() -> None:
    deferrals = Deferrals()
    deferrals.add(ts(2026, 12, 7, 13, 0), 3)
    deferrals.add(ts(2026, 12, 7, 13, 0))
    deferrals.add(ts(2026, 12, 7, 6, 30, 15))  # a DST jump at a whole second: the next minute
    deferrals.add(math.inf, 2)
    assert len(deferrals) == 7 and deferrals.never == 2
    assert deferrals.next_opening == ts(2026, 12, 7, 6, 31)
    assert deferrals.by_opening() == {
        "2026-12-07T06:31Z": 1,
        "2026-12-07T13:00Z": 4,
        "never": 2,
    }
    assert deferrals.message() == (
        "5 rows deferred; the next window opens at 2026-12-07 06:31 UTC; 2 rows never in their "
        "window (it never holds in all of their numbers' time zones at once: widen --send-window)"
    )
    deferrals.clear()
    assert len(deferrals) == 0 and deferrals.next_opening is None and deferrals.message() == ""


def test_the_record_is_written_whole_and_read_back(tmp_path: Path) -> None:
    results = tmp_path / "c.results.csv"
    assert read_record(results) is None
    deferrals = Deferrals()
    deferrals.add(ts(2026, 12, 7, 13, 0), 10)
    record = WindowRecord.of(
        deferrals,
        window="08:00-21:00",
        default_timezone="UTC",
        default_timezone_rows=2,
        timezone_column="",
        now=ts(2026, 12, 7, 12, 0),
    )
    write_record(results, record)
    assert read_record(results) == record
    assert record.next_window_opens == "2026-12-07T13:00Z" and record.deferred == 10
    assert record.checked_at == "2026-12-07T12:00:00Z"
    assert record_path_for(results).stat().st_mode & 0o777 == 0o600
    record_path_for(results).write_text("{torn")
    assert read_record(results) is None


async def test_a_manual_clock_moves_when_slept_on() -> None:
    clock = ManualClock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))
    assert clock.now() == ts(2026, 12, 7, 12, 0)
    await clock.sleep(3600)
    assert clock.now() == ts(2026, 12, 7, 13, 0) and clock.slept == [3600]
    clock.advance(60)
    clock.set(ts(2027, 1, 1))
    assert clock.now() == ts(2027, 1, 1)
