"""What a send window costs per row: the zone look-up and the per-row decision.

Times, over ``--rows`` numbers, three loops that do what the campaign's producer does per row:

* ``baseline``: the loop alone (a row without a window costs nothing more: the window code is not
  reached);
* ``zones``: :class:`bulksend.window.NumberZones` (the numbering plan's zones, cached by prefix);
* ``gate``: :meth:`bulksend.window.WindowGate.opening` (zones + the cached decision per zone set);
* ``campaign``: :meth:`bulksend.quiet.QuietHours.sendable` over blocks of 8,192 rows, as the
  campaign's producer calls it (the gate, the clock read once a block, the deferred rows counted).

Each is run ``--runs`` times, interleaved, on fresh objects (cold caches: the first rows parse
numbers); the report gives the median per row and its difference to the baseline. Two mixes of
numbers: ``world`` (the demo's mix: South Africa, the UK, Washington DC, the Netherlands, random
subscriber digits) and ``multi`` (only countries of several zones: the US across all area codes,
Australian and Russian mobiles, Brazil: the worst case for the prefix cache).

    .venv/bin/python benchmarks/window.py --rows 1000000 --runs 5
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bulksend.clock import ManualClock  # noqa: E402
from bulksend.config import CampaignSettings  # noqa: E402
from bulksend.quiet import QuietHours  # noqa: E402
from bulksend.window import NumberZones, SendWindow, WindowGate  # noqa: E402

NOW = datetime(2026, 12, 7, 12, 30, tzinfo=UTC).timestamp()


def numbers(mix: str, rows: int, seed: int = 18) -> list[str]:
    rng = random.Random(seed)
    if mix == "world":
        prefixes = ("2782", "2783", "2784", "2772", "4477", "4479", "1202", "3161")
        return [rng.choice(prefixes) + f"{rng.randrange(10**7):07d}" for _ in range(rows)]
    us_areas = [str(a) for a in range(201, 990) if a % 100 not in (11,) and str(a)[1] != "9"]
    out = []
    for _ in range(rows):
        kind = rng.random()
        if kind < 0.55:
            out.append(
                "1" + rng.choice(us_areas) + f"{rng.randrange(2, 10)}{rng.randrange(10**6):06d}"
            )
        elif kind < 0.75:
            out.append("614" + f"{rng.randrange(10**8):08d}")
        elif kind < 0.9:
            out.append("79" + f"{rng.randrange(10**9):09d}")
        else:
            out.append("55" + f"{rng.randrange(11, 100)}9{rng.randrange(10**8):08d}")
    return out


def baseline(rows: list[str]) -> float:
    started = time.perf_counter()
    count = 0
    for msisdn in rows:
        if msisdn:
            count += 1
    return time.perf_counter() - started


def zones(rows: list[str]) -> float:
    lookup = NumberZones()
    started = time.perf_counter()
    for msisdn in rows:
        lookup(msisdn)
    return time.perf_counter() - started


def gate(rows: list[str]) -> float:
    check = WindowGate(SendWindow.parse("08:00-21:00"), NumberZones()).opening
    started = time.perf_counter()
    for msisdn in rows:
        check(msisdn, NOW)
    return time.perf_counter() - started


def campaign(rows: list[str]) -> float:
    settings = CampaignSettings(
        input_path=Path("in.csv"),
        text="hi",
        password="pw",
        send_window="08:00-21:00",
        clock=ManualClock(NOW),
    )
    quiet = QuietHours(settings)
    blocks = [rows[i : i + 8192] for i in range(0, len(rows), 8192)]
    started = time.perf_counter()
    for block in blocks:
        quiet.sendable(block)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    loops: dict[str, Callable[[list[str]], float]] = {
        "baseline": baseline,
        "zones": zones,
        "gate": gate,
        "campaign": campaign,
    }
    report: dict[str, dict[str, float]] = {}
    for mix in ("world", "multi"):
        rows = numbers(mix, args.rows)
        times: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(args.runs):
            for name, loop in loops.items():
                times[name].append(loop(rows))
        base = statistics.median(times["baseline"]) / args.rows * 1e9
        report[mix] = {}
        for name, runs in times.items():
            per_row = statistics.median(runs) / args.rows * 1e9
            report[mix][f"{name}_ns_per_row"] = round(per_row, 1)
            if name != "baseline":
                report[mix][f"{name}_extra_ns_per_row"] = round(per_row - base, 1)
        distinct = NumberZones()
        for msisdn in rows:
            distinct(msisdn)
        report[mix]["parsed_share"] = round(distinct.misses / args.rows, 4)
        print(f"{mix}: " + ", ".join(f"{k} {v}" for k, v in report[mix].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "runs": args.runs, **report}, indent=2))


if __name__ == "__main__":
    main()
