"""What an operator does around "never twice", with real `bulksend send` processes: the same list
under another results file (a cron job with dated names, a copy of the list, another directory),
`--again`, a results file moved away or an older copy put back, two runs at once."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Simulator
from tests.e2e.support import bulksend_cmd, clean_env, run_bulksend, write_numbers

ACCOUNT = {
    "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
    "BULKSEND_USER": DEFAULT_USER,
    "BULKSEND_API_ID": DEFAULT_API_ID,
}


async def _send(sim: Simulator, input_path: Path, out: Path, *extra: str) -> Any:
    return await asyncio.to_thread(
        run_bulksend,
        "send", str(input_path), "--text", "Sale today", "--endpoint", sim.url,
        "--out", str(out), "--no-progress", "--batch-size", "100", *extra,
        env=ACCOUNT,
    )  # fmt: skip


async def test_the_same_list_under_another_results_file_is_refused_until_again(
    tmp_path: Path,
) -> None:
    write_numbers(tmp_path / "list.csv", 500)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "list.csv", tmp_path / "copy" / "list-2026-12-05.csv")
    async with Simulator() as sim:
        first = await _send(sim, tmp_path / "list.csv", tmp_path / "monday.csv")
        assert first.returncode == 0, first.stderr
        assert len(sim.ledger) == 500

        # A copy of the list, another name for the results: refused, nothing sent or written.
        repeat = await _send(
            sim, tmp_path / "copy" / "list-2026-12-05.csv", tmp_path / "copy" / "tuesday.csv"
        )
        assert repeat.returncode == 3, repeat.stderr
        assert str(tmp_path / "monday.csv") in repeat.stderr
        assert "500 accepted" in repeat.stderr and "Nothing was sent" in repeat.stderr
        assert "--again" in repeat.stderr and "Traceback" not in repeat.stderr
        assert len(sim.ledger) == 500
        assert not (tmp_path / "copy" / "tuesday.csv").exists()

        # The same results file is a resume: nothing more is sent.
        resume = await _send(sim, tmp_path / "list.csv", tmp_path / "monday.csv")
        assert resume.returncode == 0, resume.stderr
        assert len(sim.ledger) == 500

        # Another text is another campaign.
        other = await asyncio.to_thread(
            run_bulksend,
            "send", str(tmp_path / "list.csv"), "--text", "Another offer", "--endpoint", sim.url,
            "--out", str(tmp_path / "other.csv"), "--no-progress", env=ACCOUNT,
        )  # fmt: skip
        assert other.returncode == 0, other.stderr
        assert len(sim.ledger) == 1000

        # --again sends anyway, and says so.
        again = await _send(
            sim, tmp_path / "list.csv", tmp_path / "copy" / "tuesday.csv", "--again"
        )
        assert again.returncode == 0, again.stderr
        assert "--again" in again.stderr and str(tmp_path / "monday.csv") in again.stderr
        assert len(sim.ledger) == 1500

    status = await asyncio.to_thread(run_bulksend, "status", "--json")
    runs = json.loads(status.stdout)
    assert {Path(r["results"]).name for r in runs} == {"monday.csv", "tuesday.csv", "other.csv"}
    assert [r["again"] for r in runs if r["results"].endswith("tuesday.csv")] == [True]
    listed = await asyncio.to_thread(run_bulksend, "status")
    assert "monday.csv" in listed.stdout and "500 accepted" in listed.stdout
    shown = await asyncio.to_thread(run_bulksend, "status", str(tmp_path / "monday.csv"))
    assert "same campaign also sent as" in shown.stdout and "tuesday.csv" in shown.stdout


async def test_a_run_that_sent_nothing_does_not_block_the_list(tmp_path: Path) -> None:
    write_numbers(tmp_path / "list.csv", 50)
    async with Simulator() as sim:
        sim.set_credentials(password="rotated-password")
        refused = await _send(sim, tmp_path / "list.csv", tmp_path / "a.csv")
        assert refused.returncode == 2, refused.stderr  # the gateway refused the login
        sim.set_credentials(password=DEFAULT_PASSWORD)
        later = await _send(sim, tmp_path / "list.csv", tmp_path / "b.csv")
        assert later.returncode == 0, later.stderr
        assert len(sim.ledger) == 50


async def test_results_moved_away_are_refused_naming_both_files_and_the_choices(
    tmp_path: Path,
) -> None:
    write_numbers(tmp_path / "list.csv", 300)
    out = tmp_path / "list.results.csv"
    async with Simulator() as sim:
        assert (await _send(sim, tmp_path / "list.csv", out)).returncode == 0
        out.rename(tmp_path / "aside.csv")
        rerun = await _send(sim, tmp_path / "list.csv", out)
        assert rerun.returncode == 1, rerun.stderr
        assert str(out) in rerun.stderr and str(out) + ".journal" in rerun.stderr
        assert "put the results file back" in rerun.stderr and "--restart" in rerun.stderr
        assert len(sim.ledger) == 300 and not out.exists()

        # An older copy put back: refused the same way.
        (tmp_path / "aside.csv").rename(out)
        lines = out.read_text().splitlines(keepends=True)
        out.write_text("".join(lines[:101]))
        older = await _send(sim, tmp_path / "list.csv", out)
        assert older.returncode == 1, older.stderr
        assert "older copy" in older.stderr and len(sim.ledger) == 300

        out.write_text("".join(lines))  # the whole file back: a resume, nothing sent
        resumed = await _send(sim, tmp_path / "list.csv", out)
        assert resumed.returncode == 0, resumed.stderr
        assert len(sim.ledger) == 300


async def test_two_runs_of_one_list_at_once_send_it_once(tmp_path: Path) -> None:
    write_numbers(tmp_path / "list.csv", 2000)
    async with Simulator() as sim:
        sim.faults.latency = 0.05

        def start(out: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                bulksend_cmd(
                    "send", str(tmp_path / "list.csv"), "--text", "Sale today",
                    "--endpoint", sim.url, "--out", str(tmp_path / out), "--no-progress",
                    "--batch-size", "100",
                ),
                env=clean_env(**ACCOUNT),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip

        runs = [start("a.csv"), start("b.csv")]
        done = await asyncio.gather(*(asyncio.to_thread(r.communicate, None, 120) for r in runs))
        codes = sorted(r.returncode for r in runs)
        assert codes == [0, 3], [d[1] for d in done]
        assert len(sim.ledger) == 2000
