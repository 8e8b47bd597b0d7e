"""``bulksend bench --throttled``: how close bulksend stays to what a rate-limited account allows.

For each rate ``R`` (``--rates``) the simulator runs in its own process with ``--throttle R`` (a
token bucket of one second's worth, HTTP 429 + ``Retry-After`` over it, nothing processed) and
``--latency`` (50 ms by default), fresh for every run so that each starts with a full bucket. Then
``python -m bulksend send`` runs on ``N = R × --duration`` distinct numbers (at least
:data:`MIN_RECIPIENTS`) twice per repeat: with ``--rate R`` (told the limit) and without (adaptive,
learning it from the 429s). Measured per run, from the child's own ``--summary-json``:

* **share of R** — accepted messages ÷ the campaign's elapsed seconds ÷ R;
* **throttled** — 429 answers the campaign received (``throttled``), against its requests;
* **settled** — from the simulator's ledger (the time each message was accepted): the earliest
  moment from which every :data:`SETTLE_WINDOW`-second window up to the campaign's last full one
  saw at least :data:`SETTLE_SHARE` of R. ``0`` means on target from the first window, *never*
  (``null`` in the JSON) that the last window fell short; the median counts never as infinite.

Targets (PRODUCT.md): with ``--rate`` at least 95 % of R and at most 2 throttled requests per
campaign; adaptive at least 90 % of R, at most 10 % of requests throttled, settled within 10 s.
Medians of the repeats (with min–max) go to ``<date>-<name>.json`` / ``.md``, and one run of each
mode at ``--plot-rate`` is drawn as achieved rate over time against R (``-timeline.png``).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bulksend.bench import baselines as bl
from bulksend.bench import harness
from bulksend.bench import report as bench_report
from bulksend.errors import redact

__all__ = ["MIN_RECIPIENTS", "ThrottledRun", "ThrottledSweep", "run", "run_throttled"]

MIN_RECIPIENTS = 6000
SETTLE_WINDOW = 5.0
SETTLE_SHARE = 0.9
BIN = 0.5
"""Seconds per bin of the timeline."""
PLOT_WINDOW = 1.0
"""The plot shows the accepted rate over the trailing second, one point per bin."""
MODES = ("rate", "adaptive")


@dataclass(frozen=True)
class ThrottledSweep:
    rates: tuple[int, ...] = (200, 1000, 5000, 50_000)
    duration: float = 30.0
    latency: float = 0.05
    repeats: int = 3
    concurrency: int = 32
    plot_rate: int = 1000
    sim_args: tuple[str, ...] = ()
    run_timeout: float = 600.0
    send_pythonpath: str = ""


@dataclass(frozen=True)
class ThrottledRun:
    rate: int
    mode: str  # "rate" (--rate R) or "adaptive"
    repeat: int
    recipients: int
    accepted: int
    elapsed: float
    requests: int
    throttled: int
    exit_code: int
    cpu: float
    settled: float | None
    timeline: list[tuple[float, float]] = field(default_factory=list)
    error: str = ""

    @property
    def share(self) -> float:
        """Achieved rate ÷ R."""
        return self.accepted / self.elapsed / self.rate if self.elapsed > 0 else 0.0

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    def as_dict(self, with_timeline: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_timeline:
            data.pop("timeline")
        return {**data, "share": self.share, "throttled_share": self.throttled_share}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--throttled`` scenario's own flags (the rest of ``bench`` is shared)."""
    group = parser.add_argument_group("throttled scenario (--throttled)")
    group.add_argument(
        "--throttled",
        action="store_true",
        help="measure against a rate-limited gateway instead (R sweep, --rate and adaptive)",
    )
    group.add_argument(
        "--rates",
        type=harness._int_list,
        help="the account's R, messages per second [200,1000,5000,50000]",
    )
    group.add_argument(
        "--duration", type=float, default=30.0, help="N = R x this many seconds (>= 6000) [30]"
    )
    group.add_argument(
        "--plot-rate", type=int, default=1000, help="R whose runs are drawn over time [1000]"
    )
    group.add_argument(
        "--sim-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra 'bulksend simulate' argument, e.g. --sim-arg=--retry-after=fractional",
    )
    group.add_argument(
        "--send-pythonpath",
        default="",
        metavar="DIR",
        help="measure the 'bulksend send' of this source tree (before/after; default sweep too)",
    )


def sweep_from_args(args: argparse.Namespace) -> ThrottledSweep:
    base = ThrottledSweep()
    latency = args.latency[0] if args.latency else base.latency
    return ThrottledSweep(
        rates=args.rates or base.rates,
        duration=args.duration,
        latency=latency,
        repeats=max(1, args.repeats or base.repeats),
        concurrency=args.concurrency[0] if args.concurrency else base.concurrency,
        plot_rate=args.plot_rate,
        sim_args=tuple(args.sim_arg),
        run_timeout=args.run_timeout,
        send_pythonpath=args.send_pythonpath,
    )


def recipients_for(rate: int, duration: float) -> int:
    return max(MIN_RECIPIENTS, round(rate * duration))


def timeline(times: Sequence[float], start: float) -> list[tuple[float, float]]:
    """(seconds since ``start``, accepted messages per second) per :data:`BIN`-second bin."""
    if not times:
        return []
    bins = Counter(int((t - start) // BIN) for t in times)
    last = max(bins)
    return [(i * BIN, bins.get(i, 0) / BIN) for i in range(0, last + 1)]


def settle_time(times: Sequence[float], start: float, rate: float) -> float | None:
    """The earliest bin edge from which every later :data:`SETTLE_WINDOW`-second window (up to
    the last one that ends before the last acceptance) saw at least ``SETTLE_SHARE × rate``.
    ``None`` when the run is too short to say."""
    if not times:
        return None
    ordered = sorted(t - start for t in times)
    end = ordered[-1]
    if end < SETTLE_WINDOW:
        return None
    steps = int((end - SETTLE_WINDOW) / BIN) + 1
    need = SETTLE_SHARE * rate * SETTLE_WINDOW
    ok = []
    for i in range(steps):
        lo, hi = i * BIN, i * BIN + SETTLE_WINDOW
        count = _count_between(ordered, lo, hi)
        ok.append(count >= need)
    settled = None
    for i in range(len(ok) - 1, -1, -1):
        if not ok[i]:
            break
        settled = i * BIN
    return settled


def _count_between(ordered: Sequence[float], lo: float, hi: float) -> int:
    return bisect.bisect_left(ordered, hi) - bisect.bisect_left(ordered, lo)


def _ledger_times(path: Path) -> list[float]:
    """Acceptance times from a simulator ledger CSV (``to,api_msg_id,climsgid,parts,time,text``)."""
    times: list[float] = []
    if not path.exists():
        return times
    with path.open(encoding="utf-8", errors="replace") as handle:
        next(handle, None)
        for line in handle:
            parts = line.split(",", 5)
            if len(parts) >= 5:
                try:
                    times.append(float(parts[4]))
                except ValueError:
                    continue
    return times


class _Throttled:
    def __init__(self, sweep: ThrottledSweep, scratch: Path, cache: Path) -> None:
        self.sweep, self.scratch, self.cache = sweep, scratch, cache
        base = harness.Sweep(send_pythonpath=sweep.send_pythonpath)
        self.env = harness._Bench(base, scratch, scratch / "sim.log").env
        self.runs: list[ThrottledRun] = []

    def one(self, rate: int, mode: str, repeat: int) -> ThrottledRun:
        sweep = self.sweep
        n = recipients_for(rate, sweep.duration)
        input_path = harness.generate_input(self.cache, n)
        ledger = self.scratch / "ledger.csv"
        ledger.unlink(missing_ok=True)
        summary = self.scratch / "summary.json"
        summary.unlink(missing_ok=True)
        extra = ["--throttle", str(rate), "--ledger", str(ledger), *sweep.sim_args]
        # -P: the measured tree comes from PYTHONPATH, not from the current directory.
        python = [sys.executable, "-P"] if sweep.send_pythonpath else [sys.executable]
        argv = [*python, "-m", "bulksend", "send", str(input_path), "--text", harness.TEXT]
        argv += ["--concurrency", str(sweep.concurrency), "--no-progress", "--no-dedupe"]
        argv += ["--summary-json", str(summary), "--restart"]
        argv += ["--out", str(self.scratch / "results.csv")]
        if mode == "rate":
            argv += ["--rate", str(rate)]
        with bl.SimulatorProcess(sweep.latency, 0.0, self.scratch / "sim.log", extra) as sim:
            started = time.time()
            usage = bl.measure(
                [*argv, "--endpoint", sim.url], self.env, sweep.run_timeout, self.scratch, sim.pid
            )
        data: Mapping[str, Any] = json.loads(summary.read_text()) if summary.exists() else {}
        for leftover in self.scratch.glob("results*"):
            leftover.unlink()
        times = _ledger_times(ledger)
        ledger.unlink(missing_ok=True)
        first = min(times) if times else started
        accepted = int(data.get("accepted", 0))
        error = "" if accepted == n else f"{accepted:,} of {n:,} accepted"
        if usage.exit_code != 0:
            error = f"exit {usage.exit_code}: {error} {usage.stdout.strip()[-200:]}"
        run = ThrottledRun(
            rate=rate,
            mode=mode,
            repeat=repeat,
            recipients=n,
            accepted=accepted,
            elapsed=float(data.get("elapsed_seconds", 0.0)),
            requests=int(data.get("requests", 0)),
            throttled=int(data.get("throttled", 0)),
            exit_code=usage.exit_code,
            cpu=usage.cpu,
            settled=settle_time(times, first, rate),
            timeline=timeline(times, first),
            error=redact(error)[-300:],
        )
        self.runs.append(run)
        sys.stderr.write(
            f"  R={rate:<6} {mode:<8} #{repeat}: {run.share:6.1%} of R, "
            f"{run.throttled}/{run.requests} throttled, settled "
            f"{'-' if run.settled is None else f'{run.settled:g} s'} {run.error}\n"
        )
        return run


def run_throttled(sweep: ThrottledSweep, cache: Path) -> list[ThrottledRun]:
    """Every (R, mode, repeat) of ``sweep``, repeats interleaved across modes."""
    with tempfile.TemporaryDirectory(prefix="bulksend-bench-throttled-") as tmp:
        bench = _Throttled(sweep, Path(tmp), cache)
        for rate in sweep.rates:
            sys.stderr.write(f"bench: throttled gateway, R = {rate:,}/s\n")
            for repeat in range(1, sweep.repeats + 1):
                for mode in MODES:
                    bench.one(rate, mode, repeat)
        return bench.runs


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def build(runs: Sequence[ThrottledRun], sweep: ThrottledSweep, seconds: float) -> dict[str, Any]:
    """Medians per (R, mode) and the targets, as a JSON-able report."""
    points = []
    for rate in sweep.rates:
        for mode in MODES:
            mine = [r for r in runs if r.rate == rate and r.mode == mode]
            if not mine:
                continue
            # A run that never held the target to its end counts as settling at infinity.
            settled = [r.settled if r.settled is not None else math.inf for r in mine]
            share = _stats([r.share for r in mine])
            throttled = _stats([float(r.throttled) for r in mine])
            throttled_share = _stats([r.throttled_share for r in mine])
            requests = _stats([float(r.requests) for r in mine])
            settled_stats = _stats(settled)
            if mode == "rate":
                met = share["median"] >= 0.95 and throttled["median"] <= 2
                target = ">= 95 % of R, <= 2 throttled"
            else:
                met = (
                    share["median"] >= 0.90
                    and throttled_share["median"] <= 0.10
                    and settled_stats["median"] <= 10.0
                )
                target = ">= 90 % of R, <= 10 % throttled, settled <= 10 s"
            # JSON has no infinity: "never settled" is null there.
            settled_json = {k: (None if math.isinf(v) else v) for k, v in settled_stats.items()}
            points.append(
                {
                    "rate": rate,
                    "mode": mode,
                    "recipients": mine[0].recipients,
                    "share": share,
                    "throttled": throttled,
                    "throttled_share": throttled_share,
                    "requests": requests,
                    "settled": settled_json,
                    "target": target,
                    "met": met,
                    "errors": [r.error for r in mine if r.error],
                }
            )
    plotted = {}
    for mode in MODES:
        run = next((r for r in runs if r.rate == sweep.plot_rate and r.mode == mode), None)
        if run is not None:
            plotted[mode] = run.timeline
    return {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scenario": "throttled",
        "settings": asdict(sweep),
        "machine": bench_report.machine_info(),
        "seconds": round(seconds, 1),
        "points": points,
        "timelines": {"rate": sweep.plot_rate, "runs": plotted},
        "runs": [r.as_dict() for r in runs],
    }


def _pct(s: Mapping[str, float]) -> str:
    return f"{s['median']:.1%} ({s['min']:.1%}–{s['max']:.1%})"


def _seconds(s: Mapping[str, float | None] | None) -> str:
    if s is None:
        return "–"

    def one(value: float | None) -> str:
        return "never" if value is None else f"{value:g}"

    if s["min"] == s["max"]:
        return one(s["median"])
    return f"{one(s['median'])} ({one(s['min'])}–{one(s['max'])})"


def markdown(report: Mapping[str, Any]) -> str:
    s = report["settings"]
    machine = report["machine"]
    lines = [
        f"# bulksend bench --throttled, {report['generated']}",
        "",
        f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, "
        f"bulksend {machine['versions'].get('bulksend', '?')} ({machine.get('git_commit', '?')})"
        f"{' from ' + s['send_pythonpath'] if s['send_pythonpath'] else ''}. Gateway: token "
        f"bucket of R msg/s holding one second's worth, 429 + Retry-After over it, latency "
        f"{s['latency'] * 1000:g} ms; N = R × {s['duration']:g} s (>= {MIN_RECIPIENTS:,}); "
        f"concurrency {s['concurrency']}. Median of {s['repeats']} runs (min–max); "
        f"{report['seconds']:g} s in all.",
        "",
        "| R (msg/s) | mode | N | achieved, % of R | throttled | requests | throttled % "
        "| settled s | target | met |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for p in report["points"]:
        mode = f"`--rate {p['rate']}`" if p["mode"] == "rate" else "adaptive"
        settled_text = _seconds(p["settled"])
        lines.append(
            f"| {p['rate']:,} | {mode} | {p['recipients']:,} | {_pct(p['share'])} "
            f"| {p['throttled']['median']:g} ({p['throttled']['min']:g}–{p['throttled']['max']:g}) "
            f"| {p['requests']['median']:g} | {p['throttled_share']['median']:.1%} "
            f"| {settled_text} | {p['target']} | {'yes' if p['met'] else '**no**'} |"
        )
    errors = [e for p in report["points"] for e in p["errors"]]
    if errors:
        lines += ["", "Errors:", *[f"- {e}" for e in errors]]
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], stem: Path) -> list[Path]:
    """Achieved rate over time against R, one line per mode, for the ``plot_rate`` runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timelines = report["timelines"]
    runs = timelines["runs"]
    if not runs:
        return []
    rate = timelines["rate"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = {"rate": f"--rate {rate}", "adaptive": "adaptive (no --rate)"}
    width = round(PLOT_WINDOW / BIN)
    for mode, points in runs.items():
        if len(points) > width:
            xs, ys = zip(*points, strict=True)
            # Trailing PLOT_WINDOW-second average, full windows only: at low R a 0.5 s bin holds
            # one request or two, and the first request (a new connection) lands a little late.
            ends = [xs[i] + BIN for i in range(width - 1, len(xs))]
            averages = [sum(ys[i - width + 1 : i + 1]) / width for i in range(width - 1, len(ys))]
            ax.plot(ends, averages, label=labels.get(mode, mode))
    ax.axhline(rate, color="black", linestyle="--", linewidth=1, label=f"R = {rate:,}/s")
    ax.axhline(0.9 * rate, color="grey", linestyle=":", linewidth=1, label="90 % of R")
    ax.set_xlabel("seconds since the first accepted message")
    ax.set_ylabel(f"accepted messages/s (trailing {PLOT_WINDOW:g} s)")
    ax.set_ylim(0, rate * 1.6)
    ax.set_title(f"bulksend against a gateway allowing {rate:,} msg/s (429 + Retry-After)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = stem.parent / f"{stem.name}-timeline.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def run(args: argparse.Namespace) -> int:
    """``bulksend bench --throttled``: measure, write JSON, Markdown and the plot."""
    sweep = sweep_from_args(args)
    name = args.name or "throttled"
    started = time.monotonic()
    runs = run_throttled(sweep, args.cache_dir)
    report = build(runs, sweep, time.monotonic() - started)
    stem = args.results_dir / f"{dt.date.today().isoformat()}-{name}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    plots = plot(report, stem) if args.plots else []
    print(text)
    for path in [stem.with_suffix(".json"), stem.with_suffix(".md"), *plots]:
        print(f"wrote {path}")
    return 1 if any(r.error for r in runs) else 0
