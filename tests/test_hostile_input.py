"""Hostile input through the real command line: each case gives a clear message naming the file,
row and reason, the documented exit code, never a traceback, and loses no row.

The corpus lives in ``tests/data/hostile/`` with its expected outcomes in ``expected.json``; cases
that are paths rather than contents (a directory, a 10 MB line, a missing output directory) are
made here.

The corpus files a dry run accepts (exit 0) are also sent for real, over the ``sendmsg`` and One
API wires, each against one ``bulksend simulate`` process per wire; the personalised wires (the
batch interface and the personalised One API) get a hostile personalised file made here (missing
and empty columns, quoted multi-line cells, UCS-2 names, ``#`` in values, renderings over
``--max-parts``), each row's outcome and text checked against the simulator's ledger.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bulksend.simulator import read_ledger
from tests.e2e.protocols import WIRES, Wire
from tests.e2e.support import read_results, run_bulksend, start_simulator_process, stop_process

HOSTILE = Path(__file__).parent / "data" / "hostile"
EXPECTED: dict[str, dict[str, Any]] = json.loads((HOSTILE / "expected.json").read_text())


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_corpus(name: str, tmp_path: Path) -> None:
    expected = EXPECTED[name]
    summary = tmp_path / "s.json"
    result = run_bulksend(
        "send", str(HOSTILE / name), "--text", "hi", "--dry-run", "--summary-json", str(summary)
    )
    _no_traceback(result)
    assert result.returncode == expected["exit"], result.stderr
    if expected["exit"]:
        assert name in result.stderr  # names the file
        assert expected["stderr"] in result.stderr
        return
    data = json.loads(summary.read_text())
    assert data["valid"] == expected["valid"]
    reasons = data["input_rejected_by_reason"]
    for reason in expected.get("reasons", []):
        assert reason in reasons, reasons
    if "duplicates" in expected:
        assert data["duplicates"] == expected["duplicates"]
    # every row accounted for
    assert data["rows"] == data["valid"] + data["input_rejected"]


def test_a_10_mb_single_line_is_one_rejected_row(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes(b"phone\n27821234567\n" + b"9" * (10 << 20) + b"\n27831234567\n27841234567\n")
    summary = tmp_path / "s.json"
    result = run_bulksend(
        "send", str(path), "--text", "hi", "--dry-run", "--summary-json", str(summary)
    )
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["valid"] == 3 and data["input_rejected"] == 1


def test_a_directory_as_input(tmp_path: Path) -> None:
    result = run_bulksend("send", str(tmp_path), "--text", "hi", "--dry-run")
    _no_traceback(result)
    assert result.returncode == 1 and "directory" in result.stderr


def test_missing_input_file(tmp_path: Path) -> None:
    result = run_bulksend("send", str(tmp_path / "nope.csv"), "--text", "hi", "--dry-run")
    _no_traceback(result)
    assert result.returncode == 1 and "nope.csv" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_input(tmp_path: Path) -> None:
    path = tmp_path / "locked.csv"
    path.write_text("27821234567\n")
    path.chmod(0)
    result = run_bulksend("send", str(path), "--text", "hi", "--dry-run")
    _no_traceback(result)
    assert result.returncode == 1 and "locked.csv" in result.stderr


def test_missing_named_column_lists_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("name,mobile\nAnn,27821234567\n")
    result = run_bulksend("send", str(path), "--text", "hi", "--dry-run", "--column", "phone")
    _no_traceback(result)
    assert result.returncode == 1
    assert "phone" in result.stderr and "mobile" in result.stderr


def test_output_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("27821234567\n")
    result = run_bulksend(
        "send",
        str(path),
        "--text",
        "hi",
        "--out",
        str(tmp_path / "missing" / "out.csv"),
        "--endpoint",
        "http://127.0.0.1:9",
        env={"BULKSEND_PASSWORD": "pw-123456"},
    )
    _no_traceback(result)
    assert result.returncode == 1 and "missing" in result.stderr


@pytest.mark.parametrize(
    ("text", "needle"), [("", "empty"), ("x" * 1000, "max-parts"), ("😀" * 300, "max-parts")]
)
def test_text_empty_or_over_max_parts(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "in.csv"
    path.write_text("27821234567\n")
    result = run_bulksend("send", str(path), "--text", text, "--dry-run")
    _no_traceback(result)
    assert result.returncode == 1 and needle in result.stderr


# -- real sends over every wire ----------------------------------------------------------------

SENDABLE = sorted(name for name, expected in EXPECTED.items() if expected["exit"] == 0)
PLAIN_WIRES = [w for w in WIRES if not w.personalised]
PERSONALISED_WIRES = [w for w in WIRES if w.personalised]

Servers = Callable[[Wire], tuple[str, Path]]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """One ``bulksend simulate`` process per wire (started on first use), with its ledger file."""
    base = tmp_path_factory.mktemp("hostile-simulators")
    started: dict[str, tuple[subprocess.Popen[str], str, Path]] = {}

    def server(wire: Wire) -> tuple[str, Path]:
        if wire.name not in started:
            ledger = base / f"{wire.name}.ledger.csv"
            proc, url = start_simulator_process(*wire.simulator_args(), "--ledger", str(ledger))
            started[wire.name] = (proc, url, ledger)
        _, url, ledger = started[wire.name]
        return url, ledger

    yield server
    for proc, _, _ in started.values():
        stop_process(proc)


def _ledger(path: Path) -> list[Any]:
    return read_ledger(path) if path.exists() else []


def _send_for_real(
    wire: Wire, servers: Servers, path: Path, *extra: str
) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]], list[Any]]:
    """`bulksend send PATH` over ``wire`` against its simulator: the summary, results, rejects
    and the ledger entries this run added. Checks what holds for any input: exit 0, no
    traceback, every data row in the results or the rejects exactly once, every number in the
    ledger at most once and every accepted id in it."""
    url, ledger_path = servers(wire)
    before = len(_ledger(ledger_path))
    summary_path = path.with_name("s.json")
    result = run_bulksend(
        "send",
        str(path),
        *wire.send_args(),
        "--text",
        wire.text if wire.personalised else "hi",
        "--endpoint",
        url,
        "--no-progress",
        "--summary-json",
        str(summary_path),
        *extra,
        env=wire.env(),
    )
    _no_traceback(result)
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path.read_text())
    results = read_results(path.with_name(path.stem + ".results.csv"))
    rejects_path = path.with_name(path.stem + ".rejects.csv")
    rejects = read_results(rejects_path) if rejects_path.exists() else []
    rows = Counter(r["row"] for r in results) + Counter(r["row"] for r in rejects)
    assert all(c == 1 for c in rows.values()), "a row is recorded twice"
    assert len(rows) == summary["rows"] == summary["valid"] + summary["input_rejected"]
    assert len(results) == summary["valid"] and len(rejects) == summary["input_rejected"]
    assert summary["protocol"] == {"one-personalised": "one"}.get(wire.name, wire.name)
    ledger = _ledger(ledger_path)[before:]
    per_number = Counter(e.to for e in ledger)
    assert all(c == 1 for c in per_number.values()), f"sent twice: {per_number.most_common(3)}"
    assert all(r["status"] == "accepted" for r in results), results
    assert {(r["to"], r["api_msg_id"]) for r in results} == {(e.to, e.api_msg_id) for e in ledger}
    return summary, results, rejects, ledger


@pytest.mark.slow
@pytest.mark.parametrize("wire", PLAIN_WIRES, ids=str)
@pytest.mark.parametrize("name", SENDABLE)
def test_hostile_corpus_sent_for_real(
    name: str, wire: Wire, servers: Servers, tmp_path: Path
) -> None:
    expected = EXPECTED[name]
    path = tmp_path / name  # the results and rejects land beside the input: not in the corpus
    shutil.copyfile(HOSTILE / name, path)
    summary, _, rejects, ledger = _send_for_real(wire, servers, path)
    assert summary["valid"] == expected["valid"] == len(ledger)
    for reason in expected.get("reasons", []):
        assert reason in summary["input_rejected_by_reason"], summary["input_rejected_by_reason"]
        assert any(r["reason"].startswith(reason) for r in rejects), (reason, rejects)
    if "duplicates" in expected:
        assert summary["duplicates"] == expected["duplicates"]
    assert all(e.text == "hi" for e in ledger)


class Row(NamedTuple):
    cells: str
    """The CSV record as written (a quoted cell may span lines)."""
    outcome: str
    """The text the recipient gets, or ``REJECT`` + the start of the rejects file's reason."""


REJECT = "\0reject: "
_MAX_PARTS = "more than --max-parts 3"


def _text(name: str, order: str) -> str:
    return f"Hi {name}, your order {order} ships today"


# A name that makes the rendering exactly 3 GSM-7 parts (459 septets): sent, not refused.
_FITS = "F" * (459 - len(_text("", "1011")))
HOSTILE_ROWS = [
    Row("+27821000001,Anna,1001", _text("Anna", "1001")),
    Row("+27821000002,,1002", REJECT + "column 'First Name' is empty"),
    Row("+27821000003,   ,1003", REJECT + "column 'First Name' is empty"),
    Row("+27821000004,Sipho", REJECT + "column 'ORDER' missing"),
    Row('+27821000005,"Multi\nLine",1005', _text("Multi\nLine", "1005")),
    Row("+27821000006,陈,1006", _text("陈", "1006")),
    Row("+27821000007,#ORDER#,1007", _text("#ORDER#", "1007")),  # a value is never re-expanded
    Row('+27821000008,Anne #2,"#1008#"', _text("Anne #2", "#1008#")),
    Row("+27821000009," + "X" * 500 + ",1009", REJECT + "message needs 4 parts, " + _MAX_PARTS),
    Row("+27821000010," + "陈" * 200 + ",1010", REJECT + "message needs 4 parts, " + _MAX_PARTS),
    Row(f"+27821000011,{_FITS},1011", _text(_FITS, "1011")),
    Row('+27821000012,"Tab\there",1012', REJECT + "column 'First Name' holds a control"),
    Row('+27821000013,"say ""hi""",1013', _text('say "hi"', "1013")),
    Row("+27821000001,Again,1014", REJECT + "duplicate of row 2"),
    Row("12345,Short,1015", REJECT + "too short"),
    Row("+27821000016,Lerato,1016,extra,cells", _text("Lerato", "1016")),
    Row('+27821000017,  Zoë  ,"  1017 "', _text("Zoë", "1017")),
    Row("+27821000018,Euro€ [x],1018", _text("Euro€ [x]", "1018")),
    Row("+27821000019,😀,1019", _text("😀", "1019")),
    Row('+27821000020,"",1020', REJECT + "column 'First Name' is empty"),
    Row("+27821000021,\udce9t\udce9,1021", REJECT + "column 'First Name' is not valid UTF-8"),
]


def _write_hostile_personalised(path: Path) -> None:
    """The rows above under a header whose cells bind only loosely (``First Name``, ``ORDER``);
    the undecodable cell is written as the Latin-1 bytes it stands for."""
    text = "phone,First Name,ORDER\n" + "".join(row.cells + "\n" for row in HOSTILE_ROWS)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.slow
@pytest.mark.parametrize("wire", PERSONALISED_WIRES, ids=str)
def test_hostile_personalised_rows_sent_for_real(
    wire: Wire, servers: Servers, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    _write_hostile_personalised(path)
    _, results, rejects, ledger = _send_for_real(wire, servers, path, "--max-parts", "3")
    by_row = {int(r["row"]): r for r in results}
    rejected = {int(r["row"]): r["reason"] for r in rejects}
    texts = {e.to: e for e in ledger}
    assert len(by_row) + len(rejected) == len(HOSTILE_ROWS)
    for row_number, row in enumerate(HOSTILE_ROWS, start=2):
        if row.outcome.startswith(REJECT):
            reason = row.outcome.removeprefix(REJECT)
            assert rejected.get(row_number, "").startswith(reason), (row, rejected.get(row_number))
            continue
        assert row_number in by_row, (row, rejected.get(row_number))
        entry = texts[by_row[row_number]["to"]]
        assert entry.text == row.outcome, (row.cells, entry.text)
    assert texts["27821000011"].parts == 3
