"""Baseline (a): the documentation's approach, one GET ``/http/sendmsg`` per number, in a loop.

This is what Clickatell's legacy HTTP API guide shows: ``requests.get`` with ``user``,
``password``, ``api_id``, ``to`` (a single number) and ``text`` in the query string, one call per
recipient, no session, no concurrency. It reads the first ``--limit`` numbers of ``--file`` (a CSV
with one number per line after an optional header) and prints one JSON line to stdout::

    {"recipients": N, "accepted": K, "requests": N, "elapsed": SECONDS}

Credentials come from ``BULKSEND_USER``, ``BULKSEND_PASSWORD``, ``BULKSEND_API_ID``.

    .venv/bin/python benchmarks/baselines/doc_get_loop.py --url http://127.0.0.1:PORT \
        --file benchmarks/cache/recipients-200000.csv --limit 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import requests


def read_numbers(path: str, limit: int) -> list[str]:
    """The first ``limit`` numbers of the file, without ``+`` (the API wants digits)."""
    with open(path, encoding="utf-8") as handle:
        lines = (line.strip().lstrip("+") for line in handle)
        numbers = (line for line in lines if line.isdigit())
        return list(itertools.islice(numbers, limit))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="simulator base URL")
    parser.add_argument("--file", required=True, help="recipient CSV")
    parser.add_argument("--limit", type=int, default=2000, help="numbers to send [2000]")
    parser.add_argument("--concurrency", type=int, default=1, help="ignored: the loop is serial")
    parser.add_argument("--text", default="Your benchmark code is 1234. Reply STOP to opt out.")
    args = parser.parse_args()

    numbers = read_numbers(args.file, args.limit)
    url = f"{args.url}/http/sendmsg"
    credentials = {
        "user": os.environ["BULKSEND_USER"],
        "password": os.environ["BULKSEND_PASSWORD"],
        "api_id": os.environ["BULKSEND_API_ID"],
    }
    accepted = 0
    started = time.perf_counter()
    for number in numbers:
        response = requests.get(url, params={**credentials, "to": number, "text": args.text})
        if response.status_code == 200 and response.text.startswith("ID:"):
            accepted += 1
    elapsed = time.perf_counter() - started
    result = {
        "recipients": len(numbers),
        "accepted": accepted,
        "requests": len(numbers),
        "elapsed": elapsed,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
