"""Prometheus metrics scraped over HTTP while a real campaign runs against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bulksend.campaign import Campaign, Snapshot
from bulksend.config import CampaignSettings
from bulksend.metrics import MetricsServer, receipt_metrics
from bulksend.receipts import ReceiptServer
from bulksend.simulator import Faults, Simulator
from tests.e2e.support import write_numbers

MakeSettings = Callable[..., CampaignSettings]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> tuple[str, Samples]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        content_type = resp.headers["Content-Type"]
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_campaign_metrics_are_scraped_over_http_while_it_sends(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 3000)
    # 1500 msg/s, 20 ms: a campaign of about two seconds, throttled while it learns the rate.
    async with Simulator(faults=Faults(seed=7, throttle_mps=1500, latency=0.02)) as sim:
        settings = make_settings(
            sim, tmp_path / "in.csv", metrics_listen="127.0.0.1:0", batch_size=150
        )
        reached: dict[int, asyncio.Event] = {600: asyncio.Event(), 1800: asyncio.Event()}

        def on_progress(snap: Snapshot) -> None:
            for mark, event in reached.items():
                if snap.sent >= mark:
                    event.set()

        campaign = Campaign(settings, on_progress=on_progress, progress_interval=0.05)
        running = asyncio.create_task(campaign.run())
        await asyncio.wait_for(reached[600].wait(), 30)
        assert isinstance(campaign.metrics, MetricsServer)
        content_type, early = await scrape(campaign.metrics.url)
        await asyncio.wait_for(reached[1800].wait(), 30)
        _, later = await scrape(campaign.metrics.url)
        summary = await running

    assert content_type.startswith("text/plain")
    assert summary.accepted == 3000
    assert value(early, "bulksend_rows_read_total") >= 600
    assert (
        600 <= value(early, "bulksend_rows_sent_total") < value(later, "bulksend_rows_sent_total")
    )
    assert value(later, "bulksend_rows_total", status="accepted") >= 1800
    assert value(later, "bulksend_rows_total", status="rejected") == 0
    answered = value(later, "bulksend_requests_total", outcome="answered")
    assert answered >= 1800 / 150
    assert value(later, "bulksend_throttled_requests_total") == value(
        later, "bulksend_requests_total", outcome="throttled"
    )
    assert value(later, "bulksend_window_batches") >= 1
    assert value(later, "bulksend_in_flight_batches") >= 0
    assert value(later, "bulksend_rows_per_second") > 0
    # Every attempt is in the latency histogram, none faster than the simulated 20 ms.
    attempts = value(later, "bulksend_request_duration_seconds_count")
    assert attempts >= answered
    assert value(later, "bulksend_request_duration_seconds_bucket", le="0.01") == 0
    assert value(later, "bulksend_request_duration_seconds_bucket", le="+Inf") == attempts


async def test_receipt_receiver_metrics_count_stored_and_invalid_callbacks(
    tmp_path: Path,
) -> None:
    async with ReceiptServer(tmp_path / "receipts.csv") as receiver:
        metrics = MetricsServer(receipt_metrics(receiver.stats.as_dict), "127.0.0.1", 0)
        await metrics.start()
        try:
            async with aiohttp.ClientSession() as http:
                good = {"apiMsgId": "a" * 32, "cliMsgId": "", "api_id": "1", "to": "27821234567"}
                good |= {"timestamp": "1700000000", "from": "", "status": "004", "charge": "1"}
                async with http.post(receiver.url, data=good) as resp:
                    assert resp.status == 200
                async with http.post(receiver.url, data={"nonsense": "1"}) as resp:
                    assert resp.status in (200, 400)
            _, samples = await scrape(metrics.url)
        finally:
            await metrics.stop()
    assert value(samples, "bulksend_receipts_total", result="stored") == 1
    assert value(samples, "bulksend_receipts_total", result="invalid") == 1
    assert value(samples, "bulksend_receipts_on_file") == 0
