"""``bulksend status RESULTS``: a campaign's state, read without touching it.

Safe while a campaign runs: it opens every file read-only, never creates or locks anything a
runner would need (the lock is only probed, see :func:`bulksend.lock.probe`) and tolerates a
results line being written as it reads (a torn last line is not counted). What it tells:

* whether a run holds the campaign now, and which process (pid, host, start, command line);
* rows in the results file by status, and batches in flight (intents with no outcome yet: a
  running campaign's requests, or, when nothing runs, rows the next run will record ``unknown``);
* the input file the journal was made from, and whether it still matches (content digest);
* rows still pending: valid numbers of the input (read with the campaign's own settings) that are
  neither in the results nor sent yet; only computed when the input still matches;
* when the campaign last wrote;
* with a send window (``--send-window``): the rows the last run deferred, by the time their window
  opens, and the next opening (from ``<results>.window.json``, :mod:`bulksend.deferral`).
* the runs of the same campaign the registry knows (:mod:`bulksend.registry`), under this results
  file or another; without a results file, every run it knows (:func:`known_runs`).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bulksend.deferral import read_record
from bulksend.errors import ConfigError, InputError
from bulksend.journal import RESULTS_HEADER, InputIdentity, RowBitmap, expand_rows, input_identity
from bulksend.lock import format_holder, probe
from bulksend.numbers import NumberPolicy
from bulksend.registry import Registry, RegistryUnavailable, RunEntry
from bulksend.source import RecipientSource
from bulksend.template import Template

__all__ = [
    "CampaignStatus",
    "KnownRuns",
    "campaign_status",
    "known_runs",
    "print_runs",
    "print_status",
]


@dataclass
class CampaignStatus:
    results_path: str
    running: bool = False
    holder: dict[str, object] = field(default_factory=dict)
    created: str = ""
    rows_by_status: dict[str, int] = field(default_factory=dict)
    recorded_rows: int = 0
    in_flight_batches: int = 0
    in_flight_rows: int = 0
    input_path: str = ""
    input_state: str = ""  # "matches", "changed", "missing", "unknown"
    input_changes: list[str] = field(default_factory=list)
    input_valid: int | None = None
    input_rejected: int | None = None
    pending: int | None = None
    last_write: str = ""
    removed_rows: int = 0
    window: dict[str, Any] = field(default_factory=dict)
    """The last run's send window and what it deferred (empty without a window)."""
    earlier_runs: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return max(0, sum(1 for line in f if line.endswith(b"\n")) - 1)
    except OSError:
        return 0


def campaign_status(
    results: str | os.PathLike[str], *, count_pending: bool = True
) -> CampaignStatus:
    """Read a campaign's state (see the module docstring). Raises ConfigError when ``results``
    is not a bulksend results file."""
    path = Path(results)
    journal_path = path.with_name(path.name + ".journal")
    if not path.is_file():
        raise ConfigError(f"{path}: no such results file")
    status = CampaignStatus(results_path=str(path))
    lock = probe(path)
    status.running, status.holder = lock.held, lock.holder if lock.held else {}

    header: dict[str, object] = {}
    open_intents: dict[str, str] = {}
    try:
        with journal_path.open("r", encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
            header = first if isinstance(first, dict) else {}
            for line in f:
                if not line.endswith("\n"):
                    break  # being written
                kind, _, rest = line.rstrip("\n").partition(" ")
                if kind == "I":
                    seq, _, spec = rest.partition(" ")
                    open_intents[seq] = spec.partition(" ")[0]
                elif kind in ("D", "A"):
                    open_intents.pop(rest, None)
    except FileNotFoundError:
        pass
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{journal_path} is not a bulksend journal") from None
    status.created = str(header.get("created", ""))
    counts: Counter[str] = Counter()
    handled = RowBitmap()
    with path.open("r", encoding="utf-8", newline="") as f:
        first_line = f.readline().rstrip("\r\n")
        if first_line != RESULTS_HEADER:
            raise ConfigError(f"{path} is not a bulksend results file")
        for record in csv.reader(line for line in f if line.endswith("\n")):
            if len(record) == 8 and record[0].isdigit():
                counts[record[2]] += 1
                handled.add(int(record[0]))
    status.rows_by_status = dict(counts)
    status.recorded_rows = sum(counts.values())
    # Rows of open intents not in the results yet: in flight (or, with no runner, what the next
    # run records unknown). An intent whose outcome is half written counts only its other rows.
    for spec in open_intents.values():
        before = len(handled)
        for row in expand_rows(spec):
            handled.add(row)
        if len(handled) > before:
            status.in_flight_batches += 1
            status.in_flight_rows += len(handled) - before
    status.removed_rows = _count_lines(path.with_name(path.name + ".removed.csv"))
    mtimes = [p.stat().st_mtime for p in (path, journal_path) if p.exists()]
    status.last_write = _iso(max(mtimes)) if mtimes else ""
    window_record = read_record(path)
    if window_record is not None:
        status.window = asdict(window_record)

    recorded = InputIdentity.from_json(header.get("input_identity"))
    if recorded is None:
        status.input_path = str(header.get("input", ""))
        status.input_state = "unknown"
        return status
    status.input_path = recorded.path
    try:
        now = input_identity(recorded.path, recorded.reading)
    except InputError:
        status.input_state = "missing"
        return status
    status.input_changes = [c for c in now.changes_since(recorded) if not c.startswith("--")]
    status.input_state = "changed" if status.input_changes else "matches"
    if count_pending and status.input_state == "matches":
        reading = recorded.reading
        column = reading.get("column")
        country = reading.get("default_country")
        source = RecipientSource(
            recorded.path,
            column=column if isinstance(column, (str, int)) else None,
            policy=NumberPolicy(
                default_country=country if isinstance(country, str) else None,
                strict=bool(reading.get("strict")),
            ),
            dedupe=bool(reading.get("dedupe", True)),
            block_rows=8192,
            compact_dedupe=True,
            **_rendering(reading),
        )
        for _ in source.blocks():
            pass
        status.input_valid = source.stats.valid
        status.input_rejected = source.stats.rows - source.stats.valid
        status.pending = max(0, source.stats.valid - len(handled))
    return status


@dataclass(frozen=True)
class KnownRuns:
    """Runs the registry knows (newest first), or why it could not say."""

    registry: str
    runs: list[RunEntry]
    problem: str = ""

    def as_json(self) -> list[dict[str, object]]:
        return [asdict(r) for r in self.runs]


def known_runs(state_dir: Path, *, results: str | os.PathLike[str] | None = None) -> KnownRuns:
    """Every run the registry in ``state_dir`` knows; with ``results``, the runs of the
    campaign(s) that file belongs to (under it or under another name)."""
    registry = Registry(state_dir)
    try:
        runs = registry.runs()
    except RegistryUnavailable as exc:
        return KnownRuns(str(registry.path), [], str(exc))
    if results is not None:
        real = os.path.realpath(results)
        mine = {r.identity for r in runs if r.results == real}
        runs = [r for r in runs if r.identity in mine]
    return KnownRuns(str(registry.path), runs)


def print_runs(known: KnownRuns) -> None:
    if known.problem:
        print(f"registry: {known.problem}")
        return
    if not known.runs:
        print(f"no campaigns recorded in {known.registry}")
        return
    print(f"campaigns recorded in {known.registry}, newest first:")
    for run in known.runs:
        print(f"- {run.results}")
        print(f"    input {run.input}; {run.account}; sender {run.sender or '-'}")
        again = "; sent with --again" if run.again else ""
        print(f"    first run {run.started}; {run.holds()}{again}")


def _rendering(reading: dict[str, object]) -> dict[str, Any]:
    """The template a personalised campaign recorded, so that the rows its rendering refuses are
    not counted as pending."""
    text, max_parts, unicode = (reading.get(k) for k in ("template", "max_parts", "unicode"))
    if not isinstance(text, str):
        return {}
    return {
        "template": Template.parse(text),
        "max_parts": max_parts if isinstance(max_parts, int) else None,
        "unicode": unicode if isinstance(unicode, str) else "auto",
    }


def print_status(status: CampaignStatus) -> None:
    out: list[tuple[str, str]] = [("campaign", status.results_path)]
    if status.running:
        out.append(("state", f"running: {format_holder(status.holder)}"))
    else:
        out.append(("state", "not running"))
    if status.created:
        out.append(("created", status.created))
    out.append(("last write", status.last_write or "-"))
    for name in ("accepted", "rejected", "unknown"):
        out.append((name, f"{status.rows_by_status.get(name, 0):,}"))
    for name, count in sorted(status.rows_by_status.items()):
        if name not in ("accepted", "rejected", "unknown"):
            out.append((name, f"{count:,}"))
    if status.in_flight_rows:
        note = (
            "in flight" if status.running else "left in flight: the next run records them unknown"
        )
        out.append((note, f"{status.in_flight_rows:,} rows ({status.in_flight_batches:,} batches)"))
    if status.pending is not None:
        out.append(("pending (not sent yet)", f"{status.pending:,}"))
    if status.removed_rows:
        out.append(("results of numbers removed from the input", f"{status.removed_rows:,}"))
    window = status.window
    if window:
        out.append(("send window", f"{window['window']} (checked {window['checked_at']})"))
        deferred = window.get("deferred_by_opening") or {}
        if deferred:
            out.append(("deferred (window closed)", f"{window['deferred']:,} rows"))
            for opening, rows in deferred.items():
                out.append((f"  opens {opening}", f"{rows:,} rows"))
        if window.get("default_timezone_rows"):
            out.append(
                (
                    f"rows in the default zone ({window['default_timezone']})",
                    f"{window['default_timezone_rows']:,}",
                )
            )
    for run in status.earlier_runs:
        entry = RunEntry.from_json(run)
        if entry is not None and entry.results != os.path.realpath(status.results_path):
            out.append(("same campaign also sent as", f"{entry.results} ({entry.holds()})"))
    input_line = status.input_path or "-"
    state = {
        "matches": "unchanged",
        "changed": "CHANGED since the last run: " + "; ".join(status.input_changes),
        "missing": "MISSING",
        "unknown": "not recorded by this journal",
    }.get(status.input_state, status.input_state)
    out.append(("input", f"{input_line} ({state})"))
    width = max(len(name) for name, _ in out)
    for name, value in out:
        print(f"{name:<{width}}  {value}")
