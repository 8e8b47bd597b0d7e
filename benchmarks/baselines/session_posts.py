"""Baseline (b): sequential 600-number POSTs over one keep-alive ``requests.Session``.

The obvious improvement on the documentation's loop: batch the numbers (``to`` takes up to 600
comma-separated numbers in a POST) and reuse one connection, but still one request at a time. It
reads the first ``--limit`` numbers of ``--file``, posts them in batches of ``--batch``, counts the
``ID:`` lines of the answers and prints one JSON line to stdout::

    {"recipients": N, "accepted": K, "requests": R, "elapsed": SECONDS}

Credentials come from ``BULKSEND_USER``, ``BULKSEND_PASSWORD``, ``BULKSEND_API_ID``.
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
    parser.add_argument("--limit", type=int, default=10**9, help="numbers to send [all]")
    parser.add_argument("--batch", type=int, default=600, help="numbers per POST [600]")
    parser.add_argument("--concurrency", type=int, default=1, help="ignored: one at a time")
    parser.add_argument("--text", default="Your benchmark code is 1234. Reply STOP to opt out.")
    args = parser.parse_args()

    numbers = read_numbers(args.file, args.limit)
    url = f"{args.url}/http/sendmsg"
    credentials = {
        "user": os.environ["BULKSEND_USER"],
        "password": os.environ["BULKSEND_PASSWORD"],
        "api_id": os.environ["BULKSEND_API_ID"],
    }
    accepted = requests_sent = 0
    started = time.perf_counter()
    with requests.Session() as session:
        for start in range(0, len(numbers), args.batch):
            batch = numbers[start : start + args.batch]
            form = {**credentials, "to": ",".join(batch), "text": args.text}
            response = session.post(url, data=form)
            requests_sent += 1
            if response.status_code == 200:
                accepted += response.text.count("ID:")
    elapsed = time.perf_counter() - started
    result = {
        "recipients": len(numbers),
        "accepted": accepted,
        "requests": requests_sent,
        "elapsed": elapsed,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
