"""What ``bulksend report --html`` costs on a big campaign: time, memory and page size.

Writes a synthetic ``--rows`` campaign (95 % accepted, 5 % refused by the gateway, 1 % of the
input rejected before sending; for every accepted message a ``003`` and a final receipt, 6 %
failed, sent over 30 minutes, delivered 1 s to 2 h later, numbers from four countries), then runs,
as child processes, interleaved ``--runs`` times:

* ``bulksend report RESULTS --receipts RECEIPTS --json`` (the text report: the baseline);
* ``bulksend report RESULTS --receipts RECEIPTS --json --html PAGE`` (the same, plus the page);

and reports each one's median wall time and peak RSS (``wait4``), the page's size and the ratio.

    .venv/bin/python benchmarks/report_html.py --rows 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bulksend.journal import RESULTS_HEADER  # noqa: E402
from bulksend.receipts import RECEIPTS_HEADER  # noqa: E402

START = 1795773600  # 2026-11-27T10:00:00Z
PREFIXES = ("2782", "2783", "4477", "1415")
FAILED = ("005", "007", "007", "009", "010")


def write_campaign(directory: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(1)
    results = directory / "big.results.csv"
    receipts = directory / "big.receipts.csv"
    rejects = directory / "big.rejects.csv"
    with (
        results.open("w", encoding="utf-8") as r,
        receipts.open("w", encoding="utf-8") as c,
        rejects.open("w", encoding="utf-8") as j,
    ):
        r.write(RESULTS_HEADER + "\n")
        c.write(RECEIPTS_HEADER + "\n")
        j.write("row,raw,reason\n")
        for i in range(rows):
            if i % 100 == 99:
                j.write(f"{i + 1},12345,too short (fewer than 8 digits)\n")
                continue
            sent = START + i * 1800 // rows
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sent))
            to = f"{PREFIXES[i % 4]}{i:07d}"
            if i % 20 == 7:
                r.write(f"{i + 1},{to},rejected,,114,Cannot route message,1,{stamp}\n")
                continue
            api_msg_id = f"{i:032x}"
            r.write(f"{i + 1},{to},accepted,{api_msg_id},,,1,{stamp}\n")
            c.write(f"{stamp},{api_msg_id},,{to},003,Delivered to gateway,,{sent + 1}\n")
            final = rng.choice(FAILED) if rng.random() < 0.06 else "004"
            late = sent + int(rng.lognormvariate(3.5, 1.2))
            c.write(f"{stamp},{api_msg_id},,{to},{final},x,1.0,{late}\n")
    return results, receipts


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, cmd
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        results, receipts = write_campaign(directory, args.rows)
        page = directory / "big.html"
        base = [sys.executable, "-m", "bulksend", "report", str(results)]
        base += ["--receipts", str(receipts), "--json"]
        text: list[tuple[float, float]] = []
        html: list[tuple[float, float]] = []
        for _ in range(args.runs):
            text.append(measure(base))
            html.append(measure([*base, "--html", str(page)]))
        size = page.stat().st_size
    out = {
        "rows": args.rows,
        "runs": args.runs,
        "text_seconds_median": round(statistics.median(t for t, _ in text), 2),
        "html_seconds_median": round(statistics.median(t for t, _ in html), 2),
        "text_peak_rss_mb": round(max(m for _, m in text), 1),
        "html_peak_rss_mb": round(max(m for _, m in html), 1),
        "page_bytes": size,
    }
    out["html_over_text"] = round(out["html_seconds_median"] / out["text_seconds_median"], 2)
    text_out = json.dumps(out, indent=2)
    print(text_out)
    if args.out is not None:
        args.out.write_text(text_out + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
