"""``bulksend bench``: bulksend's throughput against the simulator, beside its baselines.

Everything is measured from outside, on separate processes: the simulator runs in its own process
(``python -m bulksend simulate --latency L --jitter J``), and each measured run is a child process,
``python -m bulksend send ...`` or a baseline script (see :mod:`bulksend.bench_baselines`), reaped
with ``os.wait4`` for its CPU time (user + system) and peak RSS. The recipients per second are the
child's own count of accepted numbers over its own sending time; wall time includes start-up.

A sweep is the product of ``--recipients``, ``--latency`` and ``--concurrency``; every point is
repeated ``--repeats`` times, interleaved with the baselines (repeat ``i`` of bulksend is paired
with repeat ``i`` of each baseline for the ratios), and reported as the median with its spread.
The input file of N distinct valid numbers is generated once and cached by N (``--cache-dir``).
Results go to ``--results-dir`` as ``<date>-<name>.json`` (raw runs, medians, machine), ``.md``
(the tables, also printed) and PNG plots (:mod:`bulksend.bench_report`).

Promises: every process started here is terminated and reaped before :func:`run` returns, each
child has a time limit, and only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from bulksend import bench_baselines as bl
from bulksend import bench_report
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER

__all__ = ["Run", "Sweep", "add_arguments", "generate_input", "run", "run_sweep"]

LISTENING = "bulksend simulator listening on "
TEXT = "Your benchmark code is 1234. Reply STOP to opt out."
PREFIXES = ("2782", "2783", "2784", "2772", "2773", "2774", "2776", "2779", "2781", "2771")
BLOCK = 10**7
"""Numbers per prefix: ``+PPPP`` and 7 digits, so up to 100 million distinct numbers."""
DEFAULT_RESULTS = Path("benchmarks/results")
Point = tuple[int, float, int]
"""(recipients, latency seconds, concurrency)."""
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulator(latency: float, jitter: float, log_path: Path) -> Iterator[tuple[str, int]]:
    """A ``bulksend simulate`` process on a free loopback port: (URL, pid); stopped on exit."""
    command = [sys.executable, "-m", "bulksend", "simulate", "--host", "127.0.0.1"]
    command += ["--latency", str(latency), "--jitter", str(jitter)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                raise RuntimeError("the simulator did not start within 30 s")
        line = process.stdout.readline().decode("utf-8", "replace")
        if not line.startswith(LISTENING):
            raise RuntimeError(f"the simulator did not start: {line!r} (see {log_path})")
        yield line[len(LISTENING) :].strip(), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# The direct child of a process inherits its parent's peak RSS as a floor for ``ru_maxrss`` (Linux
# records the old memory's high-water mark at exec, and vfork shares the parent's memory), so
# children are spawned by this tiny interpreter, not by the harness: their floor is its few MB
# (reported as ``rss_floor_kb``). It waits for the child with ``os.wait4``, writes
# "exit wall cpu maxrss_kb" to its first argument, and turns SIGTERM into SIGKILL for the child.
LAUNCHER = """
import os, signal, sys, time
result, out, err, *command = sys.argv[1:]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
dup = [(os.POSIX_SPAWN_DUP2, os.open(out, flags, 0o600), 1),
       (os.POSIX_SPAWN_DUP2, os.open(err, flags, 0o600), 2)]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ, file_actions=dup, setsigmask=set())
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(result, "w") as handle:
    cpu = usage.ru_utime + usage.ru_stime
    handle.write(f"{os.waitstatus_to_exitcode(status)} {wall} {cpu} {usage.ru_maxrss}")
"""


class Usage(NamedTuple):
    """What one child cost, measured from outside (and what it printed)."""

    exit_code: int
    wall: float
    cpu: float
    max_rss_kb: int
    sim_cpu: float
    stdout: str


def measure(
    command: Sequence[str], env: Mapping[str, str], timeout: float, scratch: Path, sim_pid: int
) -> Usage:
    """Run ``command`` (``command[0]`` an absolute path) to its end, through :data:`LAUNCHER`;
    killed after ``timeout`` seconds. ``sim_pid``'s CPU use over the run is recorded too."""
    result, out, err = scratch / "child.usage", scratch / "child.out", scratch / "child.err"
    result.unlink(missing_ok=True)
    sim_before = _cpu_seconds(sim_pid)
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), str(out), str(err)]
    process = subprocess.Popen([*launcher, *command], env=dict(env), stdin=subprocess.DEVNULL)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            process.terminate()  # the launcher kills its child, reaps it and exits
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    sim_cpu = _cpu_seconds(sim_pid) - sim_before
    if not result.exists():
        raise RuntimeError(f"the launcher of {command[0]} failed (exit {process.returncode})")
    code, wall, cpu, rss = result.read_text().split()
    stdout = out.read_text("utf-8", "replace")
    if int(code) != 0:
        stdout += "\n" + err.read_text("utf-8", "replace")[-500:]
    return Usage(int(code), float(wall), float(cpu), int(rss), sim_cpu, stdout)


def rss_floor_kb(env: Mapping[str, str], scratch: Path) -> int:
    """The peak RSS a child shows whatever it does: the launcher's, seen through ``/bin/true``."""
    true = shutil.which("true") or "/bin/true"
    return measure([true], env, 30, scratch, os.getpid()).max_rss_kb


class _Bench:
    """One sweep's state: the scratch directory, the environment, the runs so far."""

    def __init__(self, sweep: Sweep, scratch: Path, log: Path) -> None:
        self.sweep, self.scratch, self.log = sweep, scratch, log
        self.env = {
            **os.environ,
            "BULKSEND_USER": DEFAULT_USER,
            "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
            "BULKSEND_API_ID": DEFAULT_API_ID,
        }
        self.env.pop("BULKSEND_ENDPOINT", None)
        self.runs: list[Run] = []
        self.startup: dict[str, float] = {}
        self.notes: list[str] = []

    def _measured(
        self, kind: str, point: Point, repeat: int, command: list[str], sim_pid: int
    ) -> Run:
        """Run one child; what it reported comes from its summary JSON (bulksend) or its stdout."""
        summary = self.scratch / "summary.json"
        summary.unlink(missing_ok=True)
        try:
            usage = measure(command, self.env, self.sweep.run_timeout, self.scratch, sim_pid)
            if kind == "bulksend":
                data = json.loads(summary.read_text()) if summary.exists() else {}
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
            child, error = bl.ChildResult(0, 0, 0, 0.0), str(exc)[:200]
        finally:
            for leftover in self.scratch.glob("results*"):  # bulksend's journal: up to GBs
                leftover.unlink()
        if usage.exit_code != 0:
            error = f"exit {usage.exit_code}: {error} {usage.stdout.strip()[-200:]}"
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

    def bulksend(self, url: str, sim_pid: int, input_path: Path, point: Point, repeat: int) -> Run:
        command = [sys.executable, "-m", "bulksend", "send", str(input_path), "--text", TEXT]
        command += ["--endpoint", url, "--concurrency", str(point[2]), "--no-progress", "--restart"]
        command += ["--summary-json", str(self.scratch / "summary.json")]
        command += ["--out", str(self.scratch / "results.csv")]
        if not self.sweep.dedupe:
            command.append("--no-dedupe")
        return self._measured("bulksend", point, repeat, command, sim_pid)

    def baseline(
        self, kind: str, url: str, sim_pid: int, input_path: Path, point: Point, repeat: int
    ) -> Run:
        n, latency, concurrency = point
        if kind == "wrk":
            body = self.scratch / "wrk-body.txt"
            if not body.exists():
                credentials = {
                    "api_id": DEFAULT_API_ID,
                    "user": DEFAULT_USER,
                    "password": DEFAULT_PASSWORD,
                }
                bl.write_wrk_body(body, input_path, TEXT, credentials)
            command = bl.wrk_command(url, concurrency, self.sweep.wrk_seconds, body)
        else:
            limit = bl.baseline_size(kind, n, latency, self.sweep.doc_max)
            command = bl.baseline_command(
                kind,
                url=url,
                input_path=input_path,
                concurrency=concurrency,
                limit=limit,
                text=TEXT,
            )
        return self._measured(kind, point, repeat, command, sim_pid)

    def measure_startup(self, url: str, sim_pid: int) -> None:
        """CPU of a one-batch run of bulksend and of the ceiling: their fixed start-up cost."""
        tiny = generate_input(self.scratch, bl.BATCH)
        for kind in ("bulksend", "aiohttp_ceiling"):
            point = (bl.BATCH, 0.0, 1)
            if kind == "bulksend":
                done = self.bulksend(url, sim_pid, tiny, point, 0)
            else:
                done = self.baseline(kind, url, sim_pid, tiny, point, 0)
            self.runs.pop()
            self.startup[f"{kind}_cpu_s"] = done.cpu

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
            with simulator(latency, sweep.jitter, self.log) as (url, sim_pid):
                if "bulksend_cpu_s" not in self.startup:
                    self.measure_startup(url, sim_pid)
                for repeat in range(1, sweep.repeats + 1):
                    if sweep.baselines:
                        for kind in ("doc_get", "session_post"):
                            self.baseline(kind, url, sim_pid, input_path, (n, latency, 1), repeat)
                    for point in points:
                        self.bulksend(url, sim_pid, input_path, point, repeat)
                        if sweep.baselines:
                            self.baseline(
                                "aiohttp_ceiling", url, sim_pid, input_path, point, repeat
                            )
                            if latency == 0 and bl.wrk_path():
                                self.baseline("wrk", url, sim_pid, input_path, point, repeat)


def run_sweep(sweep: Sweep, cache_dir: Path) -> tuple[list[Run], dict[str, float], list[str]]:
    """Measure every point of ``sweep``: (runs, fixed costs, notes). The fixed costs are the CPU
    seconds of a one-batch run of bulksend and of the ceiling, and the launcher's RSS floor."""
    with tempfile.TemporaryDirectory(prefix="bulksend-bench-") as tmp:
        bench = _Bench(sweep, Path(tmp), Path(tmp) / "simulator.log")
        bench.startup["rss_floor_kb"] = rss_floor_kb(bench.env, bench.scratch)
        if sweep.baselines and not bl.wrk_path():
            bench.notes.append("baseline (d) skipped: wrk is not on PATH (apt-get install wrk)")
        for n in sweep.recipients:
            sys.stderr.write(f"bench: input of {n:,} recipients\n")
            bench.sweep_size(n, generate_input(cache_dir, n))
        return bench.runs, bench.startup, bench.notes


def run(args: argparse.Namespace) -> int:
    """``bulksend bench``: measure, then write JSON, Markdown and plots; the exit status."""
    sweep = sweep_from_args(args)
    name = args.name or ("quick" if args.quick else "full" if args.full else "default")
    started = time.monotonic()
    runs, startup, notes = run_sweep(sweep, args.cache_dir)
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
