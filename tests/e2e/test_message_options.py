"""Message options and `bulksend cancel` end to end (issue 11): the simulator's ledger shows the
parameters each message reached the gateway with."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.simulator import Simulator
from tests.e2e.support import (
    bulksend_cmd,
    cli_env,
    read_results,
    start_send,
    start_simulator_process,
    stop_process,
    write_numbers,
)

MakeSettings = Callable[..., CampaignSettings]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"flash": True}, {"msg_type": "SMS_FLASH"}),
        ({"deliver_in": 90}, {"deliv_time": "90"}),
        ({"validity": 120}, {"validity": "120"}),
        ({"max_credits": 2.5}, {"max_credits": "2.5"}),
        (
            {"text": "", "udh": "0605040B8423F0", "data": "C0FFEE"},
            {"udh": "0605040B8423F0", "data": "C0FFEE"},
        ),
    ],
    ids=["flash", "deliver-in", "validity", "max-credits", "binary"],
)
async def test_each_option_reaches_the_gateway(
    tmp_path: Path,
    simulator: Simulator,
    make_settings: MakeSettings,
    options: dict[str, object],
    expected: dict[str, str],
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 700)
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", **options))
    assert summary.exit_code == 0 and summary.accepted == 700
    entries = simulator.ledger.entries
    assert sorted(e.to for e in entries) == sorted(numbers)
    for entry in entries:
        sent = entry.option_map
        for name, value in expected.items():
            assert sent.get(name, "").upper() == value.upper(), (name, sent)
    if "data" in options:
        assert all("text" not in e.option_map for e in entries)


async def test_other_options_on_resume_are_refused_like_another_text(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 300)
    simulator.faults.credit = 100
    first = await run_campaign_async(
        make_settings(
            simulator, tmp_path / "in.csv", flash=True, batch_size=100, concurrency=1,
            check_balance=False,
        )
    )  # fmt: skip
    assert first.exit_code == 2
    simulator.faults.credit = None
    with pytest.raises(Exception, match="belongs to another campaign"):
        await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    again = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", flash=True))
    assert again.exit_code == 0 and again.accepted == 300


def _cancel(results: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bulksend_cmd("cancel", str(results), "--endpoint", url, "--json", *extra),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cancel_stops_a_scheduled_campaign_and_resumes(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 500)
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", deliver_in=60))
    assert summary.accepted == 500
    results = tmp_path / "in.results.csv"
    balance_after_send = simulator.faults.credit

    done = await _run_in_thread(_cancel, results, simulator.url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["outcomes"] == {"stopped": 500}
    assert all(e.cancelled for e in simulator.ledger.entries)
    lines = read_results(Path(report["cancel_path"]))
    assert sorted(line["to"] for line in lines) == sorted(numbers)
    assert {line["status"] for line in lines} == {"006"}
    assert simulator.faults.credit == balance_after_send  # unlimited stays unlimited

    again = await _run_in_thread(_cancel, results, simulator.url)
    assert again.returncode == 0
    assert json.loads(again.stdout)["skipped"] == 500  # settled rows are not asked again


async def test_cancel_refuses_an_unscheduled_campaign_unless_forced(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 50)
    await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    results = tmp_path / "in.results.csv"
    refused = await _run_in_thread(_cancel, results, simulator.url)
    assert refused.returncode == 1 and "--deliver-in" in refused.stderr
    forced = await _run_in_thread(_cancel, results, simulator.url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["outcomes"] == {"not stopped": 50}
    assert not any(e.cancelled for e in simulator.ledger.entries)


def test_cancel_refuses_while_the_campaign_runs(tmp_path: Path) -> None:
    proc, url = start_simulator_process("--latency", "0.2")
    try:
        write_numbers(tmp_path / "in.csv", 5_000)
        send = start_send(
            url, tmp_path / "in.csv", "--deliver-in", "60", "--concurrency", "1",
            "--batch-size", "100",
        )  # fmt: skip
        results = tmp_path / "in.results.csv"
        for _ in range(200):
            if results.exists() and results.stat().st_size > 100:
                break
            send.poll()
            time.sleep(0.05)
        refused = _cancel(results, url)
        assert refused.returncode == 3, refused.stderr
        assert f"pid {send.pid}" in refused.stderr
        send.kill()
        send.communicate(timeout=30)
    finally:
        stop_process(proc)


async def _run_in_thread(
    fn: Callable[..., subprocess.CompletedProcess[str]], *args: object
) -> subprocess.CompletedProcess[str]:
    """The in-process simulator must keep serving while the CLI runs."""
    return await asyncio.to_thread(fn, *args)
