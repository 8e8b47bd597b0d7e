"""The HTML report without a browser: its figures are the text report's, its charts come from the
files, it fetches nothing, escapes everything, holds no secret and stays small."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from bulksend.cli import main
from bulksend.journal import RESULTS_HEADER
from bulksend.receipts import RECEIPTS_HEADER
from bulksend.report import build_report
from bulksend.report_data import gather
from bulksend.report_html import Section, render_html, write_html_report

SENT = "2026-11-27T10:00:00Z"
SENT_UNIX = 1795773600


def ids(n: int) -> str:
    return f"{n:032x}"


def write_campaign(tmp: Path, *, extra_journal: dict[str, object] | None = None) -> Path:
    """Nine rows sent, two refused (114, 105), one unknown; receipts for five; two rejects."""
    results = tmp / "c.results.csv"
    rows = [
        f"1,27820000001,accepted,{ids(1)},,,1,{SENT}",
        f"2,27820000002,accepted,{ids(2)},,,1,{SENT}",
        f"3,447700000003,accepted,{ids(3)},,,1,{SENT}",
        f"4,27820000004,accepted,{ids(4)},,,1,{SENT}",
        f"5,27820000005,accepted,{ids(5)},,,1,{SENT}",
        f"6,27820000006,rejected,,114,Cannot route message,1,{SENT}",
        f"7,14155550007,rejected,,105,Invalid destination address,1,{SENT}",
        f"8,27820000008,unknown,,,read timeout,1,{SENT}",
        f"9,27820000009,accepted,{ids(9)},,,2,{SENT}",
    ]
    results.write_text("\n".join([RESULTS_HEADER, *rows]) + "\n", encoding="utf-8")
    receipts = [
        f"{SENT},{ids(1)},,27820000001,003,Delivered to gateway,1.0,{SENT_UNIX + 2}",
        f"{SENT},{ids(1)},,27820000001,004,Received by recipient,1.0,{SENT_UNIX + 4}",
        f"{SENT},{ids(2)},,27820000002,004,Received by recipient,2.0,{SENT_UNIX + 95}",
        f"{SENT},{ids(3)},,447700000003,007,Error delivering message,1.0,{SENT_UNIX + 9}",
        f"{SENT},{ids(4)},,27820000004,010,Message expired,0.5,{SENT_UNIX + 3600}",
        f"{SENT},{ids(5)},,27820000005,003,Delivered to gateway,1.0,{SENT_UNIX + 1}",
    ]
    (tmp / "c.receipts.csv").write_text(
        "\n".join([RECEIPTS_HEADER, *receipts]) + "\n", encoding="utf-8"
    )
    (tmp / "c.rejects.csv").write_text(
        "row,raw,reason\n10,12345,too short (fewer than 8 digits)\n11,+27820000001,duplicate of row 1\n",
        encoding="utf-8",
    )
    header: dict[str, object] = {
        "bulksend_journal": 1,
        "created": SENT,
        "encoding": "gsm7",
        "parts": 1,
        "sender": "ACME",
        "options": {"validity": 60},
        "fingerprint": "f" * 64,
        "input": str(tmp / "c.csv"),
        "input_identity": {"reading": {"dedupe": True, "template": "Hi #name#"}},
    }
    header.update(extra_journal or {})
    (tmp / "c.results.csv.journal").write_text(json.dumps(header) + "\n", encoding="utf-8")
    return results


def figures(page: str) -> dict[str, str]:
    return dict(re.findall(r'id="fig-([a-z-]+)" data-value="([^"]*)"', page))


def test_the_page_shows_the_text_reports_figures_and_the_files_charts(tmp_path: Path) -> None:
    results = write_campaign(tmp_path)
    data = gather(results, tmp_path / "c.receipts.csv")
    report = build_report(results, tmp_path / "c.receipts.csv")
    assert data.report == report
    page = render_html(data)
    assert figures(page) == {
        "rows": "11",  # 9 sent + 2 rejected before sending
        "rejected-before-sending": "2",
        "sent": "9",
        "accepted": "6",
        "rejected": "2",
        "unknown": "1",
        "delivered": "2",
        "failed": "2",
        "pending": "2",
        "credits": "4.5",
    }
    assert data.input_rejected_by_reason == {"too short (fewer than 8 digits)": 1, "duplicate": 1}
    assert data.latency == {
        "< 1 s": 0,
        "1-5 s": 1,  # 4 s
        "5-10 s": 0,
        "10-30 s": 0,
        "30 s-1 min": 0,
        "1-5 min": 1,  # 95 s
        "5-15 min": 0,
        "15-60 min": 0,
        "1-6 h": 0,
        "6-24 h": 0,
        "> 24 h": 0,
    }
    assert data.failures_by_code == {
        "refused 114 Cannot route message": 1,
        "refused 105 Invalid destination address": 1,
        "status 007 Error delivering message": 1,
        "status 010 Message expired": 1,
    }
    assert data.failures_by_country == {"ZA +27": 2, "US +1": 1, "GB +44": 1}
    assert data.delivered_over_time.cumulative() == [(SENT_UNIX + 5, 1), (SENT_UNIX + 96, 2)]
    assert data.accepted_over_time.cumulative() == [(SENT_UNIX + 1, 6)]
    for text in ("Funnel", "Delivery over time", "Time to delivery", "Failures by country"):
        assert text in page
    assert "Hi #name#" in page and "ACME" in page and "validity=60" in page


def test_the_page_fetches_nothing_and_escapes_what_the_files_say(tmp_path: Path) -> None:
    results = write_campaign(tmp_path, extra_journal={"sender": "<script>alert(1)</script>"})
    page = render_html(gather(results, tmp_path / "c.receipts.csv", text='<img src="x">'))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"<[^>]*\s(src|href|srcset|action)=", page)
    for fetch in ("@import", "url(", "http://", "https://", "<link", "<iframe", "<object"):
        assert fetch not in page, fetch


def test_settings_come_only_from_named_journal_fields(tmp_path: Path) -> None:
    results = write_campaign(tmp_path, extra_journal={"password": "hunter2", "api_key": "k-123"})
    page = render_html(gather(results, tmp_path / "c.receipts.csv"))
    assert "hunter2" not in page and "k-123" not in page and "f" * 64 not in page


def test_without_receipts_the_page_says_so_and_draws_no_delivery(tmp_path: Path) -> None:
    results = write_campaign(tmp_path)
    page = render_html(gather(results, None))
    assert "no receipts file" in page and "fig-delivered" not in page
    assert "Delivery over time" not in page


def test_other_sections_plug_in_before_the_settings(tmp_path: Path) -> None:
    results = write_campaign(tmp_path)
    section = Section("replies", "Replies and opt-outs", "<p>3 replies</p>")
    page = render_html(gather(results, tmp_path / "c.receipts.csv"), sections=[section])
    assert page.index('id="replies"') < page.index('id="settings"')


def test_report_command_writes_the_page_beside_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = write_campaign(tmp_path)
    page = tmp_path / "report.html"
    text = tmp_path / "text.txt"
    text.write_text("Your order has shipped", encoding="utf-8")
    code = main(["report", str(results), "--html", str(page), "--text-file", str(text)])
    assert code == 0
    html = page.read_text(encoding="utf-8")
    assert figures(html)["delivered"] == "2"  # the receipts beside the results were found
    assert "Your order has shipped" in html
    assert page.stat().st_mode & 0o777 == 0o600
    assert "HTML report written" in capsys.readouterr().err


def test_a_100k_row_campaign_page_is_small_and_built_by_streaming(tmp_path: Path) -> None:
    rows = 100_000
    results = tmp_path / "big.results.csv"
    receipts = tmp_path / "big.receipts.csv"
    with results.open("w", encoding="utf-8") as r, receipts.open("w", encoding="utf-8") as c:
        r.write(RESULTS_HEADER + "\n")
        c.write(RECEIPTS_HEADER + "\n")
        for i in range(rows):
            minute = i // 500
            sent = f"2026-11-27T10:{minute // 60 % 60:02d}:{minute % 60:02d}Z"
            r.write(f"{i + 1},2782{i:07d},accepted,{ids(i)},,,1,{sent}\n")
            status = "004" if i % 20 else "007"
            c.write(f"{sent},{ids(i)},,2782{i:07d},{status},x,1.0,{SENT_UNIX + i // 50}\n")
    started = time.perf_counter()
    write_html_report(results, receipts, tmp_path / "big.html")
    elapsed = time.perf_counter() - started
    size = (tmp_path / "big.html").stat().st_size
    assert size < 200_000, size  # aggregated: far below the 2 MB a 1 M-row page may take
    assert figures((tmp_path / "big.html").read_text())["delivered"] == str(rows - rows // 20)
    assert elapsed < 60


def test_messages_the_gateway_no_longer_knows_are_shown_within_pending(tmp_path: Path) -> None:
    results = write_campaign(tmp_path)
    with (tmp_path / "c.receipts.csv").open("a", encoding="utf-8") as f:
        f.write(f"{SENT},{ids(5)},,27820000005,001,Message unknown,,{SENT_UNIX + 9}\n")
        f.write(f"{SENT},{ids(1)},,27820000001,001,Message unknown,,{SENT_UNIX + 9}\n")
    data = gather(results, tmp_path / "c.receipts.csv")
    shown = figures(render_html(data))
    assert shown["unknown-to-gateway"] == "1"  # row 5; row 1 was delivered before
    assert shown["pending"] == "2" and shown["delivered"] == "2"
