"""Helpers for end-to-end tests: sample files and the invariants checked against the ledger."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

from bulksend.simulator import Simulator


def write_numbers(path: Path, count: int, *, seed: int = 1, header: bool = True) -> list[str]:
    """A CSV of ``count`` distinct valid international numbers; returns them in file order."""
    rng = random.Random(seed)
    numbers: list[str] = []
    seen: set[str] = set()
    while len(numbers) < count:
        n = f"2782{rng.randrange(10**7):07d}"
        if n not in seen:
            seen.add(n)
            numbers.append(n)
    lines = (["phone\n"] if header else []) + [f"+{n}\n" for n in numbers]
    path.write_text("".join(lines), encoding="utf-8")
    return numbers


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_against_ledger(results: list[dict[str, str]], sim: Simulator) -> Counter[str]:
    """The invariants every campaign must keep, checked against the simulator's ledger."""
    ledger = sim.ledger.entries
    per_number = Counter(e.to for e in ledger)
    twice = [n for n, c in per_number.items() if c > 1]
    assert not twice, f"numbers accepted more than once: {twice[:5]}"
    rows = Counter(r["row"] for r in results)
    assert all(c == 1 for c in rows.values()), "a row appears twice in the results"
    accepted = {(r["to"], r["api_msg_id"]) for r in results if r["status"] == "accepted"}
    ledger_pairs = {(e.to, e.api_msg_id) for e in ledger}
    # Every accepted ID in the results is real, and every ledger entry whose answer arrived is
    # in the results as accepted; the others must be recorded unknown.
    assert accepted <= ledger_pairs
    unknown_numbers = {r["to"] for r in results if r["status"] == "unknown"}
    for pair in ledger_pairs - accepted:
        assert pair[0] in unknown_numbers, f"accepted by the gateway but not recorded: {pair}"
    return Counter(r["status"] for r in results)
