"""``--resend-unknown``: the unknown rows that delivery receipts show the gateway did accept.

A row is ``unknown`` when its request may or may not have been processed. Before such rows are
sent again, the receipts file (:mod:`bulksend.receipts`) is searched for them: a receipt names an
accepted message, so its row becomes ``accepted`` with that id instead of texting the number a
second time. :func:`match_receipts` decides (pure), :func:`reconcile_unknown` reads the files.

How a receipt is tied to a row, first rule that applies:

* **By its key.** A receipt whose ``cli_msg_id`` is a row key of this campaign
  (:mod:`bulksend.rowkey`: every One API message carries one as ``clientMessageId``) belongs to
  the row the key names, if that row is unknown and holds the receipt's number (a receipt without
  a number is taken on its key alone). Exact: a number that stands on several rows, or was texted
  by another campaign, cannot mislead it.
* **Another campaign's key:** ignored (a receiver shared between campaigns).
* **By number** (receipts without a key: the legacy API sends none; and a key of this campaign
  whose row no longer holds that number, after an edited input was re-keyed): the receipts of a
  number, in file order, one distinct id each, go to that number's unknown rows in row order.

Either way an id the results file already holds for one of these numbers, or that another row
took, is never given twice.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from bulksend.rowkey import campaign_tag, is_key, row_of

__all__ = ["BY_KEY", "BY_NUMBER", "Reconciled", "match_receipts", "reconcile_unknown"]

BY_KEY = "reconciled from a delivery receipt (by clientMessageId)"
BY_NUMBER = "reconciled from a delivery receipt"


class Reconciled(NamedTuple):
    """An unknown row the receipts show accepted: its id, and how it was found."""

    row: int
    to: str
    api_msg_id: str
    how: str


class Receipt(NamedTuple):
    api_msg_id: str
    cli_msg_id: str
    to: str


def match_receipts(
    unknown: Mapping[int, str],
    receipts: Iterable[Receipt],
    *,
    tag: str | None,
    taken: Iterable[str] = (),
) -> list[Reconciled]:
    """The rows of ``unknown`` (row -> number) that ``receipts`` account for (module docstring).
    ``tag``: this campaign's key tag (``None``: it keys no rows); ``taken``: ids already in the
    results file."""
    used = set(taken)
    by_key: dict[int, str] = {}
    pool: list[Receipt] = []
    for receipt in receipts:
        api_id, key, to = receipt
        if not api_id or api_id in used:
            continue
        if key and is_key(key):
            row = row_of(key, tag) if tag is not None else None
            if row is None:
                continue  # another campaign's message
            number = unknown.get(row)
            if number is not None and row not in by_key and (not to or to == number):
                by_key[row] = api_id
                used.add(api_id)
                continue
        pool.append(receipt)
    rows_by_to: dict[str, list[int]] = {}
    for row, to in sorted(unknown.items()):
        if to and row not in by_key:
            rows_by_to.setdefault(to, []).append(row)
    found: dict[str, list[str]] = {}
    for api_id, _, to in pool:
        if to in rows_by_to and api_id not in used:
            used.add(api_id)
            found.setdefault(to, []).append(api_id)
    out = [Reconciled(row, unknown[row], api_id, BY_KEY) for row, api_id in by_key.items()]
    out += [
        Reconciled(row, to, api_id, BY_NUMBER)
        for to, rows in rows_by_to.items()
        for row, api_id in zip(rows, found.get(to, ()), strict=False)
    ]
    return sorted(out)


def reconcile_unknown(
    unknown: Mapping[int, str],
    results_path: Path,
    receipts_path: Path | None,
    header: Mapping[str, object],
) -> list[Reconciled]:
    """:func:`match_receipts` over the files: the receipts file (none: nothing to reconcile),
    the results file for the ids it already holds, ``header`` (the journal's) for the tag."""
    if receipts_path is None or not receipts_path.is_file() or not unknown:
        return []
    numbers = set(unknown.values())
    taken: set[str] = set()  # ids the results already hold for these numbers
    with results_path.open("r", encoding="utf-8", newline="") as f:
        for record in csv.reader(f):
            if len(record) > 3 and record[2] == "accepted" and record[1] in numbers:
                taken.add(record[3])
    with receipts_path.open("r", encoding="utf-8", newline="") as f:
        receipts = (
            Receipt(r.get("api_msg_id") or "", r.get("cli_msg_id") or "", r.get("to") or "")
            for r in csv.DictReader(f)
        )
        return match_receipts(unknown, receipts, tag=campaign_tag(header), taken=taken)
