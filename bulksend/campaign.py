"""A campaign: source -> 600-number batches -> bounded pool of senders -> journal.

One owner per stage, bounded queues between them:

* the **producer** streams the recipient file (:class:`~bulksend.source.RecipientSource`), writes
  rejects, skips rows the journal already holds and cuts batches; it runs at most
  ``concurrency * 2`` batches ahead of the senders, so memory stays flat;
* ``concurrency`` **senders** each take a batch, record its intent in the journal, send it
  (:class:`~bulksend.client.Gateway`, which owns retries) and record every number's outcome;
* a **ticker** pushes progress snapshots and fsyncs the journal on a timer.

Stopping: a fatal gateway answer, a gateway that stays unavailable after its retries, SIGINT or
SIGTERM stop the producer; batches already in flight finish and are recorded, queued batches are
left pending for a resume. A second SIGINT cancels everything at once; the journal's open intents
then make the next run record those batches ``unknown`` instead of re-sending them.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiofiles.os
from prometheus_client import Histogram

from bulksend import aio, gsm
from bulksend.client import BatchOutcome, BatchStatus, ClientSettings, Gateway, RetryPolicy
from bulksend.config import CampaignSettings
from bulksend.errors import ErrorClass, GatewayError, InputError, redact
from bulksend.journal import (
    FILE_MODE,
    Journal,
    ResultLine,
    campaign_fingerprint,
    format_result,
    utc_now,
)
from bulksend.metrics import MetricsServer, campaign_metrics, serve_metrics
from bulksend.numbers import NumberPolicy
from bulksend.protocol import Auth, MessageOptions, SendmsgTemplate, Verdict, classify
from bulksend.reader import InlineReader, ProcessReader, make_reader
from bulksend.receipts import collect_receipts, receipts_path_for
from bulksend.source import RecipientSource

__all__ = [
    "EXIT_FATAL",
    "EXIT_INPUT",
    "EXIT_OK",
    "Campaign",
    "CampaignSummary",
    "Snapshot",
    "run_campaign",
    "run_campaign_async",
]

log = logging.getLogger("bulksend.campaign")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_FATAL = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(frozen=True, slots=True)
class Batch:
    rows: list[int]
    msisdns: list[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters at one moment, for progress displays."""

    elapsed: float
    rows_read: int
    valid: int
    input_rejected: int
    skipped: int
    sent: int
    accepted: int
    rejected: int
    unknown: int
    in_flight: int
    rate: float
    fraction_done: float | None = None  # rows sent (or done before) / estimated total
    done: bool = False


@dataclass
class CampaignSummary:
    """What happened, for people (the CLI's table) and machines (``--summary-json``)."""

    input_path: str
    results_path: str
    rejects_path: str
    dry_run: bool = False
    encoding: str = ""
    parts: int = 0
    rows: int = 0
    valid: int = 0
    duplicates: int = 0
    input_rejected: int = 0
    input_rejected_by_reason: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    rejected: int = 0
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    pending: int = 0  # valid rows read but not recorded; see input_complete
    input_complete: bool = True  # False: stopped before the end of the file (more rows pending)
    previously_done: int = 0
    recovered_unknown: int = 0
    reconciled: int = 0
    resumed: bool = False
    batches: int = 0
    requests: int = 0
    throttled: int = 0
    credits_estimate: int = 0
    elapsed_seconds: float = 0.0
    messages_per_second: float = 0.0
    stopped: str = ""
    exit_code: int = EXIT_OK

    def to_json(self) -> str:
        return redact(json.dumps(asdict(self), indent=2, sort_keys=True))


class Campaign:
    """One run of a campaign. Build it, ``await run()``, read the summary."""

    def __init__(
        self,
        settings: CampaignSettings,
        *,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.shape = gsm.analyse(settings.text, settings.unicode)
        if self.shape.parts > settings.max_parts:
            raise InputError(
                f"the text needs {self.shape.parts} parts ({self.shape.units} "
                f"{'septets' if self.shape.encoding is gsm.Encoding.GSM7 else 'UCS-2 units'}), "
                f"more than --max-parts {settings.max_parts}"
            )
        self.options = MessageOptions(
            text=gsm.wire_text(settings.text, self.shape.encoding),
            sender=settings.sender,
            mo=settings.mo,
            callback=settings.callback,
            unicode=self.shape.encoding is gsm.Encoding.UCS2,
            concat=self.shape.parts,
        )
        self.template = SendmsgTemplate(self.options)
        self.summary = CampaignSummary(
            input_path=str(settings.input_path),
            results_path=str(settings.results_path),
            rejects_path=str(settings.rejects_path),
            dry_run=settings.dry_run,
            encoding=self.shape.encoding.value,
            parts=self.shape.parts,
        )
        self.source = RecipientSource(
            settings.input_path,
            column=settings.column,
            policy=NumberPolicy(default_country=settings.default_country, strict=settings.strict),
            dedupe=settings.dedupe,
        )
        self.reader: InlineReader | ProcessReader = InlineReader(self.source)
        self._stop_reason = ""
        self._exit_code = EXIT_OK
        self._stopping = asyncio.Event()
        self._started = 0.0
        self._sent = 0
        self._in_flight = 0
        self._skipped = 0
        self._bytes_total = 0
        self._rejected_codes: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self.gateway: Gateway | None = None
        self.metrics: MetricsServer | None = None
        self._request_seconds: Histogram | None = None

    # -- public ------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        s = self.settings
        return campaign_fingerprint(
            text=s.text,
            sender=s.sender,
            mo=s.mo,
            callback=s.callback,
            encoding=self.shape.encoding.value,
        )

    def stop(self, reason: str, exit_code: int) -> None:
        """Stop reading and sending new batches; in-flight batches finish."""
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._exit_code = exit_code
            self._stopping.set()

    async def run(self) -> CampaignSummary:
        self._started = time.monotonic()
        try:
            self._bytes_total = os.stat(self.settings.input_path).st_size
        except OSError:
            self._bytes_total = 0
        s = self.settings
        if s.dry_run:
            await self._dry_run()
            return self._finish()
        registry, self._request_seconds = (
            campaign_metrics(self) if s.metrics_listen else (None, None)
        )
        async with (
            serve_metrics(s.metrics_listen, registry) as self.metrics,
            collect_receipts(s.receipts_listen, s.results_path),
        ):
            await self._send_campaign()
            summary = self._finish()  # before the receiver lingers for late receipts
        return summary

    # -- dry run -----------------------------------------------------------------------------------

    async def _dry_run(self) -> None:
        async for _block in self.reader.blocks():
            pass
        self._fill_source_stats()
        size = self.settings.effective_batch_size
        self.summary.batches = -(-self.summary.valid // size) if self.summary.valid else 0
        self.summary.pending = self.summary.valid

    # -- the real thing ----------------------------------------------------------------------------

    async def _send_campaign(self) -> None:
        s = self.settings
        journal = Journal(s.results_path, fsync_interval=s.fsync_interval)
        state = journal.open(
            self.fingerprint(),
            describe={
                "input": str(Path(s.input_path).resolve()),
                "encoding": self.shape.encoding.value,
                "parts": self.shape.parts,
                "sender": s.sender or "",
            },
            restart=s.restart,
            resend_unknown=s.resend_unknown,
            receipts_path=receipts_path_for(s.results_path),
        )
        self.summary.resumed = state.resumed
        self.summary.previously_done = len(state.done) - state.recovered_unknown
        self.summary.recovered_unknown = state.recovered_unknown
        self._counts.update(state.counts)
        self.summary.reconciled = state.reconciled
        if state.reconciled or state.resent_unknown:
            log.warning(
                "--resend-unknown: %d unknown rows have a delivery receipt and are recorded "
                "accepted; %d will be sent again",
                state.reconciled,
                state.resent_unknown,
            )
        if state.recovered_unknown:
            log.warning(
                "%d rows were in flight when a previous run stopped; recorded as unknown "
                "(use --resend-unknown on a later run to send them again)",
                state.recovered_unknown,
            )
        client_settings = ClientSettings(
            endpoint=s.endpoint,
            auth=Auth(api_id=s.api_id, user=s.user, password=s.password),
            use_session=s.auth == "session",
            method=s.method,
            concurrency=s.concurrency,
            rate=s.rate,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            verify_tls=not s.insecure,
            retry=RetryPolicy(max_attempts=s.retry_attempts, max_total_seconds=s.retry_max_seconds),
        )
        rejects_fd = os.open(s.rejects_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(2, s.concurrency * 2))
        try:
            with open(rejects_fd, "w", encoding="utf-8", newline="") as rejects_file:
                rejects = csv.writer(rejects_file, lineterminator="\n")
                rejects.writerow(["row", "raw", "reason"])
                async with Gateway(client_settings, self.template) as gateway:
                    self.gateway = gateway
                    if self._request_seconds is not None:
                        gateway.on_request = self._request_seconds.observe
                    await self._login(gateway)
                    with self._signals():
                        self.reader = make_reader(
                            s.input_path,
                            column=s.column,
                            policy=self.source.policy,
                            dedupe=s.dedupe,
                            mode=s.reader,
                        )
                        await self._pipeline(gateway, journal, queue, rejects, state.done)
                rejects_file.flush()
                os.fsync(rejects_file.fileno())
        finally:
            self.reader.close()
            journal.close()
        self.summary.throttled = gateway.flow.throttled

    async def _login(self, gateway: Gateway) -> None:
        if self.settings.auth != "session":
            return
        try:
            await gateway.login()
        except GatewayError as exc:
            self.stop(f"cannot log in: {exc}", EXIT_FATAL)

    async def _pipeline(
        self,
        gateway: Gateway,
        journal: Journal,
        queue: asyncio.Queue[Batch | None],
        rejects: Any,
        done: Any,
    ) -> None:
        s = self.settings
        producer = asyncio.create_task(
            self._produce(queue, rejects, done, gateway.batch_limit), name="producer"
        )
        senders = [
            asyncio.create_task(self._sender(gateway, journal, queue), name=f"sender-{i}")
            for i in range(s.concurrency)
        ]
        ticker = asyncio.create_task(self._tick(journal), name="ticker")
        self._tasks = [producer, *senders]
        try:
            await producer
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders)
        except asyncio.CancelledError:
            for task in (producer, *senders):
                task.cancel()
            await asyncio.gather(producer, *senders, return_exceptions=True)
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self._emit(done=True)

    async def _produce(
        self,
        queue: asyncio.Queue[Batch | None],
        rejects: Any,
        done: Any,
        batch_limit: Callable[[int], int] = lambda size: size,
    ) -> None:
        full = self.settings.effective_batch_size
        size = batch_limit(full)
        rows: list[int] = []
        msisdns: list[str] = []
        check_done = len(done) > 0
        async for block in self.reader.blocks():
            if block.rejects:
                rejects.writerows((r.row, r.raw, r.reason) for r in block.rejects)
            if check_done:
                for row, msisdn in zip(block.rows, block.msisdns, strict=True):
                    if row in done:
                        self._skipped += 1
                        continue
                    rows.append(row)
                    msisdns.append(msisdn)
            else:
                rows.extend(block.rows)
                msisdns.extend(block.msisdns)
            while len(rows) >= size:
                if self._stopping.is_set():
                    self.summary.input_complete = False
                    return
                await queue.put(Batch(rows[:size], msisdns[:size]))
                del rows[:size], msisdns[:size]
                size = batch_limit(full)
            if self._stopping.is_set():
                self.summary.input_complete = False
                return
        if rows and not self._stopping.is_set():
            await queue.put(Batch(rows, msisdns))

    async def _sender(
        self, gateway: Gateway, journal: Journal, queue: asyncio.Queue[Batch | None]
    ) -> None:
        parts: list[Batch] = []  # this sender's batch, split for a rate learned meanwhile
        while True:
            batch = await self._next_batch(queue, gateway, parts)
            if batch is None:
                return
            if self._stopping.is_set():
                continue
            seqs: list[int] = []

            def intend(batch: Batch = batch, seqs: list[int] = seqs) -> None:
                seqs.append(journal.intend(batch.rows, batch.msisdns))

            self._in_flight += 1
            try:
                outcome = await gateway.send(batch.msisdns, before_first_request=intend)
            finally:
                self._in_flight -= 1
            self.summary.requests += outcome.attempts
            if outcome.status is BatchStatus.RESIZE:  # throttled only: nothing was processed
                if seqs:
                    journal.abandon(seqs[0])
                parts.append(batch)
                continue
            if not seqs:  # never left: nothing to record, the rows stay pending
                if outcome.status is BatchStatus.FATAL:
                    self.stop(redact(outcome.reason), EXIT_FATAL)
                continue
            self.summary.batches += 1
            self._record(journal, seqs[0], batch, outcome)

    @staticmethod
    async def _next_batch(
        queue: asyncio.Queue[Batch | None], gateway: Gateway, parts: list[Batch]
    ) -> Batch | None:
        """The next batch to send: the rest of a split one first, else the queue's; split when
        it is larger than the gateway's flow control now allows (a rate learned since it was
        cut, while it waited, or when the gateway throttled it)."""
        batch = parts.pop() if parts else await queue.get()
        if batch is None:
            return None
        size = gateway.batch_limit(len(batch.rows))
        if size < len(batch.rows):
            parts.extend(
                Batch(batch.rows[i : i + size], batch.msisdns[i : i + size])
                for i in reversed(range(0, len(batch.rows), size))
            )
            batch = parts.pop()
        return batch

    def _record(self, journal: Journal, seq: int, batch: Batch, outcome: BatchOutcome) -> None:
        now = utc_now()
        attempts = outcome.attempts
        answer = outcome.answer
        if (
            outcome.status is BatchStatus.ANSWERED
            and answer is not None
            and answer.api_ids is not None
            and None not in answer.api_ids
        ):
            # The hot path: every number accepted; one formatted line each, one write.
            tail = f",,,{attempts},{now}\n"
            text = "".join(
                [
                    f"{row},{msisdn},accepted,{api_id}{tail}"
                    for row, msisdn, api_id in zip(
                        batch.rows, batch.msisdns, answer.api_ids, strict=True
                    )
                ]
            )
            self._counts["accepted"] += len(batch.rows)
            self._sent += len(batch.rows)
            journal.complete_text(seq, text)
            return
        if outcome.status is BatchStatus.ANSWERED:
            # One formatted line per number, one write for the batch.
            out: list[str] = []
            append = out.append
            accepted = Verdict.ACCEPTED
            tail = f",,,{attempts},{now}\n"
            n_accepted = n_rejected = n_unknown = 0
            stop_for = ""
            for row, msisdn, result in zip(batch.rows, batch.msisdns, outcome.results, strict=True):
                if result[0] is accepted:
                    append(f"{row},{msisdn},accepted,{result[1]}{tail}")
                    n_accepted += 1
                elif result[0] is Verdict.REJECTED:
                    klass = classify(result.code, per_recipient=True)
                    if klass is ErrorClass.RECIPIENT:
                        append(
                            format_result(
                                ResultLine(
                                    row,
                                    msisdn,
                                    "rejected",
                                    "",
                                    result.code,
                                    result.description,
                                    attempts,
                                    now,
                                )
                            )
                        )
                        self._rejected_codes[f"{result.code:03d}"] += 1
                        n_rejected += 1
                    else:
                        # Not this number's fault (no credit, auth...): nothing was sent to it.
                        stop_for = (
                            f"gateway error {result.code:03d} ({klass.value}): {result.description}"
                        )
                else:
                    append(
                        format_result(
                            ResultLine(
                                row, msisdn, "unknown", "", None, result.description, attempts, now
                            )
                        )
                    )
                    n_unknown += 1
            self._counts["accepted"] += n_accepted
            self._counts["rejected"] += n_rejected
            self._counts["unknown"] += n_unknown
            self._sent += len(out)
            journal.complete_text(seq, "".join(out))
            if stop_for:  # numbers held back: nothing was sent to them
                self.stop(redact(stop_for), EXIT_FATAL)
            return
        if outcome.status is BatchStatus.UNKNOWN:
            reason = outcome.reason or "no answer"
            lines = [
                ResultLine(row, msisdn, "unknown", "", None, reason, attempts, now)
                for row, msisdn in zip(batch.rows, batch.msisdns, strict=True)
            ]
            self._counts["unknown"] += len(lines)
            self._sent += len(lines)
            journal.complete(seq, lines)
            log.warning("a batch of %d may or may not have been sent: %s", len(lines), reason)
            return
        # NOT_SENT or FATAL: nothing was processed; the rows stay pending for a resume.
        journal.abandon(seq)
        if outcome.status is BatchStatus.FATAL:
            self.stop(redact(outcome.reason), EXIT_FATAL)
        else:
            self.stop(f"the gateway kept failing: {redact(outcome.reason)}", EXIT_FATAL)

    async def _tick(self, journal: Journal) -> None:
        fsync = aiofiles.os.wrap(_fsync_quietly)
        while True:
            await asyncio.sleep(self.progress_interval)
            self._emit()
            if journal.fsync_due():
                await fsync(journal.fds())

    def _emit(self, done: bool = False) -> None:
        if self.on_progress is None:
            return
        self.on_progress(self.snapshot(done=done))

    def snapshot(self, done: bool = False) -> Snapshot:
        elapsed = max(1e-9, time.monotonic() - self._started)
        stats = self.reader.stats
        rejected_input = sum(stats.rejected.values()) + stats.duplicates
        fraction = (
            min(1.0, self.reader.bytes_read / self._bytes_total) if self._bytes_total else 0.0
        )
        done_fraction = None
        if fraction:
            # The reader runs ahead of the senders: estimate the total from what it has seen.
            expected = stats.valid / fraction
            if expected > 0:
                done_fraction = min(1.0, (self._sent + self._skipped) / expected)
        return Snapshot(
            elapsed=elapsed,
            rows_read=stats.rows,
            valid=stats.valid,
            input_rejected=rejected_input,
            skipped=self._skipped,
            sent=self._sent,
            accepted=self._counts["accepted"],
            rejected=self._counts["rejected"],
            unknown=self._counts["unknown"],
            in_flight=self._in_flight,
            rate=self._sent / elapsed,
            fraction_done=done_fraction,
            done=done,
        )

    @contextlib.contextmanager
    def _signals(self) -> Any:
        if not self.settings.install_signal_handlers:
            yield
            return
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        presses = {"n": 0}

        def on_signal(signum: int) -> None:
            presses["n"] += 1
            code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
            if presses["n"] == 1:
                log.warning(
                    "%s: finishing the batches in flight, then stopping "
                    "(press Ctrl-C again to abort at once)",
                    signal.Signals(signum).name,
                )
                self.stop(f"interrupted by {signal.Signals(signum).name}", code)
            else:
                self._stop_reason = f"aborted by a second {signal.Signals(signum).name}"
                self._exit_code = code
                if main is not None:
                    main.cancel()

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
                handler = previous[signum]
                if handler is not None:  # restore the CLI's own (remove_signal_handler resets)
                    signal.signal(signum, handler)

    # -- summary -----------------------------------------------------------------------------------

    def _fill_source_stats(self) -> None:
        stats = self.reader.stats
        self.summary.rows = stats.rows
        self.summary.valid = stats.valid
        self.summary.duplicates = stats.duplicates
        by_reason = dict(stats.rejected)
        if stats.duplicates:
            by_reason["duplicate"] = stats.duplicates
        self.summary.input_rejected = sum(stats.rejected.values()) + stats.duplicates
        self.summary.input_rejected_by_reason = by_reason
        self.summary.credits_estimate = stats.valid * self.shape.parts

    def _finish(self) -> CampaignSummary:
        summary = self.summary
        self._fill_source_stats()
        if not summary.dry_run:
            summary.accepted = self._counts["accepted"]
            summary.rejected = self._counts["rejected"]
            summary.unknown = self._counts["unknown"]
            summary.rejected_by_code = dict(self._rejected_codes)
            summary.pending = max(
                0, summary.valid - summary.accepted - summary.rejected - summary.unknown
            )
        elapsed = time.monotonic() - self._started
        summary.elapsed_seconds = round(elapsed, 3)
        summary.messages_per_second = round(self._sent / elapsed, 1) if elapsed > 0 else 0.0
        summary.stopped = self._stop_reason
        summary.exit_code = self._exit_code
        if summary.exit_code == EXIT_OK and summary.pending and not summary.dry_run:
            summary.exit_code = EXIT_FATAL
            summary.stopped = summary.stopped or f"{summary.pending} rows left pending"
        return summary


def _fsync_quietly(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.fsync(fd)


async def run_campaign_async(
    settings: CampaignSettings,
    *,
    on_progress: Callable[[Snapshot], None] | None = None,
    progress_interval: float = 0.5,
) -> CampaignSummary:
    """Run a campaign on the current event loop and return its summary.

    Raises :class:`~bulksend.errors.InputError` / :class:`~bulksend.errors.ConfigError` for inputs
    that cannot be used; gateway trouble is reported in the summary (``exit_code``, ``stopped``).
    """
    campaign = Campaign(settings, on_progress=on_progress, progress_interval=progress_interval)
    try:
        return await campaign.run()
    except asyncio.CancelledError:
        if campaign._exit_code in (EXIT_SIGINT, EXIT_SIGTERM):
            return campaign._finish()
        raise


def run_campaign(
    settings: CampaignSettings, *, on_progress: Callable[[Snapshot], None] | None = None
) -> CampaignSummary:
    """Run a campaign to the end on a fresh event loop (uvloop where available)."""
    return aio.run(run_campaign_async(settings, on_progress=on_progress))
