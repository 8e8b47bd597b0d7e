"""``bulksend bench --protocols``: each wire protocol against the bound its request shape sets.

The three protocols carry different numbers of recipients per request, so each has its own
latency bound at concurrency ``c`` and latency ``L``: ``c × per_request / L``.

* ``sendmsg`` — one text, 600 numbers per POST: ``64 × 600 / 0.1 = 384 000/s``;
* ``batch`` — the legacy batch interface, personalised (``#field#`` template, one ``senditem``
  per recipient): ``64 × 1 / 0.1 = 640/s``;
* ``one`` — the One API, 200 messages per request, one text or personalised (each message its own
  content): ``64 × 200 / 0.1 = 128 000/s``.

Each case runs ``python -m bulksend send`` as a child process (measured from outside like the
default sweep: CPU, peak RSS, the child's own accepted count over its sending time) against a
fresh simulator process (``--api one`` for the One API) with ``--latency``; ``N`` is the bound
times ``--seconds`` (capped at 1 000 000). A personalised input has the columns
``phone,first_name,order`` (2 % of names need UCS-2). Medians of ``--repeats`` go to
``<date>-<name>.json`` / ``.md``. ``--protocol-sizes`` adds a memory check: the personalised One
API case at zero latency for each size, peak RSS side by side (flat in the file size is the
target).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bulksend.bench import baselines as bl
from bulksend.bench import harness
from bulksend.errors import redact
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER
from bulksend.simulator.one_api import DEFAULT_API_KEY

__all__ = ["CASES", "Case", "ProtocolRun", "add_arguments", "generate_personalised", "run"]

TEMPLATE = "Hi #first_name#, your order #order# ships today. Reply STOP to opt out."
NAMES = (
    "Thandi", "Sipho", "Anna", "Pieter", "Lerato", "Johan", "Naledi", "Ahmed", "Maria", "Chen",
    "Zanele", "Kagiso", "Fatima", "Willem", "Nomsa", "Ruan", "Aisha", "Tebogo", "Elena", "Bongani",
)  # fmt: skip
UCS2_NAMES = ("Zoë", "Ngọc", "Łukasz", "陈")
MAX_RECIPIENTS = 1_000_000


@dataclass(frozen=True)
class Case:
    protocol: str  # sendmsg | batch | one
    personalised: bool
    per_request: int

    @property
    def label(self) -> str:
        return f"{self.protocol}, {'personalised' if self.personalised else 'one text'}"

    def bound(self, concurrency: int, latency: float) -> float:
        return concurrency * self.per_request / latency if latency > 0 else float("inf")


CASES = (
    Case("sendmsg", False, 600),
    Case("batch", True, 1),
    Case("one", False, 200),
    Case("one", True, 200),
)


@dataclass(frozen=True)
class ProtocolRun:
    case: str
    recipients: int
    latency: float
    concurrency: int
    repeat: int
    accepted: int
    requests: int
    elapsed: float
    exit_code: int
    wall: float
    cpu: float
    max_rss_kb: int
    sim_cpu: float
    bound: float
    error: str = ""

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("protocols scenario (--protocols)")
    group.add_argument(
        "--protocols",
        action="store_true",
        help="each wire protocol (sendmsg, batch interface, One API; one text and personalised) "
        "against its latency bound",
    )
    group.add_argument(
        "--seconds", type=float, default=5.0, help="N = the case's bound x this many seconds [5]"
    )
    group.add_argument(
        "--protocol-sizes",
        type=harness._int_list,
        default=(),
        help="memory check: personalised One API at zero latency for these sizes, e.g. 100000,1000000",
    )
    group.add_argument(
        "--api",
        choices=("legacy", "one"),
        default=None,
        help="the protocols scenario for one API only: legacy (sendmsg and the batch interface) "
        "or one (the One API, one text and personalised)",
    )
    group.add_argument(
        "--cases",
        default="",
        help="only these cases: comma-separated labels like sendmsg,batch,one,one-personalised",
    )


def generate_personalised(cache_dir: Path, recipients: int) -> Path:
    """``cache_dir/personalised-N.csv``: ``phone,first_name,order`` for N distinct numbers (the
    same numbers as the default sweep's input), 2 % of the names outside GSM-7."""
    path = cache_dir / f"personalised-{recipients}.csv"
    if path.exists():
        return path
    numbers = harness.generate_input(cache_dir, recipients)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with numbers.open(encoding="ascii") as src, partial.open("w", encoding="utf-8") as out:
            next(src)
            out.write("phone,first_name,order\n")
            lines = []
            for i, line in enumerate(src):
                name = UCS2_NAMES[i % len(UCS2_NAMES)] if i % 50 == 7 else NAMES[i % len(NAMES)]
                lines.append(f"{line.rstrip()},{name},{100000 + i}\n")
                if len(lines) >= 100_000:
                    out.write("".join(lines))
                    lines.clear()
            out.write("".join(lines))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _case_key(case: Case) -> str:
    return case.protocol + ("-personalised" if case.personalised and case.protocol == "one" else "")


def _measure(
    case: Case,
    n: int,
    latency: float,
    concurrency: int,
    repeat: int,
    cache_dir: Path,
    scratch: Path,
    pythonpath: str,
) -> ProtocolRun:
    input_path = (
        generate_personalised(cache_dir, n)
        if case.personalised
        else harness.generate_input(cache_dir, n)
    )
    env = {
        **os.environ,
        "BULKSEND_USER": DEFAULT_USER,
        "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
        "BULKSEND_API_ID": DEFAULT_API_ID,
        "BULKSEND_API_KEY": DEFAULT_API_KEY,
        "BULKSEND_STATE_DIR": str(scratch / "state"),  # the runs' registry, not the user's
    }
    env.pop("BULKSEND_ENDPOINT", None)
    python = [sys.executable]
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
        python = [sys.executable, "-P"]
    sim_extra = ["--api", "one"] if case.protocol == "one" else []
    summary = scratch / "summary.json"
    summary.unlink(missing_ok=True)
    text = TEMPLATE if case.personalised else harness.TEXT
    with bl.SimulatorProcess(latency, 0.0, scratch / "simulator.log", sim_extra) as sim:
        argv = [*python, "-m", "bulksend", "send", str(input_path), "--text", text]
        argv += ["--endpoint", sim.url, "--concurrency", str(concurrency), "--no-progress"]
        argv += ["--summary-json", str(summary), "--restart", "--no-dedupe"]
        argv += ["--out", str(scratch / "results.csv"), "--no-balance-check"]
        if case.protocol == "one":
            argv += ["--api", "one"]
        timeout = max(600.0, 5 * n / case.bound(concurrency, latency)) if latency else 1800.0
        usage = bl.measure(argv, env, timeout, scratch, sim.pid)
    for leftover in scratch.glob("results*"):
        leftover.unlink()
    data = json.loads(summary.read_text()) if summary.exists() else {}
    accepted = int(data.get("accepted", 0))
    error = "" if accepted == n else f"{accepted:,} of {n:,} accepted"
    if usage.exit_code != 0:
        error = f"exit {usage.exit_code}: {error} {usage.stdout.strip()[-200:]}"
    run = ProtocolRun(
        _case_key(case),
        n,
        latency,
        concurrency,
        repeat,
        accepted,
        int(data.get("requests", 0)),
        float(data.get("elapsed_seconds", 0.0)),
        usage.exit_code,
        usage.wall,
        usage.cpu,
        usage.max_rss_kb,
        usage.sim_cpu,
        case.bound(concurrency, latency),
        redact(error)[-300:],
    )
    sys.stderr.write(
        f"  {run.case:<18} N={n:<9,} L={latency:<4g} c={concurrency:<3} #{repeat}: "
        f"{run.rate:>10,.0f}/s ({_share(run)}) {run.cpu * 1e6 / max(1, accepted):7.2f} µs/rcpt "
        f"{run.max_rss_kb / 1024:6.1f} MB {error}\n"
    )
    return run


def _share(run: ProtocolRun) -> str:
    return f"{100 * run.rate / run.bound:.1f} % of bound" if run.bound != float("inf") else "-"


def _median(runs: Sequence[ProtocolRun], key: str) -> float:
    return statistics.median(float(getattr(r, key)) for r in runs)


def _table(runs: Sequence[ProtocolRun]) -> list[str]:
    lines = [
        "| case | N | latency s | conc. | recipients/s | bound | % of bound | requests | "
        "CPU µs/rcpt | peak RSS MB | sim CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups: dict[tuple[str, int, float, int], list[ProtocolRun]] = {}
    for r in runs:
        groups.setdefault((r.case, r.recipients, r.latency, r.concurrency), []).append(r)
    for (case, n, latency, conc), group in groups.items():
        rates = sorted(r.rate for r in group)
        rate = statistics.median(rates)
        bound = group[0].bound
        share = f"{100 * rate / bound:.1f}" if bound != float("inf") else "-"
        cpu = statistics.median(r.cpu * 1e6 / max(1, r.accepted) for r in group)
        lines.append(
            f"| {case} | {n:,} | {latency:g} | {conc} | {rate:,.0f} ({rates[0]:,.0f}–"
            f"{rates[-1]:,.0f}) | {bound:,.0f} | {share} | {_median(group, 'requests'):,.0f} | "
            f"{cpu:.2f} | {_median(group, 'max_rss_kb') / 1024:.1f} | "
            f"{_median(group, 'sim_cpu'):.1f} |"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    """``bulksend bench --protocols``."""
    latency = args.latency[0] if args.latency else 0.1
    concurrency = args.concurrency[0] if args.concurrency else 64
    repeats = args.repeats or 3
    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    if args.api == "one":
        wanted |= {"one", "one-personalised"}
    elif args.api == "legacy":
        wanted |= {"sendmsg", "batch"}
    cases = [c for c in CASES if not wanted or _case_key(c) in wanted]
    runs: list[ProtocolRun] = []
    with tempfile.TemporaryDirectory(prefix="bulksend-bench-") as tmp:
        scratch = Path(tmp)
        for repeat in range(1, repeats + 1):
            for case in cases:
                n = int(min(MAX_RECIPIENTS, case.bound(concurrency, latency) * args.seconds))
                runs.append(
                    _measure(
                        case,
                        n,
                        latency,
                        concurrency,
                        repeat,
                        args.cache_dir,
                        scratch,
                        args.send_pythonpath,
                    )
                )
            for n in args.protocol_sizes:
                runs.append(
                    _measure(
                        Case("one", True, 200),
                        n,
                        0.0,
                        concurrency,
                        repeat,
                        args.cache_dir,
                        scratch,
                        args.send_pythonpath,
                    )
                )
    name = args.name or "protocols"
    stem = args.results_dir / f"{dt.date.today().isoformat()}-{name}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    settings = {"latency": latency, "concurrency": concurrency, "repeats": repeats}
    raw = {
        "settings": {**settings, "seconds": args.seconds},
        "runs": [{**asdict(r), "rate": r.rate} for r in runs],
    }
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    header = [
        f"# bulksend bench --protocols, {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        "",
        f"Median of {repeats} runs (min–max); latency {latency:g} s, concurrency {concurrency}; "
        "bound = concurrency × recipients per request / latency; CPU is the client's (user + "
        "system, start-up included) per accepted recipient.",
        "",
    ]
    markdown = "\n".join([*header, *_table(runs)]) + "\n"
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {stem.with_suffix('.json')}\nwrote {stem.with_suffix('.md')}")
    return 1 if any(r.error for r in runs) else 0
