"""The simulated One API: Clickatell's current JSON API served by aiohttp, with the legacy knobs.

:class:`OneApiSimulator` mirrors :class:`~bulksend.simulator.app.Simulator`'s life cycle (``async
with``, ``.url``, ``.ledger``, ``.faults``, ``.stats``) and shares its parts: the knobs are a
:class:`~bulksend.simulator.faults.Faults`, every accepted message goes to a
:class:`~bulksend.simulator.ledger.Ledger` (same CSV), and delivery is played by the legacy
callback dispatcher's scheduler with JSON pushes (:class:`JsonCallbackDispatcher`). Of bulksend it
imports only the simulator package and ``bulksend.gsm`` (part counting): never the client side,
so it checks ``bulksend.wire.one`` independently.

Routes (``clickatell-http-api.md``, "Clickatell's current API"); every answer is JSON:

* ``POST /v1/message`` with ``Authorization: <api key>`` and ``{"messages": [{"channel": "sms",
  "to": ..., "content": ...}, ...]}`` (at most ``max_messages``, :data:`MAX_MESSAGES` = 200 by
  default, the reference's limit). Answer ``{"messages": [entry, ...], "error": null}`` with the
  status the reference gives: **202** every message accepted, **207** some accepted and some
  refused, **400** none accepted (every message refused with its own code; the global error is
  null). One entry per message: ``{"apiMessageId": id, "accepted": true, "to": to, "error":
  null}`` or ``{"apiMessageId": "", "accepted": false, "to": to, "error": {"code": c,
  "description": d}}``. Entries come in request order, or, with ``shuffle`` set, in a random order
  that keeps the relative order of one number's entries (the convention a client matching by
  ``to`` relies on for repeated numbers).
* ``GET /v1/balance`` → ``{"balance": <float>, "currency": "..."}`` (unlimited credit shows as
  :data:`UNLIMITED_CREDIT`).
* ``GET /v1/message/<apiMessageId>`` → ``{"apiMessageId", "clientMessageId", "to", "from",
  "statusCode" (number), "status" (name), "timestamp" (ms, when it took that status), "charge",
  "error": null}``; an unknown (or, with ``queries.message_ttl``, expired) id is HTTP 404 with
  error 23 (convention: the doc names no code). Statuses progress over time and the queries
  have a throttle and counters of their own: ``status_queries.py``.

A request-level refusal is ``{"messages": [], "error": {"code": c, "description": d}}`` with an
HTTP status by convention (the doc gives codes, not statuses): 401 for code 1 (``Authorization``
missing or not the key), 400 for 21 (not a JSON object with a ``messages`` list; a message that
is not an object or has no string ``to``), 22 (more than ``max_messages``) and 23 (no messages), 402
for 20 (credit), 429 for 43 (throttled, with ``Retry-After``), 500 for 19 (the ``err_901_rate``
fault). HTTP 503 (``http_503_rate``) is a proxy's plain-text page with ``Retry-After: 1``.

One ``POST /v1/message``, in this order (as the legacy app):

1. Faults, when ``sendmsg`` is in ``faults.commands`` (the knobs name the legacy call each route
   stands for: ``sendmsg`` = ``POST /v1/message``, ``getbalance`` = ``GET /v1/balance``,
   ``querymsg`` = ``GET /v1/message/<id>``): one draw decides drop-before, 503 or error 19 (nothing
   processed), drop-after (processed, the answer lost) or nothing; ``latency ± jitter`` is waited
   after processing, before answering or dropping.
2. ``Authorization`` → else 401/1.
3. The body → else 400/21; 0 messages → 400/23; more than ``max_messages`` → 400/22.
4. Per message, first failing check wins, as a refused entry: ``to`` not 8-15 digits without a
   leading 0 (a leading ``+`` is accepted) → 25; ``channel`` other than ``sms`` → 23; ``content``
   missing, not a string or empty → 23; ``charset`` not one of :data:`CHARSETS` → 40;
   ``from`` neither 1-16 digits nor 1-11 letters/digits/spaces, ``validityPeriod`` not an integer
   ≥ 1, ``clientMessageId`` not a string of at most 64 characters, ``binary`` not a boolean, ``udh``
   without ``binary`` or not hex, binary ``content`` not hex → 23; text content longer than
   :data:`MAX_CONTENT_CHARS` → 24; more parts than ``max_parts`` (GSM-7 if every character is,
   else UCS-2; a binary message is one part of at most 140 octets, UDH included) → 100; ``to``
   matching ``faults.reject_prefixes``/``reject_suffixes`` → ``reject_code`` (25 by default; the
   legacy ``faults.reject_code`` is not used).
5. Throttle: the accepted messages are taken from the ``throttle_mps`` bucket; too many → 429/43
   with ``Retry-After``, nothing processed.
6. Credit: each accepted message costs its parts; a balance that cannot pay for all → 402/20,
   nothing processed.
7. Accept: the ledger issues the ids (the request is one ledger batch, each message with its own
   content and options: :meth:`~bulksend.simulator.ledger.Ledger.accept_messages`; the file written
   in one write and flushed first); the ledger's ``options`` hold each message's
   other fields as sent (``binary=true&from=ACME&...``, never the key; ``clientMessageId`` is
   the ledger's ``climsgid``); then the answer, 202, 207 or 400 as above.

Delivery callbacks: with a ``callback_url``, each accepted message's delivery is played as the
legacy dispatcher plays it (``003`` after ``delivery_delay``, then ``004`` or an error status) and
pushed as one JSON POST per status selected by ``callback_statuses`` (the legacy callback values
0-7: 1 intermediate, 2 final, 4 errors; the integration's setting, not per message) with
``integrationName``, ``messageId``, ``clientMessageId``, ``to``, ``from``, ``statusCode`` (number),
``status`` (name of :data:`STATUS_NAMES`), ``timestamp`` (ms) and ``charge``.

Secrets: the API key is compared, never logged, printed or written; the access log (off by
default) has the method and path only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from aiohttp import web

from bulksend.gsm import auto_parts
from bulksend.simulator.callbacks import CallbackDispatcher
from bulksend.simulator.faults import Fault, Faults, retry_after_header
from bulksend.simulator.ledger import AcceptedBatch, Ledger
from bulksend.simulator.message import options_of
from bulksend.simulator.server import ServedApp
from bulksend.simulator.status_queries import StatusQueries

__all__ = [
    "CHARSETS",
    "DEFAULT_API_KEY",
    "DEFAULT_INTEGRATION",
    "DEFAULT_MAX_PARTS",
    "DESCRIPTIONS",
    "MAX_CONTENT_CHARS",
    "MAX_MESSAGES",
    "RECIPIENT_CODES",
    "STATUS_NAMES",
    "UNLIMITED_CREDIT",
    "JsonCallbackDispatcher",
    "OneApiSimulator",
    "OneApiStats",
    "add_one_api_arguments",
    "one_api_from_args",
]

DEFAULT_API_KEY = "sim-one-api-key-2718"
"""The simulated integration's API key unless another is given (``bulksend simulate --api one
--api-key``)."""
DEFAULT_INTEGRATION = "bulksend-simulator"
MAX_MESSAGES = 200
"""Messages one request may carry unless ``max_messages`` says otherwise (the reference: 200)."""
MAX_CONTENT_CHARS = 1600
"""Longer content is refused with 24 (content too long) whatever its parts (convention)."""
DEFAULT_MAX_PARTS = 10
"""Parts a message may take before 100 (maximum message parts exceeded)."""
MAX_BINARY_OCTETS = 140
UNLIMITED_CREDIT = 1_000_000_000.0
CHARSETS: frozenset[str] = frozenset({"UTF-8", "ISO-8859-1", "UCS-2", "UTF-16BE"})
"""``charset`` values accepted (compared upper-cased); others get 40."""

DESCRIPTIONS: dict[int, str] = {
    1: "Invalid or missing API key",
    2: "Account is not active",
    3: "Integration is not active",
    7: "IP address not approved",
    18: "Internal error",
    19: "Internal error - please retry",
    20: "Insufficient account balance",
    21: "Malformed payload",
    22: "Too many messages in the request",
    23: "Invalid or missing parameter",
    24: "Content too long",
    25: "Invalid recipient address",
    26: "Recipient opted out",
    27: "Recipient not on channel",
    28: "Not available on sandbox",
    40: "Character set not supported",
    43: "Rate limit exceeded",
    44: "Sender ID suspended",
    45: "Sender ID not of this integration",
    46: "Demo access expired",
    100: "Maximum message parts exceeded",
    101: "Destination does not support two-way",
    110: "US traffic needs a two-way integration",
    111: "US traffic needs STOP handling",
}
"""The simulator's own copy of the One API error table (it does not import the client's)."""

RECIPIENT_CODES: frozenset[int] = frozenset({25, 26, 27, 28, 101})
"""Codes a ``reject_code`` may take: they refuse one recipient, not the request."""

STATUS_NAMES: dict[str, str] = {
    "001": "MESSAGE_UNKNOWN",
    "002": "QUEUED",
    "003": "DELIVERED_TO_GATEWAY",
    "004": "RECEIVED_BY_RECIPIENT",
    "005": "ERROR_WITH_MESSAGE",
    "006": "USER_CANCELLED",
    "007": "ERROR_DELIVERING_MESSAGE",
    "008": "RECEIVED_BY_GATEWAY",
    "009": "ROUTING_ERROR",
    "010": "MESSAGE_EXPIRED",
    "011": "QUEUED_FOR_LATER_DELIVERY",
    "012": "OUT_OF_CREDIT",
    "014": "MAX_MT_LIMIT_EXCEEDED",
}
"""Names of the three-digit statuses in ``status`` fields (convention after the legacy table)."""

_GOOD_TO = re.compile(r"\+?[1-9][0-9]{7,14}")
_SENDER = re.compile(r"[0-9]{1,16}|[A-Za-z0-9 ]{1,11}")
_HEX = frozenset(string.hexdigits)
_JSON = "application/json"
_MESSAGE_FIELDS = frozenset({"channel", "to", "content", "clientMessageId"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class OneApiStats:
    """Counters since construction. Each request to an API route lands in exactly one outcome
    counter: answered, http_503, http_429, err_19, dropped_before or dropped_after."""

    requests: int = 0
    answered: int = 0
    """Processed and answered (including refusals other than 429)."""
    http_503: int = 0
    http_429: int = 0
    err_19: int = 0
    dropped_before: int = 0
    dropped_after: int = 0
    refused: int = 0
    """``POST /v1/message`` requests refused as a whole (401, 400, 402)."""
    recipients: int = 0
    """Messages in processed ``POST /v1/message`` requests (accepted + rejected)."""
    accepted: int = 0
    rejected: int = 0

    @property
    def processed(self) -> int:
        return self.answered + self.dropped_after

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Message(NamedTuple):
    """One valid message of a request: its number (without ``+``), cost and ledger fields."""

    to: str
    content: str
    parts: int
    client_message_id: str
    sender: str
    options: str


def _json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type=_JSON,
        headers=headers,
    )


def _refusal(status: int, code: int, headers: Mapping[str, str] | None = None) -> web.Response:
    error = {"code": code, "description": DESCRIPTIONS[code]}
    return _json(status, {"messages": [], "error": error}, headers)


def _abort(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


class OneApiSimulator(ServedApp):
    """The fake One API; ``async with OneApiSimulator() as sim:`` serves it on ``sim.url``."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ledger_path: str | os.PathLike[str] | None = None,
        *,
        access_log: bool = False,
        shutdown_timeout: float = 2.0,
        keep_numbers: bool = True,
        callback_url: str | None = None,
        callback_statuses: int = 7,
        reject_code: int = 25,
        shuffle: bool = False,
        max_parts: int = DEFAULT_MAX_PARTS,
        max_messages: int = MAX_MESSAGES,
        currency: str = "ZAR",
        integration_name: str = DEFAULT_INTEGRATION,
    ) -> None:
        if not api_key:
            raise ValueError("the API key must not be empty")
        if not 0 <= callback_statuses <= 7:
            raise ValueError(f"callback_statuses must be 0..7, got {callback_statuses!r}")
        if max_parts < 1:
            raise ValueError(f"max_parts must be >= 1, got {max_parts!r}")
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages!r}")
        self.reject_code = reject_code  # validated by the property setter
        self.faults = faults if faults is not None else Faults()
        self.ledger = Ledger(keep_numbers=keep_numbers)
        self.stats = OneApiStats()
        self.queries = StatusQueries(self.ledger, self.faults)
        """``GET /v1/message/<id>``: statuses over time, the query throttle, counters."""
        self.callback_url = callback_url
        """The integration's callback URL: deliveries are pushed there as JSON."""
        self.callback_statuses = callback_statuses
        """Which statuses are pushed (the legacy callback values: 1 intermediate, 2 final, 4
        errors, summed)."""
        self.callbacks: JsonCallbackDispatcher | None = None
        self.shuffle = shuffle
        """Answer entries in a random order (keeping each number's own order)."""
        self.max_parts = max_parts
        self.max_messages = max_messages
        """The most messages one ``POST /v1/message`` may carry (more: 400/22)."""
        self.currency = currency
        self.integration_name = integration_name
        self._api_key = api_key
        self._rng = random.Random(self.faults.seed)
        self._host = host
        self._port = port
        self._ledger_path = ledger_path
        self._access_log = access_log
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._started_before = False

    @property
    def reject_code(self) -> int:
        """The error code of numbers refused by ``faults.reject_prefixes``/``reject_suffixes``."""
        return self._reject_code

    @reject_code.setter
    def reject_code(self, code: int) -> None:
        if code not in RECIPIENT_CODES:
            raise ValueError(f"reject_code must be one of {sorted(RECIPIENT_CODES)}, got {code!r}")
        self._reject_code = code

    def set_api_key(self, api_key: str) -> None:
        """Rotate the key: requests with the old one now get 401/1."""
        if not api_key:
            raise ValueError("the API key must not be empty")
        self._api_key = api_key

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "stopped"
        return f"<OneApiSimulator {where} key hidden {self.faults!r}>"

    # -- life cycle ----------------------------------------------------------------------------

    def make_callbacks(self, url: str) -> CallbackDispatcher:
        return JsonCallbackDispatcher(url, self.ledger, self.faults, self.integration_name)

    # -- HTTP ----------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (for embedding; :meth:`start` serves it itself)."""
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/message", self._handler("sendmsg", self._send))
        app.router.add_get("/v1/balance", self._handler("getbalance", self._balance))
        app.router.add_get("/v1/message/{api_msg_id}", self._handler("querymsg", self._status))
        return app

    def _handler(
        self, command: str, process: Callable[[web.Request, bytes], web.Response]
    ) -> Handler:
        stats = self.stats

        async def handle(request: web.Request) -> web.StreamResponse:
            stats.requests += 1
            faults = self.faults
            fault, delay = Fault.NONE, 0.0
            if command in faults.commands:
                fault, delay = faults.draw(), faults.delay()
            if fault is Fault.DROP_BEFORE:
                if delay > 0.0:
                    await asyncio.sleep(delay)
                stats.dropped_before += 1
                return _abort(request)
            body = await request.read()
            if fault is Fault.HTTP_503:
                if delay > 0.0:
                    await asyncio.sleep(delay)
                stats.http_503 += 1
                return web.Response(
                    status=503, text="503: Service Unavailable", headers={"Retry-After": "1"}
                )
            if fault is Fault.ERR_901:
                if delay > 0.0:
                    await asyncio.sleep(delay)
                stats.err_19 += 1
                return _refusal(500, 19)
            answer = process(request, body)
            if delay > 0.0:
                await asyncio.sleep(delay)
            if fault is Fault.DROP_AFTER:
                stats.dropped_after += 1
                return _abort(request)
            if answer.status == 429:
                stats.http_429 += 1
            else:
                stats.answered += 1
            return answer

        return handle

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == self._api_key

    def _send(self, request: web.Request, body: bytes) -> web.Response:
        stats = self.stats
        if not self._authorised(request):
            stats.refused += 1
            return _refusal(401, 1)
        messages = _messages_of(body, self.max_messages)
        if isinstance(messages, int):
            stats.refused += 1
            return _refusal(400, messages)
        results = [self._check(message) for message in messages]
        accepted = [r for r in results if isinstance(r, _Message)]
        faults = self.faults
        wait = faults.admit(len(accepted))
        if wait > 0.0:
            return _refusal(429, 43, {"Retry-After": retry_after_header(wait)})
        if not faults.charge(float(sum(m.parts for m in accepted))):
            stats.refused += 1
            return _refusal(402, 20)
        stats.recipients += len(results)
        stats.accepted += len(accepted)
        stats.rejected += len(results) - len(accepted)
        ids = self._accept(accepted)
        next_id = iter(ids).__next__
        # Each entry as JSON text: an accepted message's `to` passed _GOOD_TO (no escaping).
        entries: list[str] = []
        for message, result in zip(messages, results, strict=True):
            to = message["to"]
            if isinstance(result, int):
                error = {"code": result, "description": DESCRIPTIONS[result]}
                refused = {"apiMessageId": "", "accepted": False, "to": to, "error": error}
                entries.append(json.dumps(refused, separators=(",", ":")))
            else:
                entries.append(
                    f'{{"apiMessageId":"{next_id()}","accepted":true,"to":"{to}","error":null}}'
                )
        if self.shuffle:
            numbers = [str(message["to"]) for message in messages]
            entries = _stable_shuffle(entries, numbers, self._rng)
        answer = '{"messages":[' + ",".join(entries) + '],"error":null}'
        status = 202 if len(accepted) == len(results) else 207 if accepted else 400
        return web.Response(status=status, body=answer.encode(), content_type=_JSON)

    def _check(self, message: dict[str, Any]) -> _Message | int:
        """A valid message, or the code of its refused entry (module docstring, 4.)."""
        to = message["to"]
        if _GOOD_TO.fullmatch(to) is None:
            return 25
        to = to.removeprefix("+")
        if message.get("channel", "sms") != "sms":
            return 23
        content = message.get("content")
        if not isinstance(content, str) or not content:
            return 23
        charset = message.get("charset")
        if charset is not None and (
            not isinstance(charset, str) or charset.upper() not in CHARSETS
        ):
            return 40
        sender = message.get("from")
        if sender is not None and (
            not isinstance(sender, str) or _SENDER.fullmatch(sender) is None
        ):
            return 23
        validity = message.get("validityPeriod")
        if validity is not None and (
            not isinstance(validity, int) or isinstance(validity, bool) or validity < 1
        ):
            return 23
        client_id = message.get("clientMessageId", "")
        if not isinstance(client_id, str) or len(client_id) > 64:
            return 23
        binary = message.get("binary", False)
        udh = message.get("udh")
        if not isinstance(binary, bool) or (
            udh is not None and (not binary or not isinstance(udh, str) or not _is_hex(udh))
        ):
            return 23
        if binary:
            if not _is_hex(content):
                return 23
            if (len(content) + len(udh or "")) // 2 > MAX_BINARY_OCTETS:
                return 100
            parts = 1
        else:
            if len(content) > MAX_CONTENT_CHARS:
                return 24
            parts = auto_parts(content)
            if parts > self.max_parts:
                return 100
        faults = self.faults
        prefixes, suffixes = faults.reject_prefixes, faults.reject_suffixes
        if (prefixes and to.startswith(prefixes)) or (suffixes and to.endswith(suffixes)):
            return self._reject_code
        options = (
            ""
            if message.keys() <= _MESSAGE_FIELDS  # the usual personalised message: no options
            else options_of(
                {
                    name: _option_text(value)
                    for name, value in message.items()
                    if name not in _MESSAGE_FIELDS
                }
            )
        )
        return _Message(to, content, parts, client_id, sender or "", options)

    def _accept(self, accepted: list[_Message]) -> list[str]:
        """Ledger ids for ``accepted``, in order: the whole request is one ledger batch with
        one CSV write, each message keeping its own content and options."""
        if not accepted:
            return []
        numbers, contents, parts, client_ids, senders, options = zip(*accepted, strict=True)
        return self.ledger.accept_messages(
            list(numbers),
            contents,
            climsgids=client_ids,
            parts=parts,
            senders=senders,
            options=options,
            callback=self.callback_statuses if self.callback_url else 0,
        )

    def _balance(self, request: web.Request, body: bytes) -> web.Response:
        if not self._authorised(request):
            return _refusal(401, 1)
        credit = self.faults.credit
        balance = UNLIMITED_CREDIT if credit is None else credit
        return _json(200, {"balance": balance, "currency": self.currency})

    def _status(self, request: web.Request, body: bytes) -> web.Response:
        throttled = self.queries.admit()
        if throttled is not None:
            return _refusal(429, 43, throttled)
        if not self._authorised(request):
            self.queries.refused()
            return _refusal(401, 1)
        entry = self.ledger.find(request.match_info["api_msg_id"])
        if entry is None or self.queries.expired(entry):
            self.queries.unknown()
            return _json(404, {"error": {"code": 23, "description": DESCRIPTIONS[23]}})
        code, since = self.queries.status(entry)
        sender = entry.option_map.get("from", "")
        return _json(
            200,
            {
                "apiMessageId": entry.api_msg_id,
                "clientMessageId": entry.climsgid,
                "to": entry.to,
                "from": sender,
                "statusCode": int(code),
                "status": STATUS_NAMES.get(code, "UNKNOWN"),
                "timestamp": int(since * 1000),
                "charge": float(entry.parts),
                "error": None,
            },
        )


# -- pure helpers ------------------------------------------------------------------------------


def _is_hex(value: str) -> bool:
    return len(value) % 2 == 0 and _HEX.issuperset(value)


def _option_text(value: object) -> str:
    """A JSON field's value as the ledger's options record it (``true``, ``90``, ``ACME``)."""
    return value if isinstance(value, str) else json.dumps(value)


def _messages_of(body: bytes, max_messages: int = MAX_MESSAGES) -> list[dict[str, Any]] | int:
    """The request's messages (each an object with a string ``to``), or the refusal code."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 21
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list):
        return 21
    if not messages:
        return 23
    if len(messages) > max_messages:
        return 22
    if not all(isinstance(m, dict) and isinstance(m.get("to"), str) for m in messages):
        return 21
    return messages


def _stable_shuffle(entries: list[str], numbers: list[str], rng: random.Random) -> list[str]:
    """``entries`` (``numbers[i]`` is the number of ``entries[i]``) in a random order in which
    each number's entries keep their own order."""
    slots = list(range(len(entries)))
    rng.shuffle(slots)
    by_number: dict[str, list[int]] = {}
    for slot, index in enumerate(slots):
        by_number.setdefault(numbers[index], []).append(slot)
    out: list[str] = [""] * len(entries)
    own: dict[str, list[str]] = {}
    for entry, number in zip(entries, numbers, strict=True):
        own.setdefault(number, []).append(entry)
    for number, positions in by_number.items():
        for slot, entry in zip(positions, own[number], strict=True):  # slots ascend
            out[slot] = entry
    return out


# -- delivery callbacks --------------------------------------------------------------------------


class JsonCallbackDispatcher(CallbackDispatcher):
    """The legacy dispatcher's delivery play and push pool, pushing One API JSON callbacks.

    Only the body and its content type differ: :meth:`_push` writes the JSON fields of the module
    docstring and :attr:`headers` makes the base class post it as ``application/json``, with the
    same retry rules (2xx success; connection failure, timeout, 5xx, 408, 429 retried with
    doubling backoff up to ``faults.callback_tries``; any other 4xx refused).
    """

    headers: Mapping[str, str] = {"Content-Type": _JSON}

    def __init__(self, url: str, ledger: Ledger, faults: Faults, integration_name: str) -> None:
        super().__init__(url, ledger, faults, integration_name)
        self.integration_name = integration_name

    async def _push(
        self, batch: AcceptedBatch, number: str, api_msg_id: str, status: str, stamp: int
    ) -> None:
        body = json.dumps(
            {
                "integrationName": self.integration_name,
                "messageId": api_msg_id,
                "clientMessageId": batch.climsgid,
                "to": number,
                "from": batch.sender,
                "statusCode": int(status),
                "status": STATUS_NAMES.get(status, "UNKNOWN"),
                "timestamp": stamp * 1000,
                "charge": float(batch.parts),
            },
            separators=(",", ":"),
        ).encode()
        self._add(1)
        await self._queue.put((body, api_msg_id))


# -- command line (``bulksend simulate --api one``) --------------------------------------------


def add_one_api_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags only ``--api one`` reads; the shared knobs (faults, credit, callbacks, ledger,
    where to listen) are the legacy flags of ``cli.py``."""
    group = parser.add_argument_group("One API (--api one)")
    group.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="the integration's API key, expected verbatim in the Authorization header "
        "[%(default)s]",
    )
    group.add_argument(
        "--one-reject-code",
        type=int,
        default=25,
        choices=sorted(RECIPIENT_CODES),
        help="error code for numbers refused by --reject-prefix/--reject-suffix [%(default)s]",
    )
    group.add_argument(
        "--shuffle-answers",
        action="store_true",
        help="answer entries in a random order (each number's entries keep their own order)",
    )
    group.add_argument(
        "--callback-statuses",
        type=int,
        default=7,
        choices=range(8),
        metavar="0-7",
        help="statuses pushed to --callback-url: 1 intermediate + 2 final + 4 errors [%(default)s]",
    )
    group.add_argument(
        "--max-parts",
        type=int,
        default=DEFAULT_MAX_PARTS,
        metavar="N",
        help="parts a message may take before error 100 [%(default)s]",
    )
    group.add_argument(
        "--max-messages",
        type=int,
        default=MAX_MESSAGES,
        metavar="N",
        help="messages one POST /v1/message may carry before 400/22 [%(default)s]",
    )


def one_api_from_args(args: argparse.Namespace, faults: Faults) -> OneApiSimulator:
    """The :class:`OneApiSimulator` that ``bulksend simulate --api one`` serves (its in-memory
    ledger keeps no numbers, as the legacy server's: the record is the ``--ledger`` file)."""
    return OneApiSimulator(
        args.api_key,
        faults,
        host=args.host,
        port=args.port,
        ledger_path=args.ledger,
        access_log=args.access_log,
        keep_numbers=False,
        callback_url=args.callback_url,
        callback_statuses=args.callback_statuses,
        reject_code=args.one_reject_code,
        shuffle=args.shuffle_answers,
        max_parts=args.max_parts,
        max_messages=args.max_messages,
    )
