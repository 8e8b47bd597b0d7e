"""The campaign report: a results file, joined with delivery receipts, summed up for a person.

:func:`build_report` reads the receipts file (if any) into a map ``api_msg_id -> final status and
charge``, then streams the results file once, counting each row and writing failed numbers to an
optional CSV (``to,api_msg_id,reason``: numbers the gateway refused and messages whose final
status is an error; ``unknown`` rows are not failures, they may have been delivered).

Memory: the results file is streamed (any size, constant memory). The receipts map holds only
messages with a final status (``004``, ``005``, ``006``, ``007``, ``009``, ``010``, ``012``,
``014``): per message one dict slot, an int key for the usual 32-hex id (a string otherwise) and
an int value shared between messages (status and charge packed, interned): about 110 bytes per
final receipt, so 1 M delivered messages cost about 110 MB. Intermediate receipts (``003``...)
cost nothing. When a message has several final receipts, the last one in the file counts.

Counting rules: ``delivered`` and ``failed`` count results rows with status ``accepted`` whose
message has a final receipt; ``pending`` are the accepted rows without one; ``credits`` is the
sum of ``charge`` over the final receipts of the messages in the results file. Receipts for
messages not in the results file are counted as ``unmatched_receipts`` (another campaign sharing
the receiver), and lines that cannot be read as ``malformed_lines`` (a torn last line after a
kill, for instance).

Replies (MO): the replies file (given, or the one beside the receipts file when it exists,
:func:`bulksend.inbox.replies_path_for`) is read whole (replies are few): ``replies`` counts its
replies, ``replies_from_recipients`` those whose sender is a number of this results file, and
``opt_outs`` lists, sorted, the recipients of this campaign who replied with an opt-out keyword
(``opt_outs_elsewhere`` counts the other numbers that did: replies to other campaigns sharing the
receiver).

:class:`ReportError` (an :class:`~bulksend.errors.InputError`) is raised for a missing, unreadable
or foreign file; the CLI turns it into exit status 1.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bulksend.errors import InputError
from bulksend.inbox import replies_path_for
from bulksend.journal import FILE_MODE, RESULTS_HEADER
from bulksend.receipts import FINAL_STATUSES, RECEIPTS_HEADER, STATUS_TEXT, message_key
from bulksend.replies import REPLIES_HEADER, split_reply_line

__all__ = ["FAILED_HEADER", "Report", "ReportError", "build_report", "print_report"]

FAILED_HEADER = "to,api_msg_id,reason"
_STATUS_BITS = 10  # a status code (0-999) in the low bits of a packed value
_STATUS_MASK = (1 << _STATUS_BITS) - 1
_CHARGE_SCALE = 1000  # charges are kept in thousandths of a credit
OPT_OUTS_SHOWN = 20
"""Opted-out numbers the table lists (all of them are in the JSON)."""


class ReportError(InputError):
    """A file given to the report is missing, unreadable or not what it should be."""


@dataclass
class Report:
    """The figures of one campaign (all counts are results-file rows unless said otherwise)."""

    results_path: str
    receipts_path: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    delivered: int = 0
    failed: int = 0
    failed_by_status: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    """Accepted, with no final status received (yet)."""
    credits: float = 0.0
    receipts: int = 0
    """Lines of the receipts file (every status, duplicates of a message included)."""
    unmatched_receipts: int = 0
    malformed_lines: int = 0
    failed_out: str = ""
    failed_written: int = 0
    replies_path: str = ""
    replies: int = 0
    """Distinct replies (MO) in the replies file."""
    replies_from_recipients: int = 0
    """Replies whose sender is a number of this results file."""
    opt_outs: list[str] = field(default_factory=list)
    """Recipients of this campaign who replied with an opt-out keyword (sorted)."""
    opt_outs_elsewhere: int = 0
    """Other numbers that opted out in the same replies file."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def _open_csv(path: Path, header: str, what: str) -> tuple[Any, Any]:
    """Open ``path`` and check its header; (file, csv reader) positioned after it."""
    try:
        handle = path.open("r", encoding="utf-8", newline="")
    except FileNotFoundError:
        raise ReportError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ReportError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise ReportError(f"cannot read {what} {path}: {exc.strerror}") from None
    reader = csv.reader(handle)
    try:
        first = next(reader, None)
    except (csv.Error, UnicodeDecodeError):
        first = None
    if first is None or ",".join(first).lstrip("\ufeff") != header:
        handle.close()
        raise ReportError(f"{path} is not a bulksend {what} (expected the header {header!r})")
    return handle, reader


def read_final_receipts(path: Path) -> tuple[dict[int | str, int], int, int]:
    """Final statuses by message: ``(finals, receipt lines, malformed lines)``; each value packs
    ``charge_in_thousandths << 10 | status``."""
    finals: dict[int | str, int] = {}
    shared: dict[int, int] = {}  # one int object per distinct (status, charge)
    lines = malformed = 0
    handle, reader = _open_csv(path, RECEIPTS_HEADER, "receipts file")
    with handle:
        try:
            for row in reader:
                lines += 1
                if len(row) != 8:
                    malformed += 1
                    continue
                status = row[4]
                if status not in FINAL_STATUSES:
                    continue
                try:
                    charge = round(float(row[6]) * _CHARGE_SCALE) if row[6] else 0
                except ValueError:
                    malformed += 1
                    continue
                value = (charge << _STATUS_BITS) | int(status)
                finals[message_key(row[1])] = shared.setdefault(value, value)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ReportError(f"{path}: unreadable at line {lines + 1}: {exc}") from None
    return finals, lines, malformed


def read_replies(path: Path) -> tuple[dict[str, int], set[str], int]:
    """The replies file: replies per sender, the senders that opted out, unreadable lines."""
    handle, _ = _open_csv(path, REPLIES_HEADER, "replies file")
    senders: Counter[str] = Counter()
    opted_out: set[str] = set()
    seen: set[str] = set()
    malformed = 0
    with handle:
        try:
            for line in handle:
                fields = split_reply_line(line)
                if fields is None or not line.endswith("\n"):
                    malformed += 1
                    continue
                if fields[1] in seen:
                    continue
                seen.add(fields[1])
                senders[fields[3]] += 1
                if fields[6] == "1":
                    opted_out.add(fields[3])
        except UnicodeDecodeError as exc:
            raise ReportError(f"{path}: unreadable: {exc}") from None
    return dict(senders), opted_out, malformed


def build_report(
    results_path: str | os.PathLike[str],
    receipts_path: str | os.PathLike[str] | None = None,
    failed_out: str | os.PathLike[str] | None = None,
    replies_path: str | os.PathLike[str] | None = None,
) -> Report:
    """Read the files (see the module docstring) and return the figures."""
    results = Path(results_path)
    report = Report(results_path=str(results))
    finals: dict[int | str, int] = {}
    if receipts_path is not None:
        report.receipts_path = str(receipts_path)
        finals, report.receipts, report.malformed_lines = read_final_receipts(Path(receipts_path))
        beside = replies_path_for(receipts_path)
        if replies_path is None and beside.exists():
            replies_path = beside
    senders: dict[str, int] = {}
    opted_out: set[str] = set()
    if replies_path is not None:
        report.replies_path = str(replies_path)
        senders, opted_out, bad = read_replies(Path(replies_path))
        report.replies = sum(senders.values())
        report.malformed_lines += bad
    recipients_replied: set[str] = set()
    handle, reader = _open_csv(results, RESULTS_HEADER, "results file")
    rejected: Counter[str] = Counter()
    failed: Counter[int] = Counter()
    rows = accepted = unknown = delivered = matched = charge = malformed = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(handle)
        write_failed = None
        if failed_out is not None:
            report.failed_out = str(failed_out)
            target = stack.enter_context(
                open(failed_out, "w", encoding="utf-8", newline="", opener=_private)
            )
            writer = csv.writer(target, lineterminator="\n")
            writer.writerow(FAILED_HEADER.split(","))
            write_failed = writer.writerow
        try:
            for row in reader:
                rows += 1
                if len(row) != 8:
                    malformed += 1
                    continue
                status = row[2]
                if senders and row[1] in senders:
                    recipients_replied.add(row[1])
                if status == "accepted":
                    accepted += 1
                    value = finals.get(message_key(row[3])) if finals else None
                    if value is None:
                        continue
                    matched += 1
                    charge += value >> _STATUS_BITS
                    code = value & _STATUS_MASK
                    if code == 4:
                        delivered += 1
                        continue
                    failed[code] += 1
                    if write_failed is not None:
                        text = STATUS_TEXT.get(f"{code:03d}", "")
                        write_failed((row[1], row[3], f"status {code:03d} {text}".rstrip()))
                elif status == "rejected":
                    rejected[row[4]] += 1
                    if write_failed is not None:
                        write_failed((row[1], "", f"ERR {row[4]} {row[5]}".rstrip()))
                elif status == "unknown":
                    unknown += 1
                else:
                    malformed += 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ReportError(f"{results}: unreadable at line {rows + 2}: {exc}") from None
    report.rows = rows - malformed
    report.accepted = accepted
    report.rejected = sum(rejected.values())
    report.rejected_by_code = dict(sorted(rejected.items()))
    report.unknown = unknown
    report.delivered = delivered
    report.failed = sum(failed.values())
    report.failed_by_status = {f"{code:03d}": n for code, n in sorted(failed.items())}
    report.pending = accepted - delivered - report.failed
    report.credits = charge / _CHARGE_SCALE
    report.unmatched_receipts = len(finals) - matched
    report.malformed_lines += malformed
    report.failed_written = report.rejected + report.failed if failed_out is not None else 0
    report.replies_from_recipients = sum(senders[n] for n in recipients_replied)
    report.opt_outs = sorted(opted_out & recipients_replied)
    report.opt_outs_elsewhere = len(opted_out - recipients_replied)
    return report


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else ""


def print_report(report: Report, console: Any = None) -> None:
    """The report as one table a person reads at a glance."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="bulksend report", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_column("", justify="right", style="dim")
    sent = report.accepted + report.rejected + report.unknown
    table.add_row("rows in results", f"{report.rows:,}", "")
    table.add_row("accepted by the gateway", f"{report.accepted:,}", _share(report.accepted, sent))
    table.add_row("rejected by the gateway", f"{report.rejected:,}", _share(report.rejected, sent))
    for code, count in report.rejected_by_code.items():
        table.add_row(f"  ERR {code}", f"{count:,}", "")
    table.add_row("unknown (maybe sent)", f"{report.unknown:,}", _share(report.unknown, sent))
    if report.receipts_path:
        accepted = report.accepted
        table.add_row(
            "delivered (004)", f"{report.delivered:,}", _share(report.delivered, accepted)
        )
        table.add_row("failed delivery", f"{report.failed:,}", _share(report.failed, accepted))
        for status, count in report.failed_by_status.items():
            table.add_row(f"  {status} {STATUS_TEXT.get(status, '')}", f"{count:,}", "")
        table.add_row(
            "pending (no final status)", f"{report.pending:,}", _share(report.pending, accepted)
        )
        table.add_row("credits charged", f"{report.credits:,.2f}", "")
        if report.unmatched_receipts:
            table.add_row("receipts of other messages", f"{report.unmatched_receipts:,}", "")
    else:
        table.add_row("delivery", "no receipts file given", "")
    if report.replies_path:
        table.add_row("replies (MO)", f"{report.replies:,}", "")
        table.add_row(
            "  from this campaign's recipients", f"{report.replies_from_recipients:,}", ""
        )
        table.add_row("  opted out (STOP, ...)", f"{len(report.opt_outs):,}", "")
        if report.opt_outs_elsewhere:
            table.add_row("  opted out, other numbers", f"{report.opt_outs_elsewhere:,}", "")
    if report.malformed_lines:
        table.add_row("unreadable lines skipped", f"{report.malformed_lines:,}", "")
    console.print(table)
    if report.opt_outs:
        shown = report.opt_outs[:OPT_OUTS_SHOWN]
        more = len(report.opt_outs) - len(shown)
        listing = ", ".join(f"+{n}" for n in shown) + (
            f" and {more:,} more (--json)" if more else ""
        )
        console.print(f"opted out by reply: {listing}")
    if report.failed_out:
        console.print(f"failed numbers ({report.failed_written:,}): {report.failed_out}")
