"""``bulksend bench``: bulksend's throughput against the simulator, beside its baselines.

Everything is measured from outside, on separate processes: the simulator runs in its own process
(``python -m bulksend simulate --latency L --jitter J``), and each measured run is a child process,
``python -m bulksend send ...`` or a baseline script (see :mod:`bulksend.bench.baselines`), reaped
with ``os.wait4`` for its CPU time (user + system) and peak RSS. The recipients per second are the
child's own count of accepted numbers over its own sending time; wall time includes start-up.

A sweep is the product of ``--recipients``, ``--latency`` and ``--concurrency``; every point is
repeated ``--repeats`` times, interleaved with the baselines (repeat ``i`` of bulksend is paired
with repeat ``i`` of each baseline for the ratios), and reported as the median with its spread.
The input file of N distinct valid numbers is generated once and cached by N (``--cache-dir``).
Results go to ``--results-dir`` as ``<date>-<name>.json`` (raw runs, medians, machine), ``.md``
(the tables, also printed) and PNG plots (:mod:`bulksend.bench.report`).

Promises: every process started here is terminated and reaped before :func:`run` returns, each
child has a time limit, and only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bulksend.bench import baselines as bl
from bulksend.bench import report as bench_report
from bulksend.errors import redact
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER

__all__ = ["Run", "Sweep", "add_arguments", "generate_input", "run", "run_sweep"]

TEXT = "Your benchmark code is 1234. Reply STOP to opt out."
PREFIXES = ("2782", "2783", "2784", "2772", "2773", "2774", "2776", "2779", "2781", "2771")
BLOCK = 10**7
"""Numbers per prefix: ``+PPPP`` and 7 digits, so up to 100 million distinct numbers."""
DEFAULT_RESULTS = Path("benchmarks/results")
Point = tuple[int, float, int]
"""(recipients, latency seconds, concurrency)."""
Command = Callable[[str], list[str]]
"""The argv of a measured child, given the simulator's URL (which changes on a restart)."""
MAX_ATTEMPTS = 3
DEFAULT_CACHE = Path("benchmarks/cache")


@dataclass(frozen=True)
class Sweep:
    """What to measure: the product of sizes, latencies and concurrencies, and how."""

    recipients: tuple[int, ...] = (200_000,)
    concurrency: tuple[int, ...] = (32, 64)
    latency: tuple[float, ...] = (0.0, 0.1)
    jitter: float = 0.0
    repeats: int = 3
    dedupe: bool = False
    baselines: bool = True
    doc_max: int = bl.DOC_GET_MAX
    wrk_seconds: float = 3.0
    max_point_seconds: float = 300.0
    run_timeout: float = 1800.0
    send_pythonpath: str = ""
    """Measure the ``bulksend send`` of this source tree instead (before/after comparisons)."""


@dataclass(frozen=True)
class Run:
    """One child process, measured: ``kind`` is ``bulksend`` or a baseline's kind."""

    kind: str
    recipients: int
    latency: float
    concurrency: int
    repeat: int
    sent: int
    accepted: int
    requests: int
    elapsed: float
    exit_code: int
    wall: float
    cpu: float
    max_rss_kb: int
    sim_cpu: float
    error: str = ""

    @property
    def rate(self) -> float:
        """Accepted recipients per second of the child's own sending time."""
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_us_per_recipient(self) -> float:
        """Client CPU (user + system, start-up included) per accepted recipient, in µs."""
        return self.cpu * 1e6 / self.accepted if self.accepted else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "rate": self.rate,
            "cpu_us_per_recipient": self.cpu_us_per_recipient,
        }


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, not {text!r}")
    return values


def _float_list(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, not {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``bench`` flags on ``parser``."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N=20000, one point, one repeat")
    mode.add_argument(
        "--full",
        action="store_true",
        help="N=10k,100k,1M,10M x concurrency 1,4,16,64,256 x latency 0,0.02,0.1,0.3",
    )
    parser.add_argument("--recipients", type=_int_list, help="sizes N, comma-separated [200000]")
    parser.add_argument("--concurrency", type=_int_list, help="batches in flight [32,64]")
    parser.add_argument("--latency", type=_float_list, help="simulated seconds [0,0.1]")
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- latency spread [0]")
    parser.add_argument("--repeats", type=int, help="runs per point [3]")
    parser.add_argument("--dedupe", action="store_true", help="let bulksend dedupe (off: distinct)")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false")
    parser.add_argument("--doc-max", type=int, default=bl.DOC_GET_MAX, help="(a) numbers at most")
    parser.add_argument("--wrk-seconds", type=float, default=3.0, help="(d) seconds per run [3]")
    parser.add_argument(
        "--max-point-seconds",
        type=float,
        default=300.0,
        help="skip points the latency bound says take longer [300]",
    )
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="kill a child after [s]")
    parser.add_argument("--name", help="results file name [default, quick or full]")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--no-plots", dest="plots", action="store_false")


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    """The :class:`Sweep` the flags describe (explicit lists override the mode's)."""
    if args.quick:
        sweep = Sweep((20_000,), (32,), (0.0,), repeats=1, doc_max=300, wrk_seconds=1.0)
    elif args.full:
        sweep = Sweep(
            (10_000, 100_000, 1_000_000, 10_000_000), (1, 4, 16, 64, 256), (0.0, 0.02, 0.1, 0.3)
        )
    else:
        sweep = Sweep()
    return replace(
        sweep,
        recipients=args.recipients or sweep.recipients,
        concurrency=args.concurrency or sweep.concurrency,
        latency=args.latency or sweep.latency,
        repeats=max(1, args.repeats or sweep.repeats),
        jitter=args.jitter,
        dedupe=args.dedupe,
        baselines=args.baselines,
        doc_max=args.doc_max if not args.quick else sweep.doc_max,
        wrk_seconds=args.wrk_seconds if not args.quick else sweep.wrk_seconds,
        max_point_seconds=args.max_point_seconds,
        run_timeout=args.run_timeout,
        send_pythonpath=getattr(args, "send_pythonpath", ""),
    )


def generate_input(cache_dir: Path, recipients: int) -> Path:
    """``cache_dir/recipients-N.csv``: a ``phone`` header and N distinct valid numbers
    (``+2782xxxxxxx`` first, then other South African mobile ranges), written once."""
    if recipients > BLOCK * len(PREFIXES):
        raise ValueError(f"at most {BLOCK * len(PREFIXES):,} distinct numbers")
    path = cache_dir / f"recipients-{recipients}.csv"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with partial.open("w", encoding="ascii") as handle:
            handle.write("phone\n")
            for start in range(0, recipients, 100_000):
                # 7919 is coprime with 10**7, so i -> i*7919 mod 10**7 is a permutation.
                handle.write(
                    "".join(
                        f"+{PREFIXES[i // BLOCK]}{(i * 7919 + 12345) % BLOCK:07d}\n"
                        for i in range(start, min(recipients, start + 100_000))
                    )
                )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


class _Bench:
    """One sweep's state: the scratch directory, the environment, the runs so far."""

    def __init__(self, sweep: Sweep, scratch: Path, log: Path) -> None:
        self.sweep, self.scratch, self.log = sweep, scratch, log
        self.env = {
            **os.environ,
            "BULKSEND_USER": DEFAULT_USER,
            "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
            "BULKSEND_API_ID": DEFAULT_API_ID,
            # The runs' campaign registry is the sweep's own, never the user's.
            "BULKSEND_STATE_DIR": str(scratch / "state"),
        }
        self.env.pop("BULKSEND_ENDPOINT", None)
        if sweep.send_pythonpath:
            self.env["PYTHONPATH"] = os.pathsep.join(
                [sweep.send_pythonpath, *filter(None, [self.env.get("PYTHONPATH", "")])]
            )
        self.runs: list[Run] = []
        self.startup: dict[str, float] = {}
        self.notes: list[str] = []

    def _measured(
        self, kind: str, point: Point, repeat: int, sim: bl.SimulatorProcess, command: Command
    ) -> Run:
        """Run one child (again on a restarted simulator if the simulator died meanwhile); what
        it reported comes from its summary JSON (bulksend) or its stdout."""
        summary = self.scratch / "summary.json"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            summary.unlink(missing_ok=True)
            sim.ensure()
            try:
                usage = bl.measure(
                    command(sim.url), self.env, self.sweep.run_timeout, self.scratch, sim.pid
                )
                data = json.loads(summary.read_text()) if summary.exists() else {}
            finally:
                for leftover in self.scratch.glob("results*"):  # bulksend's journal: up to GBs
                    leftover.unlink()
            if sim.alive() or attempt == MAX_ATTEMPTS:
                break
            self.notes.append(
                f"the simulator stopped during {kind} {point} #{repeat} (attempt {attempt}): "
                "restarted it and ran that measurement again"
            )
        try:
            if kind == "bulksend":
                child = bl.ChildResult(
                    point[0],
                    int(data.get("accepted", 0)),
                    int(data.get("requests", 0)),
                    float(data.get("elapsed_seconds", 0.0)),
                )
            else:
                child = (
                    bl.parse_wrk(usage.stdout) if kind == "wrk" else bl.parse_result(usage.stdout)
                )
            error = "" if child.accepted == child.sent else f"{child.accepted:,} of {child.sent:,}"
        except ValueError as exc:
            child, error = bl.ChildResult(0, 0, 0, 0.0), str(exc)
        if usage.exit_code != 0:
            error = f"exit {usage.exit_code}: {error} {usage.stdout.strip()[-200:]}"
        error = redact(error)[-300:]
        sent, accepted, requests, elapsed = child
        run = Run(
            kind,
            *point,
            repeat,
            sent,
            accepted,
            requests,
            elapsed,
            usage.exit_code,
            usage.wall,
            usage.cpu,
            usage.max_rss_kb,
            usage.sim_cpu,
            error,
        )
        self.runs.append(run)
        sys.stderr.write(
            f"  {kind:<16} N={point[0]:<10,} L={point[1]:<5g} c={point[2]:<4} #{repeat}: "
            f"{run.rate:>12,.0f}/s {run.cpu_us_per_recipient:7.2f} µs/rcpt "
            f"{run.max_rss_kb / 1024:6.1f} MB wall {run.wall:6.2f}s {error}\n"
        )
        return run

    def bulksend(
        self, sim: bl.SimulatorProcess, input_path: Path, point: Point, repeat: int
    ) -> Run:
        def command(url: str) -> list[str]:
            # -P: a --send-pythonpath tree comes from PYTHONPATH, not the current directory.
            python = [sys.executable, "-P"] if self.sweep.send_pythonpath else [sys.executable]
            argv = [*python, "-m", "bulksend", "send", str(input_path), "--text", TEXT]
            argv += ["--endpoint", url, "--concurrency", str(point[2]), "--no-progress"]
            argv += ["--summary-json", str(self.scratch / "summary.json"), "--restart"]
            argv += ["--out", str(self.scratch / "results.csv")]
            return argv if self.sweep.dedupe else [*argv, "--no-dedupe"]

        return self._measured("bulksend", point, repeat, sim, command)

    def baseline(
        self, kind: str, sim: bl.SimulatorProcess, input_path: Path, point: Point, repeat: int
    ) -> Run:
        n, latency, concurrency = point
        body = self.scratch / "wrk-body.txt"
        if kind == "wrk" and not body.exists():
            credentials = {
                "api_id": DEFAULT_API_ID,
                "user": DEFAULT_USER,
                "password": DEFAULT_PASSWORD,
            }
            bl.write_wrk_body(body, input_path, TEXT, credentials)
        limit = bl.baseline_size(kind, n, latency, self.sweep.doc_max)

        def command(url: str) -> list[str]:
            if kind == "wrk":
                return bl.wrk_command(url, concurrency, self.sweep.wrk_seconds, body)
            return bl.baseline_command(
                kind,
                url=url,
                input_path=input_path,
                concurrency=concurrency,
                limit=limit,
                text=TEXT,
            )

        return self._measured(kind, point, repeat, sim, command)

    def measure_startup(self, sim: bl.SimulatorProcess) -> None:
        """CPU of a one-batch run of bulksend and of the ceiling: their fixed start-up cost."""
        tiny, point = generate_input(self.scratch, bl.BATCH), (bl.BATCH, 0.0, 1)
        self.startup["bulksend_cpu_s"] = self.bulksend(sim, tiny, point, 0).cpu
        self.startup["aiohttp_ceiling_cpu_s"] = self.baseline(
            "aiohttp_ceiling", sim, tiny, point, 0
        ).cpu
        del self.runs[-2:]

    def sweep_size(self, n: int, input_path: Path) -> None:
        sweep = self.sweep
        for latency in sweep.latency:
            points = []
            for concurrency in sweep.concurrency:
                if latency > 0 and n * latency / (concurrency * bl.BATCH) > sweep.max_point_seconds:
                    self.notes.append(
                        f"skipped N={n:,} latency {latency:g} s concurrency {concurrency}: the "
                        f"latency bound alone takes > {sweep.max_point_seconds:g} s"
                    )
                    continue
                points.append((n, latency, concurrency))
            if not points:
                continue
            sys.stderr.write(f"bench: N={n:,} latency {latency:g} s\n")
            with bl.SimulatorProcess(latency, sweep.jitter, self.log) as sim:
                if "bulksend_cpu_s" not in self.startup:
                    self.measure_startup(sim)
                for repeat in range(1, sweep.repeats + 1):
                    if sweep.baselines:
                        for kind in ("doc_get", "session_post"):
                            self.baseline(kind, sim, input_path, (n, latency, 1), repeat)
                    for point in points:
                        self.bulksend(sim, input_path, point, repeat)
                        if sweep.baselines:
                            self.baseline("aiohttp_ceiling", sim, input_path, point, repeat)
                            if latency == 0 and bl.wrk_path():
                                self.baseline("wrk", sim, input_path, point, repeat)


def run_sweep(sweep: Sweep, cache_dir: Path) -> tuple[list[Run], dict[str, float], list[str]]:
    """Measure every point of ``sweep``: (runs, fixed costs, notes). The fixed costs are the CPU
    seconds of a one-batch run of bulksend and of the ceiling, and the launcher's RSS floor."""
    with tempfile.TemporaryDirectory(prefix="bulksend-bench-") as tmp:
        bench = _Bench(sweep, Path(tmp), Path(tmp) / "simulator.log")
        bench.startup["rss_floor_kb"] = bl.rss_floor_kb(bench.env, bench.scratch)
        if sweep.baselines and not bl.wrk_path():
            bench.notes.append("baseline (d) skipped: wrk is not on PATH (apt-get install wrk)")
        for n in sweep.recipients:
            sys.stderr.write(f"bench: input of {n:,} recipients\n")
            bench.sweep_size(n, generate_input(cache_dir, n))
        return bench.runs, bench.startup, bench.notes


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(143)


def run(args: argparse.Namespace) -> int:
    """``bulksend bench``: measure, then write JSON, Markdown and plots; the exit status."""
    sweep = sweep_from_args(args)
    name = args.name or ("quick" if args.quick else "full" if args.full else "default")
    started = time.monotonic()
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # unwind: stop the simulator and children
    try:
        runs, startup, notes = run_sweep(sweep, args.cache_dir)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    stem = args.results_dir / f"{dt.date.today().isoformat()}-{name}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    # The raw runs first, so that an error in the report below loses no measurement.
    raw = {"settings": asdict(sweep), "fixed_costs": startup, "runs": [r.as_dict() for r in runs]}
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    report = bench_report.build(
        [r.as_dict() for r in runs], startup, notes, asdict(sweep), time.monotonic() - started
    )
    markdown = bench_report.markdown(report)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    plots = bench_report.plot(report, stem) if args.plots else []
    print(markdown)
    for path in [stem.with_suffix(".json"), stem.with_suffix(".md"), *plots]:
        print(f"wrote {path}")
    failed = [r for r in runs if r.error]
    return 1 if failed else 0
