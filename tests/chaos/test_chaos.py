"""Chaos: SIGKILL a 200 000-row campaign at 8 random moments, rerun until it completes, and prove
from the simulator's ledger that nothing was sent twice and no accepted ID was lost.

Slow (about a minute): marked ``slow``; CI runs it, ``make test-fast`` skips it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulksend.simulator import read_ledger
from tests.e2e.support import (
    read_results,
    start_send,
    start_simulator_process,
    stop_process,
    write_numbers,
)

pytestmark = pytest.mark.slow

ROWS = 200_000
CONCURRENCY = 64
BATCH = 100  # smaller than the default so that 8 kills land before the campaign ends
SEED = int(os.environ.get("BULKSEND_CHAOS_SEED", "20261127"))


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ledger = tmp_path / "ledger.csv"
    proc, url = start_simulator_process(
        "--latency", "0.02", "--jitter", "0.01", "--ledger", str(ledger)
    )
    try:
        yield url, ledger
    finally:
        stop_process(proc)


def _send(url: str, input_path: Path, *extra: str) -> subprocess.Popen[str]:
    return start_send(
        url,
        input_path,
        "--concurrency",
        str(CONCURRENCY),
        "--batch-size",
        str(BATCH),
        *extra,
        text="chaos",
    )


def _input(tmp_path: Path) -> tuple[Path, list[str]]:
    """200 000 rows: mostly valid, with some invalid rows and duplicates for the rejects file."""
    numbers = write_numbers(tmp_path / "clean.csv", ROWS - 2000, seed=SEED)
    rng = random.Random(SEED)
    lines = [f"+{n}" for n in numbers]
    for _ in range(1000):
        lines.insert(rng.randrange(len(lines)), rng.choice(["12345", "2.78E+11", "abc", ""]))
    for _ in range(1000):
        lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])
    path = tmp_path / "in.csv"
    path.write_text("phone\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path, numbers


def _wait_until_sending(proc: subprocess.Popen[str], results: Path, size_before: int) -> None:
    """Until the run has recorded something new (it is past start-up and sending)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.stat().st_size > max(size_before, 100):
            return
        time.sleep(0.02)


def _rows_accounted(tmp_path: Path) -> None:
    results = read_results(tmp_path / "in.results.csv")
    rejects = read_results(tmp_path / "in.rejects.csv")
    rows = Counter(r["row"] for r in results) + Counter(r["row"] for r in rejects)
    assert all(c == 1 for c in rows.values()), "a row is recorded twice"
    assert sorted(int(r) for r in rows) == list(range(2, ROWS + 2)), "an input row is missing"


def _check_ledger(tmp_path: Path, ledger_path: Path) -> tuple[set[str], set[str]]:
    time.sleep(0.3)
    ledger = read_ledger(ledger_path)
    per_number = Counter(e.to for e in ledger)
    twice = [n for n, c in per_number.items() if c > 1]
    assert not twice, f"numbers accepted twice: {twice[:5]}"
    results = read_results(tmp_path / "in.results.csv")
    accepted = Counter((r["to"], r["api_msg_id"]) for r in results if r["status"] == "accepted")
    assert all(c == 1 for c in accepted.values())
    ledger_pairs = {(e.to, e.api_msg_id) for e in ledger}
    assert set(accepted) <= ledger_pairs, "an accepted ID the gateway never issued"
    unknown = {r["to"] for r in results if r["status"] == "unknown"}
    seen_not_recorded = {to for to, _ in ledger_pairs - set(accepted)}
    assert seen_not_recorded <= unknown, "the gateway accepted a message whose ID was lost"
    return unknown, {e.to for e in ledger}


def test_sigkill_at_random_moments_then_resume(
    tmp_path: Path, sim: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ledger_path = sim
    path, _ = _input(tmp_path)
    rng = random.Random(SEED)
    delays = [round(rng.uniform(0.02, 0.3), 2) for _ in range(8)]
    print(f"chaos seed {SEED}: SIGKILL {delays} s after each run starts sending")
    kills = 0
    unknown_before = 0
    results_path = tmp_path / "in.results.csv"
    for delay in delays:
        before = results_path.stat().st_size if results_path.exists() else 0
        proc = _send(url, path)
        _wait_until_sending(proc, results_path, before)
        time.sleep(delay)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=60)
        results = read_results(results_path) if results_path.exists() else []
        unknown_now = sum(1 for r in results if r["status"] == "unknown")
        # The next run turns the batches in flight at this kill into unknown rows: at most
        # concurrency x batch of them per kill.
        assert unknown_now - unknown_before <= CONCURRENCY * BATCH
        unknown_before = unknown_now
    for _ in range(10):
        proc = _send(url, path)
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, err
    assert kills >= 6, f"only {kills} kills landed mid-campaign"
    _rows_accounted(tmp_path)
    unknown, seen = _check_ledger(tmp_path, ledger_path)
    print(f"kills={kills} unknown={len(unknown)} ledger={len(seen)}")

    assert len(unknown) <= kills * CONCURRENCY * BATCH

    # --resend-unknown is the user's explicit opt-in: every unknown row the gateway never saw is
    # now sent exactly once; those it did see are sent a second time, and are listed here as the
    # price of that choice.
    never_seen, did_see = unknown - seen, unknown & seen
    proc = _send(url, path, "--resend-unknown")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _rows_accounted(tmp_path)
    per_number = Counter(e.to for e in read_ledger(ledger_path))
    assert all(per_number[n] == 1 for n in never_seen)
    assert all(per_number[n] == 2 for n in did_see)
    assert sum(1 for c in per_number.values() if c > 1) == len(did_see)
    results = read_results(tmp_path / "in.results.csv")
    assert all(r["status"] == "accepted" for r in results)
    print(
        f"--resend-unknown sent {len(never_seen)} never-seen rows; {len(did_see)} rows the "
        f"gateway had already accepted were sent twice: {sorted(did_see)[:20]}..."
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_drain_cleanly_with_zero_unknown(
    tmp_path: Path, sim: tuple[str, Path], signum: int, code: int
) -> None:
    url, ledger_path = sim
    path, _ = _input(tmp_path)
    rng = random.Random(SEED + signum)
    results_path = tmp_path / "in.results.csv"
    for _ in range(3):
        before = results_path.stat().st_size if results_path.exists() else 0
        proc = _send(url, path)
        _wait_until_sending(proc, results_path, before)
        time.sleep(rng.uniform(0.02, 0.3))
        if proc.poll() is None:
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == code, err
        else:
            proc.communicate()
    proc = _send(url, path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _rows_accounted(tmp_path)
    unknown, _ = _check_ledger(tmp_path, ledger_path)
    assert not unknown
