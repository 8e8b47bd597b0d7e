"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package) renders the
page from a real campaign, takes a screenshot, and its DOM carries the figures the files hold.

Skipped, saying so, where no Chromium is installed (``.ci/run`` installs it when it can).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.receipts import ReceiptServer, receipts_path_for
from bulksend.report import build_report
from bulksend.report_html import write_html_report
from bulksend.simulator import Faults
from tests.e2e.protocols import Wire

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium installed (apt-get install chromium): the HTML report's browser test "
        "needs one; .ci/run installs it"
    )


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_chromium_renders_the_report_with_the_files_figures(tmp_path: Path) -> None:
    browser = _browser()
    wire = Wire("sendmsg")
    faults = Faults(seed=21, delivery_delay=0.05, delivery_failure_rate=0.1)
    faults.reject_suffixes = ("7",)
    results = tmp_path / "in.results.csv"
    receipts = receipts_path_for(results)
    async with (
        ReceiptServer(receipts) as receiver,
        wire.simulator(faults, callback_url=receiver.url) as sim,
    ):
        wire.write_input(tmp_path / "in.csv", 300)
        with (tmp_path / "in.csv").open("a", encoding="utf-8") as f:
            f.write("12345\nnot a number\n")
        summary = await run_campaign_async(wire.settings(sim, tmp_path / "in.csv", callback=7))
        assert sim.callbacks is not None
        await sim.callbacks.drained()
    assert Path(summary.results_path) == results
    expected = build_report(results, receipts)
    assert expected.delivered and expected.failed and expected.rejected  # all kinds shown

    page = tmp_path / "report.html"
    write_html_report(results, receipts, page)
    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    taken = _chromium(
        browser, profile, "--window-size=1100,2400", f"--screenshot={shot}", page.as_uri()
    )
    assert shot.exists() and shot.stat().st_size > 20_000, taken.stderr[-2000:]
    dumped = _chromium(browser, profile, "--dump-dom", page.as_uri())
    dom = dumped.stdout
    assert "<svg" in dom and "Delivery over time" in dom, dumped.stderr[-2000:]
    shown = dict(re.findall(r'id="fig-([a-z-]+)" data-value="([^"]*)"', dom))
    rejects = (tmp_path / "in.rejects.csv").read_text(encoding="utf-8").count("\n") - 1
    assert shown == {
        "rows": str(expected.rows + rejects),
        "rejected-before-sending": str(rejects),
        "sent": str(expected.rows),
        "accepted": str(expected.accepted),
        "rejected": str(expected.rejected),
        "unknown": str(expected.unknown),
        "delivered": str(expected.delivered),
        "failed": str(expected.failed),
        "pending": str(expected.pending),
        "credits": str(expected.credits),
    }
    assert rejects == 2 and expected.rows == 300
    _assert_not_blank(shot)


def _assert_not_blank(png: Path) -> None:
    try:
        from PIL import Image
    except ImportError:  # the bench extra brings Pillow; without it the size check stands
        return
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, bars and lines, not a blank page
