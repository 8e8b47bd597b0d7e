"""The campaign report: counts from a results file joined with receipts, the failed-numbers CSV,
clear errors for bad files, and memory that does not grow with the results file."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from bulksend.cli import main
from bulksend.journal import RESULTS_HEADER
from bulksend.receipts import RECEIPTS_HEADER
from bulksend.report import ReportError, build_report

T = "2026-11-27T10:00:00Z"


def ids(n: int) -> str:
    return f"{n:032x}"


RESULTS = [
    f"1,27820000001,accepted,{ids(1)},,,1,{T}",
    f"2,27820000002,accepted,{ids(2)},,,1,{T}",
    f"3,27820000003,accepted,{ids(3)},,,1,{T}",
    f"4,27820000004,accepted,{ids(4)},,,1,{T}",
    f"5,27820000005,accepted,{ids(5)},,,1,{T}",
    f"6,27820000006,rejected,,114,Cannot route message,1,{T}",
    f'7,27820000007,rejected,,105,"Invalid destination address, really",1,{T}',
    f"8,27820000008,unknown,,,read timeout,1,{T}",
    f"9,27820000009,accepted,{ids(9)},,,2,{T}",
]

RECEIPTS = [
    f"{T},{ids(1)},,27820000001,003,Delivered to gateway,1.0,1700000000",
    f"{T},{ids(1)},,27820000001,004,Received by recipient,1.0,1700000001",
    f"{T},{ids(2)},,27820000002,004,Received by recipient,2.0,1700000001",
    f"{T},{ids(3)},,27820000003,003,Delivered to gateway,1.0,1700000000",
    f"{T},{ids(3)},,27820000003,007,Error delivering message,1.0,1700000002",
    f"{T},{ids(4)},,27820000004,010,Message expired,0.5,1700000002",
    f"{T},{ids(5)},,27820000005,003,Delivered to gateway,1.0,1700000000",
    f"{T},{ids(77)},,27829999999,004,Received by recipient,1.0,1700000001",
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "c.results.csv"
    receipts = tmp_path / "c.receipts.csv"
    results.write_text("\n".join([RESULTS_HEADER, *RESULTS]) + "\n", encoding="utf-8")
    receipts.write_text("\n".join([RECEIPTS_HEADER, *RECEIPTS]) + "\n", encoding="utf-8")
    return results, receipts


def test_report_joins_results_with_final_receipts(files: tuple[Path, Path], tmp_path: Path) -> None:
    results, receipts = files
    failed = tmp_path / "failed.csv"
    report = build_report(results, receipts, failed)
    assert report.rows == 9
    assert (report.accepted, report.rejected, report.unknown) == (6, 2, 1)
    assert report.rejected_by_code == {"105": 1, "114": 1}
    assert report.delivered == 2
    assert report.failed_by_status == {"007": 1, "010": 1}
    assert report.failed == 2
    assert report.pending == 2, "row 5 only reached the gateway, row 9 has no receipt"
    assert report.credits == pytest.approx(4.5)
    assert report.unmatched_receipts == 1
    assert report.receipts == len(RECEIPTS)
    assert failed.read_text().splitlines() == [
        "to,api_msg_id,reason",
        f"27820000003,{ids(3)},status 007 Error delivering message",
        f"27820000004,{ids(4)},status 010 Message expired",
        "27820000006,,ERR 114 Cannot route message",
        '27820000007,,"ERR 105 Invalid destination address, really"',
    ]
    assert report.failed_written == 4


def test_report_without_receipts_counts_the_results_only(files: tuple[Path, Path]) -> None:
    report = build_report(files[0])
    assert (report.accepted, report.rejected, report.unknown) == (6, 2, 1)
    assert report.delivered == report.failed == 0
    assert report.pending == 6


def test_the_last_final_receipt_of_a_message_counts(files: tuple[Path, Path]) -> None:
    results, receipts = files
    with receipts.open("a", encoding="utf-8") as f:
        f.write(f"{T},{ids(3)},,27820000003,004,Received by recipient,1.0,1700000009\n")
    report = build_report(results, receipts)
    assert report.delivered == 3
    assert report.failed_by_status == {"010": 1}


def test_a_torn_last_line_is_skipped_and_counted(files: tuple[Path, Path]) -> None:
    results, receipts = files
    with results.open("a", encoding="utf-8") as f:
        f.write("10,2782000001")
    report = build_report(results, receipts)
    assert report.rows == 9
    assert report.malformed_lines == 1


def test_cli_report_prints_a_table_and_json(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    results, receipts = files
    assert main(["report", str(results), "--receipts", str(receipts)]) == 0
    table = capsys.readouterr().out
    assert "delivered (004)" in table and "007 Error delivering message" in table
    assert main(["report", str(results), "--receipts", str(receipts), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["delivered"] == 2 and figures["pending"] == 2


@pytest.mark.parametrize("which", ["results", "receipts"])
def test_cli_report_exits_1_on_a_missing_or_foreign_file(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    results, receipts = files
    missing = tmp_path / "nope.csv"
    args = [str(missing), "--receipts", str(receipts)]
    if which == "receipts":
        args = [str(results), "--receipts", str(missing)]
    assert main(["report", *args]) == 1
    assert "nope.csv not found" in capsys.readouterr().err
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,phone\nA,2782\n", encoding="utf-8")
    args = [str(foreign)] if which == "results" else [str(results), "--receipts", str(foreign)]
    assert main(["report", *args]) == 1
    assert "is not a bulksend" in capsys.readouterr().err
    with pytest.raises(ReportError):
        build_report(foreign)


def test_report_streams_the_results_file_in_bounded_memory(tmp_path: Path) -> None:
    rows = 200_000
    results = tmp_path / "big.results.csv"
    receipts = tmp_path / "big.receipts.csv"
    with results.open("w", encoding="utf-8") as f:
        f.write(RESULTS_HEADER + "\n")
        f.writelines(f"{r},2782{r:07d},accepted,{ids(r)},,,1,{T}\n" for r in range(rows))
    with receipts.open("w", encoding="utf-8") as f:
        f.write(RECEIPTS_HEADER + "\n")
        f.writelines(
            f"{T},{ids(r)},,2782{r:07d},{'004' if (r // 100) % 10 else '007'},x,1.0,1700000000\n"
            for r in range(0, rows, 100)
        )
    tracemalloc.start()
    try:
        report = build_report(results, receipts, tmp_path / "failed.csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.accepted == rows
    assert report.delivered + report.failed == rows // 100
    assert report.failed == rows // 1000
    assert report.pending == rows - rows // 100
    # 2 000 receipts in the map and a streamed results file (~20 MB): well under 2 MB at peak.
    assert peak < 2_000_000, f"peak {peak / 1e6:.1f} MB"
