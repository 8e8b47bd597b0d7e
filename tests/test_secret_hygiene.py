"""Secrets never leak: every byte written to stdout, stderr, logs, results, rejects, journal and
summary is searched for the password and every session id the gateway handed out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bulksend import cli
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_USER, Simulator
from tests.e2e.support import clean_env

PASSWORD = "Tr0ub4dor&3-horse-battery"


def _everything_written(tmp_path: Path, *streams: str) -> str:
    blob = "".join(streams)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            blob += path.read_text(encoding="utf-8", errors="replace")
    return blob


def _assert_clean(blob: str, sim: Simulator) -> None:
    assert PASSWORD not in blob
    assert "Tr0ub4dor" not in blob
    for session_id in sim._sessions:
        assert session_id not in blob


async def _run(tmp_path: Path, *args: str, password: str = PASSWORD) -> tuple[int, str, str]:
    env = clean_env(
        BULKSEND_PASSWORD=password, BULKSEND_USER=DEFAULT_USER, BULKSEND_API_ID=DEFAULT_API_ID
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulksend",
        "--debug",
        "send",
        str(tmp_path / "in.csv"),
        "--text",
        "hi",
        "--no-progress",
        "--summary-json",
        str(tmp_path / "summary.json"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def recipients(tmp_path: Path) -> Path:
    lines = ["phone"] + [f"2782{i:07d}" for i in range(1500)] + ["bad-number", "27820000001"]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("method", ["post", "get"])
async def test_successful_session_campaign_leaks_nothing(
    tmp_path: Path, recipients: Path, method: str
) -> None:
    async with Simulator(password=PASSWORD) as sim:
        seen: list[str] = []
        sim._sessions = _Recording(sim._sessions, seen)  # type: ignore[assignment]
        code, out, err = await _run(
            tmp_path, "--endpoint", sim.url, "--auth", "session", "--method", method
        )
        assert code == 0, err
        assert seen, "no session was handed out"
        blob = _everything_written(tmp_path, out, err)
        assert PASSWORD not in blob
        for session_id in seen:
            assert session_id not in blob


async def test_auth_failure_leaks_nothing(tmp_path: Path, recipients: Path) -> None:
    async with Simulator(password="the-right-one-123") as sim:
        code, out, err = await _run(tmp_path, "--endpoint", sim.url)
        assert code == 2 and "001" in out + err
        _assert_clean(_everything_written(tmp_path, out, err), sim)


async def test_protocol_error_leaks_nothing(tmp_path: Path, recipients: Path) -> None:
    async with Simulator(password=PASSWORD) as sim:
        code, out, err = await _run(tmp_path, "--endpoint", sim.url + "/not-the-api")
        assert code == 2
        _assert_clean(_everything_written(tmp_path, out, err), sim)


def test_crash_with_traceback_under_debug_is_redacted(
    tmp_path: Path,
    recipients: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError(f"boom while using password={PASSWORD} and {PASSWORD}")

    monkeypatch.setattr("bulksend.campaign.run_campaign", explode)
    monkeypatch.setenv("BULKSEND_PASSWORD", PASSWORD)
    code = cli.main(["--debug", "send", str(recipients), "--text", "hi", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 70
    assert "Traceback" in captured.err  # --debug shows it...
    assert PASSWORD not in captured.out + captured.err  # ...redacted


def test_password_in_argv_is_refused(tmp_path: Path, recipients: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulksend",
            "send",
            str(recipients),
            "--text",
            "hi",
            "--password",
            PASSWORD,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert PASSWORD not in result.stdout + result.stderr
    assert "BULKSEND_PASSWORD" in result.stderr


class _Recording(dict[str, float]):
    """A session table that remembers every id ever handed out."""

    def __init__(self, inner: dict[str, float], seen: list[str]) -> None:
        super().__init__(inner)
        self._seen = seen

    def __setitem__(self, key: str, value: float) -> None:
        if key not in self:
            self._seen.append(key)
        super().__setitem__(key, value)


ONE_KEY = "one-api-Key_4b7e9f0c2d"


@pytest.mark.parametrize("personalised", [False, True])
async def test_the_one_api_key_never_leaks(tmp_path: Path, personalised: bool) -> None:
    """``--api one`` with --debug logging, a fault mix and a wrong key at the end: the key is in
    no output, file or message (it travels only in the Authorization header)."""
    from bulksend.simulator import Faults
    from bulksend.simulator.one_api import OneApiSimulator

    rows = "".join(f"+2782{i:07d},Name{i}\n" for i in range(300))
    (tmp_path / "in.csv").write_text("phone,name\n" + rows, encoding="utf-8")
    text = "Hi #name#" if personalised else "hi"
    faults = Faults(http_503_rate=0.2, err_901_rate=0.2, drop_after_rate=0.05, seed=3)
    async with OneApiSimulator(api_key=ONE_KEY, faults=faults) as sim:

        async def send(key: str, *extra: str) -> tuple[int, str, str]:
            env = clean_env(BULKSEND_API_KEY=key)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bulksend", "--debug", "send", str(tmp_path / "in.csv"),
                "--api", "one", "--text", text, "--endpoint", sim.url, "--no-progress",
                "--batch-size", "20", "--summary-json", str(tmp_path / "summary.json"), *extra,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode()

        code, out, err = await send(ONE_KEY)
        assert code == 0, err
        wrong = ONE_KEY[:-1] + "X"
        code2, out2, err2 = await send(wrong, "--restart")
        assert code2 == 2, err2
        assert "error 001" in err2, err2  # the gateway's refusal, named without the key
    blob = _everything_written(tmp_path, out, err, out2, err2)
    assert ONE_KEY not in blob and wrong not in blob
    assert "4b7e9f0c2d" not in blob
