"""What an opt-out list costs: memory per excluded number, and campaign throughput with a big list.

1. Memory: loads a ``--list-size`` number list with :func:`bulksend.optout.load_opt_outs` under
   tracemalloc and reports the bytes per excluded number held afterwards (the table and the
   bitmap filter) and at the peak while loading.
2. Throughput: runs the same ``--recipients`` campaign with and without ``--exclude LIST`` against
   one simulator process (``--latency``, zero by default: the client's own cost shows most; at
   zero latency all three processes share the machine's two cores), interleaved
   (A, B, A, B, ...) ``--runs`` times, and reports the median rate of each and their ratio.
   ``--overlap`` of the recipients (10 % by default) are on the list, so the runs with the list
   send that many fewer messages and write that many reject lines instead: the rate is rows
   handled per second (sent + excluded), the same amount of input in both.

    .venv/bin/python benchmarks/exclusion.py --recipients 1000000 --list-size 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bulksend import optout  # noqa: E402
from bulksend.numbers import NumberPolicy  # noqa: E402
from bulksend.optout import load_opt_outs  # noqa: E402
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER  # noqa: E402


def _write(path: Path, numbers: list[int], header: bool) -> None:
    with path.open("w") as f:
        if header:
            f.write("phone\n")
        f.write("".join(f"+{n}\n" for n in numbers))


def memory(list_path: Path, size: int) -> dict[str, dict[str, float]]:
    """Bytes per number held after loading (and at the peak while loading), for both ways of
    holding the numbers: the dict (up to FAST_LIMIT numbers) and the compact array."""
    out: dict[str, dict[str, float]] = {}
    limit = optout.FAST_LIMIT
    for name, fast_limit in (("dict", max(limit, size)), ("compact", -1)):
        optout.FAST_LIMIT = fast_limit
        try:
            started = time.perf_counter()
            tracemalloc.start()
            opt_outs = load_opt_outs([list_path], NumberPolicy())
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            took = time.perf_counter() - started
        finally:
            optout.FAST_LIMIT = limit
        assert len(opt_outs) == size
        out[name] = {
            "bytes_per_number_held": round(held / size, 1),
            "bytes_per_number_peak": round(peak / size, 1),
            "load_seconds_traced": round(took, 2),
        }
        del opt_outs
    return out


def campaign(url: str, recipients: Path, out: Path, *extra: str) -> tuple[float, float, float]:
    """Wall seconds of the whole command, of the campaign less loading the lists, and the CPU
    seconds of the command and its reader child (less sensitive to other load on the machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKSEND_")}
    env.update(
        BULKSEND_PASSWORD=DEFAULT_PASSWORD,
        BULKSEND_USER=DEFAULT_USER,
        BULKSEND_API_ID=DEFAULT_API_ID,
    )
    cmd = [
        sys.executable, "-m", "bulksend", "send", str(recipients), "--text", "bench",
        "--endpoint", url, "--no-progress", "--concurrency", "64", "--restart", "--out", str(out),
        "--summary-json", str(out) + ".json", *extra,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"campaign failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(Path(str(out) + ".json").read_text())
    return took, summary["elapsed_seconds"] - summary["opt_out_load_seconds"], cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--list-size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--overlap", type=float, default=0.1, help="share of the recipients on the list [0.1]"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="simulated gateway latency, seconds [0]"
    )
    args = parser.parse_args()
    rng = random.Random(11)
    pool = rng.sample(range(27_820_000_000, 27_840_000_000), args.recipients + args.list_size)
    recipients = pool[: args.recipients]
    overlap = int(args.recipients * args.overlap)
    listed = (
        recipients[:overlap] + pool[args.recipients : args.recipients + args.list_size - overlap]
    )
    rng.shuffle(recipients)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write(work / "in.csv", recipients, header=True)
        _write(work / "stop.txt", listed, header=False)
        report: dict[str, object] = {"memory": memory(work / "stop.txt", args.list_size)}
        sim = subprocess.Popen(
            [sys.executable, "-m", "bulksend", "simulate", "--latency", str(args.latency)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            url = sim.stdout.readline().rsplit(" ", 1)[-1].strip()
            plain: list[tuple[float, float, float]] = []
            excluded: list[tuple[float, float, float]] = []
            for _ in range(args.runs):
                plain.append(campaign(url, work / "in.csv", work / "a.csv"))
                excluded.append(
                    campaign(
                        url, work / "in.csv", work / "b.csv", "--exclude", str(work / "stop.txt")
                    )
                )
        finally:
            sim.terminate()
            sim.wait()
        n = args.recipients
        wall_a = statistics.median(t for t, _, _ in plain)
        wall_b = statistics.median(t for t, _, _ in excluded)
        send_a = statistics.median(t for _, t, _ in plain)
        send_b = statistics.median(t for _, t, _ in excluded)
        cpu_a = statistics.median(c for _, _, c in plain)
        cpu_b = statistics.median(c for _, _, c in excluded)
        report["throughput"] = {
            "recipients": n,
            "list_size": args.list_size,
            "latency": args.latency,
            "overlap": args.overlap,
            "runs": args.runs,
            "wall_seconds_without": [round(t, 2) for t, _, _ in plain],
            "wall_seconds_with": [round(t, 2) for t, _, _ in excluded],
            "campaign_seconds_less_list_load_without": [round(t, 2) for _, t, _ in plain],
            "campaign_seconds_less_list_load_with": [round(t, 2) for _, t, _ in excluded],
            "client_cpu_seconds_without": [round(c, 2) for _, _, c in plain],
            "client_cpu_seconds_with": [round(c, 2) for _, _, c in excluded],
            "client_cpu_us_per_row_without": round(cpu_a / n * 1e6, 2),
            "client_cpu_us_per_row_with": round(cpu_b / n * 1e6, 2),
            "rows_per_s_without": round(n / send_a),
            "rows_per_s_with": round(n / send_b),
            "ratio_sending_rate_with_to_without": round(send_a / send_b, 3),
            "ratio_wall_with_to_without": round(wall_a / wall_b, 3),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
