"""``bulksend track RESULTS``: delivery statuses without a public URL, by asking the gateway.

For every ``accepted`` row of the results file whose message has no final status yet in the
campaign's receipts file (:func:`~bulksend.receipts.receipts_path_for`), it asks the gateway once:
legacy ``querymsg`` by apiMsgId, or the One API's ``GET /v1/message/<id>``
(:mod:`bulksend.status_calls`; with ``charges``, legacy ``getmsgcharge``, whose answer also
carries the charge). What it promises:

* **Same file, same guarantees as a callback.** Each answer becomes one line of the receipts
  file through :class:`~bulksend.receipts.ReceiptsFile`, the receiver's own writer: the same
  format (``received_at,api_msg_id,cli_msg_id,to,status,status_text,charge,timestamp``), the same
  idempotency (``(apiMsgId, status)`` is written once, however often it is answered: asking a
  message still at ``003`` again adds nothing), the same durability (a line is out in a
  ``write(2)`` before the answer counts; fsynced every ``fsync_interval`` seconds and at the end,
  so a machine crash loses at most the last half second of answers, which the next run asks
  again). ``timestamp`` is the gateway's time of the status when it gives one (One API), else the
  time of the answer (``querymsg`` gives none). ``bulksend report`` reads these lines as it reads
  callbacks.
* **One writer.** It holds the receipts file's lock for the whole run. A receiver on the same file
  (``bulksend receipts``, or ``send --receipts-listen``) holds that lock too: then ``track``
  refuses at once, naming the receiver's process, with exit status 3 and nothing asked. (It does
  not hand its findings to the receiver: a running receiver is already collecting callbacks, so
  the useful move is to let it, or to stop it and track instead.)
* **Resumable, and only what is needed.** Messages with a final status on file (``004``, ``005``,
  ``006``, ``007``, ``009``, ``010``, ``012``, ``014``) are never asked about, nor are messages the
  gateway said it does not know (``001``: an id it no longer keeps, or never issued: asking again
  would cost a call for the same answer). A rerun on a finished campaign makes no query at all.
  Rows sent more than ``max_age`` ago (their ``sent_at``) are not asked about either: the gateway
  stops tracking a message after its validity, and they are counted as ``too old``.
* **Paced.** One query per message; at most ``rate`` queries a second (10 by default: an account's
  calls share its limit with its campaigns; ``--rate`` raises it), ``concurrency`` in flight, by
  the campaign's :class:`~bulksend.flow.FlowControl`: a 429 pauses every query for its
  ``Retry-After`` and is retried without counting as a failure; a query that got no answer (5xx,
  connection trouble, ``ERR: 901``) is retried with exponential backoff up to ``max_attempts``
  times, then left for the next run (counted ``unanswered``, exit status 2). When
  ``max(10, 2 x concurrency)`` messages in a row get no answer, the gateway is taken to be down
  and the run stops (exit status 2) instead of spending the retries on every message left. Bad credentials or a
  frozen account stop the run (:class:`~bulksend.errors.GatewayError`, exit status 2).
* **Beside a campaign.** It takes only the receipts file's lock, not the campaign's: it may run
  while ``send`` still sends (without a receiver) and asks about the rows recorded so far (a line
  being written is not read); a rerun afterwards asks about the rest.
* **Waiting.** With ``until_final`` it asks in rounds until every message is final, unknown to the
  gateway or older than ``max_age``; between rounds it waits ``poll_interval`` seconds, doubling
  up to :data:`MAX_POLL_INTERVAL`.

Memory: the ids settled on file (one int per message, ~70 bytes); the results file is streamed
(twice a round: once to count for the progress display, once to ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import aiohttp

from bulksend.config import AccountSettings
from bulksend.errors import (
    CampaignLocked,
    ConfigError,
    GatewayError,
    StorageError,
    redact,
)
from bulksend.flow import FlowControl
from bulksend.journal import RESULTS_HEADER
from bulksend.lock import FileLock, format_holder
from bulksend.receipts import (
    FINAL_STATUSES,
    Receipt,
    ReceiptsFile,
    message_key,
    receipt_key,
    receipts_path_for,
)
from bulksend.status_calls import (
    UNKNOWN_STATUS,
    LegacyStatusCalls,
    NotAnswered,
    OneStatusCalls,
    StatusReply,
    Throttled,
)
from bulksend.wire.legacy import Auth
from bulksend.wire.one import ApiKey

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_RATE",
    "TrackOptions",
    "TrackSnapshot",
    "TrackSummary",
    "track_campaign",
]

log = logging.getLogger("bulksend.track")

DEFAULT_RATE = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_AGE = 72 * 3600.0
DEFAULT_POLL_INTERVAL = 30.0
MAX_POLL_INTERVAL = 900.0
EXIT_UNANSWERED = 2
_SETTLED = FINAL_STATUSES | {UNKNOWN_STATUS}


@dataclass(frozen=True, slots=True)
class TrackOptions:
    rate: float = DEFAULT_RATE
    """Queries a second at most."""
    concurrency: int = DEFAULT_CONCURRENCY
    until_final: bool = False
    max_age: float = DEFAULT_MAX_AGE
    """Seconds after ``sent_at`` a message is no longer asked about."""
    poll_interval: float = DEFAULT_POLL_INTERVAL
    """Seconds between rounds with ``until_final`` (doubling up to :data:`MAX_POLL_INTERVAL`)."""
    max_attempts: int = 5
    """Tries of one query that gets no answer (429s do not count)."""
    initial_backoff: float = 0.5
    fsync_interval: float = 0.5
    charges: bool = False
    """Legacy API: ask ``getmsgcharge`` instead of ``querymsg`` (one call as well; the answer
    also gives the charge, so the report can sum credits). The One API's answer has it anyway."""
    connect_timeout: float = 10.0
    read_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigError(f"--rate must be above 0, not {self.rate!r}")
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if not self.max_age > 0:
            raise ConfigError("--max-age must be above 0")


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """The run so far, for a progress display."""

    elapsed: float
    round: int
    to_ask: int
    """Messages this round asks about."""
    asked: int
    """Of those, answered or given up."""
    delivered: int
    failed: int
    gone: int
    not_final: int
    unanswered: int
    throttled: int
    rate: float
    """Queries answered per second (this round, or the last one while waiting)."""
    waiting: float = 0.0
    """Seconds until the next round (``until_final``), else 0."""
    done: bool = False

    @property
    def fraction_done(self) -> float | None:
        return self.asked / self.to_ask if self.to_ask else None


@dataclass
class TrackSummary:
    results_path: str
    receipts_path: str
    api: str = "legacy"
    accepted: int = 0
    """Accepted rows in the results file."""
    settled_before: int = 0
    """Messages with a final status (or unknown to the gateway) on file before this run."""
    too_old: int = 0
    """Not final and sent more than ``max_age`` ago: not asked about."""
    queries: int = 0
    """Status requests sent (429s and retries included): the cost of this run."""
    answered: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    """Answers by status (every round)."""
    delivered: int = 0
    failed: int = 0
    gone: int = 0
    """Ids the gateway does not know (expired or never issued): recorded as ``001``."""
    still_pending: int = 0
    """Asked about and not final yet at the end."""
    unanswered: int = 0
    throttled: int = 0
    receipts_written: int = 0
    rounds: int = 0
    elapsed: float = 0.0
    queries_per_second: float = 0.0
    """Answered queries per second while querying (waits between rounds excluded)."""
    stopped: str = ""
    exit_code: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class _Message(NamedTuple):
    to: str
    api_msg_id: str


@dataclass(slots=True)
class _Plan:
    accepted: int = 0
    settled: int = 0
    too_old: int = 0
    to_ask: int = 0


def _settled_ids(receipts: Path) -> set[int | str]:
    """Messages with a final status, or unknown to the gateway, in the receipts file."""
    settled: set[int | str] = set()
    try:
        handle = receipts.open(encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        return settled
    with handle:
        handle.readline()  # the header (ReceiptsFile.open has checked it)
        for line in handle:
            fields = line.split(",")
            if len(fields) == 8 and fields[4] in _SETTLED:
                settled.add(message_key(fields[1]))
    return settled


def _check_results(results: Path) -> None:
    if not results.is_file():
        raise ConfigError(f"{results}: no such results file")
    with results.open(encoding="utf-8", errors="replace") as f:
        if f.readline().rstrip("\r\n") != RESULTS_HEADER:
            raise ConfigError(f"{results} is not a bulksend results file")


class _Ages:
    """``sent_at`` (``2026-01-02T03:04:05Z``) -> unix seconds; a campaign's rows share few
    values, so the last one is cached."""

    def __init__(self) -> None:
        self._text = ""
        self._value: float | None = None

    def __call__(self, text: str) -> float | None:
        if text != self._text:
            self._text = text
            try:
                stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                self._value = stamp.timestamp()
            except ValueError:
                self._value = None
        return self._value


def _messages(
    results: Path, settled: set[int | str], oldest: float, plan: _Plan
) -> Iterator[_Message]:
    """The messages to ask about, streaming the results file (a line being written by a running
    campaign is not read); ``plan`` counts what was seen."""
    sent_at = _Ages()
    with results.open(encoding="utf-8", errors="replace", newline="") as f:
        f.readline()
        for row in csv.reader(line for line in f if line.endswith("\n")):
            if len(row) != 8 or row[2] != "accepted" or not row[3]:
                continue
            plan.accepted += 1
            if message_key(row[3]) in settled:
                plan.settled += 1
                continue
            sent = sent_at(row[7])
            if sent is not None and sent < oldest:
                plan.too_old += 1
                continue
            plan.to_ask += 1
            yield _Message(row[1], row[3])


class _Tracker:
    """One run: the lock and the file are held by the caller."""

    def __init__(
        self,
        results: Path,
        receipts: ReceiptsFile,
        calls: LegacyStatusCalls | OneStatusCalls,
        options: TrackOptions,
        summary: TrackSummary,
        on_progress: Callable[[TrackSnapshot], None] | None,
    ) -> None:
        self.results = results
        self.receipts = receipts
        self.calls = calls
        self.options = options
        self.summary = summary
        self.on_progress = on_progress
        self.flow = FlowControl(options.concurrency, options.rate)
        self.stop = asyncio.Event()
        self.stop_reason = ""
        self.fatal: GatewayError | None = None
        self.storage: StorageError | None = None
        self.started = time.monotonic()
        self.busy = 0.0  # seconds spent in rounds
        self._round = _RoundCounters()
        self._waiting = 0.0
        self.signal_exit = 0
        self._unanswered_in_a_row = 0
        self._give_up_after = max(10, 2 * options.concurrency)

    # -- plan -----------------------------------------------------------------------------------

    def plan(self) -> tuple[_Plan, set[int | str], float]:
        settled = _settled_ids(self.receipts.path)
        oldest = time.time() - self.options.max_age
        plan = _Plan()
        for _ in _messages(self.results, settled, oldest, plan):
            pass
        return plan, settled, oldest

    # -- rounds ---------------------------------------------------------------------------------

    async def run(self, http: aiohttp.ClientSession) -> None:
        interval = self.options.poll_interval
        ticker = asyncio.create_task(self._tick(), name="track-progress")
        try:
            while not self.stop.is_set():
                plan, settled, oldest = self.plan()
                if self.summary.rounds == 0:
                    self.summary.accepted = plan.accepted
                    self.summary.settled_before = plan.settled
                if plan.to_ask == 0:
                    break
                self.summary.rounds += 1
                self._round = _RoundCounters(to_ask=plan.to_ask)
                began = time.monotonic()
                await self._ask_all(http, _messages(self.results, settled, oldest, _Plan()))
                self._round.ended = time.monotonic()
                self.busy += self._round.ended - began
                if self.fatal or self.storage or not self.options.until_final:
                    break
                if not (self._round.not_final or self._round.unanswered):
                    break  # every message asked is settled now: no round left to wait for
                self._waiting = time.monotonic() + interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), interval)
                self._waiting = 0.0
                interval = min(interval * 2, MAX_POLL_INTERVAL)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        plan, _, _ = self.plan()
        self.summary.too_old = plan.too_old
        self.summary.still_pending = plan.to_ask if self.summary.rounds else 0
        if self.on_progress is not None and self.summary.rounds:
            self.on_progress(self.snapshot(done=True))

    async def _ask_all(self, http: aiohttp.ClientSession, messages: Iterator[_Message]) -> None:
        queue: asyncio.Queue[_Message | None] = asyncio.Queue(self.options.concurrency * 4)
        workers = [
            asyncio.create_task(self._worker(http, queue), name=f"track-{i}")
            for i in range(self.options.concurrency)
        ]
        try:
            for message in messages:
                if self.stop.is_set():
                    break
                await queue.put(message)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(
        self, http: aiohttp.ClientSession, queue: asyncio.Queue[_Message | None]
    ) -> None:
        while (message := await queue.get()) is not None:
            if self.stop.is_set():
                continue
            reply = await self._ask(http, message.api_msg_id)
            counters = self._round
            counters.asked += 1
            if reply is None:
                continue
            await self._record(message, reply)

    async def _ask(self, http: aiohttp.ClientSession, api_msg_id: str) -> StatusReply | None:
        """One message's status, or None when it got no answer (or the run is stopping)."""
        flow, options, summary = self.flow, self.options, self.summary
        failures = 0
        delay = options.initial_backoff
        while not self.stop.is_set():
            ticket = await flow.acquire(1)
            summary.queries += 1
            try:
                reply = await self.calls.query(http, api_msg_id)
            except Throttled as exc:
                flow.throttled_by_gateway(ticket, exc.retry_after)
                summary.throttled += 1
                continue
            except NotAnswered as exc:
                flow.failed(ticket, processed=False)
                failures += 1
                if failures >= options.max_attempts:
                    log.warning("no status for %s after %d tries: %s", api_msg_id, failures, exc)
                    summary.unanswered += 1
                    self._round.unanswered += 1
                    self._unanswered_in_a_row += 1
                    if self._unanswered_in_a_row >= self._give_up_after:
                        self.halt(
                            f"the gateway answered none of the last {self._unanswered_in_a_row} "
                            f"messages ({exc}); rerun later to go on"
                        )
                    return None
                wait = max(delay * (1 + random.random() * 0.5), exc.retry_after or 0.0)
                delay = min(delay * 2, 30.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
                continue
            except GatewayError as exc:
                flow.failed(ticket)
                if self.fatal is None:
                    self.fatal = exc
                    self.halt(f"the gateway refused the query: {exc}")
                return None
            else:
                flow.succeeded(ticket)
                self._unanswered_in_a_row = 0
                return reply
            finally:
                await flow.release(ticket)
        return None

    async def _record(self, message: _Message, reply: StatusReply) -> None:
        summary, counters = self.summary, self._round
        status = reply.status
        summary.answered += 1
        counters.answered += 1
        summary.by_status[status] = summary.by_status.get(status, 0) + 1
        if status == "004":
            summary.delivered += 1
            counters.delivered += 1
        elif status == UNKNOWN_STATUS:
            summary.gone += 1
            counters.gone += 1
        elif status in FINAL_STATUSES:
            summary.failed += 1
            counters.failed += 1
        else:
            counters.not_final += 1
        key = receipt_key(message.api_msg_id, status)
        if key in self.receipts.keys:
            return  # already on file (a status seen before): idempotent, like a repeated callback
        stamp = reply.timestamp or str(int(time.time()))
        receipt = Receipt(
            message.api_msg_id, reply.cli_msg_id, message.to, status, reply.charge, stamp
        )
        try:
            await asyncio.shield(self.receipts.submit(receipt, key))
        except OSError:
            return  # the file failed: _storage_failed has stopped the run
        summary.receipts_written += 1

    # -- stopping, progress -------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()

    def storage_failed(self, exc: OSError, action: str) -> None:
        if self.storage is None:
            self.storage = StorageError(str(self.receipts.path), exc, action)
            self.halt(str(self.storage))

    def snapshot(self, *, done: bool = False) -> TrackSnapshot:
        c = self._round
        now = time.monotonic()
        waiting = max(0.0, self._waiting - now) if self._waiting else 0.0
        querying = (c.ended or now) - c.began
        return TrackSnapshot(
            elapsed=now - self.started,
            round=self.summary.rounds,
            to_ask=c.to_ask,
            asked=c.asked,
            delivered=c.delivered,
            failed=c.failed,
            gone=c.gone,
            not_final=c.not_final,
            unanswered=c.unanswered,
            throttled=self.summary.throttled,
            rate=c.answered / querying if querying > 0 else 0.0,
            waiting=waiting,
            done=done,
        )

    async def _tick(self) -> None:
        if self.on_progress is None:
            return
        while True:
            if self.summary.rounds:  # nothing is drawn for a run with nothing to ask
                self.on_progress(self.snapshot())
            await asyncio.sleep(0.25)

    async def sync_on_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.options.fsync_interval)
            fd = self.receipts.fsync_fd()
            if fd is not None:
                try:
                    await loop.run_in_executor(None, _fsync, fd)
                except OSError as exc:
                    self.storage_failed(exc, "fsync")


@dataclass(slots=True)
class _RoundCounters:
    to_ask: int = 0
    asked: int = 0
    answered: int = 0
    delivered: int = 0
    failed: int = 0
    gone: int = 0
    not_final: int = 0
    unanswered: int = 0
    began: float = field(default_factory=time.monotonic)
    ended: float = 0.0


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _install_signals(tracker: _Tracker) -> Callable[[], None] | None:
    """SIGINT/SIGTERM stop the run after the queries in flight (what was answered is kept);
    the exit status is then 130/143. Returns what undoes it (None where signals cannot be
    handled: not the main thread)."""
    loop = asyncio.get_running_loop()
    codes = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def on_signal(signum: signal.Signals) -> None:
        tracker.signal_exit = tracker.signal_exit or codes[signum]
        tracker.halt(f"interrupted by {signum.name}: rerun to go on")

    try:
        for signum in codes:
            loop.add_signal_handler(signum, on_signal, signum)
    except (RuntimeError, ValueError, NotImplementedError):
        return None

    def restore() -> None:
        for signum in codes:
            loop.remove_signal_handler(signum)

    return restore


def _status_calls(
    account: AccountSettings, *, charges: bool = False
) -> LegacyStatusCalls | OneStatusCalls:
    if account.api == "one":
        if not account.api_key:
            raise ConfigError(
                "no One API key: set BULKSEND_API_KEY, or api_key_env in the config file"
            )
        return OneStatusCalls(account.endpoint, ApiKey(account.api_key))
    if not account.password:
        raise ConfigError("no password: set BULKSEND_PASSWORD, or password_env in the config file")
    auth = Auth(api_id=account.api_id, user=account.user, password=account.password)
    return LegacyStatusCalls(
        account.endpoint, auth, use_session=account.auth == "session", charges=charges
    )


def _take_lock(receipts: Path) -> FileLock:
    try:
        return FileLock(receipts, "receipts").acquire()
    except CampaignLocked as exc:
        raise CampaignLocked(
            f"{receipts} is being written by another process ({format_holder(exc.holder)}): "
            "track does not write beside a receiver, and asked nothing. A running receiver "
            "collects the statuses itself; to track instead, stop it and rerun",
            exc.holder,
        ) from None


async def track_campaign(
    results: str | Path,
    account: AccountSettings,
    options: TrackOptions | None = None,
    *,
    on_progress: Callable[[TrackSnapshot], None] | None = None,
    handle_signals: bool = False,
) -> TrackSummary:
    """Ask the gateway for the status of every message of ``results`` not final yet (see the
    module docstring). Raises CampaignLocked (a receiver holds the receipts file), ConfigError,
    StorageError, GatewayError (a fatal refusal, after recording what was answered)."""
    options = options or TrackOptions()
    results = Path(results)
    _check_results(results)
    calls = _status_calls(account, charges=options.charges)
    receipts_path = receipts_path_for(results)
    summary = TrackSummary(str(results), str(receipts_path), api=account.api)
    lock = _take_lock(receipts_path)
    tracker: _Tracker | None = None
    try:
        receipts = ReceiptsFile(
            receipts_path,
            lambda exc, action: tracker.storage_failed(exc, action) if tracker else None,
        )
        receipts.open()
        tracker = _Tracker(results, receipts, calls, options, summary, on_progress)
        restore = _install_signals(tracker) if handle_signals else None
        syncer = asyncio.create_task(tracker.sync_on_timer(), name="track-fsync")
        try:
            timeout = aiohttp.ClientTimeout(
                total=options.connect_timeout + options.read_timeout,
                connect=options.connect_timeout,
                sock_read=options.read_timeout,
            )
            connector = aiohttp.TCPConnector(limit=options.concurrency, ssl=not account.insecure)
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers={"User-Agent": "bulksend"}
            ) as http:
                await tracker.run(http)
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer
            if restore is not None:
                restore()
            receipts.close()  # writes what is buffered, fsyncs
    finally:
        lock.release()
    summary.elapsed = time.monotonic() - tracker.started
    summary.queries_per_second = summary.answered / tracker.busy if tracker.busy > 0 else 0.0
    summary.stopped = redact(tracker.stop_reason)
    if tracker.storage is not None:
        raise tracker.storage
    if tracker.fatal is not None:
        raise tracker.fatal
    if tracker.stop_reason:
        summary.exit_code = tracker.signal_exit or EXIT_UNANSWERED
    elif summary.unanswered:
        summary.exit_code = EXIT_UNANSWERED
    return summary
