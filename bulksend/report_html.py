"""The campaign report as one self-contained HTML page: figures, a funnel and SVG charts.

:func:`render_html` is pure: a :class:`~bulksend.report_data.ReportData` in, one HTML document out.
What the page promises:

* **Self-contained and offline.** Inline CSS and inline SVG written here (no JavaScript, no font,
  image, stylesheet or script from anywhere): the page can be mailed, archived and opened without
  a network. The core install needs nothing more (no matplotlib).
* **Small whatever the campaign.** Everything drawn is aggregated (per 10 s, per reason, code,
  region, latency class); series longer than :data:`MAX_POINTS` are thinned, tables keep their
  :data:`TOP` largest rows (the rest summed in one row). A 1 M-row campaign's page is tens of KB.
* **Safe.** Every text from the files (the message text, sender, reasons, paths) is HTML-escaped;
  no secret is in the data (see :mod:`bulksend.report_data`).
* **Checkable.** Each headline figure is an element ``<div class="figure" id="fig-NAME"
  data-value="N">`` so a test (or a script) reads the numbers from the DOM.
* **Open for more.** Sections from elsewhere (replies and opt-outs, when the compliance work
  lands) are given as :class:`Section` objects (an id, a title and an HTML fragment the provider
  built and escaped) and are placed after the failures, before the settings.

:func:`write_html_report` gathers, renders and writes the file (mode 0600, like the results).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from bulksend.errors import StorageError
from bulksend.receipts import STATUS_TEXT
from bulksend.report import Report
from bulksend.report_data import ReportData, gather

__all__ = ["MAX_POINTS", "TOP", "Section", "render_html", "write_html_report"]

MAX_POINTS = 400
TOP = 15
_W = 720  # chart width in SVG units (scaled to the page)
_BLUE, _GREEN, _RED, _GREY, _AMBER = "#3b6fd8", "#2e9d57", "#d0473d", "#9aa3ad", "#d99a1e"


class Section(NamedTuple):
    """A part of the page provided by another module: ``html`` is already escaped."""

    id: str
    title: str
    html: str


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


# -- charts ----------------------------------------------------------------------------------------


def _top(items: dict[str, int], top: int = TOP) -> list[tuple[str, int]]:
    ordered = sorted(items.items(), key=lambda kv: -kv[1])
    if len(ordered) <= top:
        return ordered
    rest = sum(v for _, v in ordered[top - 1 :])
    return [*ordered[: top - 1], (f"{len(ordered) - top + 1} others", rest)]


def _hbars(items: list[tuple[str, int]], color: str, label: str) -> str:
    """Horizontal bars with their labels and values."""
    if not items:
        return '<p class="none">none</p>'
    row, left, right = 26, 260, 90
    height = row * len(items) + 8
    biggest = max(v for _, v in items) or 1
    span = _W - left - right
    parts = [f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{_e(label)}">']
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        width = max(1.0, span * value / biggest)
        shown = name if len(name) <= 42 else name[:41] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end" class="lbl">{_e(shown)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" fill="{color}"'
            f' rx="2"><title>{_e(name)}: {_n(value)}</title></rect>'
            f'<text x="{left + width + 6:.1f}" y="{y + 17}" class="val">{_n(value)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _funnel(stages: list[tuple[str, int, str]]) -> str:
    """Centred bars, each as wide as its share of the first stage."""
    row = 44
    height = row * len(stages) + 4
    first = stages[0][1] or 1
    parts = [f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="funnel">']
    for i, (name, value, color) in enumerate(stages):
        width = max(2.0, (_W - 300) * value / first)
        x = 150 + ((_W - 300) - width) / 2
        y = 2 + i * row
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{row - 8}" fill="{color}"'
            f' rx="3"><title>{_e(name)}: {_n(value)}</title></rect>'
            f'<text x="140" y="{y + 23}" text-anchor="end" class="lbl">{_e(name)}</text>'
            f'<text x="{_W - 140}" y="{y + 23}" class="val">{_n(value)}'
            f" ({_pct(value, stages[0][1])})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _thin(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    kept = [points[int(i * step)] for i in range(MAX_POINTS)]
    return [*kept, points[-1]] if kept[-1] != points[-1] else kept


def _time_label(stamp: int, span: int) -> str:
    moment = datetime.fromtimestamp(stamp, UTC)
    if span < 600:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%H:%M" if span < 36 * 3600 else "%m-%d %H:%M")


def _lines(series: list[tuple[str, str, list[tuple[int, int]]]]) -> str:
    """Cumulative counts over time (UTC), one step line per series, with a legend."""
    drawn = [(name, color, _thin(points)) for name, color, points in series if points]
    if not drawn:
        return '<p class="none">no timestamps to draw</p>'
    left, right, top, bottom, height = 70, 20, 12, 40, 260
    start = min(points[0][0] for _, _, points in drawn) - 1
    end = max(points[-1][0] for _, _, points in drawn)
    peak = max(points[-1][1] for _, _, points in drawn) or 1

    def x(stamp: int) -> float:
        return left + (_W - left - right) * (stamp - start) / (end - start)

    def y(count: int) -> float:
        return top + (height - top - bottom) * (1 - count / peak)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" '
        'aria-label="delivery over time">'
    ]
    for i in range(5):  # horizontal grid and counts
        value = round(peak * i / 4)
        parts.append(
            f'<line x1="{left}" x2="{_W - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'class="grid"/><text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'class="tick">{_n(value)}</text>'
        )
    for i, anchor in enumerate(("start", "middle", "middle", "middle", "end")):  # time ticks
        stamp = start + round((end - start) * i / 4)
        parts.append(
            f'<text x="{x(stamp):.1f}" y="{height - bottom + 18}" text-anchor="{anchor}" '
            f'class="tick">{_e(_time_label(stamp, end - start))}</text>'
        )
    for name, color, points in drawn:
        path = [f"M{x(points[0][0] - 1):.1f},{y(0):.1f}"]
        previous = 0
        for stamp, count in points:
            path.append(f"L{x(stamp):.1f},{y(count):.1f}")
            previous = count
        path.append(f"L{x(end):.1f},{y(previous):.1f}")
        parts.append(
            f'<path d="{"".join(path)}" fill="none" stroke="{color}" stroke-width="2">'
            f"<title>{_e(name)}: {_n(previous)}</title></path>"
        )
    legend_x = left
    for name, color, points in drawn:
        parts.append(
            f'<rect x="{legend_x}" y="{height - 14}" width="12" height="4" fill="{color}"/>'
            f'<text x="{legend_x + 16}" y="{height - 9}" class="tick">{_e(name)} '
            f"({_n(points[-1][1])})</text>"
        )
        legend_x += 220
    parts.append("</svg>")
    return "".join(parts)


def _columns(items: list[tuple[str, int]], color: str) -> str:
    """Vertical bars (the time-to-delivery distribution)."""
    if not any(v for _, v in items):
        return '<p class="none">no delivered message with both times</p>'
    height, bottom, top = 230, 40, 20
    slot = _W / len(items)
    biggest = max(v for _, v in items) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="time to delivery">'
    ]
    for i, (label, value) in enumerate(items):
        bar = (height - top - bottom) * value / biggest
        x = i * slot + 6
        parts.append(
            f'<rect x="{x:.1f}" y="{height - bottom - bar:.1f}" width="{slot - 12:.1f}" '
            f'height="{bar:.1f}" fill="{color}" rx="2"><title>{_e(label)}: {_n(value)}</title>'
            f'</rect><text x="{x + (slot - 12) / 2:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle" class="tick">{_e(label)}</text>'
        )
        if value:
            parts.append(
                f'<text x="{x + (slot - 12) / 2:.1f}" y="{height - bottom - bar - 5:.1f}" '
                f'text-anchor="middle" class="tick">{_n(value)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# -- the page --------------------------------------------------------------------------------------

_CSS = """
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1d2430;background:#f4f6f9}
main{max-width:980px;margin:0 auto;padding:28px 20px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:34px 0 10px}
.sub{color:#5b6675;margin:0 0 18px}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.figure{background:#fff;border:1px solid #dfe4ea;border-radius:8px;padding:12px 14px}
.figure .name{color:#5b6675;font-size:13px}.figure .value{font-size:24px;font-weight:650}
.figure .share{color:#5b6675;font-size:13px}
.figure.good .value{color:#227a44}.figure.bad .value{color:#b3362d}.figure.warn .value{color:#a06d05}
section{background:#fff;border:1px solid #dfe4ea;border-radius:8px;padding:14px 18px;margin-top:14px}
section h2{margin-top:0}
svg.chart{width:100%;height:auto;display:block}
.lbl{font-size:13px;fill:#1d2430}.val,.tick{font-size:12px;fill:#5b6675}
.grid{stroke:#e6e9ee;stroke-width:1}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:5px 8px;
border-bottom:1px solid #edf0f3;vertical-align:top}td.num{text-align:right;white-space:nowrap}
.none{color:#5b6675;font-style:italic}
.two{display:grid;grid-template-columns:1fr 1fr;gap:14px}
@media (max-width:760px){.two{grid-template-columns:1fr}}
pre{white-space:pre-wrap;word-break:break-word;background:#f4f6f9;padding:8px;border-radius:6px;
margin:0}
footer{color:#5b6675;font-size:12px;margin-top:26px}
"""


def _figure(key: str, name: str, value: int | float, share: str = "", kind: str = "") -> str:
    shown = f"{value:,.2f}" if isinstance(value, float) else _n(value)
    return (
        f'<div class="figure {kind}" id="fig-{key}" data-value="{value}">'
        f'<div class="name">{_e(name)}</div><div class="value">{shown}</div>'
        f'<div class="share">{_e(share)}</div></div>'
    )


def _table(rows: list[tuple[str, int]], total: int | None = None) -> str:
    if not rows:
        return '<p class="none">none</p>'
    body = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{_n(value)}</td>'
        + (f'<td class="num">{_pct(value, total)}</td>' if total else "")
        + "</tr>"
        for name, value in rows
    )
    return f"<table>{body}</table>"


def _settings_table(settings: dict[str, Any]) -> str:
    if not settings:
        return '<p class="none">the campaign\'s journal was not found</p>'
    rows = []
    for name, value in settings.items():
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
        else:
            shown = str(value) if value != "" else "—"
        cell = f"<pre>{_e(shown)}</pre>" if name in ("text", "template") else _e(shown)
        rows.append(f"<tr><th>{_e(name.replace('_', ' '))}</th><td>{cell}</td></tr>")
    if "text" not in settings and "template" not in settings:
        rows.append(
            '<tr><th>text</th><td class="none">not recorded by the journal (only its '
            "fingerprint); give it with --text-file to show it here</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>"


def render_html(
    data: ReportData,
    *,
    title: str = "",
    generated_at: datetime | None = None,
    sections: Sequence[Section] = (),
) -> str:
    """The whole page (see the module docstring)."""
    r = data.report
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    campaign = Path(r.results_path).name.removesuffix(".results.csv")
    title = title or f"Campaign report: {campaign}"
    has_receipts = bool(r.receipts_path)
    input_rows = r.rows + data.input_rejected
    figures = [
        _figure("rows", "rows in the input", input_rows),
        _figure(
            "rejected-before-sending",
            "rejected before sending",
            data.input_rejected,
            _pct(data.input_rejected, input_rows),
            "warn" if data.input_rejected else "",
        ),
        _figure("sent", "sent to the gateway", r.rows, _pct(r.rows, input_rows)),
        _figure("accepted", "accepted", r.accepted, _pct(r.accepted, r.rows)),
        _figure("rejected", "refused by the gateway", r.rejected, _pct(r.rejected, r.rows)),
        _figure("unknown", "unknown (maybe sent)", r.unknown, _pct(r.unknown, r.rows), "warn"),
    ]
    if has_receipts:
        figures += [
            _figure("delivered", "delivered", r.delivered, _pct(r.delivered, r.accepted), "good"),
            _figure("failed", "failed delivery", r.failed, _pct(r.failed, r.accepted), "bad"),
            _figure("pending", "pending (no final status)", r.pending, _pct(r.pending, r.accepted)),
        ]
        if data.unknown_to_gateway:
            figures.append(
                _figure(
                    "unknown-to-gateway",
                    "of which unknown to the gateway (001)",
                    data.unknown_to_gateway,
                    _pct(data.unknown_to_gateway, r.accepted),
                    "warn",
                )
            )
        figures += [
            _figure("credits", "credits charged", r.credits),
        ]
    stages = [
        ("input rows", input_rows, _GREY),
        ("sent", r.rows, _BLUE),
        ("accepted", r.accepted, _BLUE),
    ]
    if has_receipts:
        stages.append(("delivered", r.delivered, _GREEN))
    failed_rows = [
        (f"{status} {STATUS_TEXT.get(status, '')}".strip(), n)
        for status, n in r.failed_by_status.items()
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">Generated {_e(generated)} by bulksend from {_e(r.results_path)}'
        + (
            f" and {_e(r.receipts_path)}"
            if has_receipts
            else " (no receipts file: no delivery figures)"
        )
        + "</p>",
        f'<div class="figures">{"".join(figures)}</div>',
        f'<section id="funnel"><h2>Funnel</h2>{_funnel(stages)}</section>',
    ]
    if has_receipts:
        series = [
            ("accepted", _BLUE, data.accepted_over_time.cumulative()),
            ("delivered", _GREEN, data.delivered_over_time.cumulative()),
        ]
        median = data.latency_median
        out.append(
            '<section id="over-time"><h2>Delivery over time (cumulative, UTC)</h2>'
            f"{_lines(series)}</section>"
            '<section id="latency"><h2>Time to delivery</h2>'
            f"{_columns(list(data.latency.items()), _GREEN)}"
            + (
                f'<p class="sub">Half the delivered messages arrived within '
                f"{_e(_duration(median))}. From the row's sent_at to the receipt's time.</p>"
                if median is not None
                else ""
            )
            + "</section>"
        )
    out.append(
        '<section id="failures"><h2>Failures by code</h2>'
        f"{_hbars(_top(data.failures_by_code), _RED, 'failures by code')}</section>"
        '<section id="countries"><h2>Failures by country</h2>'
        f"{_hbars(_top(data.failures_by_country), _AMBER, 'failures by country')}</section>"
        '<div class="two">'
        '<section id="rejected-reasons"><h2>Rejected before sending</h2>'
        f"{_table(_top(data.input_rejected_by_reason), data.input_rejected)}</section>"
        '<section id="failed-statuses"><h2>Failed delivery, by status</h2>'
        f"{_table(failed_rows, r.failed) if has_receipts else _table([])}</section></div>"
    )
    for section in sections:
        out.append(
            f'<section id="{_e(section.id)}"><h2>{_e(section.title)}</h2>{section.html}</section>'
        )
    out.append(
        f'<section id="settings"><h2>Campaign settings</h2>{_settings_table(data.settings)}'
        "</section>"
    )
    notes = []
    if r.unmatched_receipts:
        notes.append(f"{_n(r.unmatched_receipts)} receipts of messages not in this campaign")
    if r.malformed_lines:
        notes.append(f"{_n(r.malformed_lines)} unreadable lines skipped")
    out.append(
        f"<footer>{_e('; '.join(notes)) + '. ' if notes else ''}"
        "Self-contained page: nothing is fetched from the network.</footer></main></body></html>"
    )
    return "\n".join(out) + "\n"


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "more than a day"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def write_html_report(
    results_path: str | Path,
    receipts_path: str | Path | None,
    out: str | Path,
    *,
    text: str | None = None,
    sections: Sequence[Section] = (),
    report: Report | None = None,
) -> ReportData:
    """Gather the campaign's figures, render the page and write it to ``out`` (mode 0600);
    ``report``: the text report of the same files, when the caller has it already."""
    data = gather(results_path, receipts_path, text=text, report=report)
    page = render_html(data, sections=sections).encode("utf-8")
    target = Path(out)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(page)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(str(target), exc) from None
    return data
