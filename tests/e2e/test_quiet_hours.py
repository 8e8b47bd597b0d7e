"""Quiet hours end to end against the real simulator: the clock is driven through the settings
(:class:`bulksend.clock.ManualClock`), never the wall clock, except in the command-line test."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bulksend import run_campaign_async
from bulksend.clock import ManualClock
from bulksend.config import CampaignSettings
from bulksend.simulator import Simulator
from bulksend.status import campaign_status
from bulksend.window import SendWindow
from tests.e2e.support import (
    cli_env,
    read_results,
    run_bulksend,
    start_simulator_process,
    stop_process,
)

MakeSettings = Callable[..., CampaignSettings]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def write_audience(path: Path, groups: dict[str, int], seed: int = 18) -> dict[str, list[str]]:
    """A CSV mixing numbers of several places (``za``: Johannesburg, ``ny``: New York, ``au``:
    Australian mobiles, all of Australia's zones); returns each group's numbers."""
    rng = random.Random(seed)
    heads = {"za": "2782", "ny": "1212555", "au": "6141", "la": "1310555"}
    out: dict[str, list[str]] = {}
    lines = ["phone\n"]
    seen: set[str] = set()
    for group, count in groups.items():
        numbers = out.setdefault(group, [])
        head = heads[group]
        while len(numbers) < count:
            rest = 11 - len(head)
            number = head + f"{rng.randrange(10**rest):0{rest}d}"
            if number not in seen:
                seen.add(number)
                numbers.append(number)
    rows = [n for numbers in out.values() for n in numbers]
    rng.shuffle(rows)
    lines += [f"+{n}\n" for n in rows]
    path.write_text("".join(lines), encoding="utf-8")
    return out


def texted(sim: Simulator) -> set[str]:
    return {entry.to for entry in sim.ledger}


async def test_a_window_holds_for_some_zones_and_not_others(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    audience = write_audience(tmp_path / "in.csv", {"za": 300, "ny": 200, "au": 100})
    clock = ManualClock(utc(2026, 12, 7, 12, 30))  # 14:30 Johannesburg, 07:30 New York
    settings = make_settings(simulator, tmp_path / "in.csv", send_window="08:00-21:00", clock=clock)
    summary = await run_campaign_async(settings)
    assert summary.exit_code == 0, summary.stopped
    assert texted(simulator) == set(audience["za"])
    assert summary.accepted == 300
    assert summary.deferred == 300 and summary.pending == 0
    # New York opens at 13:00 UTC; Australia's mobiles when the Cocos Islands reach 08:00
    assert summary.deferred_by_opening == {"2026-12-07T13:00Z": 200, "2026-12-08T01:30Z": 100}
    assert summary.next_window_opens == "2026-12-07T13:00Z"
    assert summary.window == "08:00-21:00"
    status = campaign_status(settings.results_path)
    assert status.window["deferred"] == 300
    assert status.window["next_window_opens"] == "2026-12-07T13:00Z"

    # Rerun later, as cron does: the same command sends what may go now.
    clock.set(utc(2026, 12, 7, 13, 5))
    summary = await run_campaign_async(settings)
    assert summary.exit_code == 0
    assert texted(simulator) == set(audience["za"]) | set(audience["ny"])
    assert summary.deferred == 100 and summary.previously_done == 300
    assert summary.deferred_by_opening == {"2026-12-08T01:30Z": 100}
    # and once Australia is awake, the rest; nothing twice
    clock.set(utc(2026, 12, 8, 2, 0))
    summary = await run_campaign_async(settings)
    assert summary.deferred == 0 and summary.accepted == 600
    assert len(simulator.ledger) == 600
    assert len(read_results(settings.results_path)) == 600


async def test_wait_sends_each_group_as_its_window_opens(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    audience = write_audience(tmp_path / "in.csv", {"za": 100, "ny": 100, "la": 100})
    clock = ManualClock(utc(2026, 12, 7, 12, 30))
    settings = make_settings(
        simulator, tmp_path / "in.csv", send_window="08:00-21:00", wait=True, clock=clock
    )
    summary = await run_campaign_async(settings)
    assert summary.exit_code == 0, summary.stopped
    assert summary.deferred == 0 and summary.accepted == 300
    assert texted(simulator) == {n for numbers in audience.values() for n in numbers}
    # it waited for New York (13:00 UTC), then for Los Angeles (16:00 UTC)
    assert clock.slept == [1800.0, 3 * 3600.0]
    assert clock.now() == utc(2026, 12, 7, 16, 0).timestamp()
    assert len(simulator.ledger) == 300


async def test_a_window_across_midnight(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    audience = write_audience(tmp_path / "in.csv", {"za": 50})
    clock = ManualClock(utc(2026, 12, 7, 6, 30))  # 08:30 in Johannesburg: closed
    settings = make_settings(simulator, tmp_path / "in.csv", send_window="20:00-08:00", clock=clock)
    summary = await run_campaign_async(settings)
    assert summary.accepted == 0 and summary.deferred == 50 and summary.exit_code == 0
    assert summary.next_window_opens == "2026-12-07T18:00Z"
    clock.set(utc(2026, 12, 7, 23, 0))  # 01:00 the next day: still the evening's window
    summary = await run_campaign_async(settings)
    assert summary.accepted == 50 and summary.deferred == 0
    assert texted(simulator) == set(audience["za"])


async def test_a_daylight_saving_change(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_audience(tmp_path / "in.csv", {"ny": 40})
    # New York springs forward at 07:00 UTC on 2026-03-08 (02:00 EST -> 03:00 EDT); a window
    # opening at 02:30 opens at the jump
    clock = ManualClock(utc(2026, 3, 8, 5, 0))
    settings = make_settings(
        simulator, tmp_path / "in.csv", send_window="02:30-09:00", wait=True, clock=clock
    )
    summary = await run_campaign_async(settings)
    assert summary.accepted == 40 and summary.exit_code == 0
    assert clock.slept == [7200.0]


async def test_the_dry_run_counts_deferred_rows_by_opening(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_audience(tmp_path / "in.csv", {"za": 30, "ny": 20, "au": 10})
    clock = ManualClock(utc(2026, 12, 7, 12, 30))
    settings = make_settings(
        simulator,
        tmp_path / "in.csv",
        send_window="08:00-21:00",
        default_timezone="Europe/Paris",
        clock=clock,
        dry_run=True,
    )
    summary = await run_campaign_async(settings)
    assert summary.dry_run and summary.deferred == 30
    assert summary.deferred_by_opening == {"2026-12-07T13:00Z": 20, "2026-12-08T01:30Z": 10}
    assert summary.default_timezone == "Europe/Paris" and summary.default_timezone_rows == 0
    assert len(simulator.ledger) == 0
    doc = json.loads(summary.to_json())
    assert doc["deferred"] == 30 and doc["next_window_opens"] == "2026-12-07T13:00Z"


async def test_no_window_costs_nothing_and_changes_nothing(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_audience(tmp_path / "in.csv", {"za": 20, "ny": 20})
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    assert summary.accepted == 40 and summary.deferred == 0 and summary.window == ""


def _closed_window_now() -> tuple[str, str]:
    """A window closed in Johannesburg now (wall clock), and when it opens (``HH:MM`` UTC)."""
    now = datetime.now(UTC) + timedelta(hours=2)  # Johannesburg: UTC+2, no daylight saving
    start = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=2)
    window = f"{start:%H:%M}-{end:%H:%M}"
    return window, f"{start - timedelta(hours=2):%H:%M}"


def test_cli_defers_exits_0_and_status_tells_when(tmp_path: Path) -> None:
    write_audience(tmp_path / "in.csv", {"za": 30})
    window, opens = _closed_window_now()
    assert not SendWindow.parse(window).is_open(("Africa/Johannesburg",), datetime.now(UTC))
    sim, url = start_simulator_process()
    try:
        env = cli_env()
        args = ["send", str(tmp_path / "in.csv"), "--text", "hi", "--endpoint", url]
        args += [
            "--no-progress",
            "--send-window",
            window,
            "--summary-json",
            str(tmp_path / "s.json"),
        ]
        result = run_bulksend(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "30 rows deferred; the next window opens at" in result.stdout + result.stderr
        assert f"{opens} UTC" in result.stdout + result.stderr
        doc = json.loads((tmp_path / "s.json").read_text())
        assert doc["deferred"] == 30 and doc["accepted"] == 0
        status = run_bulksend("status", str(tmp_path / "in.results.csv"), env=env)
        assert status.returncode == 0 and "deferred (window closed)" in status.stdout
    finally:
        stop_process(sim)


@pytest.mark.parametrize("bad", ["8-21", "25:00-26:00"])
def test_cli_refuses_a_bad_window_before_anything_is_sent(tmp_path: Path, bad: str) -> None:
    write_audience(tmp_path / "in.csv", {"za": 3})
    result = run_bulksend(
        "send", str(tmp_path / "in.csv"), "--text", "hi", "--send-window", bad, "--dry-run"
    )
    assert result.returncode == 1 and "--send-window" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_time_zone_column_overrides_the_numbering_plan(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    # South African numbers whose owners live elsewhere, as the CSV says; a bad and an empty cell
    rows = [
        ("27820000001", "Asia/Tokyo"),  # 21:30 in Tokyo: closed, opens 23:00 UTC
        ("27820000002", "Africa/Johannesburg"),  # 14:30: open
        ("27820000003", ""),  # the plan: Johannesburg, open
        ("27820000004", "Mars/Olympus"),  # no such zone: refused with a reason
        ("27820000005", "America/New_York"),  # 07:30: closed, opens 13:00 UTC
    ]
    lines = ["phone,name,tz\n"] + [f"+{n},someone,{tz}\n" for n, tz in rows]
    (tmp_path / "in.csv").write_text("".join(lines * 1), encoding="utf-8")
    clock = ManualClock(utc(2026, 12, 7, 12, 30))
    settings = make_settings(
        simulator,
        tmp_path / "in.csv",
        send_window="08:00-21:00",
        timezone_column="tz",
        clock=clock,
        reader="process",
    )
    summary = await run_campaign_async(settings)
    assert summary.exit_code == 0, summary.stopped
    assert texted(simulator) == {"27820000002", "27820000003"}
    assert summary.deferred_by_opening == {"2026-12-07T13:00Z": 1, "2026-12-07T23:00Z": 1}
    assert summary.window_rejected == 1 and summary.pending == 0
    rejects = read_results(settings.rejects_path)
    assert [r["reason"] for r in rejects] == [
        "unknown time zone 'Mars/Olympus' in --timezone-column"
    ]
    dry = await run_campaign_async(
        make_settings(
            simulator,
            tmp_path / "in.csv",
            send_window="08:00-21:00",
            timezone_column="tz",
            clock=clock,
            dry_run=True,
        )
    )
    assert dry.deferred == 2 and dry.window_rejected == 1
