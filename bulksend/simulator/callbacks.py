"""Delivery callbacks: the simulated gateway pushes status changes to the account's callback URL.

:class:`CallbackDispatcher` listens to the :class:`~bulksend.simulator.ledger.Ledger`. For every
accepted request whose ``callback`` (``msg_callback``) value is 1-7 it plays a realistic delivery:

* after ``faults.delivery_delay`` seconds each message reaches ``003`` (delivered to gateway),
  pushed when the value has bit 1 (intermediate);
* after another ``delivery_delay`` each message gets its final status, drawn from a generator
  seeded by ``faults.seed``: ``004`` (received by recipient), or with probability
  ``faults.delivery_failure_rate`` an error (``007`` half the time, else ``005``, ``010``,
  ``009``). The ledger's status is set then (so ``querymsg`` agrees); the status is pushed when
  the value has bit 2 (final: any final status) or bit 4 (errors: not ``004``) -- the table of
  ``clickatell-http-api.md``, "Callbacks".

A scheduled message (``deliv_time``/``scheduled_time``: its batch has a ``due`` time) is played
from its due time on: ``003`` comes ``delivery_delay`` after it left, not after acceptance.
A message stopped by ``delmsg`` (:meth:`CallbackDispatcher.on_cancelled`, called by the handler
after :meth:`~bulksend.simulator.ledger.Ledger.cancel`) is taken out of its batch: it never gets
``003`` or a final status; instead ``006`` (user cancelled) is pushed at once when the value has
bit 2 (final). The callback table of ``clickatell-http-api.md`` is silent on ``006``; this is the
convention: ``006`` is a final status, so "final" subscribers hear of it.

A push is one POST (``application/x-www-form-urlencoded``) carrying ``api_id``, ``apiMsgId``,
``cliMsgId``, ``to``, ``from``, ``timestamp`` (unix seconds), ``status`` (3 digits) and ``charge``
(the message's parts, as a float). An answer 2xx is success; a connection failure, a timeout, a
5xx, 408 or 429 is retried after ``callback_backoff`` seconds, doubling (0.1, 0.2, 0.4, ... by
default: the real gateway waits minutes), up to ``callback_tries`` attempts; any other 4xx is a
refusal and not retried. Counters are in :attr:`CallbackDispatcher.stats`.

Replies (MO): with ``faults.reply_rate`` above 0, each message delivered (``004``) is answered by
its recipient with that probability, drawn from the same seeded generator: one text of
``faults.reply_texts`` (uniformly), pushed to the same URL, with the same retries, in the reply
format of the API (``clickatell-http-api.md``): the legacy form ``api_id, moMsgId, from, to,
timestamp`` (``YYYY-MM-DD HH:MM:SS`` in the gateway's GMT+2), ``text, charset, udh``, or -- when the
dispatcher pushes JSON (:attr:`CallbackDispatcher.headers`) -- the One API's JSON ``integrationId,
messageId, replyMessageId, apiKey, fromNumber, toNumber, timestamp`` (ms), ``text, charset, udh,
network, keyword``. Each reply has its own 32-hex id; ``to`` is the message's sender when it is a
number (a two-way number), else :data:`TWO_WAY_NUMBER`. Deliveries are played for replies even of
messages sent without a callback value (their statuses are then not pushed).

Throughput and memory: pushes go through a bounded pool of ``concurrency`` workers sharing one
aiohttp ``ClientSession`` (keep-alive connections), fed from a bounded queue of prepared request
bodies. What waits for its delay is the accepted request itself (its lists of numbers and ids, as
the ledger handed them over, about 150 bytes per message), one heap entry per request.
:meth:`CallbackDispatcher.drained` waits until every scheduled status was decided and every push
delivered or given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import aiohttp

from bulksend.simulator.codes import STATUS_CANCELLED
from bulksend.simulator.faults import Faults
from bulksend.simulator.ledger import AcceptedBatch, Ledger

__all__ = ["CallbackDispatcher", "CallbackStats"]

log = logging.getLogger("bulksend.simulator.callbacks")

INTERMEDIATE, FINAL, ERRORS = 1, 2, 4
DELIVERED = "004"
_ERROR_STATUSES = ("007", "007", "005", "010", "009", "007")
_RETRY_STATUSES = frozenset({408, 429})
_INTERMEDIATE_STAGE, _FINAL_STAGE, _CANCELLED_STAGE = 1, 2, 3
TWO_WAY_NUMBER = "27820000000"
"""The ``to`` of a reply to a message whose sender was not a number."""
_GATEWAY_TIME = timedelta(hours=2)  # the legacy reply timestamp is the gateway's GMT+2


@dataclass(slots=True)
class CallbackStats:
    """Counters of the pushes since the dispatcher started."""

    scheduled: int = 0
    """Messages whose delivery is being played (callback value 1-7)."""
    decided: int = 0
    """Messages that reached their final status."""
    cancelled: int = 0
    """Messages stopped by ``delmsg`` before they left (never delivered)."""
    sent: int = 0
    """Pushes answered 2xx."""
    retries: int = 0
    """Attempts that failed and were tried again."""
    refused: int = 0
    """Pushes answered 4xx (not retried)."""
    gave_up: int = 0
    """Pushes that failed ``callback_tries`` times."""
    replies: int = 0
    """Replies (MO) of recipients queued for pushing (``faults.reply_rate``)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class CallbackDispatcher:
    """Plays deliveries for a ledger and pushes them to ``url``; start, then stop."""

    headers: Mapping[str, str] = {"Content-Type": "application/x-www-form-urlencoded"}
    """Sent with every push: a subclass pushing another body format sets its content type."""

    def __init__(
        self,
        url: str,
        ledger: Ledger,
        faults: Faults,
        api_id: str,
        *,
        concurrency: int = 64,
        queue_size: int = 8192,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.stats = CallbackStats()
        self._ledger = ledger
        self._faults = faults
        self._api_id = quote_plus(api_id)
        self._account = api_id
        self._concurrency = concurrency
        self._timeout = timeout
        self._rng = random.Random(faults.seed)
        self._schedule: list[tuple[float, int, int, AcceptedBatch]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(maxsize=queue_size)
        self._outstanding = 0  # undecided messages + pushes queued or in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Open the client session and start the scheduler and the worker pool."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        self._ledger.listeners.append(self.on_accepted)
        self._tasks = [asyncio.create_task(self._scheduler(), name="callback-scheduler")]
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"callback-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Stop at once: pending pushes are dropped (as when a gateway goes down)."""
        with contextlib.suppress(ValueError):
            self._ledger.listeners.remove(self.on_accepted)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def drained(self) -> None:
        """Wait until every scheduled message has its final status and every push is done."""
        await self._idle.wait()

    @property
    def outstanding(self) -> int:
        """Undecided messages plus pushes still queued or in flight."""
        return self._outstanding

    # -- the ledger hook -----------------------------------------------------------------------

    def on_accepted(self, batch: AcceptedBatch) -> None:
        """Ledger listener: schedule the delivery of a request sent with a callback value."""
        if not (batch.callback or self._faults.reply_rate) or not batch.api_msg_ids:
            return
        count = len(batch.api_msg_ids)
        self.stats.scheduled += count
        self._add(count)
        due = max(time.monotonic(), batch.due) + self._faults.delivery_delay
        heapq.heappush(self._schedule, (due, next(self._order), _INTERMEDIATE_STAGE, batch))
        self._wake.set()

    def on_cancelled(self, message: AcceptedBatch) -> None:
        """A message (one-message batch) was stopped by ``delmsg``: push ``006`` if asked for;
        its batch will skip it when its time comes."""
        if not message.callback:
            return
        heapq.heappush(
            self._schedule, (time.monotonic(), next(self._order), _CANCELLED_STAGE, message)
        )
        self._wake.set()

    # -- tasks ---------------------------------------------------------------------------------

    def _add(self, count: int) -> None:
        self._outstanding += count
        if self._outstanding:
            self._idle.clear()
        else:
            self._idle.set()

    async def _scheduler(self) -> None:
        schedule = self._schedule
        while True:
            if not schedule:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = schedule[0][0] - time.monotonic()
            if wait > 0:
                self._wake.clear()  # an earlier entry (a shorter delay) may arrive meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            _, _, stage, batch = heapq.heappop(schedule)
            if stage == _INTERMEDIATE_STAGE:
                await self._intermediate(batch)
            elif stage == _FINAL_STAGE:
                await self._final(batch)
            else:
                await self._cancelled(batch)

    async def _cancelled(self, message: AcceptedBatch) -> None:
        self.stats.cancelled += 1
        if message.callback & FINAL:
            [number], [api_msg_id] = message.numbers, message.api_msg_ids
            await self._push(message, number, api_msg_id, STATUS_CANCELLED, int(time.time()))
        self._add(-1)

    def _without_cancelled(self, batch: AcceptedBatch) -> AcceptedBatch:
        """The batch minus the messages ``delmsg`` stopped (only scheduled ones can be)."""
        if not batch.due:
            return batch
        is_cancelled = self._ledger.is_cancelled
        keep = [i for i, api_msg_id in enumerate(batch.api_msg_ids) if not is_cancelled(api_msg_id)]
        if len(keep) == len(batch.api_msg_ids):
            return batch
        return dataclasses.replace(
            batch,
            numbers=[batch.numbers[i] for i in keep],
            api_msg_ids=[batch.api_msg_ids[i] for i in keep],
        )

    async def _intermediate(self, batch: AcceptedBatch) -> None:
        batch = self._without_cancelled(batch)
        if not batch.api_msg_ids:
            return
        if batch.callback & INTERMEDIATE:
            stamp = int(time.time())
            for number, api_msg_id in zip(batch.numbers, batch.api_msg_ids, strict=True):
                await self._push(batch, number, api_msg_id, "003", stamp)
        due = time.monotonic() + self._faults.delivery_delay
        heapq.heappush(self._schedule, (due, next(self._order), _FINAL_STAGE, batch))

    async def _final(self, batch: AcceptedBatch) -> None:
        rng, failure_rate = self._rng, self._faults.delivery_failure_rate
        reply_rate = self._faults.reply_rate
        set_status = self._ledger.set_status
        push_final, push_errors = bool(batch.callback & FINAL), bool(batch.callback & ERRORS)
        stamp = int(time.time())
        for number, api_msg_id in zip(batch.numbers, batch.api_msg_ids, strict=True):
            status = (
                rng.choice(_ERROR_STATUSES)
                if failure_rate and rng.random() < failure_rate
                else DELIVERED
            )
            set_status(api_msg_id, status)
            self.stats.decided += 1
            if push_final or (push_errors and status != DELIVERED):
                await self._push(batch, number, api_msg_id, status, stamp)
            if reply_rate and status == DELIVERED and rng.random() < reply_rate:
                await self._push_reply(batch, number, api_msg_id)
            self._add(-1)

    async def _push_reply(self, batch: AcceptedBatch, number: str, api_msg_id: str) -> None:
        """Queue the recipient's reply to one delivered message."""
        rng = self._rng
        mo_msg_id = f"{rng.getrandbits(128):032x}"
        text = rng.choice(self._faults.reply_texts)
        sender = batch.sender if batch.sender.isdigit() else TWO_WAY_NUMBER
        now = datetime.now(UTC)
        if self.headers.get("Content-Type") == "application/json":
            body = json.dumps(
                {
                    "integrationId": self._account,
                    "messageId": mo_msg_id,
                    "replyMessageId": api_msg_id,
                    "apiKey": "",
                    "fromNumber": number,
                    "toNumber": sender,
                    "timestamp": int(now.timestamp() * 1000),
                    "text": text,
                    "charset": "UTF-8",
                    "udh": "",
                    "network": "Simulated",
                    "keyword": text.split()[0].upper() if text.split() else "",
                },
                separators=(",", ":"),
            ).encode()
        else:
            stamp = (now + _GATEWAY_TIME).strftime("%Y-%m-%d %H:%M:%S")
            body = (
                f"api_id={self._api_id}&moMsgId={mo_msg_id}&from={number}&to={sender}"
                f"&timestamp={quote_plus(stamp)}&text={quote_plus(text)}&charset=UTF-8&udh="
            ).encode()
        self.stats.replies += 1
        self._add(1)
        await self._queue.put((body, mo_msg_id))

    async def _push(
        self, batch: AcceptedBatch, number: str, api_msg_id: str, status: str, stamp: int
    ) -> None:
        body = (
            f"api_id={self._api_id}&apiMsgId={api_msg_id}&cliMsgId={batch.climsgid}&to={number}"
            f"&from={quote_plus(batch.sender)}&timestamp={stamp}&status={status}"
            f"&charge={float(batch.parts)}"
        ).encode()
        self._add(1)
        await self._queue.put((body, api_msg_id))

    async def _worker(self) -> None:
        queue = self._queue
        while True:
            body, api_msg_id = await queue.get()
            try:
                await self._deliver(body, api_msg_id)
            finally:
                self._add(-1)

    async def _deliver(self, body: bytes, api_msg_id: str) -> None:
        session = self._session
        assert session is not None
        stats, faults = self.stats, self._faults
        for attempt in range(faults.callback_tries):
            if attempt:
                stats.retries += 1
                await asyncio.sleep(faults.callback_backoff * 2 ** (attempt - 1))
            try:
                async with session.post(self.url, data=body, headers=self.headers) as response:
                    await response.read()
                    code = response.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
            if code < 300:
                stats.sent += 1
                return
            if code < 500 and code not in _RETRY_STATUSES:
                stats.refused += 1
                log.warning("callback for %s refused with HTTP %d", api_msg_id, code)
                return
        stats.gave_up += 1
        log.warning(
            "callback for %s given up after %d tries", api_msg_id, self._faults.callback_tries
        )
