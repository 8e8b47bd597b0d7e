"""A machine crash at any point of a campaign, then the same command again: nobody is texted twice
and no row is silently skipped (see :mod:`tests.chaos.crashstates` for the model).

The slow suite tries a few hundred crash states per wire protocol; the fast one the case a
journal trusting its ``D`` lines got wrong: the results file lost its last batch (torn line) while
the journal's ``D`` line for that batch was on disk.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.errors import BulkSendError
from bulksend.journal import Journal, read_results
from tests.chaos.crashstates import (
    CrashState,
    Recorder,
    Verdict,
    crash_states,
    judge,
    materialise,
    process_view,
)
from tests.chaos.crashstates import sample_states as sample
from tests.e2e.protocols import WIRES, Wire, wire_ids

STATES_PER_WIRE = int(os.environ.get("BULKSEND_CRASH_STATES", "300"))
ROWS = {"sendmsg": 600, "batch": 120, "one": 600, "one-personalised": 300}


def _settings(wire: Wire, sim: Any, input_path: Path, out: Path) -> Any:
    overrides: dict[str, Any] = {
        "out": out,
        "concurrency": 4,
        "fsync_interval": 0.05,
        "reader": "inline",
        "state_dir": None,  # the registry is not under test here (tests/test_registry.py)
        "check_balance": False,
    }
    if wire.name != "batch":  # the batch interface sends one row a request
        overrides["batch_size"] = 50  # a dozen batches: as many crash points between them
    return wire.settings(sim, input_path, **overrides)


async def _record(wire: Wire, sim: Any, tmp_path: Path) -> tuple[Recorder, dict[int, str], Path]:
    """One whole campaign, its file operations recorded; returns them and row -> number."""
    input_path = tmp_path / "in.csv"
    wire.write_input(input_path, ROWS[wire.name])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorder = Recorder(run_dir, lambda: len(sim.ledger))
    with recorder.recording():
        summary = await run_campaign_async(
            _settings(wire, sim, input_path, run_dir / "in.results.csv")
        )
    assert summary.exit_code == 0, summary.stopped
    rows = {int(r["row"]): r["to"] for r in read_results(run_dir / "in.results.csv")}
    assert len(rows) == ROWS[wire.name]
    return recorder, rows, input_path


async def _resume(
    wire: Wire, sim: Any, state: CrashState, input_path: Path, rows: dict[int, str], where: Path
) -> Any:
    materialise(state, where)
    entries = sim.ledger.entries
    before_crash = [(e.to, e.api_msg_id) for e in entries[: state.accepted]]
    start = len(entries)
    out = where / "in.results.csv"
    try:
        summary = await run_campaign_async(_settings(wire, sim, input_path, out))
    except BulkSendError as exc:  # safe (nothing sent), yet the operator has to step in
        verdict = Verdict(refused=str(exc))
    else:
        sent = [(e.to, e.api_msg_id) for e in sim.ledger.entries[start:]]
        verdict = judge(state, out, rows, before_crash, sent)
        verdict.refused = "" if summary.exit_code == 0 else f"exit {summary.exit_code}"
    return verdict


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES, ids=list(wire_ids()))
async def test_every_crash_state_resumes_without_doubles_or_skipped_rows(
    wire: Wire, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compact the journal every few batches, so that crashes around its rename are tried too.
    defaults = Journal.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "compact_every", 4)
    async with wire.simulator() as sim:
        sim.faults.latency = 0.01  # batches overlap, so the journal interleaves them
        recorder, rows, input_path = await _record(wire, sim, tmp_path)
        sim.faults.latency = 0.0
        states = sample(recorder.ops, STATES_PER_WIRE)
        totals: Counter[str] = Counter()
        bad: list[str] = []
        for i, state in enumerate(states):
            verdict = await _resume(wire, sim, state, input_path, rows, tmp_path / f"s{i}")
            totals.update(
                twice=verdict.twice,
                skipped=verdict.skipped,
                lost_ids=verdict.lost_ids,
                unknown=verdict.unknown,
                refused=bool(verdict.refused),
            )
            if verdict.twice or verdict.skipped or verdict.lost_ids or verdict.refused:
                bad.append(f"op {state.point} ({state.note}): {verdict}")
        print(
            f"\n{wire}: {len(recorder.ops)} ops recorded, {len(states)} crash states resumed; "
            f"texted twice {totals['twice']}, skipped {totals['skipped']}, lost ids "
            f"{totals['lost_ids']}, refused {totals['refused']}, unknown rows {totals['unknown']}"
        )
    assert not bad, f"{len(bad)} of {len(states)} states went wrong:\n" + "\n".join(bad[:10])


async def test_a_torn_results_line_with_its_done_line_on_disk_is_not_sent_again(
    tmp_path: Path,
) -> None:
    """The crash keeps the whole journal (its ``D`` lines too) but tears the results file's last
    write: the rows of that batch must come back ``unknown`` or as they were, never re-sent."""
    wire = WIRES[0]
    async with wire.simulator() as sim:
        recorder, rows, input_path = await _record(wire, sim, tmp_path)
        ops = recorder.ops
        # The latest crash point at which the results file's last write can be torn while the
        # journal holds every line written, its D lines included.
        torn = next(
            (
                state
                for point in reversed(range(len(ops) + 1))
                for state in crash_states(ops, point)
                if "in.results.csv: last write torn" in state.note
                and b"\nD " in state.files.get("in.results.csv.journal", b"")
                and state.files["in.results.csv.journal"]
                == _full(ops, point, "in.results.csv.journal")
            ),
            None,
        )
        assert torn is not None, "no such crash state recorded"
        verdict = await _resume(wire, sim, torn, input_path, rows, tmp_path / "state")
    assert verdict.twice == 0, verdict
    assert verdict.skipped == 0 and verdict.lost_ids == 0, verdict
    assert verdict.unknown > 0  # the torn batch's rows: the gateway may have them


def _full(ops: list[Any], point: int, name: str) -> bytes:
    """Every byte written to ``name`` before ``point`` (as the process saw it)."""
    return process_view(ops, point, name)
