"""The hot path: source -> 600-number batches -> bounded pool of senders -> journal.

One owner per stage, bounded queues between them:

* the **producer** streams the recipient file (:class:`~bulksend.source.RecipientSource`), writes
  rejects, skips rows the journal already holds and cuts batches; it runs at most
  ``concurrency * 2`` batches ahead of the senders, so memory stays flat;
* ``concurrency`` **senders** each take a batch, record its intent in the journal and wait until
  it is on stable storage (group commit: the senders waiting at the same moment share one
  ``fdatasync``), send it (:class:`~bulksend.client.Gateway`, which owns retries) and hand the
  outcome to the **recorder** (:class:`Recorder`), which writes every number's outcome in one
  write per batch. When an answer comes back, the next batch is at hand and would leave at once
  (no throttle, pacing or login ahead of it) and the loop has time (:data:`LOOP_BUSY`: the
  gateway's latency, not the loop, is the limit), the sender writes the next intent *first*, lets
  the senders answered at the same moment write theirs, starts one flush for them all and
  records its answer while the disk works; the next request rarely waits for the disk, and when
  it does, it waits in place (see :mod:`bulksend.groupcommit`). That early intent is abandoned
  (``A``: its rows stay pending) when the run stops before it leaves. With a busy loop, senders
  await their flushes on the loop and the loop serves the other answers meanwhile;
* a **ticker** pushes progress snapshots and fsyncs the results file on a timer (the journal
  then notes the size now durable).

:meth:`Pipeline.run` opens the gateway's connection pool around these stages. The login and the
credit pre-flight (:mod:`bulksend.campaign.preflight`) run in it because they share its connections;
the producer waits for the pre-flight's answer before the first batch leaves.

Stopping (:mod:`bulksend.campaign.control`): a fatal gateway answer, a gateway that stays
unavailable after its retries, SIGINT or SIGTERM stop the producer; batches already in flight
finish and are recorded, queued batches are left pending for a resume. A second SIGINT cancels
everything at once; the journal's open intents then make the next run record those batches
``unknown`` instead of re-sending them. A storage failure in any stage stops the pipeline at once
instead of leaving the other stages waiting on a queue.

Each stage binds its switches and counters to locals once: the loops look nothing up per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiofiles.os

from bulksend.campaign.control import EXIT_FATAL, RunControl
from bulksend.campaign.plan import Plan
from bulksend.campaign.preflight import CreditCheck, login
from bulksend.campaign.summary import CampaignSummary, Snapshot, Tally
from bulksend.client import BatchOutcome, BatchStatus, Gateway
from bulksend.deferral import Deferrals
from bulksend.errors import ErrorClass, StorageError, redact
from bulksend.journal import Journal, ResultLine, RowBitmap, format_result, utc_now
from bulksend.optout import append_opt_outs
from bulksend.rejects import RejectsFile
from bulksend.rowkey import key_rows
from bulksend.rows import Reject
from bulksend.wire import Batch, Verdict, WireProtocol

__all__ = ["LOOP_BUSY", "OPTED_OUT", "Pipeline", "Recorder", "Sender"]

log = logging.getLogger("bulksend.campaign")

LOOP_BUSY = 0.9
"""A sender whose last request saw the loop thread computing more than this share of the time
awaits its flushes on the loop and writes no intent early (the loop, not the gateway, is then the
limit); below it, it writes its next intent early and waits for a flush in place."""

OPTED_OUT = 122
"""The gateway's "Destination mobile opted out" (``--record-opt-outs`` keeps these numbers)."""


class Pipeline:
    """The sending part of one run: build it with the run's plan, control, tally and summary, then
    ``await run(journal, done, wire)``."""

    def __init__(
        self,
        plan: Plan,
        control: RunControl,
        tally: Tally,
        summary: CampaignSummary,
        *,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_interval: float = 0.5,
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.control = control
        self.busy = 0.0
        """The loop thread's share of computing (waiting in place included) while the last
        request answered was out: near 1 when answers come back at once (the loop is the limit),
        low when the gateway's latency dominates; 0 until an answer came back (the first requests
        leave as soon as each is durable, so the first wave starts staggered, as it will go on)."""
        self.tally = tally
        self.summary = summary
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.credit = CreditCheck(plan, control, summary)
        self.gateway: Gateway | None = None

    async def run(
        self,
        journal: Journal,
        done: RowBitmap,
        wire: WireProtocol,
        on_request: Callable[[float], None] | None = None,
    ) -> None:
        """Send every row not in ``done`` (unless stopped), record each outcome, write the rejects.
        ``on_request``: told each request's duration (the metrics' histogram)."""
        s = self.settings
        plan = self.plan
        control = self.control
        client_settings = plan.client_settings()
        rejects = RejectsFile(Path(s.rejects_path))
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(2, s.concurrency * 2))
        gateway: Gateway | None = None
        try:
            key_rows(wire, journal.header)  # One API: clientMessageId = the row's key
            self.summary.protocol = wire.name
            async with Gateway(client_settings, wire) as gateway:
                self.gateway = gateway
                if on_request is not None:
                    gateway.on_request = on_request
                await login(gateway, plan, control)
                if s.check_balance and not control.stopping.is_set():
                    # The balance is asked while the reader starts; the producer waits for the
                    # answer before the first batch leaves (so it costs no round trip of its own).
                    self.credit.start(plan.account(gateway.http), done)
                with control.signals(s.install_signal_handlers):
                    self.tally.reader = plan.reader(
                        # Only the batch interface sends field values; the One API sends texts.
                        keep_fields=plan.protocol_name() == "batch",
                    )
                    await self._stages(gateway, journal, queue, rejects, done)
                await gateway.finish()
            try:
                rejects.finish()  # after another file failed too: what the disk still takes
            except StorageError as exc:
                control.fail_storage(exc)
        finally:
            commit = journal.commit
            self.summary.journal_flushes = commit.rounds
            self.summary.flush_waits = {k: v for k, v in commit.waits.items() if v}
            await self.credit.close()
            rejects.close()
            self.tally.reader.close()
            if gateway is not None:
                self.summary.throttled = gateway.flow.throttled

    async def _stages(
        self,
        gateway: Gateway,
        journal: Journal,
        queue: asyncio.Queue[Batch | None],
        rejects: RejectsFile,
        done: Any,
    ) -> None:
        s = self.settings
        control = self.control
        guard = control.guard
        recorder = Recorder(journal, control, self.tally, self.summary, s.record_opt_outs)
        producer = asyncio.create_task(
            guard(self._produce(queue, rejects, done, gateway.batch_limit)),
            name="producer",
        )
        senders = [
            asyncio.create_task(
                guard(Sender(self, gateway, journal, queue, recorder).run()), name=f"sender-{i}"
            )
            for i in range(s.concurrency)
        ]
        ticker = asyncio.create_task(guard(self._tick(journal)), name="ticker")

        async def drain() -> None:
            await producer
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders)

        work = asyncio.create_task(drain(), name="drain")
        abort = asyncio.create_task(control.abort.wait(), name="abort")
        everything = (producer, *senders, work)
        try:
            await asyncio.wait((work, abort), return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                # A storage failure or a broken stage: nothing more may leave; cancel it all.
                for task in everything:
                    task.cancel()
                await asyncio.gather(*everything, return_exceptions=True)
        except asyncio.CancelledError:
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)
            raise
        finally:
            abort.cancel()
            ticker.cancel()
            await asyncio.gather(abort, ticker, return_exceptions=True)
            self._emit(done=True)
        if control.unexpected is not None:
            raise control.unexpected

    async def _produce(
        self,
        queue: asyncio.Queue[Batch | None],
        rejects: RejectsFile,
        done: Any,
        batch_limit: Callable[[int], int] = lambda size: size,
    ) -> None:
        full = self.settings.effective_batch_size
        size = batch_limit(full)
        rows: list[int] = []
        msisdns: list[str] = []
        # A personalised campaign carries each row's text (and field values) beside its number.
        contents: list[str] | None = [] if self.plan.message_template is not None else None
        fields: list[tuple[str, ...]] | None = [] if self.plan.protocol_name() == "batch" else None
        check_done = len(done) > 0
        credit = self.credit
        limit = credit.limit
        preflight = credit.task
        control = self.control
        stopping = control.stopping
        tally = self.tally
        # The send window: None without one, and then nothing below changes per row.
        quiet = self.plan.quiet
        sendable = None if quiet is None else quiet.block_sendable
        deferrals = Deferrals() if quiet is None else quiet.deferrals
        if quiet is not None:
            quiet.start_pass()

        def cut(n: int) -> Batch:
            batch = Batch(
                rows[:n],
                msisdns[:n],
                None if contents is None else contents[:n],
                None if fields is None else fields[:n],
            )
            del rows[:n], msisdns[:n]
            if contents is not None:
                del contents[:n]
            if fields is not None:
                del fields[:n]
            return batch

        async for block in tally.reader.blocks():
            if preflight is not None:
                await preflight  # the credit pre-flight decides before the first batch
                preflight = None
                limit = credit.limit
            if block.rejects:
                if check_done:
                    # A row the campaign already handled stays in the results only, even if an
                    # opt-out list now refuses it.
                    rejects.write([r for r in block.rejects if r.row not in done])
                else:
                    rejects.write(block.rejects)
            columns: list[tuple[list[Any], Sequence[Any]]] = [
                (rows, block.rows),
                (msisdns, block.msisdns),
            ]
            if contents is not None:
                if block.contents is None:
                    raise AssertionError("a personalised campaign's block without its texts")
                columns.append((contents, block.contents))
            if fields is not None:
                if block.fields is None:
                    raise AssertionError("a batch-interface block without its field values")
                columns.append((fields, block.fields))
            if check_done or sendable is not None:
                keep: list[int] | None = None
                if check_done:
                    keep = [i for i, row in enumerate(block.rows) if row not in done]
                    tally.skipped += len(block.rows) - len(keep)
                if sendable is not None:
                    # Rows outside their window are deferred: not sent, not recorded.
                    keep, refused = sendable(block, tally.reader.stats, keep)
                    if refused:
                        rejects.write(
                            Reject(block.rows[i], block.msisdns[i], reason) for i, reason in refused
                        )
                    tally.deferred = len(deferrals)
                assert keep is not None
                for into, source in columns:
                    into.extend([source[i] for i in keep])
            else:
                for into, source in columns:
                    into.extend(source)
            if limit is not None and len(rows) >= limit:
                # What the credit covers is queued; the rest of the file stays pending.
                for column in (rows, msisdns, contents, fields):
                    if column is not None:
                        del column[limit:]
                while rows and not stopping.is_set():
                    await queue.put(cut(size))
                    size = batch_limit(full)
                self.summary.input_complete = False
                if not stopping.is_set():
                    control.reason = (
                        f"the credit covered {credit.limit:,} messages (--allow-partial); "
                        "the rest stays pending"
                    )
                    control.exit_code = EXIT_FATAL
                return
            while len(rows) >= size:
                if stopping.is_set():
                    self.summary.input_complete = False
                    return
                await queue.put(cut(size))
                if limit is not None:
                    limit -= size
                size = batch_limit(full)
            if stopping.is_set():
                self.summary.input_complete = False
                return
        if rows and not stopping.is_set():
            await queue.put(cut(len(rows)))

    async def _tick(self, journal: Journal) -> None:
        fsync = aiofiles.os.wrap(_fsync_checked)
        while True:
            await asyncio.sleep(self.progress_interval)
            self._emit()
            if journal.fsync_due():
                await fsync(journal.fds())
                journal.results_durable()

    def _emit(self, done: bool = False) -> None:
        if self.on_progress is None:
            return
        self.on_progress(self.tally.snapshot(done=done))


class Sender:
    """One of the pipeline's senders (see the module docstring): takes a batch, makes its intent
    durable, sends it, hands the outcome to the recorder; writes the next intent early when that
    pays."""

    def __init__(
        self,
        pipeline: Pipeline,
        gateway: Gateway,
        journal: Journal,
        queue: asyncio.Queue[Batch | None],
        recorder: Recorder,
    ) -> None:
        self.pipeline = pipeline
        self.gateway = gateway
        self.journal = journal
        self.queue = queue
        self.recorder = recorder
        self.parts: list[Batch] = []  # this sender's batch, split for a rate learned meanwhile

    async def run(self) -> None:
        pipeline = self.pipeline
        gateway, journal, parts = self.gateway, self.journal, self.parts
        control = pipeline.control
        stopping = control.stopping
        tally = pipeline.tally
        summary = pipeline.summary
        record = self.recorder.record
        ahead: tuple[Batch, int] | None = None  # the next batch and its intent, written early
        ended = False  # looking ahead took the queue's end
        while True:
            if ahead is not None:
                (batch, seq), ahead = ahead, None
            elif ended:
                return
            else:
                next_batch = await self._next_batch()
                if next_batch is None:
                    return
                batch, seq = next_batch, 0
            if stopping.is_set():
                if seq:
                    journal.abandon(seq)  # its intent was written; its request never left
                continue
            seqs: list[int] = [seq] if seq else []
            left: list[bool] = []

            async def intend(
                batch: Batch = batch,
                seqs: list[int] = seqs,
                left: list[bool] = left,
            ) -> None:
                # Write-ahead: the request leaves only once its intent is on stable storage.
                left.append(True)
                if not seqs:
                    seqs.append(journal.intend(batch.rows, batch.msisdns))
                # Waiting in place (the loop held) pays when the loop has time; a busy loop
                # serves the other answers meanwhile instead.
                await journal.durable(seqs[0], in_place=pipeline.busy < LOOP_BUSY)

            tally.in_flight += 1
            started = time.monotonic()
            computed = time.thread_time() + journal.commit.held
            try:
                outcome = await gateway.send(batch, before_first_request=intend)
            except StorageError as exc:
                if left and seqs:
                    raise
                control.fail_storage(exc)  # the intent was refused: the batch never left
                continue
            finally:
                tally.in_flight -= 1
            summary.requests += outcome.attempts
            took = time.monotonic() - started
            if took > 0:
                # Waiting in place holds the loop too: it counts as busy.
                pipeline.busy = (time.thread_time() + journal.commit.held - computed) / took
            if outcome.status is BatchStatus.RESIZE:  # throttled only: nothing was processed
                if seqs:
                    journal.abandon(seqs[0])
                parts.append(batch)
                continue
            if not left:  # never left: nothing to record, the rows stay pending
                if seqs:
                    journal.abandon(seqs[0])
                if outcome.status is BatchStatus.FATAL:
                    control.stop(redact(outcome.reason), EXIT_FATAL)
                continue
            summary.batches += 1
            if not stopping.is_set() and pipeline.busy < LOOP_BUSY and journal.commit.quick():
                # Worth it when the next request would wait in place for its flush; a busy loop
                # (a gateway answering at once) has other answers to serve meanwhile instead.
                ahead, ended = self._look_ahead()
            if ahead is not None:
                # The senders answered at this same moment write their next intents too, then
                # one round of the group commit makes them all durable while each records its
                # outcome: the next request rarely waits for the disk at all.
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    # Everything stops: the answer in hand still reaches the file, and the next
                    # batch, whose request will not leave, is not left "maybe sent".
                    with contextlib.suppress(StorageError, OSError):
                        journal.abandon(ahead[1])
                    record(seqs[0], batch, outcome)
                    raise
                journal.flush_soon()
            try:
                record(seqs[0], batch, outcome)
            except StorageError:
                if ahead is not None:  # its request will not leave: not "maybe sent"
                    with contextlib.suppress(StorageError, OSError):
                        journal.abandon(ahead[1])
                raise

    def _look_ahead(self) -> tuple[tuple[Batch, int] | None, bool]:
        """The next batch with its intent written, when one is at hand and its request would
        leave at once (else ``None``, the batch kept in ``parts``); and whether the queue's end
        was taken."""
        parts, queue = self.parts, self.queue
        if parts:
            taken: Batch | None = parts.pop()
        elif queue.empty():
            return None, False
        else:
            taken = queue.get_nowait()
            if taken is None:
                return None, True
        assert taken is not None
        batch = self._split(taken)
        # Throttled, pacing or logging in, it waits for its turn; its intent waits too, so that a
        # batch waiting for its turn is not "maybe sent" after a crash.
        if not self.gateway.ready_for(batch):
            parts.append(batch)
            return None, False
        try:
            seq = self.journal.intend(batch.rows, batch.msisdns)
        except StorageError as exc:
            self.pipeline.control.fail_storage(exc)  # refused: nothing written, nothing leaves
            parts.append(batch)
            return None, False
        return (batch, seq), False

    async def _next_batch(self) -> Batch | None:
        """The next batch to send: the rest of a split one first, else the queue's (split, see
        :meth:`_split`)."""
        batch = self.parts.pop() if self.parts else await self.queue.get()
        return None if batch is None else self._split(batch)

    def _split(self, batch: Batch) -> Batch:
        """``batch``, or its first part when it is larger than the gateway's flow control now
        allows (a rate learned since it was cut, while it waited, or when the gateway throttled
        it); the other parts go to ``parts``, sent next."""
        size = self.gateway.batch_limit(len(batch.rows))
        if size >= len(batch.rows):
            return batch
        self.parts.extend(
            batch.slice(i, i + size) for i in reversed(range(0, len(batch.rows), size))
        )
        return self.parts.pop()


class Recorder:
    """The recording stage: each batch's outcome, every number's line, into the journal in one
    write; the counters; ``--record-opt-outs``. An outcome that says the gateway refuses the
    account (not the number) stops the run; the numbers it held back stay pending."""

    def __init__(
        self,
        journal: Journal,
        control: RunControl,
        tally: Tally,
        summary: CampaignSummary,
        record_opt_outs: Path | None,
    ) -> None:
        self.journal = journal
        self.control = control
        self.tally = tally
        self.summary = summary
        self.record_opt_outs = record_opt_outs

    def record(self, seq: int, batch: Batch, outcome: BatchOutcome) -> None:
        journal = self.journal
        tally = self.tally
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
            tally.counts["accepted"] += len(batch.rows)
            tally.sent += len(batch.rows)
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
            record_opt_outs = self.record_opt_outs
            opted_out: list[str] = []
            for row, msisdn, result in zip(batch.rows, batch.msisdns, outcome.results, strict=True):
                if result[0] is accepted:
                    append(f"{row},{msisdn},accepted,{result[1]}{tail}")
                    n_accepted += 1
                elif result[0] is Verdict.REJECTED:
                    klass = result.error_class or ErrorClass.RECIPIENT
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
                        tally.rejected_codes[f"{result.code:03d}"] += 1
                        n_rejected += 1
                        if result.code == OPTED_OUT and record_opt_outs:
                            opted_out.append(msisdn)
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
            tally.counts["accepted"] += n_accepted
            tally.counts["rejected"] += n_rejected
            tally.counts["unknown"] += n_unknown
            tally.sent += len(out)
            journal.complete_text(seq, "".join(out))
            if opted_out and record_opt_outs is not None:
                append_opt_outs(record_opt_outs, opted_out)
                self.summary.recorded_opt_outs += len(opted_out)
            if stop_for:  # numbers held back: nothing was sent to them
                self.control.stop(redact(stop_for), EXIT_FATAL)
            return
        if outcome.status is BatchStatus.UNKNOWN:
            reason = outcome.reason or "no answer"
            lines = [
                ResultLine(row, msisdn, "unknown", "", None, reason, attempts, now)
                for row, msisdn in zip(batch.rows, batch.msisdns, strict=True)
            ]
            tally.counts["unknown"] += len(lines)
            tally.sent += len(lines)
            journal.complete(seq, lines)
            log.warning("a batch of %d may or may not have been sent: %s", len(lines), reason)
            if outcome.error is not None:  # refused, yet maybe processed: stop, record unknown
                self.control.stop(redact(reason), EXIT_FATAL)
            return
        # NOT_SENT or FATAL: nothing was processed; the rows stay pending for a resume.
        journal.abandon(seq)
        if outcome.status is BatchStatus.FATAL:
            self.control.stop(redact(outcome.reason), EXIT_FATAL)
        else:
            self.control.stop(f"the gateway kept failing: {redact(outcome.reason)}", EXIT_FATAL)


def _fsync_checked(fds: tuple[tuple[int, str], ...]) -> None:
    """fsync off the event loop. EBADF only means the journal closed the file meanwhile (it
    fsyncs at close itself); any other error is a storage failure."""
    for fd, path in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise StorageError(path, exc, "fsync") from None
