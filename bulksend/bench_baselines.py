"""The baselines ``bulksend bench`` puts beside bulksend, and how each one is started and read.

Each baseline is a standalone script in ``benchmarks/baselines/`` run with the same interpreter as
the harness, in its own process, against the same simulator and the same input file, so that its
wall time, CPU time and peak RSS are measured exactly like bulksend's. Every script prints one JSON
line (``recipients``, ``accepted``, ``requests``, ``elapsed``) that :func:`parse_result` reads.

* (a) ``doc_get``: the documentation's loop, one ``GET /http/sendmsg`` per number with ``requests``;
* (b) ``session_post``: sequential 600-number POSTs on one keep-alive ``requests.Session``;
* (c) ``aiohttp_ceiling``: bare aiohttp + uvloop at the same concurrency, prepared bodies, answers
  discarded: the Python ceiling;
* (d) ``wrk``: the simulator's own capacity, measured by ``wrk`` posting one 600-number body
  (only when ``wrk`` is on ``PATH``).

(a) and (b) are serial loops whose rate does not depend on how many numbers they send, so they send
a prefix of the input sized to take a few seconds (:func:`baseline_size`), and are reported as rates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any, NamedTuple
from urllib.parse import quote_plus

__all__ = [
    "BASELINES",
    "BATCH",
    "KINDS",
    "Baseline",
    "ChildResult",
    "baseline_command",
    "baseline_size",
    "build",
    "machine_info",
    "markdown",
    "parse_result",
    "parse_wrk",
    "plot",
    "scripts_dir",
    "write_wrk_body",
    "wrk_command",
    "wrk_path",
    "wrk_version",
]

BATCH = 600
"""Numbers per POST, the API's maximum (bulksend's default batch size)."""


@dataclass(frozen=True)
class Baseline:
    """One baseline: its key, the letter of the issue, a label, and its script (or tool)."""

    kind: str
    letter: str
    label: str
    script: str


BASELINES: tuple[Baseline, ...] = (
    Baseline("doc_get", "a", "docs: 1 GET per number", "doc_get_loop.py"),
    Baseline("session_post", "b", "requests.Session, serial 600-number POSTs", "session_posts.py"),
    Baseline("aiohttp_ceiling", "c", "bare aiohttp+uvloop ceiling", "aiohttp_ceiling.py"),
    Baseline("wrk", "d", "wrk: simulator capacity", "wrk_sendmsg.lua"),
)
KINDS: dict[str, Baseline] = {baseline.kind: baseline for baseline in BASELINES}


class ChildResult(NamedTuple):
    """What a child process reported about its own sending (not measured from outside)."""

    sent: int
    accepted: int
    requests: int
    elapsed: float


DOC_GET_MAX = 2000
"""At most this many single-number GETs for (a), the issue's "small N"."""
SERIAL_SECONDS = 5.0
"""(a) and (b) get a prefix of the input that takes about this long at the simulated latency."""


def scripts_dir() -> Path:
    """``benchmarks/baselines`` of the source tree this module belongs to."""
    return Path(__file__).resolve().parent.parent / "benchmarks" / "baselines"


def baseline_size(kind: str, recipients: int, latency: float, doc_max: int = DOC_GET_MAX) -> int:
    """How many numbers baseline ``kind`` sends at this latency (all of them for the ceiling)."""
    if kind == "doc_get":
        if latency > 0:
            return min(recipients, doc_max, max(20, round(SERIAL_SECONDS / latency)))
        return min(recipients, doc_max)
    if kind == "session_post":
        requests = max(5, round(SERIAL_SECONDS / latency)) if latency > 0 else 300
        return min(recipients, requests * BATCH)
    return recipients


def baseline_command(
    kind: str, *, url: str, input_path: Path, concurrency: int, limit: int, text: str
) -> list[str]:
    """The argv that runs the Python baseline ``kind`` (not ``wrk``)."""
    script = scripts_dir() / KINDS[kind].script
    return [
        sys.executable,
        str(script),
        *("--url", url, "--file", str(input_path)),
        *("--concurrency", str(concurrency), "--limit", str(limit), "--text", text),
    ]


def parse_result(stdout: str) -> ChildResult:
    """The JSON line a baseline script printed last (ValueError when there is none)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            return ChildResult(
                sent=int(data["recipients"]),
                accepted=int(data["accepted"]),
                requests=int(data["requests"]),
                elapsed=float(data["elapsed"]),
            )
    raise ValueError(f"no result line in {stdout[-300:]!r}")


def wrk_path() -> str | None:
    """Where ``wrk`` is, or None."""
    return shutil.which("wrk")


def wrk_version() -> str:
    """The first line ``wrk -v`` prints ('' when wrk is missing)."""
    path = wrk_path()
    if path is None:
        return ""
    done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def write_wrk_body(path: Path, input_path: Path, text: str, credentials: Mapping[str, str]) -> None:
    """A 600-number ``sendmsg`` form body made of the first numbers of the input file."""
    with input_path.open(encoding="utf-8") as handle:
        digits = (line.strip().lstrip("+") for line in handle)
        numbers = list(itertools.islice((d for d in digits if d.isdigit()), BATCH))
    fields = [(key, credentials[key]) for key in ("api_id", "user", "password")] + [("text", text)]
    head = "&".join(f"{key}={quote_plus(value)}" for key, value in fields)
    path.write_bytes(f"{head}&to={'%2C'.join(numbers)}".encode("ascii"))


def wrk_command(url: str, concurrency: int, seconds: float, body_path: Path) -> list[str]:
    """The argv for wrk: one thread (the other core is the simulator's), ``concurrency`` sockets."""
    return [
        wrk_path() or "wrk",
        *("-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"),
        *("-s", str(scripts_dir() / "wrk_sendmsg.lua"), url, "--", str(body_path)),
    ]


def parse_wrk(stdout: str) -> ChildResult:
    """wrk's report as numbers: every request carries :data:`BATCH` numbers; non-2xx answers and
    socket errors count as not accepted."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", stdout)
    if done is None:
        raise ValueError(f"no request count in wrk output {stdout[-300:]!r}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout
    )
    failed = int(bad.group(1)) if bad else 0
    if errors:
        failed += sum(int(errors.group(i)) for i in range(1, 5))
    requests = int(done.group(1))
    return ChildResult(
        sent=requests * BATCH,
        accepted=max(0, requests - failed) * BATCH,
        requests=requests,
        elapsed=float(done.group(2)) * unit,
    )
