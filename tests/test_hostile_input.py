"""Hostile input through the real command line: each case gives a clear message naming the file,
row and reason, the documented exit code, never a traceback, and loses no row.

The corpus lives in ``tests/data/hostile/`` with its expected outcomes in ``expected.json``; cases
that are paths rather than contents (a directory, a 10 MB line, a missing output directory) are
made here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import run_bulksend

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
