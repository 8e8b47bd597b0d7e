"""Prometheus metrics for long campaigns and receipt receivers (``--metrics-listen HOST:PORT``).

At a real account's rate a 10 M-row campaign runs for hours; operators watch it here. The
endpoint is ``GET /metrics`` on an aiohttp server in the campaign's own event loop (no thread), in
the text exposition format of the ``prometheus_client`` library, with a registry of its own (so
several campaigns in one process, as in tests, do not collide).

Nothing is counted on the hot path twice: row and request counters are read from the campaign's
own counters when Prometheus scrapes (a custom collector); only the request latency histogram is
observed per request, through :attr:`bulksend.client.Gateway.on_request`.

Campaign metrics (``bulksend_`` prefix):

========================================  =========  ==================================================
``rows_read_total``                        counter    rows read from the input file
``rows_total{status}``                     counter    rows by outcome: accepted, rejected, unknown
                                                      (sent), input_rejected (invalid or duplicate),
                                                      skipped (done by an earlier run)
``rows_sent_total``                        counter    rows the gateway answered for (any status)
``requests_total{outcome}``                counter    sendmsg attempts: answered, throttled,
                                                      not_processed (503, 901, connect...), unknown
``throttled_requests_total``               counter    HTTP 429 answers
``window_batches``                         gauge      requests allowed in flight now
``in_flight_batches``                      gauge      requests in flight now
``pacing_messages_per_second``             gauge      the rate requests are paced at (0: unpaced)
``rows_per_second``                        gauge      rows sent per second since the start
``request_duration_seconds``               histogram  one sendmsg attempt, request to answer
========================================  =========  ==================================================

Receiver metrics: ``bulksend_receipts_total{result}`` (stored, duplicates, invalid, forbidden,
failed), ``bulksend_receipts_on_file`` (receipts already in the file at start),
``bulksend_replies_total{result}`` (stored, duplicates) and ``bulksend_opt_outs_total`` (numbers
the replies added to the opt-out list).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bulksend.errors import ConfigError
from bulksend.listen import parse_listen

__all__ = [
    "REQUEST_BUCKETS",
    "CampaignCollector",
    "MetricsServer",
    "ReceiptCollector",
    "campaign_metrics",
    "receipt_metrics",
    "serve_metrics",
]

log = logging.getLogger("bulksend.metrics")

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Snapshot(Protocol):
    rows_read: int
    input_rejected: int
    skipped: int
    sent: int
    accepted: int
    rejected: int
    unknown: int
    rate: float


class _Flow(Protocol):
    window: float
    in_flight: int
    throttled: int

    @property
    def rate(self) -> float | None: ...


class CampaignCollector(Collector):
    """Reads a campaign's counters at scrape time: ``snapshot`` gives the row counters,
    ``flow`` the gateway's flow control (``None`` before it exists), ``requests`` the request
    counts by outcome."""

    def __init__(
        self,
        snapshot: Callable[[], _Snapshot],
        flow: Callable[[], _Flow | None],
        requests: Callable[[], Mapping[str, int]],
    ) -> None:
        self._snapshot = snapshot
        self._flow = flow
        self._requests = requests

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        yield CounterMetricFamily(
            "bulksend_rows_read", "Rows read from the input file", value=snap.rows_read
        )
        rows = CounterMetricFamily("bulksend_rows", "Rows by outcome", labels=["status"])
        for status, value in (
            ("accepted", snap.accepted),
            ("rejected", snap.rejected),
            ("unknown", snap.unknown),
            ("input_rejected", snap.input_rejected),
            ("skipped", snap.skipped),
        ):
            rows.add_metric([status], value)
        yield rows
        yield CounterMetricFamily(
            "bulksend_rows_sent", "Rows the gateway answered for", value=snap.sent
        )
        requests = CounterMetricFamily(
            "bulksend_requests", "sendmsg attempts by outcome", labels=["outcome"]
        )
        counts = self._requests()
        for outcome in ("answered", "throttled", "not_processed", "unknown"):
            requests.add_metric([outcome], counts.get(outcome, 0))
        yield requests
        flow = self._flow()
        yield CounterMetricFamily(
            "bulksend_throttled_requests",
            "HTTP 429 answers",
            value=flow.throttled if flow is not None else 0,
        )
        yield GaugeMetricFamily(
            "bulksend_window_batches",
            "Requests allowed in flight now",
            value=flow.window if flow is not None else 0,
        )
        yield GaugeMetricFamily(
            "bulksend_in_flight_batches",
            "Requests in flight now",
            value=flow.in_flight if flow is not None else 0,
        )
        pacing = flow.rate if flow is not None else None
        yield GaugeMetricFamily(
            "bulksend_pacing_messages_per_second",
            "The rate requests are paced at (0: unpaced)",
            value=pacing or 0.0,
        )
        yield GaugeMetricFamily(
            "bulksend_rows_per_second", "Rows sent per second since the start", value=snap.rate
        )


class ReceiptCollector(Collector):
    """A receipt receiver's counters (``ReceiptStats.as_dict()``) at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        receipts = CounterMetricFamily(
            "bulksend_receipts", "Delivery callbacks by result", labels=["result"]
        )
        for result in ("stored", "duplicates", "invalid", "forbidden", "failed"):
            receipts.add_metric([result], stats.get(result, 0))
        yield receipts
        replies = CounterMetricFamily(
            "bulksend_replies", "Reply (MO) callbacks by result", labels=["result"]
        )
        replies.add_metric(["stored"], stats.get("replies", 0))
        replies.add_metric(["duplicates"], stats.get("reply_duplicates", 0))
        yield replies
        yield CounterMetricFamily(
            "bulksend_opt_outs",
            "Numbers appended to the opt-out list by replies",
            value=stats.get("opt_outs", 0),
        )
        yield GaugeMetricFamily(
            "bulksend_receipts_on_file",
            "Receipts already in the file when the receiver started",
            value=stats.get("on_file", 0),
        )


def campaign_metrics(campaign: Any) -> tuple[CollectorRegistry, Histogram]:
    """A registry for ``campaign`` (a :class:`~bulksend.campaign.Campaign`) and the request
    duration histogram the campaign's gateway is to observe."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(
        CampaignCollector(
            campaign.snapshot,
            lambda: campaign.gateway.flow if campaign.gateway is not None else None,
            lambda: campaign.gateway.outcomes if campaign.gateway is not None else {},
        )
    )
    histogram = Histogram(
        "bulksend_request_duration_seconds",
        "One sendmsg attempt, request to answer",
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    return registry, histogram


def receipt_metrics(stats: Callable[[], Mapping[str, int]]) -> CollectorRegistry:
    """A registry for a receipt receiver whose counters ``stats`` returns."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ReceiptCollector(stats))
    return registry


class MetricsServer:
    """``GET /metrics`` of ``registry`` on ``host:port`` (``port`` 0: a free one)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"


@contextlib.asynccontextmanager
async def serve_metrics(
    listen: str | None, registry: CollectorRegistry | None
) -> AsyncIterator[MetricsServer | None]:
    """Serve ``registry`` on ``listen`` (``HOST:PORT``) for the duration of the block; nothing
    when either is None."""
    if listen is None or registry is None:
        yield None
        return
    host, port = parse_listen(listen)
    server = MetricsServer(registry, host, port)
    try:
        await server.start()
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None
    log.info("metrics on %s", server.url)
    try:
        yield server
    finally:
        await server.stop()
