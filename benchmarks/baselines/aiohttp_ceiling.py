"""Baseline (c): the Python ceiling, a bare aiohttp + uvloop loop posting prepared bodies.

Every 600-number ``sendmsg`` body is URL-encoded before the clock starts; then ``--concurrency``
workers share one keep-alive connection pool, post the bodies and read the answers without parsing
them (a number counts as sent when its request got HTTP 200). No journal, no validation, no retries:
whatever bulksend does beyond this costs throughput. Prints one JSON line to stdout::

    {"recipients": N, "accepted": N_OK, "requests": R, "elapsed": SECONDS}

``accepted`` here means "posted and answered 200"; the answers are discarded unread.
Credentials come from ``BULKSEND_USER``, ``BULKSEND_PASSWORD``, ``BULKSEND_API_ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
from urllib.parse import quote_plus

import aiohttp

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
    uvloop = None  # type: ignore[assignment]


def read_numbers(path: str, limit: int) -> list[str]:
    """The first ``limit`` numbers of the file, without ``+`` (the API wants digits)."""
    with open(path, encoding="utf-8") as handle:
        lines = (line.strip().lstrip("+") for line in handle)
        numbers = (line for line in lines if line.isdigit())
        return list(itertools.islice(numbers, limit))


def build_bodies(numbers: list[str], batch: int, text: str) -> list[tuple[bytes, int]]:
    """One form body per ``batch`` numbers, with how many numbers it carries."""
    head = "&".join(
        f"{key}={quote_plus(value)}"
        for key, value in (
            ("api_id", os.environ["BULKSEND_API_ID"]),
            ("user", os.environ["BULKSEND_USER"]),
            ("password", os.environ["BULKSEND_PASSWORD"]),
            ("text", text),
        )
    )
    bodies = []
    for start in range(0, len(numbers), batch):
        chunk = numbers[start : start + batch]
        bodies.append((f"{head}&to={'%2C'.join(chunk)}".encode("ascii"), len(chunk)))
    return bodies


async def post_all(url: str, bodies: list[tuple[bytes, int]], concurrency: int) -> tuple[int, int]:
    """Post every body from ``concurrency`` workers; (numbers answered 200, requests)."""
    endpoint = f"{url}/http/sendmsg"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    queue = iter(bodies)
    sent = requests_sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal sent, requests_sent
            for body, count in queue:  # the shared iterator hands each body out once
                async with session.post(endpoint, data=body, headers=headers) as response:
                    await response.read()
                    requests_sent += 1
                    if response.status == 200:
                        sent += count

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent, requests_sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="simulator base URL")
    parser.add_argument("--file", required=True, help="recipient CSV")
    parser.add_argument("--limit", type=int, default=10**9, help="numbers to send [all]")
    parser.add_argument("--batch", type=int, default=600, help="numbers per POST [600]")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight [32]")
    parser.add_argument("--text", default="Your benchmark code is 1234. Reply STOP to opt out.")
    args = parser.parse_args()

    bodies = build_bodies(read_numbers(args.file, args.limit), args.batch, args.text)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        started = time.perf_counter()
        sent, requests_sent = runner.run(post_all(args.url, bodies, args.concurrency))
        elapsed = time.perf_counter() - started
    result = {
        "recipients": sum(count for _, count in bodies),
        "accepted": sent,
        "requests": requests_sent,
        "elapsed": elapsed,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
