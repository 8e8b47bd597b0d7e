"""The journal on its own: intents, outcomes, torn writes, resume state, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulksend.errors import ConfigError, InputError
from bulksend.journal import (
    RESULTS_HEADER,
    Journal,
    ResultLine,
    RowBitmap,
    expand_rows,
    read_results,
)
from bulksend.journal.log import _compress

FP = "f" * 64


def _open(path: Path, **kw: bool) -> Journal:
    journal = Journal(path)
    journal.open(FP, describe={}, **kw)
    return journal


def _accepted(rows: list[int]) -> list[ResultLine]:
    return [ResultLine(r, f"2782{r:07d}", "accepted", f"{r:032x}") for r in rows]


def test_bitmap_adds_discards_and_counts() -> None:
    bits = RowBitmap()
    for r in (0, 7, 8, 10_000_000, 7):
        bits.add(r)
    assert len(bits) == 4 and 7 in bits and 9 not in bits and 10_000_000 in bits
    assert -1 not in bits
    assert bits.nbytes < 2_000_000  # 10 M rows in about a megabyte


@pytest.mark.parametrize("rows", [[5], [1, 2, 3], [1, 2, 3, 7, 9, 10, 11], [4, 6, 8]])
def test_row_ranges_round_trip(rows: list[int]) -> None:
    assert list(expand_rows(_compress(rows))) == rows


def test_new_journal_writes_header_and_private_files(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    journal.close()
    assert (tmp_path / "out.csv").read_text() == RESULTS_HEADER + "\n"
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out.csv.journal").stat().st_mode & 0o777 == 0o600


def test_completed_batches_are_done_on_resume(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    seq = journal.intend([1, 2, 3], ["a", "b", "c"])
    journal.complete(seq, _accepted([1, 2, 3]))
    journal.close()
    again = Journal(tmp_path / "out.csv")
    state = again.open(FP, describe={})
    assert state.resumed and len(state.done) == 3 and state.counts == {"accepted": 3}
    assert state.recovered_unknown == 0
    again.close()


def test_batch_in_flight_at_a_crash_becomes_unknown_with_its_numbers(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    journal.complete(journal.intend([1], ["27820000001"]), _accepted([1]))
    journal.intend([2, 3, 5], ["27820000002", "27820000003", "27820000005"])
    # no close(): the process died with the batch in flight
    again = Journal(tmp_path / "out.csv")
    state = again.open(FP, describe={})
    again.close()
    assert state.recovered_unknown == 3
    results = list(read_results(tmp_path / "out.csv"))
    unknown = [r for r in results if r["status"] == "unknown"]
    assert [(r["row"], r["to"]) for r in unknown] == [
        ("2", "27820000002"),
        ("3", "27820000003"),
        ("5", "27820000005"),
    ]
    assert all("previous run" in r["error"] for r in unknown)
    # and a third run finds nothing left to recover
    third = Journal(tmp_path / "out.csv")
    assert third.open(FP, describe={}).recovered_unknown == 0
    third.close()


def test_abandoned_batch_stays_pending(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    journal.abandon(journal.intend([1, 2], ["a", "b"]))
    journal.close()
    again = Journal(tmp_path / "out.csv")
    state = again.open(FP, describe={})
    assert len(state.done) == 0 and state.recovered_unknown == 0
    again.close()


def test_torn_last_line_is_cut_and_its_batch_is_unknown(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    journal.intend([1, 2], ["27820000001", "27820000002"])
    journal.close()
    with (tmp_path / "out.csv").open("a") as f:
        f.write("1,27820000001,accepted,abc")  # the kill cut this write short
    again = Journal(tmp_path / "out.csv")
    state = again.open(FP, describe={})
    again.close()
    rows = list(read_results(tmp_path / "out.csv"))
    assert [r["status"] for r in rows] == ["unknown", "unknown"]
    assert state.recovered_unknown == 2


def test_resend_unknown_removes_them_from_results_and_leaves_them_pending(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    seq = journal.intend([1, 2], ["a", "b"])
    journal.complete(
        seq, [ResultLine(1, "a", "accepted", "x" * 32), ResultLine(2, "b", "unknown", error="?")]
    )
    journal.close()
    again = Journal(tmp_path / "out.csv")
    state = again.open(FP, describe={}, resend_unknown=True)
    again.close()
    assert 1 in state.done and 2 not in state.done and state.resent_unknown == 1
    assert [r["row"] for r in read_results(tmp_path / "out.csv")] == ["1"]


def test_other_campaign_is_refused_and_restart_moves_aside(tmp_path: Path) -> None:
    _open(tmp_path / "out.csv").close()
    with pytest.raises(ConfigError, match="another campaign"):
        Journal(tmp_path / "out.csv").open("0" * 64, describe={})
    journal = Journal(tmp_path / "out.csv")
    journal.open("0" * 64, describe={}, restart=True)
    journal.close()
    assert (tmp_path / "out.csv.1").exists() and (tmp_path / "out.csv.journal.1").exists()


def test_results_without_journal_are_refused(tmp_path: Path) -> None:
    (tmp_path / "out.csv").write_text(RESULTS_HEADER + "\n1,a,accepted,x,,,1,\n")
    with pytest.raises(ConfigError, match="journal"):
        Journal(tmp_path / "out.csv").open(FP, describe={})


def test_output_in_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        Journal(tmp_path / "nope" / "out.csv").open(FP, describe={})


def test_errors_with_commas_and_quotes_stay_one_csv_field(tmp_path: Path) -> None:
    journal = _open(tmp_path / "out.csv")
    seq = journal.intend([1], ["a"])
    journal.complete(seq, [ResultLine(1, "a", "rejected", "", 114, 'Cannot, "route"\nmessage')])
    journal.close()
    (row,) = read_results(tmp_path / "out.csv")
    assert row["error"] == 'Cannot, "route" message' and row["error_code"] == "114"


def test_intent_log_is_compacted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "out.csv", compact_every=10)
    journal.open(FP, describe={})
    for i in range(1, 100):
        journal.complete(journal.intend([i], [str(i)]), _accepted([i]))
    journal.close()
    lines = (tmp_path / "out.csv.journal").read_text().splitlines()
    assert len(lines) <= 3
    again = Journal(tmp_path / "out.csv")
    assert len(again.open(FP, describe={}).done) == 99
    again.close()
