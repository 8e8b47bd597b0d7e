"""Helpers for end-to-end tests: sample files and the invariants checked against the ledger."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bulksend import journal
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Simulator


def distinct_numbers(count: int, *, seed: int = 1) -> list[str]:
    """``count`` distinct valid South African mobile numbers (international digits)."""
    rng = random.Random(seed)
    numbers: list[str] = []
    seen: set[str] = set()
    while len(numbers) < count:
        n = f"2782{rng.randrange(10**7):07d}"
        if n not in seen:
            seen.add(n)
            numbers.append(n)
    return numbers


def write_numbers(path: Path, count: int, *, seed: int = 1, header: bool = True) -> list[str]:
    """A CSV of ``count`` distinct valid international numbers; returns them in file order."""
    numbers = distinct_numbers(count, seed=seed)
    lines = (["phone\n"] if header else []) + [f"+{n}\n" for n in numbers]
    path.write_text("".join(lines), encoding="utf-8")
    return numbers


def read_results(path: Path) -> list[dict[str, str]]:
    """A results (or rejects) file as a list of dicts."""
    return list(journal.read_results(path))


def check_against_ledger(results: list[dict[str, str]], sim: Simulator) -> Counter[str]:
    """The invariants every campaign must keep, checked against the simulator's ledger."""
    ledger = sim.ledger.entries
    per_number = Counter(e.to for e in ledger)
    twice = [n for n, c in per_number.items() if c > 1]
    assert not twice, f"numbers accepted more than once: {twice[:5]}"
    rows = Counter(r["row"] for r in results)
    assert all(c == 1 for c in rows.values()), "a row appears twice in the results"
    accepted = {(r["to"], r["api_msg_id"]) for r in results if r["status"] == "accepted"}
    ledger_pairs = {(e.to, e.api_msg_id) for e in ledger}
    # Every accepted ID in the results is real, and every ledger entry whose answer arrived is
    # in the results as accepted; the others must be recorded unknown.
    assert accepted <= ledger_pairs
    unknown_numbers = {r["to"] for r in results if r["status"] == "unknown"}
    for pair in ledger_pairs - accepted:
        assert pair[0] in unknown_numbers, f"accepted by the gateway but not recorded: {pair}"
    return Counter(r["status"] for r in results)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any stray BULKSEND_* of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKSEND_")}
    env.update(extra)
    return env


def cli_env(**extra: str) -> dict[str, str]:
    """:func:`clean_env` with the simulator's demo account."""
    return clean_env(
        BULKSEND_PASSWORD=DEFAULT_PASSWORD,
        BULKSEND_USER=DEFAULT_USER,
        BULKSEND_API_ID=DEFAULT_API_ID,
        **extra,
    )


def run_bulksend(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`bulksend ARGS` to completion, output captured, with :func:`clean_env` plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "bulksend", *args],
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=120,
    )


def start_simulator_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`bulksend simulate ARGS` in its own process; returns it and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulksend", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc, line.rsplit(" ", 1)[-1].strip()


def stop_process(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def bulksend_cmd(*args: str) -> list[str]:
    """The command line of `bulksend ARGS` run by this interpreter."""
    return [sys.executable, "-m", "bulksend", *args]


def send_cmd(url: str, input_path: Path | str, *extra: str, text: str = "hi") -> list[str]:
    """`bulksend send INPUT --text TEXT --endpoint URL --no-progress EXTRA`."""
    return bulksend_cmd(
        "send", str(input_path), "--text", text, "--endpoint", url, "--no-progress", *extra
    )


def start_send(
    url: str,
    input_path: Path,
    *extra: str,
    text: str = "hi",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """:func:`send_cmd` as a child process with the simulator's demo account, or with ``env``
    (a whole environment, e.g. :meth:`tests.e2e.protocols.Wire.env`) when given."""
    return subprocess.Popen(
        send_cmd(url, input_path, *extra, text=text),
        env=cli_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
