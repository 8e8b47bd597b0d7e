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

Around that: a run holds the campaign's lock (:mod:`bulksend.lock`) from before its first write to
its end; it hashes the input and, when the journal was made from another input, matches the rows
already handled to the file as it is now before sending (:meth:`Campaign._follow_changed_input`);
and a storage failure in any stage (:meth:`Campaign.fail_storage`) stops the pipeline at once with
exit code 4 instead of leaving the other stages waiting on a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiofiles.os
import aiohttp
from prometheus_client import Histogram

from bulksend import aio, gsm
from bulksend.account import Account, OneAccount
from bulksend.client import BatchOutcome, BatchStatus, ClientSettings, Gateway, RetryPolicy
from bulksend.config import CampaignSettings
from bulksend.errors import (
    ErrorClass,
    GatewayError,
    InputError,
    ProtocolError,
    StorageError,
    redact,
)
from bulksend.journal import (
    FILE_MODE,
    InputIdentity,
    Journal,
    ResultLine,
    ResumeState,
    RowBitmap,
    campaign_fingerprint,
    format_result,
    input_identity,
    utc_now,
)
from bulksend.lock import FileLock
from bulksend.metrics import MetricsServer, campaign_metrics, serve_metrics
from bulksend.numbers import NumberPolicy
from bulksend.optout import OptOuts, append_opt_outs, load_opt_outs
from bulksend.reader import InlineReader, ProcessReader, make_reader
from bulksend.receipts import collect_receipts, receipts_path_for
from bulksend.rowkey import key_rows
from bulksend.source import RecipientSource, Reject
from bulksend.template import Template
from bulksend.wire import Batch, Verdict, WireProtocol
from bulksend.wire.legacy import Auth, MessageOptions, SendmsgTemplate, SendmsgWire

__all__ = [
    "EXIT_FATAL",
    "EXIT_INPUT",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_STORAGE",
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
EXIT_LOCKED = 3
EXIT_STORAGE = 4

OPTED_OUT = 122
"""The gateway's "Destination mobile opted out" (``--record-opt-outs`` keeps these numbers)."""

STORAGE_DRAIN_SECONDS = 5.0
"""After a storage failure that still lets outcomes be recorded, in-flight batches get this long."""
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


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
    input_changes: list[str] = field(default_factory=list)
    moved_rows: int = 0  # results re-keyed to the row their number is on in the changed input
    removed_rows: int = 0  # results of numbers no longer in the input (see removed_path)
    removed_path: str = ""
    recovered_unknown: int = 0
    reconciled: int = 0
    resumed: bool = False
    opted_out: int = 0  # rows refused because an --exclude list holds their number
    opt_out_lists: int = 0  # numbers in the --exclude lists
    opt_out_load_seconds: float = 0.0
    recorded_opt_outs: int = 0  # ERR 122 numbers appended to --record-opt-outs
    options: dict[str, object] = field(default_factory=dict)
    balance_before: float | None = None
    balance_after: float | None = None
    credits_needed: int | None = None  # counted when the balance might not cover the campaign
    credit_limit: int | None = None  # --allow-partial: messages the credit covers
    batches: int = 0
    requests: int = 0
    throttled: int = 0
    credits_estimate: int = 0
    personalised: bool = False  # a #field# template: each row its own text (parts per row below)
    parts_min: int = 0  # personalised: the fewest and most parts of one row's message
    parts_max: int = 0
    protocol: str = ""  # the wire protocol that sent it: sendmsg, batch, one
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
        udh = data = None
        if settings.data is not None:
            udh_octets = gsm.parse_hex(settings.udh or "", "--udh")
            data_octets = gsm.parse_hex(settings.data, "--data")
            self.shape = gsm.analyse_binary(udh_octets, data_octets)
            udh, data = udh_octets.hex().upper() or None, data_octets.hex().upper()
        else:
            self.shape = gsm.analyse(settings.text, settings.unicode)
        parsed = Template.parse(settings.text) if data is None else None
        self.message_template: Template | None = (
            parsed if parsed is not None and parsed.personalised else None
        )
        """The ``#field#`` template of a personalised campaign (each row its own text), else None."""
        if self.message_template is None and self.shape.parts > settings.max_parts:
            raise InputError(
                f"the text needs {self.shape.parts} parts ({self.shape.units} "
                f"{'septets' if self.shape.encoding is gsm.Encoding.GSM7 else 'UCS-2 units'}), "
                f"more than --max-parts {settings.max_parts}"
            )
        self.options = MessageOptions(
            text="" if data is not None else gsm.wire_text(settings.text, self.shape.encoding),
            sender=settings.sender,
            mo=settings.mo,
            callback=settings.callback,
            unicode=self.shape.encoding is gsm.Encoding.UCS2,
            concat=self.shape.parts,
            max_credits=settings.max_credits,
            deliv_time=settings.deliver_in,
            validity=settings.validity,
            msg_type="SMS_FLASH" if settings.flash else None,
            udh=udh,
            data=data,
        )
        self.template = SendmsgTemplate(self.options)
        self.summary = CampaignSummary(
            input_path=str(settings.input_path),
            results_path=str(settings.results_path),
            rejects_path=str(settings.rejects_path),
            dry_run=settings.dry_run,
            encoding=self.shape.encoding.value if self.message_template is None else "per row",
            parts=self.shape.parts if self.message_template is None else 0,
            personalised=self.message_template is not None,
            options=self.message_options(),
        )
        self.source = RecipientSource(
            settings.input_path,
            column=settings.column,
            policy=NumberPolicy(default_country=settings.default_country, strict=settings.strict),
            dedupe=settings.dedupe,
            **self.rendering(),
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
        self._journal: Journal | None = None
        self.opt_outs: OptOuts | None = None
        self._send_limit: int | None = None  # messages the credit covers (--allow-partial)
        self._preflight_task: asyncio.Task[None] | None = None
        self._abort = asyncio.Event()  # stop everything now: in-flight requests are cancelled
        self._storage_error: StorageError | None = None
        self._unexpected: BaseException | None = None
        self.gateway: Gateway | None = None
        self._wire: WireProtocol | None = None
        self.metrics: MetricsServer | None = None
        self._request_seconds: Histogram | None = None

    # -- public ------------------------------------------------------------------------------------

    def rendering(self) -> dict[str, Any]:
        """The reader's arguments that render a personalised campaign's rows (none otherwise)."""
        if self.message_template is None:
            return {}
        s = self.settings
        return {"template": self.message_template, "max_parts": s.max_parts, "unicode": s.unicode}

    def message_options(self) -> dict[str, object]:
        """The message options that were set (flash, binary, scheduling, validity, credits)."""
        o = self.options
        chosen: dict[str, object] = {
            "flash": o.msg_type == "SMS_FLASH",
            "udh": o.udh,
            "data": o.data,
            "deliver_in": o.deliv_time,
            "validity": o.validity,
            "max_credits": o.max_credits,
        }
        return {k: v for k, v in chosen.items() if v not in (None, False)}

    def fingerprint(self) -> str:
        s = self.settings
        # Options join the identity only when set, so campaigns without them keep the
        # fingerprint earlier versions wrote (their journals still resume).
        return campaign_fingerprint(
            text=s.text,
            sender=s.sender,
            mo=s.mo,
            callback=s.callback,
            encoding=self.shape.encoding.value,
            **self.message_options(),
        )

    def stop(self, reason: str, exit_code: int) -> None:
        """Stop reading and sending new batches; in-flight batches finish."""
        if not self._stopping.is_set():
            self._stop_reason = reason
            self._exit_code = exit_code
            self._stopping.set()

    def fail_storage(self, exc: StorageError) -> None:
        """A file of the campaign cannot be written: no request may leave from now on (its
        outcome could not be recorded). Batches in flight are abandoned at once: their intents
        stay open, so the next run records them ``unknown``."""
        if self._storage_error is not None:
            return
        self._storage_error = exc
        self._stop_reason = str(exc)
        self._exit_code = EXIT_STORAGE
        self._stopping.set()
        journal = self._journal
        if journal is None:
            self._abort.set()
            return
        journal.refuse_intents = exc
        if exc.path in (str(journal.results_path), str(journal.intent_path)):
            journal.failed = journal.failed or exc
            self._abort.set()
        else:
            # Outcomes can still be recorded (the rejects or receipts file failed): let the
            # batches in flight finish and be recorded, within a bound.
            asyncio.get_running_loop().call_later(STORAGE_DRAIN_SECONDS, self._abort.set)

    async def run(self) -> CampaignSummary:
        self._started = time.monotonic()
        try:
            self._bytes_total = os.stat(self.settings.input_path).st_size
        except OSError:
            self._bytes_total = 0
        s = self.settings
        if s.exclude:
            loading = time.monotonic()
            self.opt_outs = await asyncio.to_thread(load_opt_outs, s.exclude, self.source.policy)
            self.summary.opt_out_lists = len(self.opt_outs)
            self.summary.opt_out_load_seconds = round(time.monotonic() - loading, 3)
            for path, count in self.opt_outs.skipped.items():
                log.warning(
                    "opt-out list %s: %d rows are not numbers and exclude nothing", path, count
                )
            self.source = RecipientSource(
                s.input_path,
                column=s.column,
                policy=self.source.policy,
                dedupe=s.dedupe,
                opt_outs=self.opt_outs,
                **self.rendering(),
            )
            self.reader = InlineReader(self.source)
        if not s.dry_run or self.protocol_name() == "batch":
            # The protocol's own checks (a field the batch interface cannot carry, the One API
            # key's form) come before anything is written.
            self._wire = self._checked_wire()
        if s.dry_run:
            await self._dry_run()
            return self._finish()
        parent = Path(s.results_path).parent
        if not parent.is_dir():
            raise InputError(f"the output directory {parent} does not exist")
        # One runner per campaign, before anything is written or bound (rejects, journal,
        # receipts, the metrics port).
        lock = FileLock(s.results_path, "campaign").acquire()
        try:
            registry, self._request_seconds = (
                campaign_metrics(self) if s.metrics_listen else (None, None)
            )
            async with (
                serve_metrics(s.metrics_listen, registry) as self.metrics,
                collect_receipts(
                    s.receipts_listen, s.results_path, on_storage_error=self.fail_storage
                ),
            ):
                await self._send_campaign()
                summary = self._finish()  # before the receiver lingers for late receipts
                if s.check_balance and summary.balance_before is not None:
                    # Reporting, after the campaign's clock stopped.
                    with contextlib.suppress(GatewayError, ProtocolError):
                        async with self._account() as account:
                            summary.balance_after = await account.balance()
        finally:
            lock.release()
        if self._storage_error is not None and summary.exit_code != EXIT_STORAGE:
            # The receipts file failed while the receiver lingered after the campaign.
            summary.exit_code = EXIT_STORAGE
            summary.stopped = str(self._storage_error)
        return summary

    # -- dry run -----------------------------------------------------------------------------------

    async def _dry_run(self) -> None:
        async for _block in self.reader.blocks():
            pass
        self._fill_source_stats()
        self.summary.protocol = self.protocol_name()
        size = self.per_request()
        self.summary.batches = -(-self.summary.valid // size) if self.summary.valid else 0
        self.summary.pending = self.summary.valid
        s = self.settings
        if (s.api_key if s.api == "one" else s.password) and s.check_balance:
            # With credentials, the dry run also says whether the credit would last.
            try:
                async with self._account() as account:
                    self.summary.balance_before = await account.balance()
            except (GatewayError, ProtocolError) as exc:
                log.warning("could not read the balance: %s", redact(str(exc)))

    # -- the real thing ----------------------------------------------------------------------------

    async def _send_campaign(self) -> None:
        s = self.settings
        reading: dict[str, object] = {
            "column": s.column,
            "default_country": s.default_country,
            "strict": s.strict,
            "dedupe": s.dedupe,
        }
        if self.message_template is not None:
            # Which rows a personalised campaign sends also depends on these (a row whose
            # rendering is refused is a reject); `bulksend status` reads them back.
            reading.update(template=s.text, max_parts=s.max_parts, unicode=s.unicode)
        identity = await asyncio.to_thread(input_identity, s.input_path, reading)
        journal = Journal(s.results_path, fsync_interval=s.fsync_interval)
        self._journal = journal
        try:
            state = journal.open(
                self.fingerprint(),
                describe={
                    "input": identity.path,
                    "encoding": self.shape.encoding.value,
                    "parts": self.shape.parts,
                    "sender": s.sender or "",
                    "options": self.message_options(),
                },
                restart=s.restart,
                resend_unknown=s.resend_unknown,
                receipts_path=receipts_path_for(s.results_path),
                input_identity=identity,
            )
            if state.recovered_unknown:
                log.warning(
                    "%d rows were in flight when a previous run stopped; recorded as unknown "
                    "(use --resend-unknown on a later run to send them again)",
                    state.recovered_unknown,
                )
            if state.input_changes:
                await self._follow_changed_input(journal, identity, state.input_changes)
            await self._send_pending(journal, state)
        finally:
            if _changed_since(identity):
                # Edited while this run read it: the rows sent may come from either version, so
                # the next run must check them whatever the digest says then.
                journal.forget_input("the input file changed while a run was reading it")
            journal.close()

    async def _follow_changed_input(
        self, journal: Journal, identity: InputIdentity, changes: list[str]
    ) -> None:
        """The input is not what the journal was made from: before anything is sent, find the
        rows already handled in the file as it is now (see the README, "Editing the input")."""
        s = self.settings
        self.summary.input_changes = list(changes)
        log.warning(
            "the input changed since the last run of this campaign: %s; checking it against "
            "the rows already handled before sending anything",
            "; ".join(changes),
        )
        reader = make_reader(
            s.input_path,
            column=s.column,
            policy=self.source.policy,
            dedupe=s.dedupe,
            mode=s.reader,
            **self.rendering(),
        )
        try:
            if s.dedupe:
                remap = journal.number_remap()
                async for block in reader.blocks():
                    remap.see(block.rows, block.msisdns)
                result = journal.apply_remap(remap, identity)
                self.summary.moved_rows = result.moved
                self.summary.removed_rows = result.removed
                if result.removed:
                    self.summary.removed_path = result.removed_path
                log.warning(
                    "resuming by number: %d numbers already handled are skipped, not sent again "
                    "(%d of them stand on other rows now; their results were re-keyed to those "
                    "rows); %d handled numbers are no longer in the file (their results were "
                    "moved to %s); every other number is sent",
                    result.kept,
                    result.moved,
                    result.removed,
                    result.removed_path,
                )
                return
            check = journal.row_check()
            last_row = 0
            async for block in reader.blocks():
                check.see(block.rows, block.msisdns, ((r.row, r.reason) for r in block.rejects))
                last_row = block.last_row
            difference = check.finish(last_row)
        finally:
            reader.close()
        if difference is not None:
            row, then, now = difference
            raise InputError(
                f"this row held {then} when the campaign handled it and now holds {now} "
                f"({'; '.join(changes)}). Without dedupe a changed file cannot be matched by "
                "number, so nothing was sent. Choose: put back the file the campaign started "
                "with; or rerun without --no-dedupe to resume by number (numbers already handled "
                "are skipped, new ones are sent); or --restart to start a new campaign (which "
                "texts every row again)",
                path=str(s.input_path),
                row=row,
            )
        journal.accept_input(identity)
        log.warning(
            "every row this campaign already handled still holds the same number "
            "(%d rows checked): resuming by row",
            check.handled,
        )

    async def _send_pending(self, journal: Journal, state: ResumeState) -> None:
        s = self.settings
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
        client_settings = self._client_settings()
        rejects = RejectsFile(Path(s.rejects_path))
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(2, s.concurrency * 2))
        gateway: Gateway | None = None
        try:
            wire = self._wire or self._checked_wire()
            key_rows(wire, journal.header)  # One API: clientMessageId = the row's key
            self.summary.protocol = wire.name
            async with Gateway(client_settings, wire) as gateway:
                self.gateway = gateway
                if self._request_seconds is not None:
                    gateway.on_request = self._request_seconds.observe
                await self._login(gateway)
                if s.check_balance and not self._stopping.is_set():
                    # The balance is asked while the reader starts; the producer waits for the
                    # answer before the first batch leaves (so it costs no round trip of its own).
                    self._preflight_task = asyncio.create_task(
                        self._preflight(self._account(gateway.http), state.done),
                        name="preflight",
                    )
                with self._signals():
                    self.reader = make_reader(
                        s.input_path,
                        column=s.column,
                        policy=self.source.policy,
                        dedupe=s.dedupe,
                        mode=s.reader,
                        opt_outs=self.opt_outs,
                        # Only the batch interface sends field values; the One API sends texts.
                        keep_fields=self.protocol_name() == "batch",
                        **self.rendering(),
                    )
                    await self._pipeline(gateway, journal, queue, rejects, state.done)
                await gateway.finish()
            try:
                rejects.finish()  # after another file failed too: what the disk still takes
            except StorageError as exc:
                self.fail_storage(exc)
        finally:
            if self._preflight_task is not None:
                if not self._preflight_task.done():
                    self._preflight_task.cancel()  # the file held nothing to send
                await asyncio.gather(self._preflight_task, return_exceptions=True)
            rejects.close()
            self.reader.close()
            if gateway is not None:
                self.summary.throttled = gateway.flow.throttled

    def protocol_name(self) -> str:
        """``one``, ``batch`` (the legacy batch interface) or ``sendmsg``: see :meth:`make_wire`."""
        if self.settings.api == "one":
            return "one"
        return "batch" if self.message_template is not None else "sendmsg"

    def per_request(self) -> int:
        """Recipients one request carries (the batch interface: one ``senditem`` per row)."""
        return 1 if self.protocol_name() == "batch" else self.settings.effective_batch_size

    def _checked_wire(self) -> WireProtocol:
        try:
            return self.make_wire()
        except ProtocolError as exc:
            where = {
                "batch": "the legacy API's batch interface",
                "one": "the One API",
                "sendmsg": "the legacy API",
            }[self.protocol_name()]
            raise InputError(f"the message cannot be sent through {where}: {exc}") from None

    def make_wire(self) -> WireProtocol:
        """The wire protocol this campaign speaks (see :mod:`bulksend.wire`): the One API with
        ``--api one`` (each message its own content); else the legacy API, through its batch
        interface for a personalised text (``startbatch`` once, ``senditem`` per row) and
        ``sendmsg`` for one text."""
        s = self.settings
        auth = Auth(api_id=s.api_id, user=s.user, password=s.password)
        if s.api == "legacy" and self.message_template is not None:
            from bulksend.wire.batch import BatchInterfaceWire

            return BatchInterfaceWire(
                s.text,
                self.message_template.fields,
                auth,
                options=self.options,  # its text, unicode and concat are the batch's own
                unicode=s.unicode,
                max_parts=s.max_parts,
                use_session=s.auth == "session",
            )
        if s.api == "one":
            from bulksend.wire.one import ApiKey, OneApi, OneOptions, OneWire

            o = self.options
            options = OneOptions(
                sender=s.sender,
                validity_period=s.validity,
                binary=o.data is not None,
                udh=o.udh,
            )
            return OneWire(OneApi(ApiKey(s.api_key), options), o.data or s.text)
        return SendmsgWire(
            self.template,
            auth,
            use_session=s.auth == "session",
            method=s.method,
        )

    def _account(self, session: aiohttp.ClientSession | None = None) -> Account | OneAccount:
        """The balance calls of this campaign's API (``session``: the gateway's pool to share)."""
        s = self.settings
        if s.api == "one":
            from bulksend.wire.one import ApiKey

            return OneAccount(self._client_settings(), ApiKey(s.api_key), session)
        return Account(self._client_settings(), session)

    def _client_settings(self) -> ClientSettings:
        s = self.settings
        return ClientSettings(
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

    async def _preflight(self, account: Account | OneAccount, done: RowBitmap) -> None:
        """Before the first message: does the credit cover the rows still to send?

        The cheap bound first (every line of the file, at this campaign's parts, or at
        ``--max-parts`` when each row has its own text); only when the balance is below it are the
        rows counted exactly (valid, not excluded, not handled; a personalised row at its own
        parts)."""
        s = self.settings
        parts = self.shape.parts if self.message_template is None else s.max_parts
        try:
            balance = await account.balance()
        except GatewayError as exc:
            if exc.fatal and exc.code:  # the gateway's own ERR (authentication, frozen, ...)
                self.stop(f"cannot read the balance: {exc}", EXIT_FATAL)
            else:
                log.warning("could not read the balance (%s); sending without the pre-flight", exc)
            return
        except ProtocolError as exc:
            log.warning("could not read the balance (%s); sending without the pre-flight", exc)
            return
        self.summary.balance_before = balance
        upper = max(0, await asyncio.to_thread(_count_lines, s.input_path) - len(done))
        if balance >= upper * parts:
            return
        rows, need, covered = await self._count_unsent(done, balance)
        self.summary.credits_needed = need
        if balance >= need:
            return
        per_row = f"{parts} part(s)" if self.message_template is None else "their parts (per row)"
        if not s.allow_partial:
            self.stop(
                f"the credit ({balance:,.2f}) does not cover this campaign: {rows:,} messages x "
                f"{per_row} = {need:,} credits; nothing was sent. Top up, or pass "
                f"--allow-partial to send the first {covered:,} (the rest stays pending)",
                EXIT_FATAL,
            )
            return
        self._send_limit = covered
        self.summary.credit_limit = covered
        log.warning(
            "the credit (%s) covers %d of %d messages: sending those (--allow-partial); the "
            "rest stays pending for a resume after a top-up",
            f"{balance:,.2f}",
            covered,
            rows,
        )

    async def _count_unsent(self, done: RowBitmap, balance: float) -> tuple[int, int, int]:
        """``(rows, credits, covered)`` still to send: the rows, the credits they need, and how
        many of them (in file order) ``balance`` covers."""
        s = self.settings
        reader = make_reader(
            s.input_path,
            column=s.column,
            policy=self.source.policy,
            dedupe=s.dedupe,
            mode=s.reader,
            opt_outs=self.opt_outs,
            **self.rendering(),
        )
        count = credits = covered = 0
        unicode = s.unicode
        try:
            async for block in reader.blocks():
                if block.contents is None:
                    count += (
                        len(block.rows)
                        if not len(done)
                        else sum(1 for row in block.rows if row not in done)
                    )
                    continue
                for row, text in zip(block.rows, block.contents, strict=True):
                    if row in done:
                        continue
                    count += 1
                    credits += gsm.analyse(text, unicode).parts
                    if credits <= balance:
                        covered += 1
        finally:
            reader.close()
        if self.message_template is None:
            credits = count * self.shape.parts
            covered = min(count, int(balance // self.shape.parts))
        return count, credits, covered

    async def _login(self, gateway: Gateway) -> None:
        if self.settings.auth != "session":
            return
        try:
            await gateway.login()
        except GatewayError as exc:
            if exc.error_class is ErrorClass.TRANSIENT:
                # Not refused, not reached: the first batch logs in again, with its retries.
                log.warning("cannot log in yet (%s); retrying with the first batch", exc)
                return
            self.stop(f"cannot log in: {exc}", EXIT_FATAL)

    async def _pipeline(
        self,
        gateway: Gateway,
        journal: Journal,
        queue: asyncio.Queue[Batch | None],
        rejects: RejectsFile,
        done: Any,
    ) -> None:
        s = self.settings
        producer = asyncio.create_task(
            self._guard(self._produce(queue, rejects, done, gateway.batch_limit)),
            name="producer",
        )
        senders = [
            asyncio.create_task(
                self._guard(self._sender(gateway, journal, queue)), name=f"sender-{i}"
            )
            for i in range(s.concurrency)
        ]
        ticker = asyncio.create_task(self._guard(self._tick(journal)), name="ticker")

        async def drain() -> None:
            await producer
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders)

        work = asyncio.create_task(drain(), name="drain")
        abort = asyncio.create_task(self._abort.wait(), name="abort")
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
        if self._unexpected is not None:
            raise self._unexpected

    async def _guard(self, stage: Coroutine[Any, Any, None]) -> None:
        """Run one stage; a storage failure or an unexpected error aborts the whole pipeline
        instead of leaving the other stages waiting on a queue nobody serves."""
        try:
            await stage
        except StorageError as exc:
            self.fail_storage(exc)
        except Exception as exc:
            if self._unexpected is None:
                self._unexpected = exc
            self._stopping.set()
            self._abort.set()

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
        contents: list[str] | None = [] if self.message_template is not None else None
        fields: list[tuple[str, ...]] | None = [] if self.protocol_name() == "batch" else None
        check_done = len(done) > 0
        limit = self._send_limit
        preflight = self._preflight_task

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

        async for block in self.reader.blocks():
            if preflight is not None:
                await preflight  # the credit pre-flight decides before the first batch
                preflight = None
                limit = self._send_limit
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
            if check_done:
                keep = [i for i, row in enumerate(block.rows) if row not in done]
                self._skipped += len(block.rows) - len(keep)
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
                while rows and not self._stopping.is_set():
                    await queue.put(cut(size))
                    size = batch_limit(full)
                self.summary.input_complete = False
                if not self._stopping.is_set():
                    self._stop_reason = (
                        f"the credit covered {self._send_limit:,} messages (--allow-partial); "
                        "the rest stays pending"
                    )
                    self._exit_code = EXIT_FATAL
                return
            while len(rows) >= size:
                if self._stopping.is_set():
                    self.summary.input_complete = False
                    return
                await queue.put(cut(size))
                if limit is not None:
                    limit -= size
                size = batch_limit(full)
            if self._stopping.is_set():
                self.summary.input_complete = False
                return
        if rows and not self._stopping.is_set():
            await queue.put(cut(len(rows)))

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
                outcome = await gateway.send(batch, before_first_request=intend)
            except StorageError as exc:
                if seqs:
                    raise
                self.fail_storage(exc)  # the intent was refused: the batch never left
                continue
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
                batch.slice(i, i + size) for i in reversed(range(0, len(batch.rows), size))
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
            record_opt_outs = self.settings.record_opt_outs
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
                        self._rejected_codes[f"{result.code:03d}"] += 1
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
            self._counts["accepted"] += n_accepted
            self._counts["rejected"] += n_rejected
            self._counts["unknown"] += n_unknown
            self._sent += len(out)
            journal.complete_text(seq, "".join(out))
            if opted_out and record_opt_outs is not None:
                append_opt_outs(record_opt_outs, opted_out)
                self.summary.recorded_opt_outs += len(opted_out)
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
            if outcome.error is not None:  # refused, yet maybe processed: stop, record unknown
                self.stop(redact(reason), EXIT_FATAL)
            return
        # NOT_SENT or FATAL: nothing was processed; the rows stay pending for a resume.
        journal.abandon(seq)
        if outcome.status is BatchStatus.FATAL:
            self.stop(redact(outcome.reason), EXIT_FATAL)
        else:
            self.stop(f"the gateway kept failing: {redact(outcome.reason)}", EXIT_FATAL)

    async def _tick(self, journal: Journal) -> None:
        fsync = aiofiles.os.wrap(_fsync_checked)
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
        self.summary.opted_out = sum(
            count for reason, count in stats.rejected.items() if reason.startswith("opted out")
        )
        if self.message_template is None:
            self.summary.credits_estimate = stats.valid * self.shape.parts
        else:
            self.summary.credits_estimate = stats.parts.credits
            self.summary.parts_min = stats.parts.min_parts
            self.summary.parts_max = stats.parts.max_parts

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


def _count_lines(path: Path) -> int:
    """Lines in the file (LF, or CR for old Mac files): an upper bound of its rows."""
    lf = cr = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lf += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            last = chunk[-1:]
    return max(lf, cr) + (1 if last not in (b"", b"\n", b"\r") else 0)


def _changed_since(identity: InputIdentity) -> bool:
    try:
        st = os.stat(identity.path)
    except OSError:
        return True
    return (st.st_size, st.st_mtime_ns) != (identity.size, identity.mtime_ns)


def _fsync_checked(fds: tuple[tuple[int, str], ...]) -> None:
    """fsync off the event loop. EBADF only means the journal closed the file meanwhile (it
    fsyncs at close itself); any other error is a storage failure."""
    for fd, path in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise StorageError(path, exc, "fsync") from None


class RejectsFile:
    """``FILE.rejects.csv``, rewritten on every run from the input as it is now: ``row,raw,reason``
    for every row that is not sent. Buffered in memory up to 64 KiB, written with ``os.write``;
    every failure is a :class:`StorageError` naming the file."""

    LIMIT = 64 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        except OSError as exc:
            raise StorageError(str(path), exc, "create") from None
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self._csv.writerow(["row", "raw", "reason"])

    def write(self, rejects: Iterable[Reject]) -> None:
        self._csv.writerows((r.row, r.raw, r.reason) for r in rejects)
        if self._buffer.tell() >= self.LIMIT:
            self._flush()

    def _flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8")
        self._buffer.seek(0)
        self._buffer.truncate()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise StorageError(str(self.path), exc) from None

    def finish(self) -> None:
        """Write what is buffered and fsync."""
        self._flush()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(str(self.path), exc, "fsync") from None

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


async def run_campaign_async(
    settings: CampaignSettings,
    *,
    on_progress: Callable[[Snapshot], None] | None = None,
    progress_interval: float = 0.5,
) -> CampaignSummary:
    """Run a campaign on the current event loop and return its summary.

    Raises :class:`~bulksend.errors.InputError` / :class:`~bulksend.errors.ConfigError` for inputs
    that cannot be used, :class:`~bulksend.errors.CampaignLocked` when another run holds the
    campaign (nothing sent or written), and :class:`~bulksend.errors.StorageError` when an output
    file cannot be created before the first request. Gateway trouble, and a storage failure once
    sending has begun, are reported in the summary (``exit_code`` 2 or 4, ``stopped``).
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
