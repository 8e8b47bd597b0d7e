"""Smoke test of ``bulksend bench --quick``: the harness runs end to end and its numbers are sane.

Timings are not asserted (this machine may be busy); only that every process ran, every row was
accounted for (accepted == N), and the outputs (JSON, Markdown, PNG) were written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bulksend.cli import main

pytest.importorskip("requests", reason="the baselines need the 'bench' extra")
pytest.importorskip("matplotlib", reason="the plots need the 'bench' extra")

N = 20_000


def test_quick_bench_accounts_for_every_row(tmp_path: Path) -> None:
    results = tmp_path / "results"
    code = main(
        ["bench", "--quick", "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache")]
    )

    assert code == 0
    [report_path] = results.glob("*-quick.json")
    report = json.loads(report_path.read_text())
    runs = report["runs"]
    assert not report["errors"]

    [mine] = [run for run in runs if run["kind"] == "bulksend"]
    assert mine["accepted"] == N
    assert mine["rate"] > 0 and mine["wall"] > 0 and mine["cpu"] > 0 and mine["max_rss_kb"] > 0

    expected = {"doc_get", "session_post", "aiohttp_ceiling"} | (
        {"wrk"} if shutil.which("wrk") else set()
    )
    assert {run["kind"] for run in runs} - {"bulksend"} == expected
    for run in runs:
        assert run["sent"] > 0 and run["accepted"] == run["sent"], run
        assert run["elapsed"] > 0 and run["max_rss_kb"] > 0, run
    ceiling = next(run for run in runs if run["kind"] == "aiohttp_ceiling")
    assert ceiling["accepted"] == N

    [point] = report["points"]
    assert point["recipients"] == N and point["ratios"]["aiohttp_ceiling"]["median"] > 0
    assert report["machine"]["cores"] >= 1
    markdown = report_path.with_suffix(".md").read_text()
    assert "| N | latency s | conc. | bulksend rcpt/s |" in markdown
    assert list(results.glob("*-quick-throughput.png"))


def test_protocols_bench_runs_every_protocol_and_accounts_for_every_row(tmp_path: Path) -> None:
    """``bench --protocols`` at a high latency and a short duration: each case (sendmsg, the
    batch interface personalised, the One API one text and personalised) runs as a child process
    against its own simulator and every recipient is accepted."""
    results = tmp_path / "results"
    code = main(
        [
            "bench", "--protocols", "--latency", "0.2", "--concurrency", "8", "--repeats", "1",
            "--seconds", "1", "--results-dir", str(results), "--cache-dir", str(tmp_path / "c"),
        ]
    )  # fmt: skip
    assert code == 0
    [raw] = results.glob("*-protocols.json")
    runs = json.loads(raw.read_text())["runs"]
    assert {r["case"] for r in runs} == {"sendmsg", "batch", "one", "one-personalised"}
    for run in runs:
        assert run["accepted"] == run["recipients"] > 0 and not run["error"], run
        assert run["bound"] == 8 * {"sendmsg": 600, "batch": 1}.get(run["case"], 200) / 0.2
    personalised = (tmp_path / "c").glob("personalised-*.csv")
    header = next(iter(personalised)).read_text(encoding="utf-8").splitlines()[0]
    assert header == "phone,first_name,order"
    assert "| case | N |" in raw.with_suffix(".md").read_text()
