"""What the HTML report draws, gathered from a campaign's files by streaming them.

:func:`gather` returns a :class:`ReportData`: the text report's figures
(:func:`bulksend.report.build_report`, so the page and ``bulksend report`` never disagree) plus
what the charts need:

* **rejected before sending**, by reason: the rejects file beside the results (``row,raw,reason``;
  ``duplicate of row N`` counted as one reason, ``duplicate``);
* **delivery over time**: per second (of the receipt's ``timestamp``, the gateway's time of the
  status), messages that reached ``004``, and per second (of ``sent_at``) messages accepted; a
  series that would pass :data:`MAX_BUCKETS` seconds is coarsened (10 s, 1 min, 10 min, 1 h
  buckets), so a campaign of any length costs the same;
* **time to delivery**: for each delivered message, its receipt's ``timestamp`` minus its row's
  ``sent_at``, counted in :data:`LATENCY_BUCKETS`;
* **failures by code and by country**: gateway refusals (``refused 114 Cannot route message``)
  and delivery failures (``status 007 Error delivering message``) by code, and both by the
  destination's region (from the numbering plan, ``phonenumbers``: ``ZA +27``);
* **settings**: what the campaign's journal header records (created, input, encoding, parts,
  sender, options, personalised template, number reading). Never a secret: the header holds
  none, and only these named fields are taken. The text of a one-text campaign is not in the
  journal (only its fingerprint), so it is shown only when given (``text``).

Memory is bounded like the text report's: the final receipts (status and time packed in one int
per message, ~140 bytes), counters per time bucket (at most
:data:`MAX_BUCKETS`) and per reason, code and region;
the results and receipts files are streamed. The same rules as the text report: the last final
receipt of a message counts; intermediate receipts cost nothing.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bulksend.receipts import FINAL_STATUSES, RECEIPTS_HEADER, STATUS_TEXT, message_key
from bulksend.report import Report, ReportError, build_report

__all__ = ["LATENCY_BUCKETS", "MAX_BUCKETS", "ReportData", "TimeSeries", "gather"]

MAX_BUCKETS = 20_000
"""Buckets a time series holds before it is coarsened."""
_RESOLUTIONS = (1, 10, 60, 600, 3600, 86400)
_CHUNK = 1 << 16
_GONE = "001"
_HEX = frozenset("0123456789abcdefABCDEF").issuperset

LATENCY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 s", 1),
    ("1-5 s", 5),
    ("5-10 s", 10),
    ("10-30 s", 30),
    ("30 s-1 min", 60),
    ("1-5 min", 300),
    ("5-15 min", 900),
    ("15-60 min", 3600),
    ("1-6 h", 6 * 3600),
    ("6-24 h", 86400),
    ("> 24 h", float("inf")),
)
"""Time-to-delivery classes: a label and its upper bound in seconds (exclusive)."""

_SETTINGS_FIELDS = ("created", "input", "encoding", "parts", "sender", "options")
_READING_FIELDS = ("template", "column", "default_country", "strict", "dedupe", "max_parts")
_STATUS_BITS = 10
_STATUS_MASK = (1 << _STATUS_BITS) - 1


class TimeSeries:
    """Counts per time bucket, starting at one second and coarsened past :data:`MAX_BUCKETS`."""

    def __init__(self) -> None:
        self.resolution = 1
        self.counts: Counter[int] = Counter()

    def add(self, stamp: int) -> None:
        self.counts[stamp - stamp % self.resolution] += 1
        if len(self.counts) > MAX_BUCKETS:
            self._coarsen()

    def absorb(self, per_second: Counter[int]) -> None:
        """Add counts per second (unix seconds -> count), then empty ``per_second``."""
        counts, resolution = self.counts, self.resolution
        for stamp, count in per_second.items():
            counts[stamp - stamp % resolution] += count
        per_second.clear()
        if len(counts) > MAX_BUCKETS:
            self._coarsen()

    def _coarsen(self) -> None:
        while len(self.counts) > MAX_BUCKETS and self.resolution < _RESOLUTIONS[-1]:
            self.resolution = next(r for r in _RESOLUTIONS if r > self.resolution)
            merged: Counter[int] = Counter()
            for start, count in self.counts.items():
                merged[start - start % self.resolution] += count
            self.counts = merged

    def cumulative(self) -> list[tuple[int, int]]:
        """``(bucket end, running total)``, in time order: a bucket's count has arrived by its
        end."""
        total, out = 0, []
        for start, count in sorted(self.counts.items()):
            total += count
            out.append((start + self.resolution, total))
        return out


@dataclass
class ReportData:
    report: Report
    """The text report's figures."""
    rejects_path: str = ""
    input_rejected: int = 0
    input_rejected_by_reason: dict[str, int] = field(default_factory=dict)
    delivered_over_time: TimeSeries = field(default_factory=lambda: TimeSeries())
    """Messages by the time of their ``004`` receipt."""
    accepted_over_time: TimeSeries = field(default_factory=lambda: TimeSeries())
    """Accepted rows by their ``sent_at``."""
    unknown_to_gateway: int = 0
    """Pending messages the gateway said it does not know (``001``, from ``bulksend track``: an
    id it no longer keeps)."""
    latency: dict[str, int] = field(default_factory=dict)
    """:data:`LATENCY_BUCKETS` label -> delivered messages (those with both times)."""
    latency_median: float | None = None
    """Seconds, from the buckets' boundaries (the bucket holding the median, its upper edge)."""
    failures_by_code: dict[str, int] = field(default_factory=dict)
    failures_by_country: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _final_times(path: Path) -> dict[int | str, int]:
    """Message -> ``timestamp << 10 | status`` of its last final receipt (0 when no time), or 1
    (``001``) for a message the gateway said it does not know and has no final status."""
    finals: dict[int | str, int] = {}
    try:
        handle = path.open(encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        raise ReportError(f"cannot read receipts file {path}: {exc.strerror}") from None
    with handle:
        if handle.readline().rstrip("\r\n").lstrip("\ufeff") != RECEIPTS_HEADER:
            raise ReportError(f"{path} is not a bulksend receipts file")
        for line in handle:
            fields = line.rstrip("\r\n").split(",")
            if len(fields) != 8:
                continue
            if fields[4] == _GONE:  # the gateway no longer knows it, unless a final status came
                finals.setdefault(message_key(fields[1]), 1)
                continue
            if fields[4] not in FINAL_STATUSES:
                continue
            try:
                stamp = max(0, int(fields[7])) if fields[7] else 0
            except ValueError:
                stamp = 0
            finals[message_key(fields[1])] = (stamp << _STATUS_BITS) | int(fields[4])
    return finals


class _SentAt:
    def __init__(self) -> None:
        self._text = ""
        self._value = 0

    def __call__(self, text: str) -> int:
        if text != self._text:
            self._text = text
            try:
                self._value = int(
                    datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
                )
            except ValueError:
                self._value = 0
        return self._value


class _Regions:
    """``27821234567`` -> ``ZA +27``, from the numbering plan, cached by 6-digit prefix."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, msisdn: str) -> str:
        prefix = msisdn[:6]
        region = self._cache.get(prefix)
        if region is None:
            region = self._cache[prefix] = _region_of(msisdn)
        return region


def _region_of(msisdn: str) -> str:
    import phonenumbers

    try:
        number = phonenumbers.parse("+" + msisdn.lstrip("+"))
    except phonenumbers.NumberParseException:
        return "unknown"
    code = number.country_code or 0
    region = phonenumbers.region_code_for_number(number)
    if not region or region == "ZZ":
        regions = phonenumbers.region_codes_for_country_code(code)
        region = regions[0] if regions else "?"
    return f"{region} +{code}"


def _latency_label(seconds: float) -> str:
    for label, bound in LATENCY_BUCKETS:
        if seconds < bound:
            return label
    return LATENCY_BUCKETS[-1][0]


def _reason(text: str) -> str:
    return "duplicate" if text.startswith("duplicate of row") else text


def _rejects(path: Path) -> Counter[str]:
    reasons: Counter[str] = Counter()
    with (
        contextlib.suppress(FileNotFoundError),
        path.open(encoding="utf-8", errors="replace", newline="") as f,
    ):
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if len(row) == 3:
                reasons[_reason(row[2])] += 1
    return reasons


def _settings(results: Path) -> dict[str, Any]:
    """The journal header's public fields."""
    journal = results.with_name(results.name + ".journal")
    try:
        with journal.open(encoding="utf-8") as f:
            header = json.loads(f.readline() or "{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(header, dict):
        return {}
    settings = {name: header[name] for name in _SETTINGS_FIELDS if name in header}
    identity = header.get("input_identity")
    reading = identity.get("reading") if isinstance(identity, dict) else None
    if isinstance(reading, dict):
        for name in _READING_FIELDS:
            if reading.get(name) not in (None, ""):
                settings[name] = reading[name]
    return settings


def rejects_path_for(results: Path) -> Path:
    name = results.name
    if name.endswith(".results.csv"):
        return results.with_name(name[: -len(".results.csv")] + ".rejects.csv")
    return results.with_name(results.stem + ".rejects.csv")


def gather(
    results_path: str | Path,
    receipts_path: str | Path | None = None,
    *,
    text: str | None = None,
    report: Report | None = None,
) -> ReportData:
    """Read the campaign's files (see the module docstring); ``report``: the text report of the
    same files, when the caller has it already."""
    results = Path(results_path)
    if report is None:
        report = build_report(results, receipts_path)
    data = ReportData(report)
    rejects = rejects_path_for(results)
    if rejects.exists():
        data.rejects_path = str(rejects)
        reasons = _rejects(rejects)
        data.input_rejected = sum(reasons.values())
        data.input_rejected_by_reason = dict(reasons.most_common())
    data.settings = _settings(results)
    if text is not None:
        data.settings["text"] = text
    finals = _final_times(Path(receipts_path)) if receipts_path is not None else {}
    # Per-row work is a few dict updates on locals; the time series take the raw per-second
    # counts every _CHUNK rows (so they stay bounded however long the campaign ran).
    delivered_at: Counter[int] = Counter()
    accepted_at: Counter[int] = Counter()
    waited: Counter[int] = Counter()  # seconds from sent_at to delivery, capped at a day + 1
    by_code: Counter[str] = Counter()
    by_country: Counter[str] = Counter()
    sent_at, region = _SentAt(), _Regions()
    get_final = finals.get
    with results.open(encoding="utf-8", errors="replace", newline="") as f:
        f.readline()
        for n, row in enumerate(csv.reader(f), 1):
            if not n % _CHUNK:
                data.accepted_over_time.absorb(accepted_at)
                data.delivered_over_time.absorb(delivered_at)
            if len(row) != 8:
                continue
            status = row[2]
            if status == "rejected":
                by_code[f"refused {row[4]} {row[5]}".strip()] += 1
                by_country[region(row[1])] += 1
                continue
            if status != "accepted":
                continue
            sent = sent_at(row[7])
            if sent:
                accepted_at[sent] += 1
            api_msg_id = row[3]
            value = (
                get_final(
                    int(api_msg_id, 16)
                    if len(api_msg_id) == 32 and _HEX(api_msg_id)
                    else api_msg_id
                )
                if finals
                else None
            )
            if value is None:
                continue
            code_value = value & _STATUS_MASK
            if code_value == 1:
                data.unknown_to_gateway += 1
                continue
            if code_value == 4:
                stamp = value >> _STATUS_BITS
                if stamp:
                    delivered_at[stamp] += 1
                    if sent:
                        wait = stamp - sent
                        waited[wait if 0 <= wait <= 86400 else (0 if wait < 0 else 86401)] += 1
                continue
            status_code = f"{code_value:03d}"
            by_code[f"status {status_code} {STATUS_TEXT.get(status_code, '')}".strip()] += 1
            by_country[region(row[1])] += 1
    data.accepted_over_time.absorb(accepted_at)
    data.delivered_over_time.absorb(delivered_at)
    latency: Counter[str] = Counter()
    for seconds, count in waited.items():
        latency[_latency_label(seconds)] += count
    data.latency = {label: latency.get(label, 0) for label, _ in LATENCY_BUCKETS}
    data.latency_median = _median_bound(data.latency)
    data.failures_by_code = dict(by_code.most_common())
    data.failures_by_country = dict(by_country.most_common())
    return data


def _median_bound(latency: dict[str, int]) -> float | None:
    total = sum(latency.values())
    if not total:
        return None
    seen = 0
    for label, bound in LATENCY_BUCKETS:
        seen += latency.get(label, 0)
        if seen * 2 >= total:
            return bound
    return None
