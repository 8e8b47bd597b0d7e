"""`bulksend demo`: the first thing a new user runs must work, with no credentials and no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.support import clean_env, read_results


def _demo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulksend", "demo", "--no-progress", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        cwd=cwd,
    )


def test_demo_runs_a_campaign_and_reports_deliveries(tmp_path: Path) -> None:
    result = _demo(
        "--recipients", "3000", "--dir", str(tmp_path), "--latency", "0.01", "--jitter", "0.005"
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert "simulator listening on http://127.0.0.1:" in out
    assert "bulksend report" in out and "delivered (004)" in out
    results = read_results(tmp_path / "recipients-3000.results.csv")
    rejects = read_results(tmp_path / "recipients-3000.rejects.csv")
    assert len(results) + len(rejects) == 3000  # every sample row accounted for
    assert {r["status"] for r in results} <= {"accepted", "rejected"}
    assert any(r["status"] == "rejected" for r in results)  # the simulator's per-recipient refusals
    assert (tmp_path / "recipients-3000.receipts.csv").exists()
    # a few recipients replied; those who said STOP are listed and left out of the follow-up
    opted_out = (tmp_path / "optouts.txt").read_text().split()
    listed = " ".join(out.split()).split("opted out by reply: ", 1)[1]
    assert opted_out and sorted(opted_out) == listed.replace(",", " ").split()
    assert (tmp_path / "recipients-3000.replies.csv").exists()
    assert f"{len(opted_out)} opted-out rows not texted" in out
    followup = {r["to"] for r in read_results(tmp_path / "followup.results.csv")}
    assert followup and not followup & {n.lstrip("+") for n in opted_out}


def test_demo_paths_are_printed_unmasked_in_its_default_directory(tmp_path: Path) -> None:
    """The demo password is no word of the demo's paths, so nothing readable gets masked."""
    result = _demo("--recipients", "500", "--latency", "0.005", "--jitter", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "***" not in output
    assert "bulksend-demo/recipients-500.receipts.csv" in output
