"""kill -9 a running `bulksend send`, rerun the same command, and prove from the simulator's ledger
that nothing was sent twice and every accepted ID is in the results."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulksend.simulator import DEFAULT_PASSWORD, read_ledger
from tests.e2e.support import (
    read_results,
    start_send,
    start_simulator_process,
    stop_process,
    write_numbers,
)


@pytest.fixture
def simulator_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ledger = tmp_path / "ledger.csv"
    proc, url = start_simulator_process(
        "--ledger", str(ledger), "--latency", "0.04", "--jitter", "0.02"
    )
    try:
        yield url, ledger
    finally:
        stop_process(proc)


def _send(url: str, input_path: Path) -> subprocess.Popen[str]:
    return start_send(
        url, input_path, "--concurrency", "4", "--batch-size", "200", text="kill test"
    )


def test_kill_9_then_resume_sends_nothing_twice_and_loses_no_id(
    tmp_path: Path, simulator_process: tuple[str, Path]
) -> None:
    url, ledger_path = simulator_process
    numbers = write_numbers(tmp_path / "in.csv", 40_000)
    results_path = tmp_path / "in.results.csv"
    done_after_kill: list[int] = []
    for _ in range(2):
        proc = _send(url, tmp_path / "in.csv")
        # Kill once results are flowing: mid-campaign, with batches in flight.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            lines = len(read_results(results_path)) if results_path.exists() else 0
            if lines >= 4000 * (len(done_after_kill) + 1):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the campaign finished before it could be killed"
        proc.kill()
        proc.communicate(timeout=30)
        done_after_kill.append(len(read_results(results_path)))
    final = _send(url, tmp_path / "in.csv")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert 0 < done_after_kill[0] <= done_after_kill[1] < len(numbers)

    time.sleep(0.2)
    ledger = read_ledger(ledger_path)
    per_number = Counter(e.to for e in ledger)
    assert max(per_number.values()) == 1, "a number was accepted twice"
    results = read_results(results_path)
    assert Counter(r["row"] for r in results).most_common(1)[0][1] == 1
    assert {r["to"] for r in results} == set(numbers)
    accepted = {(r["to"], r["api_msg_id"]) for r in results if r["status"] == "accepted"}
    ledger_pairs = {(e.to, e.api_msg_id) for e in ledger}
    assert accepted <= ledger_pairs
    unknown = {r["to"] for r in results if r["status"] == "unknown"}
    assert all(to in unknown for to, _ in ledger_pairs - accepted)
    # Only batches whose intents were open at a kill can be unknown: per sender, its request in
    # flight and, for the instant between an answer and its record, the next batch whose intent
    # it wrote first. At most 2 kills x 4 senders x 2 batches x 200 rows.
    assert len(unknown) <= 2 * 4 * 2 * 200
    assert DEFAULT_PASSWORD not in out + err


def test_reader_child_does_not_outlive_a_killed_campaign(
    tmp_path: Path, simulator_process: tuple[str, Path]
) -> None:
    url, _ = simulator_process
    write_numbers(tmp_path / "in.csv", 400_000)  # over 4 MB: read in a child process
    results_path = tmp_path / "in.results.csv"
    proc = _send(url, tmp_path / "in.csv")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if results_path.exists() and results_path.stat().st_size > 1000:
            break
        time.sleep(0.02)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert children, "the reader child was not running"
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists() and _running(pid)]
        time.sleep(0.05)
    assert not alive, f"reader process(es) {alive} outlived the killed campaign"


def _running(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
