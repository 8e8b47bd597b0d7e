"""The command line: exit codes, clear messages, no tracebacks, no secrets, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bulksend.cli import main
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Simulator
from tests.e2e.support import (
    read_results,
    run_bulksend,
    start_send,
    start_simulator_process,
    write_numbers,
)


def test_password_in_argv_is_refused_with_the_env_way_explained(tmp_path: Path) -> None:
    result = run_bulksend("send", "x.csv", "--text", "hi", "--password", "hunter2-secret")
    assert result.returncode == 1
    assert "BULKSEND_PASSWORD" in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
    result = run_bulksend("send", "x.csv", "--text", "hi", "--password=hunter2-secret")
    assert result.returncode == 1 and "hunter2-secret" not in result.stderr


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing.csv", "missing.csv"),
        (lambda d: d, "directory"),
    ],
)
def test_unusable_input_gives_a_message_and_exit_1(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    result = run_bulksend("send", str(make(tmp_path)), "--text", "hi", "--dry-run")
    assert result.returncode == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_output_in_missing_directory_is_exit_1(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 5)
    result = run_bulksend(
        "send",
        str(tmp_path / "in.csv"),
        "--text",
        "hi",
        "--out",
        str(tmp_path / "no" / "out.csv"),
        "--endpoint",
        "http://127.0.0.1:9",
        env={"BULKSEND_PASSWORD": "pw-123456"},
    )
    assert result.returncode == 1, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_missing_password_is_exit_1(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 5)
    result = run_bulksend("send", str(tmp_path / "in.csv"), "--text", "hi")
    assert result.returncode == 1 and "no password" in result.stderr


def test_text_over_max_parts_is_exit_1(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 5)
    result = run_bulksend(
        "send", str(tmp_path / "in.csv"), "--text", "x" * 200, "--max-parts", "1", "--dry-run"
    )
    assert result.returncode == 1 and "max-parts" in result.stderr


def test_dry_run_prints_counts_and_writes_summary_json(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 1201)
    result = run_bulksend(
        "send",
        str(tmp_path / "in.csv"),
        "--text",
        "hello",
        "--dry-run",
        "--summary-json",
        str(tmp_path / "s.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "1,201" in result.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["valid"] == 1201 and summary["batches"] == 3 and summary["dry_run"]


async def test_cli_campaign_against_the_simulator(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 1000)
    async with Simulator() as sim:
        env = {
            "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
            "BULKSEND_USER": DEFAULT_USER,
            "BULKSEND_API_ID": DEFAULT_API_ID,
        }
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            code = await asyncio.to_thread(
                main,
                [
                    "send",
                    str(tmp_path / "in.csv"),
                    "--text",
                    "hi",
                    "--endpoint",
                    sim.url,
                    "--no-progress",
                    "--summary-json",
                    str(tmp_path / "s.json"),
                ],
            )
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert code == 0
        assert len(sim.ledger) == 1000
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["accepted"] == 1000 and summary["exit_code"] == 0
    assert DEFAULT_PASSWORD not in (tmp_path / "s.json").read_text()


def _start_sim(tmp_path: Path, latency: str) -> tuple[subprocess.Popen[str], str]:
    return start_simulator_process("--latency", latency, "--ledger", str(tmp_path / "ledger.csv"))


def _send(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    return start_send(url, tmp_path / "in.csv", "--concurrency", "2", "--batch-size", "100")


def _wait_for_results(path: Path, proc: subprocess.Popen[str], rows: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(read_results(path)) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError("the campaign did not get going")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_drains_in_flight_and_resume_completes(
    tmp_path: Path, signum: int, code: int
) -> None:
    write_numbers(tmp_path / "in.csv", 6000)
    sim, url = _start_sim(tmp_path, "0.1")
    try:
        proc = _send(tmp_path, url)
        _wait_for_results(tmp_path / "in.results.csv", proc, 400)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        results = read_results(tmp_path / "in.results.csv")
        assert 0 < len(results) < 6000
        assert all(r["status"] == "accepted" for r in results)  # drained, nothing unknown
        again = _send(tmp_path, url)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        results = read_results(tmp_path / "in.results.csv")
        assert sorted(int(r["row"]) for r in results) == list(range(2, 6002))
    finally:
        sim.terminate()
        sim.wait(timeout=10)


@pytest.mark.serial
def test_second_ctrl_c_aborts_at_once_and_resume_is_still_correct(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 6000)
    slow, slow_url = _start_sim(tmp_path, "3.0")
    try:
        proc = _send(tmp_path, slow_url)
        _wait_for_results(tmp_path / "in.results.csv", proc, 100)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert time.monotonic() - started < 2.0  # did not wait for the 3 s answers
        assert proc.returncode == 130
    finally:
        slow.terminate()
        slow.wait(timeout=10)
    # Resume against a fast gateway: the journal alone says what is left.
    fast, fast_url = start_simulator_process()
    try:
        again = _send(tmp_path, fast_url)
        _, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
    finally:
        fast.terminate()
        fast.wait(timeout=10)
    results = read_results(tmp_path / "in.results.csv")
    assert sorted(int(r["row"]) for r in results) == list(range(2, 6002))
    # the batches cut off by the abort were recorded unknown, not re-sent
    assert any(r["status"] == "unknown" for r in results)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "00" * 141], "141 octets"),
        (["--data", "0102", "--udh", "05000301"], "UDH's first octet"),
        (["--data", "01zz"], "not hex"),
        (["--text", "hi", "--udh", "050003010201"], "--udh needs --data"),
        (["--text", "hi", "--deliver-in", "20000"], "--deliver-in must be 0..10080"),
        (["--text", "hi", "--text-file", "m.txt"], "not allowed with argument"),
        (["--text-file", "missing.txt"], "missing.txt"),
        (["--text", "hi", "--exclude", "nope.csv"], "opt-out list: no such file"),
    ],
)
def test_bad_message_options_are_refused_before_anything_is_sent(
    tmp_path: Path, args: list[str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_numbers(tmp_path / "in.csv", 10)
    monkeypatch.chdir(tmp_path)
    result = run_bulksend(
        "send", "in.csv", "--endpoint", "http://127.0.0.1:9", *args,
        env={"BULKSEND_PASSWORD": "x-123456"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "in.results.csv").exists()


def test_dry_run_shows_the_message_options(tmp_path: Path) -> None:
    write_numbers(tmp_path / "in.csv", 10)
    result = run_bulksend(
        "send", str(tmp_path / "in.csv"), "--text", "hi", "--flash", "--deliver-in", "30",
        "--validity", "60", "--max-credits", "2", "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for needle in ("flash", "deliver-in", "30", "validity", "max-credits"):
        assert needle in result.stdout
