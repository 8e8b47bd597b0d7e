"""How many recipients per second the simulator itself can take: the ceiling of every benchmark.

Starts ``python -m bulksend.simulator`` in its own process (zero latency, no faults, unlimited
credit), authenticates once, then for each concurrency drives it with a bare aiohttp client on
uvloop: keep-alive connections, pre-built form bodies of ``--batch`` numbers (600, the POST
maximum), answers read but only their ``ID:`` lines counted. Each measurement runs ``--duration``
seconds after a short warm-up; the median of ``--runs`` runs is reported, with the simulator's own
CPU use (from ``/proc``) so that "simulator saturated" and "client saturated" can be told apart,
and recipients per simulator CPU-second: its capacity on one core even when other processes on the
machine take CPU away from it.

    .venv/bin/python benchmarks/sim_capacity.py --concurrency 8 32 64 --duration 10 --runs 3

The machine has two cores: the client and the simulator each get about one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote_plus

import aiohttp

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
LISTENING = "bulksend simulator listening on "
USER, PASSWORD, API_ID = "bench", "bench-password", "3000001"


@dataclass(frozen=True)
class Run:
    concurrency: int
    seconds: float
    requests: int
    recipients: int
    accepted: int
    sim_cpu_seconds: float

    @property
    def recipients_per_s(self) -> float:
        return self.recipients / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def sim_cpu_share(self) -> float:
        return self.sim_cpu_seconds / self.seconds

    @property
    def recipients_per_sim_cpu_s(self) -> float:
        """Recipients per CPU-second of the simulator: its capacity on one whole core, which
        stays meaningful when other processes take CPU away from it."""
        return self.recipients / self.sim_cpu_seconds if self.sim_cpu_seconds else 0.0


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """Start the simulator process; return it and its base URL (read from its first line)."""
    command = [
        *(sys.executable, "-m", "bulksend.simulator"),
        *("--port", "0", "--user", USER, "--password", PASSWORD, "--api-id", API_ID),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(LISTENING):
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return process, line[len(LISTENING) :].strip()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_bodies(session_id: str, batch: int, count: int) -> list[bytes]:
    """``count`` distinct sendmsg bodies of ``batch`` valid numbers each, URL-encoded once."""
    rng = random.Random(7)
    bodies = []
    for _ in range(count):
        numbers = ",".join(str(rng.randrange(27_600_000_000, 27_899_999_999)) for _ in range(batch))
        form = {
            "session_id": session_id,
            "to": numbers,
            "text": "Your benchmark code is 1234. Reply STOP to opt out.",
            "callback": "3",
        }
        bodies.append("&".join(f"{k}={quote_plus(v)}" for k, v in form.items()).encode())
    return bodies


async def authenticate(url: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/http/auth", data={"api_id": API_ID, "user": USER, "password": PASSWORD}
        ) as response,
    ):
        answer = await response.text()
    if not answer.startswith("OK: "):
        raise SystemExit(f"auth failed: {answer!r}")
    return answer[4:].strip()


async def drive(
    url: str, bodies: list[bytes], concurrency: int, seconds: float, sim_pid: int, batch: int
) -> Run:
    """Post bodies from ``concurrency`` workers for ``seconds``; count what came back."""
    endpoint = f"{url}/http/sendmsg"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    requests = accepted = 0
    measuring = False

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal requests, accepted
            index = offset
            while True:
                body = bodies[index % len(bodies)]
                index += 1
                async with session.post(endpoint, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
                if measuring:
                    requests += 1
                    accepted += answer.count(b"ID: ")

        tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
        await asyncio.sleep(1.0)  # warm-up: connections open, caches hot
        measuring = True
        cpu_before, started = cpu_seconds(sim_pid), time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed, cpu_used = time.perf_counter() - started, cpu_seconds(sim_pid) - cpu_before
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
    return Run(concurrency, elapsed, requests, requests * batch, accepted, cpu_used)


async def measure(args: argparse.Namespace) -> list[Run]:
    process, url = start_simulator()
    try:
        session_id = await authenticate(url)
        bodies = build_bodies(session_id, args.batch, 16)
        medians: list[Run] = []
        for concurrency in args.concurrency:
            runs = []
            for _ in range(args.runs):
                run = await drive(url, bodies, concurrency, args.duration, process.pid, args.batch)
                if run.accepted != run.recipients:
                    raise SystemExit(f"{run.recipients - run.accepted} numbers not accepted")
                runs.append(run)
                print(
                    f"  c={concurrency:<3} {run.recipients_per_s:>11,.0f} recipients/s "
                    f"{run.requests_per_s:>8,.0f} requests/s  simulator CPU "
                    f"{run.sim_cpu_share:.0%} ({run.recipients_per_sim_cpu_s:,.0f} per CPU-second)",
                    file=sys.stderr,
                )
            ranked = sorted(runs, key=lambda r: r.recipients_per_s)
            medians.append(ranked[(len(ranked) - 1) // 2])  # the median run (the lower one if even)
        return medians
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run [10]")
    parser.add_argument("--runs", type=int, default=3, help="runs per concurrency [3]")
    parser.add_argument("--batch", type=int, default=600, help="numbers per POST [600]")
    parser.add_argument("--json", metavar="FILE", help="also write the medians as JSON")
    args = parser.parse_args()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        medians = runner.run(measure(args))

    print(f"simulator capacity, {args.batch} numbers per POST, median of {args.runs} runs:")
    print("| concurrency | recipients/s | requests/s | simulator CPU | recipients per sim CPU-s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for run in medians:
        print(
            f"| {run.concurrency} | {run.recipients_per_s:,.0f} | {run.requests_per_s:,.0f} "
            f"| {run.sim_cpu_share:.0%} | {run.recipients_per_sim_cpu_s:,.0f} |"
        )
    if args.json:
        rows = [
            {
                **asdict(run),
                "recipients_per_s": run.recipients_per_s,
                "requests_per_s": run.requests_per_s,
                "recipients_per_sim_cpu_s": run.recipients_per_sim_cpu_s,
            }
            for run in medians
        ]
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
