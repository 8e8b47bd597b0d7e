"""The side-by-side report of ``bulksend bench``: medians, pairwise ratios, targets, outputs.

:func:`build` turns the raw runs (``bench.Run.as_dict()``, plain dicts so that this module does not
import the harness) into the report saved as JSON: per point the median and spread (min–max) of
every measure, the efficiency against the latency bound ``concurrency × 600 / latency``, and the
ratios bulksend/baseline computed pair by pair (repeat ``i`` of bulksend with repeat ``i`` of the
baseline, same simulator, same input), then the PRODUCT.md "Numbers to reach" this run speaks to.
:func:`markdown` renders it as tables and :func:`plot` as PNG files (matplotlib, Agg backend,
imported only when plotting).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

from bulksend.bench.baselines import BATCH, KINDS, wrk_version

__all__ = ["build", "machine_info", "markdown", "plot", "stats", "targets"]


Stats = dict[str, float]
RunDict = Mapping[str, Any]


def stats(values: Sequence[float]) -> Stats:
    """Median and spread of ``values`` (zeros when there are none)."""
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python, platform, versions of what was measured, the git commit."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("bulksend", "aiohttp", "uvloop", "requests", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        commit = done.stdout.strip()
    return {
        "cpu_model": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "wrk": wrk_version(),
        "git_commit": commit,
    }


def _key(run: RunDict) -> tuple[int, float, int]:
    return (int(run["recipients"]), float(run["latency"]), int(run["concurrency"]))


def _partner(kind: str, run: RunDict) -> tuple[str, int, float, int, int]:
    """The key of the baseline run that bulksend ``run`` is paired with."""
    concurrency = 1 if kind in ("doc_get", "session_post") else int(run["concurrency"])
    return (kind, int(run["recipients"]), float(run["latency"]), concurrency, int(run["repeat"]))


def build(
    runs: Sequence[RunDict],
    startup: Mapping[str, float],
    notes: Sequence[str],
    settings: Mapping[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The whole report: raw runs, per-point medians and ratios, baselines, targets."""
    good = [run for run in runs if not run["error"]]
    by_key = {
        (run["kind"], *_key(run), int(run["repeat"])): run
        for run in good
        if run["kind"] != "bulksend"
    }
    points = []
    for key in sorted({_key(run) for run in good if run["kind"] == "bulksend"}):
        mine = [run for run in good if run["kind"] == "bulksend" and _key(run) == key]
        n, latency, concurrency = key
        bound = concurrency * BATCH / latency if latency > 0 else 0.0
        rate = stats([run["rate"] for run in mine])
        ratios = {}
        for kind in ("doc_get", "session_post", "aiohttp_ceiling", "wrk"):
            pairs = [(run, by_key.get(_partner(kind, run))) for run in mine]
            ratios[kind] = stats([r["rate"] / p["rate"] for r, p in pairs if p and p["rate"] > 0])
        fixed = startup.get("bulksend_cpu_s", 0.0)
        points.append(
            {
                "recipients": n,
                "latency": latency,
                "concurrency": concurrency,
                "rate": rate,
                "latency_bound": bound,
                "efficiency": rate["median"] / bound if bound else None,
                "wall": stats([run["wall"] for run in mine]),
                "cpu_us_per_recipient": stats([run["cpu_us_per_recipient"] for run in mine]),
                "net_cpu_us_per_recipient": stats(
                    [(run["cpu"] - fixed) * 1e6 / run["accepted"] for run in mine]
                ),
                "peak_rss_mb": stats([run["max_rss_kb"] / 1024 for run in mine]),
                "sim_cpu_share": stats([run["sim_cpu"] / run["wall"] for run in mine]),
                "ratios": ratios,
            }
        )
    baselines = []
    for kind, n, latency, concurrency in sorted(
        {(run["kind"], *_key(run)) for run in good if run["kind"] != "bulksend"}
    ):
        theirs = [r for r in good if r["kind"] == kind and _key(r) == (n, latency, concurrency)]
        baselines.append(
            {
                "kind": kind,
                "letter": KINDS[kind].letter,
                "label": KINDS[kind].label,
                "recipients": n,
                "latency": latency,
                "concurrency": concurrency,
                "sent": stats([run["sent"] for run in theirs]),
                "rate": stats([run["rate"] for run in theirs]),
                "cpu_us_per_recipient": stats([run["cpu_us_per_recipient"] for run in theirs]),
                "peak_rss_mb": stats([run["max_rss_kb"] / 1024 for run in theirs]),
            }
        )
    report: dict[str, Any] = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(seconds, 1),
        "machine": machine_info(),
        "settings": dict(settings),
        "fixed_costs": dict(startup),
        "notes": list(notes),
        "errors": [
            f"{run['kind']} {_key(run)} #{run['repeat']}: {run['error']}"
            for run in runs
            if run["error"]
        ],
        "points": points,
        "baselines": baselines,
        "runs": list(runs),
    }
    report["targets"] = targets(report)
    return report


def targets(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each PRODUCT.md "Numbers to reach" row this run can speak to: measured value and verdict."""
    rows: list[dict[str, Any]] = []
    points = report["points"]
    for p in points:
        where = f"N={p['recipients']:,} c={p['concurrency']}"
        if p["latency"] == 0 and p["ratios"]["aiohttp_ceiling"]["n"]:
            ratio = p["ratios"]["aiohttp_ceiling"]
            rows.append(
                _target(
                    "zero-latency throughput vs (c)",
                    ">= 70 %",
                    where,
                    f"{ratio['median']:.0%} ({ratio['min']:.0%}–{ratio['max']:.0%})",
                    ratio["median"] >= 0.70,
                )
            )
        if p["latency"] == 0.1 and p["concurrency"] == 64:
            rows.append(
                _target(
                    "100 ms, c=64 vs latency bound",
                    ">= 95 %",
                    where,
                    f"{p['efficiency']:.0%} of {p['latency_bound']:,.0f}/s",
                    p["efficiency"] >= 0.95,
                )
            )
        if p["latency"] == 0.1 and p["ratios"]["doc_get"]["n"]:
            ratio = p["ratios"]["doc_get"]
            rows.append(
                _target(
                    "vs (a) at 100 ms",
                    ">= 1000 x",
                    where,
                    f"{ratio['median']:,.0f} x ({ratio['min']:,.0f}–{ratio['max']:,.0f})",
                    ratio["median"] >= 1000,
                )
            )
    if points:
        largest = max(p["recipients"] for p in points)
        rss = [p for p in points if p["recipients"] == largest]
        # start-up dominates small files: judge CPU on the largest N, net of start-up beside it
        gross = [p["cpu_us_per_recipient"]["median"] for p in rss]
        net = [p["net_cpu_us_per_recipient"]["median"] for p in rss]
        ceiling = [
            b["cpu_us_per_recipient"]["median"]
            for b in report["baselines"]
            if b["kind"] == "aiohttp_ceiling" and b["recipients"] == largest
        ]
        measured = (
            f"{min(gross):.2f}–{max(gross):.2f} µs (net of start-up {min(net):.2f}–{max(net):.2f})"
        )
        if ceiling:
            measured += f"; ceiling (c) {min(ceiling):.2f}–{max(ceiling):.2f} µs"
        rows.append(
            _target(
                "client CPU per recipient",
                "<= 5 µs",
                f"N={largest:,}, {len(rss)} points",
                measured,
                max(gross) <= 5.0,
            )
        )
        peak = max(p["peak_rss_mb"]["max"] for p in rss)
        rows.append(
            _target("peak RSS", "<= 100 MB", f"N={largest:,}", f"{peak:.1f} MB", peak <= 100)
        )
        small = {(p["latency"], p["concurrency"]): p for p in points if p["recipients"] == 100_000}
        for p in rss:
            base = small.get((p["latency"], p["concurrency"]))
            if base and largest >= 10 * 100_000:
                growth = p["peak_rss_mb"]["median"] / base["peak_rss_mb"]["median"] - 1
                rows.append(
                    _target(
                        "peak RSS vs the 100 k-row run",
                        "within 10 %",
                        f"N={largest:,} L={p['latency']:g} c={p['concurrency']}",
                        f"{growth:+.1%}",
                        abs(growth) <= 0.10,
                    )
                )
    return rows


def _target(what: str, target: str, where: str, measured: str, met: bool) -> dict[str, Any]:
    return {"what": what, "target": target, "where": where, "measured": measured, "met": met}


def _spread(s: Mapping[str, float], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def _ratio(s: Mapping[str, float]) -> str:
    if not s["n"]:
        return "–"
    fmt = ",.0f" if s["median"] >= 100 else ".2f"
    return f"{s['median']:{fmt}}× ({s['min']:{fmt}}–{s['max']:{fmt}})"


def markdown(report: Mapping[str, Any]) -> str:
    """The report's tables as Markdown."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"# bulksend bench, {report['generated']}",
        "",
        f"{m['cpu_model']}, {m['cores']} cores, Python {m['python']}, bulksend "
        f"{m['versions']['bulksend']} ({m['git_commit'] or 'no commit'}), aiohttp "
        f"{m['versions']['aiohttp']}, {m['wrk'] or 'no wrk'}. Median of {s['repeats']} runs "
        f"(min–max); jitter {s['jitter']:g} s; dedupe {'on' if s['dedupe'] else 'off'}; "
        f"{report['duration_seconds']:.0f} s in all.",
        "",
        "| N | latency s | conc. | bulksend rcpt/s | vs bound | wall s | CPU µs/rcpt | net µs "
        "| peak RSS MB | sim CPU | × (a) | × (b) | × (c) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in report["points"]:
        efficiency = f"{p['efficiency']:.0%}" if p["efficiency"] is not None else "–"
        r = p["ratios"]
        lines.append(
            f"| {p['recipients']:,} | {p['latency']:g} | {p['concurrency']} | {_spread(p['rate'])} "
            f"| {efficiency} | {p['wall']['median']:.2f} | {p['cpu_us_per_recipient']['median']:.2f} "
            f"| {p['net_cpu_us_per_recipient']['median']:.2f} | {p['peak_rss_mb']['median']:.1f} "
            f"| {p['sim_cpu_share']['median']:.0%} | {_ratio(r['doc_get'])} "
            f"| {_ratio(r['session_post'])} | {_ratio(r['aiohttp_ceiling'])} |"
        )
    if report["baselines"]:
        lines += [
            "",
            "| baseline | N | latency s | conc. | numbers sent | rcpt/s | CPU µs/rcpt | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for b in report["baselines"]:
            lines.append(
                f"| ({b['letter']}) {b['label']} | {b['recipients']:,} | {b['latency']:g} "
                f"| {b['concurrency']} | {b['sent']['median']:,.0f} | {_spread(b['rate'])} "
                f"| {b['cpu_us_per_recipient']['median']:.2f} | {b['peak_rss_mb']['median']:.1f} |"
            )
    if report["targets"]:
        lines += [
            "",
            "| PRODUCT.md target | where | target | measured | met |",
            "| --- | --- | --- | --- | --- |",
        ]
        for t in report["targets"]:
            met = "yes" if t["met"] else "**no**"
            lines.append(
                f"| {t['what']} | {t['where']} | {t['target']} | {t['measured']} | {met} |"
            )
    remarks = [*report["notes"], *(f"error: {error}" for error in report["errors"])]
    lines += [""] * bool(remarks) + [f"- {remark}" for remark in remarks]
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], stem: Path) -> list[Path]:
    """PNG plots beside ``stem``: throughput vs concurrency per latency (with the latency bound),
    and peak RSS vs N when several N were run. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, baselines = report["points"], report["baselines"]
    if not points:
        return []
    written = []
    latencies = sorted({p["latency"] for p in points})
    sizes = sorted({p["recipients"] for p in points})
    columns = min(2, len(latencies))
    rows = -(-len(latencies) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.8 * rows), squeeze=False)
    for ax in axes.flat[len(latencies) :]:
        ax.set_visible(False)
    for ax, latency in zip(axes.flat, latencies, strict=False):
        for n in sizes:
            mine = [p for p in points if p["latency"] == latency and p["recipients"] == n]
            xs = [p["concurrency"] for p in mine]
            ys = [p["rate"]["median"] for p in mine]
            errors = [
                [y - p["rate"]["min"] for y, p in zip(ys, mine, strict=True)],
                [p["rate"]["max"] - y for y, p in zip(ys, mine, strict=True)],
            ]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=f"bulksend N={n:,}")
        for kind, style in (("aiohttp_ceiling", "s--"), ("wrk", "^:")):
            theirs = [
                b
                for b in baselines
                if b["kind"] == kind and b["latency"] == latency and b["recipients"] == sizes[-1]
            ]
            if theirs:
                ax.plot(
                    [b["concurrency"] for b in theirs],
                    [b["rate"]["median"] for b in theirs],
                    style,
                    label=f"({KINDS[kind].letter}) {KINDS[kind].label}",
                )
        for kind, color in (("session_post", "tab:brown"), ("doc_get", "tab:gray")):
            for b in baselines:
                if b["kind"] == kind and b["latency"] == latency and b["recipients"] == sizes[-1]:
                    ax.axhline(
                        b["rate"]["median"],
                        color=color,
                        linestyle="-.",
                        linewidth=1,
                        label=f"({KINDS[kind].letter}) {KINDS[kind].label}",
                    )
        concurrencies = sorted({p["concurrency"] for p in points})
        if latency > 0:
            ax.plot(
                concurrencies,
                [c * BATCH / latency for c in concurrencies],
                "k--",
                linewidth=1,
                label="latency bound c×600/L",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_title(f"simulated latency {latency:g} s")
        ax.set_xlabel("concurrency (batches in flight)")
        ax.set_ylabel("recipients / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("bulksend bench: throughput vs concurrency")
    fig.tight_layout()
    path = Path(f"{stem}-throughput.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    if len(sizes) > 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for latency, concurrency in sorted({(p["latency"], p["concurrency"]) for p in points}):
            mine = [p for p in points if (p["latency"], p["concurrency"]) == (latency, concurrency)]
            ax.plot(
                [p["recipients"] for p in mine],
                [p["peak_rss_mb"]["median"] for p in mine],
                marker="o",
                label=f"bulksend L={latency:g} c={concurrency}",
            )
        ax.axhline(100, color="red", linestyle="--", linewidth=1, label="target 100 MB")
        ax.set_xscale("log")
        ax.set_xlabel("recipients in the file (N)")
        ax.set_ylabel("client peak RSS (MB)")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("bulksend bench: memory vs N")
        fig.tight_layout()
        path = Path(f"{stem}-memory.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
