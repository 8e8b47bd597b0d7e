"""What ``bulksend track`` gets out of an account's status-query limit, and what a rerun costs.

For each API (legacy ``querymsg``, One API ``GET /v1/message/<id>``) it starts ``bulksend
simulate --query-mps R`` (a gateway that answers at most R status queries a second, 429 with
``Retry-After`` above that, and settles every message at once), sends a ``--recipients``
campaign to it, then runs ``bulksend track`` as a child process twice on a fresh copy of the
campaign:

* ``--rate R``: the operator knows the limit;
* ``--rate 10R``: the operator does not; the tracker learns the limit from the 429s;

and reports the answered queries per second of each (the tracker's own measure, ``--json``:
answers over the time spent querying) against R, the 429s it met, and the simulator's count of
queries. Then it runs ``track`` once more on the finished campaign: that rerun must send 0
queries (the simulator's counter before and after is the proof).

    .venv/bin/python benchmarks/track_rate.py --query-mps 100 --recipients 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER  # noqa: E402
from bulksend.simulator.one_api import DEFAULT_API_KEY  # noqa: E402

ENV = {
    "BULKSEND_USER": DEFAULT_USER,
    "BULKSEND_API_ID": DEFAULT_API_ID,
    "BULKSEND_PASSWORD": DEFAULT_PASSWORD,
    "BULKSEND_API_KEY": DEFAULT_API_KEY,
    "PATH": "/usr/bin:/bin",
}


def _bulksend(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulksend", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1800,
        check=False,
    )


def run(api: str, query_mps: float, recipients: int, work: Path) -> dict[str, object]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "bulksend", "simulate", "--port", "0", "--api", api),
            *("--query-mps", str(query_mps), "--delivery-delay", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().rsplit(" ", 1)[-1].strip()
    out: dict[str, object] = {"api": api, "query_mps": query_mps, "recipients": recipients}
    try:
        base = work / api
        base.mkdir()
        (base / "in.csv").write_text(
            "phone\n" + "".join(f"+2782{i:07d}\n" for i in range(recipients)), encoding="utf-8"
        )
        api_args = ("--api", api)
        sent = _bulksend(
            "send",
            str(base / "in.csv"),
            "--text",
            "hi",
            "--endpoint",
            url,
            "--no-progress",
            *api_args,
        )
        assert sent.returncode == 0, sent.stderr
        for name, rate in (("known", query_mps), ("learned", 10 * query_mps)):
            copy = work / f"{api}-{name}"
            copy.mkdir()
            for part in ("in.results.csv", "in.results.csv.journal"):
                if (base / part).exists():
                    shutil.copy(base / part, copy / part)
            started = time.monotonic()
            tracked = _bulksend(
                "track",
                str(copy / "in.results.csv"),
                "--endpoint",
                url,
                "--rate",
                str(rate),
                "--json",
                *api_args,
            )
            wall = time.monotonic() - started
            assert tracked.returncode == 0, tracked.stderr
            summary = json.loads(tracked.stdout)
            rerun = _bulksend(
                "track", str(copy / "in.results.csv"), "--endpoint", url, "--json", *api_args
            )
            again = json.loads(rerun.stdout)
            out[name] = {
                "rate_flag": rate,
                "answered": summary["answered"],
                "queries": summary["queries"],
                "throttled": summary["throttled"],
                "queries_per_second": round(summary["queries_per_second"], 1),
                "share_of_limit": round(summary["queries_per_second"] / query_mps, 3),
                "wall_seconds": round(wall, 2),
                "rerun_queries": again["queries"],
                "rerun_settled_before": again["settled_before"],
            }
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    out["simulator"] = err.strip().splitlines()[-1] if err.strip() else ""
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query-mps", type=float, default=100.0)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            run(api, args.query_mps, args.recipients, Path(tmp)) for api in ("legacy", "one")
        ]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
