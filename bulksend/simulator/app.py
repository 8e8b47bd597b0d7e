"""The simulated gateway: Clickatell's legacy HTTP API served by aiohttp, with faults on demand.

:class:`Simulator` owns the server's life cycle, the account (credentials, sessions, credit through
:class:`~bulksend.simulator.faults.Faults`), the :class:`~bulksend.simulator.ledger.Ledger` and the
request handlers; with a ``callback_url`` it also runs a
:class:`~bulksend.simulator.callbacks.CallbackDispatcher` that plays each message's delivery and
pushes the status callbacks (``sendmsg`` with ``callback`` 1-7). It imports nothing of
bulksend's client side, so it checks the client independently; of ours it uses only ``bulksend.gsm`` (part counting, UCS-2 hex).

Wire behaviour (``/work/shared/clickatell-http-api.md``): every command is ``/http/<command>``,
GET or POST (``application/x-www-form-urlencoded``; multipart is accepted too); API answers are
``text/plain`` with HTTP 200, errors as ``ERR: NNN, description``. Single-line answers carry no
trailing newline; the multi-recipient ``sendmsg`` answer ends each line with ``\\n``. Commands:
``auth``, ``ping``, ``sendmsg``, ``querymsg``, ``getmsgcharge``, ``getbalance``, ``delmsg``, and
``/utils/routeCoverage.php`` (also without ``.php``, as a widely used PHP client calls it);
anything else is a plain 404 and other methods a 405.

Lenient in, exact out. Where ``clickatell-http-api.md`` is ambiguous or real clients differ, the
simulator accepts what real third-party clients send and answers exactly the documented format:
parameter names in any letter case (``apiMsgId`` is ``apimsgid``); ``mo=1`` without ``from``
(sent from the account's two-way number, ``two_way_number``); ``msg_callback`` as an alias of
``callback``; ``msg_type`` in any letter case; a ``scheduled_time`` already past (sent at once);
a ``msisdn`` with a leading ``+``. The per-parameter rules of ``sendmsg`` are in ``message.py``.

The other answers:

* ``querymsg`` → ``ID: <id> Status: <NNN>``; ``getmsgcharge`` → ``apiMsgId: <id> charge: <float>
  status: <NNN>`` (lower-case keys, as the corrected doc says and clients parse; the charge is
  the message's parts, 0.0 once stopped and refunded). Both take ``apimsgid``, else
  ``climsgid`` (the first message of the latest request with it): unknown → 103 / 104, neither →
  109. Their statuses progress over time even without callbacks, and they have a throttle of
  their own (429) and counters: :class:`~bulksend.simulator.status_queries.StatusQueries`
  (:attr:`Simulator.queries`).
* ``delmsg`` (same target rules) stops a message that has not left yet, that is one sent with
  ``deliv_time`` / ``scheduled_time`` whose time has not come: its status becomes ``006`` for
  good (``querymsg`` says so, it is never delivered, its delivery callback is replaced by a
  ``006`` push to "final" subscribers), its credit is refunded (Clickatell refunds stopped
  scheduled messages) and the answer is ``ID: <id> Status: 006``. Any other message cannot be
  stopped any more and the answer is its current status, ``ID: <id> Status: <NNN>`` (003, 004,
  ...; 006 again for one already stopped), not an error. This is the convention for what the doc
  leaves open (its code table has no "cannot stop" error): the documented answer carries a status,
  and only ``006`` means stopped, so a client reads the outcome from the status alone.
* The batch interface, ``/http_batch/<command>`` (GET or POST, the same authentication and codes
  as ``/http/``; the rules are in ``batches.py``): ``startbatch`` (``template`` with ``#field#``
  placeholders and the ``sendmsg`` options) → ``ID: <batch_id>`` (32 hex); ``senditem``
  (``batch_id``, one ``to``, one parameter per placeholder) renders the template, goes through
  steps 4-7 below like a one-number ``sendmsg`` (per-recipient refusals, throttle, credit, the
  ledger with the rendered text and the batch's options plus ``batch_id``, callbacks) and answers
  ``ID: <id>`` or ``ERR: ...``; ``quicksend`` (``batch_id``, ``to`` list; a template with
  placeholders → 202) answers exactly as ``sendmsg`` would with the template as its text;
  ``endbatch`` → ``OK``. An unknown, ended or expired ``batch_id`` → 201. The fault knobs apply
  to ``senditem`` and ``quicksend`` as to ``sendmsg`` (both are in the default
  ``faults.commands``); ``faults.batch_ttl`` / ``faults.batch_expire_every`` expire batch ids.
* Scheduling: a message with a delay has status ``011`` (queued for later delivery) until it
  leaves; a minute of delay lasts ``minute_seconds`` real seconds (60 by default;
  ``--minute-seconds 0.01`` makes a day of delay 14.4 s), read at acceptance. Its delivery
  (callbacks) is played from the time it leaves. ``validity`` is validated and recorded, not played.
* ``/utils/routeCoverage.php`` (auth, ``msisdn``: 1-15 digits, a prefix or a whole number) →
  ``OK: This prefix is currently supported. Messages sent to this prefix will be routed. Charge:
  1`` (credits for one part), or, for a ``msisdn`` starting with one of
  ``faults.reject_prefixes`` (``--reject-prefix``: messages to it would be refused, whatever
  ``reject_code``), ``ERR: This prefix is not currently supported. Messages sent to this prefix
  will fail. Please contact support for assistance.`` (no code). ``msisdn`` missing → 101, not
  digits → 105.

One request, in this order:

1. Faults (only on ``faults.commands``, default ``sendmsg``, ``senditem``, ``quicksend``): one
   draw decides drop-before, 503 or 901 (nothing processed), drop-after (processed, answer lost)
   or nothing; the delay
   (``latency ± jitter``) is waited after processing and before answering or dropping.
2. Authentication (every command but ``auth`` and ``ping``): a non-empty
   ``session_id`` is used alone (unknown or idle longer than ``session_ttl`` → 003; every use
   extends it); otherwise, if any of ``api_id``/``user``/``password`` is given, ``api_id`` must match
   (else 108), then ``user`` and ``password`` (else 001); with none of them → 005. Sessions are not
   tied to a password: :meth:`Simulator.set_credentials` leaves live sessions alive, like a real
   password change; call :meth:`Simulator.expire_sessions` for a revocation.
3. ``sendmsg`` parameters, whole-request errors, first match wins. ``to`` missing or empty →
   101; more than 300 numbers on GET or 600 on POST → 101 (the request is malformed as a whole;
   105 is a per-number code and 113 is about message parts). Then the message itself, as
   ``message.py`` decides: body (``text``/``unicode`` or binary ``udh``+``data``), ``msg_type``,
   ``concat``, ``max_credits``, ``callback``, ``climsgid``, ``deliv_time``/``scheduled_time``,
   ``validity``, ``mo``/``from``; every option is recorded as sent in the ledger's ``options``.
4. Per number (commas split, spaces around numbers ignored, empty items skipped): not 8–15 digits,
   or starting with ``0`` (so no ``00`` prefix; no country code starts with 0), or with ``+``
   → 105; matching ``reject_prefixes``/``reject_suffixes`` → ``reject_code`` (default 114).
   Duplicated numbers are separate messages, as on the real gateway.
0. Connection cap: with ``max_connections`` set, a request arriving while that many are in
   progress gets HTTP 503 (``Retry-After: 1``) or a closed connection (``over_connections``),
   unprocessed, before anything else.
5. Throttle: the accepted numbers are taken from the ``throttle_mps`` bucket (``throttle_burst``
   deep); too many → HTTP 429 with ``Retry-After`` as ``throttle_retry_after`` says (whole seconds
   ≥ 1 by default), nothing processed. ``per_recipient_latency`` × numbers is added to the delay.
6. Credit: each accepted message costs its parts; a balance that cannot pay for the whole request
   → 301, nothing processed.
7. Accept: ids from the ledger (written and flushed first), then the answer: exactly one number in
   the request → ``ID: <id>`` or ``ERR: NNN, ...`` with no ``To:``; two or more → one line per
   number in request order, ``ID: <id> To: <number>`` or ``ERR: NNN, ... To: <number>``.

Speed: form bodies are parsed by hand from the raw bytes (``to`` is split without unquoting each
number), numbers are checked with ``isdigit``/``len``/``startswith`` in comprehensions, answers are
built with one ``join``, and nothing is logged per request unless the access log is asked for (it
logs method and path, never the query, so never a password).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from itertools import repeat
from typing import NamedTuple
from urllib.parse import unquote_plus

from aiohttp import web

from bulksend.simulator.batches import Batches, BatchTemplate, parse_startbatch
from bulksend.simulator.callbacks import CallbackDispatcher
from bulksend.simulator.codes import err
from bulksend.simulator.faults import Fault, Faults
from bulksend.simulator.ledger import Ledger, LedgerEntry
from bulksend.simulator.message import parse_message
from bulksend.simulator.server import ServedApp
from bulksend.simulator.status_queries import StatusQueries

__all__ = [
    "DEFAULT_API_ID",
    "DEFAULT_MINUTE_SECONDS",
    "DEFAULT_PASSWORD",
    "DEFAULT_TWO_WAY_NUMBER",
    "DEFAULT_USER",
    "MAX_NUMBERS_GET",
    "MAX_NUMBERS_POST",
    "Simulator",
    "SimulatorStats",
]

DEFAULT_USER = "bulksend"
DEFAULT_PASSWORD = "sim-secret-3141"
DEFAULT_API_ID = "3000001"

DEFAULT_TWO_WAY_NUMBER = "27999000111"
"""The account's own two-way number: the sender of ``mo=1`` messages sent without ``from``."""
DEFAULT_MINUTE_SECONDS = 60.0
"""Real seconds per minute of ``deliv_time``/``scheduled_time`` delay (tests shrink it)."""

MAX_NUMBERS_GET = 300
MAX_NUMBERS_POST = 600
UNLIMITED_CREDIT = 1_000_000_000.0
"""What ``getbalance`` reports for an account without a credit limit."""
CREDITS_PER_PART = 1.0
ROUTE_SUPPORTED = (
    "OK: This prefix is currently supported. Messages sent to this prefix will be routed. Charge: "
)
ROUTE_UNSUPPORTED = (
    "ERR: This prefix is not currently supported. Messages sent to this prefix will fail. "
    "Please contact support for assistance."
)

_SESSION_PRUNE_AT = 4096
_GOOD_NUMBER = "[1-9][0-9]{7,14}"  # 8-15 ASCII digits, no leading 0 (hence no 00 prefix)
_GOOD_NUMBERS = re.compile(f"{_GOOD_NUMBER}(?:,{_GOOD_NUMBER})*")

_MESSAGE_COMMANDS = frozenset({"sendmsg", "senditem", "quicksend"})
_NO_CREDIT = err(301)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Params = dict[str, str]
Answer = str | web.Response  # a text answer (HTTP 200), or an HTTP-level refusal (429)
Process = Callable[[Params, bool], Answer]


@dataclass(slots=True)
class SimulatorStats:
    """Counters since construction. Each request lands in exactly one outcome counter:
    answered, http_503, http_429, err_901, dropped_before, dropped_after or over_connections."""

    requests: int = 0
    """Every request to a command's route (``/http/<command>``, ``/utils/routeCoverage.php``)."""
    answered: int = 0
    """Processed and answered normally (including ``ERR:`` answers)."""
    http_503: int = 0
    http_429: int = 0
    err_901: int = 0
    dropped_before: int = 0
    dropped_after: int = 0
    refused: int = 0
    """Message requests (``sendmsg``, ``senditem``, ``quicksend``) refused as a whole (a single
    ``ERR:`` answer that is not a per-recipient code)."""
    over_connections: int = 0
    """Requests refused for ``max_connections`` (503 or closed), not processed."""
    recipients: int = 0
    """Numbers in processed message requests (accepted + rejected)."""
    accepted: int = 0
    """Messages accepted (in the ledger)."""
    rejected: int = 0
    """Numbers refused with a per-recipient error."""

    @property
    def processed(self) -> int:
        """Requests the gateway acted on, whether or not the answer arrived."""
        return self.answered + self.dropped_after

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Credentials:
    user: str
    password: str = field(repr=False)
    api_id: str


class _SendRequest(NamedTuple):
    numbers: list[str]
    joined: str  # the numbers, comma-joined
    text: str
    parts: int
    climsgid: str
    sender: str
    callback: int
    mo: bool
    delay_minutes: float
    options: str


class Simulator(ServedApp):
    """The fake gateway; ``async with Simulator() as sim:`` serves it on ``sim.url``."""

    def __init__(
        self,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        api_id: str = DEFAULT_API_ID,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ledger_path: str | os.PathLike[str] | None = None,
        *,
        access_log: bool = False,
        shutdown_timeout: float = 2.0,
        keep_numbers: bool = True,
        callback_url: str | None = None,
        two_way_number: str = DEFAULT_TWO_WAY_NUMBER,
        minute_seconds: float = DEFAULT_MINUTE_SECONDS,
    ) -> None:
        if not (two_way_number.isascii() and two_way_number.isdigit()):
            raise ValueError(f"a two-way number is digits, got {two_way_number!r}")
        if not minute_seconds >= 0.0:
            raise ValueError(f"minute_seconds must be >= 0, got {minute_seconds!r}")
        self.two_way_number = two_way_number
        """Sender of ``mo=1`` messages without ``from`` (the account's own two-way number)."""
        self.minute_seconds = minute_seconds
        """Real seconds a minute of scheduled delay lasts (60.0: real time); may change live."""
        self.faults = faults if faults is not None else Faults()
        self.callback_url = callback_url
        """The account's callback URL: deliveries are pushed there (``callbacks.py``)."""
        self.callbacks: CallbackDispatcher | None = None
        """The running delivery-callback dispatcher (when started with a ``callback_url``)."""
        self.ledger = Ledger(keep_numbers=keep_numbers)
        self.batches = Batches()
        self.queries = StatusQueries(self.ledger, self.faults)
        """``querymsg``: statuses over time, the query throttle, counters (``status_queries.py``)."""
        """The batch interface's live batches (``/http_batch/``, ``batches.py``)."""
        self.stats = SimulatorStats()
        self._credentials = _Credentials(user, password, api_id)
        self._sessions: dict[str, float] = {}  # session id -> monotonic time of last use
        self._busy = 0  # requests in progress (max_connections)
        self._host = host
        self._port = port
        self._ledger_path = ledger_path
        self._access_log = access_log
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._started_before = False

    def __repr__(self) -> str:
        where = self.url if self._runner is not None else "stopped"
        return f"<Simulator {where} user={self._credentials.user!r} {self.faults!r}>"

    # -- life cycle ----------------------------------------------------------------------------

    def make_callbacks(self, url: str) -> CallbackDispatcher:
        return CallbackDispatcher(url, self.ledger, self.faults, self._credentials.api_id)

    # -- account controls ----------------------------------------------------------------------

    def set_credentials(
        self, user: str | None = None, password: str | None = None, api_id: str | None = None
    ) -> None:
        """Change the account's credentials; ``None`` keeps a value. Sessions stay valid."""
        if user is not None:
            self._credentials.user = user
        if password is not None:
            self._credentials.password = password
        if api_id is not None:
            self._credentials.api_id = api_id

    def expire_sessions(self) -> None:
        """Forget every session: the next call with any session id answers ``ERR: 003``."""
        self._sessions.clear()

    def expire_batches(self) -> None:
        """Forget every batch: the next use of any batch id answers ``ERR: 201``."""
        self.batches.expire_all()

    # -- HTTP ----------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (for embedding; :meth:`start` serves it itself)."""
        app = web.Application()
        commands: dict[str, Process] = {
            "auth": self._auth,
            "ping": self._ping,
            "sendmsg": self._sendmsg,
            "querymsg": self._querymsg,
            "getmsgcharge": self._getmsgcharge,
            "getbalance": self._getbalance,
            "delmsg": self._delmsg,
        }
        for command, process in commands.items():
            handler = self._handler(command, process)
            app.router.add_route("GET", f"/http/{command}", handler)
            app.router.add_route("POST", f"/http/{command}", handler)
        batch_commands: dict[str, Process] = {
            "startbatch": self._startbatch,
            "senditem": self._senditem,
            "quicksend": self._quicksend,
            "endbatch": self._endbatch,
        }
        for command, process in batch_commands.items():
            handler = self._handler(command, process)
            app.router.add_route("GET", f"/http_batch/{command}", handler)
            app.router.add_route("POST", f"/http_batch/{command}", handler)
        coverage = self._handler("routeCoverage", self._route_coverage)
        for path in ("/utils/routeCoverage.php", "/utils/routeCoverage"):
            app.router.add_route("GET", path, coverage)
            app.router.add_route("POST", path, coverage)
        return app

    def _handler(self, command: str, process: Process) -> Handler:
        stats = self.stats

        async def handle(request: web.Request) -> web.StreamResponse:
            stats.requests += 1
            faults = self.faults
            cap = faults.max_connections
            if cap is not None and self._busy >= cap:
                stats.over_connections += 1
                if faults.over_connections == "refuse":
                    return _abort(request)
                await request.read()
                return web.Response(
                    status=503, text="503: Too many connections", headers={"Retry-After": "1"}
                )
            self._busy += 1
            try:
                return await handle_one(request)
            finally:
                self._busy -= 1

        async def handle_one(request: web.Request) -> web.StreamResponse:
            faults = self.faults
            fault, delay = Fault.NONE, 0.0
            if command in faults.commands:
                fault, delay = faults.draw(), faults.delay()
            if fault is Fault.NONE or fault is Fault.DROP_AFTER:
                params = await _read_params(request)
                answer = process(params, request.method == "POST")
                if faults.per_recipient_latency and command in _MESSAGE_COMMANDS:
                    to = params.get("to", "")
                    delay += faults.per_recipient_latency * (to.count(",") + 1 if to else 0)
                if delay > 0.0:
                    await asyncio.sleep(delay)
                if fault is Fault.DROP_AFTER:
                    stats.dropped_after += 1
                    return _abort(request)
                if isinstance(answer, str):
                    stats.answered += 1
                    return web.Response(text=answer)
                stats.http_429 += 1  # the only HTTP-level answer a command gives
                return answer
            if fault is not Fault.DROP_BEFORE:
                # Read the request before answering, as a real server does: one that answers
                # with the body unread closes the connection afterwards, and a client that
                # already pooled it for reuse would see its next request dropped.
                await request.read()
            if delay > 0.0:
                await asyncio.sleep(delay)
            if fault is Fault.HTTP_503:
                stats.http_503 += 1
                return web.Response(
                    status=503, text="503: Service Unavailable", headers={"Retry-After": "1"}
                )
            if fault is Fault.ERR_901:
                stats.err_901 += 1
                return web.Response(text=err(901))
            stats.dropped_before += 1
            return _abort(request)

        return handle

    # -- commands ------------------------------------------------------------------------------

    def _auth(self, params: Params, is_post: bool) -> Answer:
        credentials = self._credentials
        if params.get("api_id") != credentials.api_id:
            return err(108)
        if params.get("user") != credentials.user or params.get("password") != credentials.password:
            return err(1)
        session_id = os.urandom(16).hex()
        sessions = self._sessions
        now = time.monotonic()
        if len(sessions) >= _SESSION_PRUNE_AT:
            ttl = self.faults.session_ttl
            for stale in [sid for sid, last in sessions.items() if now - last > ttl]:
                del sessions[stale]
        sessions[session_id] = now
        return "OK: " + session_id

    def _ping(self, params: Params, is_post: bool) -> Answer:
        session_id = params.get("session_id")
        if not session_id:
            return err(5)
        if not self._touch(session_id):
            return err(3)
        return "OK:"

    def _touch(self, session_id: str) -> bool:
        """Extend a live session; False (and forget it) if unknown or idle past the TTL."""
        sessions = self._sessions
        last = sessions.get(session_id)
        now = time.monotonic()
        if last is None or now - last > self.faults.session_ttl:
            sessions.pop(session_id, None)
            return False
        sessions[session_id] = now
        return True

    def _authenticate(self, params: Params) -> str | None:
        """None when the call may proceed, else the ``ERR:`` line that refuses it."""
        session_id = params.get("session_id")
        if session_id:
            return None if self._touch(session_id) else err(3)
        api_id, user, password = params.get("api_id"), params.get("user"), params.get("password")
        if api_id is None and user is None and password is None:
            return err(5)
        credentials = self._credentials
        if api_id != credentials.api_id:
            return err(108)
        if user != credentials.user or password != credentials.password:
            return err(1)
        return None

    def _sendmsg(self, params: Params, is_post: bool) -> Answer:
        stats = self.stats
        refusal = self._authenticate(params)
        if refusal is not None:
            stats.refused += 1
            return refusal
        parsed = _parse_sendmsg(params, is_post)
        if isinstance(parsed, int):
            stats.refused += 1
            return err(parsed)
        return self._send(parsed)

    def _send(self, parsed: _SendRequest) -> Answer:
        """Throttle, charge, record and answer a message to one or more numbers (``sendmsg``,
        ``quicksend``; steps 4-7 of the module docstring)."""
        stats = self.stats
        numbers = parsed.numbers
        faults = self.faults
        codes = _refusals(numbers, parsed.joined, faults)
        if codes is None:
            accepted = numbers
        else:
            accepted = [n for n, code in zip(numbers, codes, strict=True) if not code]
        wait = faults.admit(len(accepted))
        if wait > 0.0:
            return web.Response(
                status=429, text="429: Too Many Requests", headers=faults.retry_after(wait)
            )
        if not faults.charge(len(accepted) * parsed.parts):
            stats.refused += 1
            return err(301)
        stats.recipients += len(numbers)
        stats.accepted += len(accepted)
        stats.rejected += len(numbers) - len(accepted)
        delay = parsed.delay_minutes * self.minute_seconds
        ids = self.ledger.accept(
            accepted,
            parsed.text,
            climsgid=parsed.climsgid,
            parts=parsed.parts,
            sender=parsed.sender or (self.two_way_number if parsed.mo else ""),
            callback=parsed.callback,
            joined=parsed.joined if codes is None else None,
            options=parsed.options,
            due=time.monotonic() + delay if delay > 0.0 else 0.0,
        )
        if len(numbers) == 1:
            return "ID: " + ids[0] if codes is None else err(codes[0])
        if codes is None:
            return "ID: " + "\nID: ".join(map(" To: ".join, zip(ids, numbers, strict=True))) + "\n"
        next_id = iter(ids).__next__
        refused = {code: err(code) + " To: " for code in set(codes) if code}
        lines = [
            f"{refused[code]}{number}\n" if code else f"ID: {next_id()} To: {number}\n"
            for number, code in zip(numbers, codes, strict=True)
        ]
        return "".join(lines)

    # -- the batch interface (/http_batch/, batches.py) -------------------------------------------

    def _batch(self, params: Params) -> BatchTemplate | None:
        faults = self.faults
        return self.batches.get(params.get("batch_id"), faults.batch_ttl, faults.batch_expire_every)

    def _startbatch(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        batch = parse_startbatch(params, time.time())
        if isinstance(batch, int):
            return err(batch)
        self.batches.add(batch, self.faults.batch_ttl)
        return "ID: " + batch.batch_id

    def _senditem(self, params: Params, is_post: bool) -> Answer:
        stats = self.stats
        refusal = self._authenticate(params)
        if refusal is not None:
            stats.refused += 1
            return refusal
        batch = self._batch(params)
        if batch is None:
            stats.refused += 1
            return err(201)
        to = params.get("to", "").strip()
        if not to or "," in to:
            stats.refused += 1
            return err(101)
        rendered = batch.render(params)
        if isinstance(rendered, int):
            stats.refused += 1
            return err(rendered)
        faults = self.faults
        codes = _refusals([to], to, faults)
        wait = faults.admit(1 if codes is None else 0)
        if wait > 0.0:
            return web.Response(
                status=429, text="429: Too Many Requests", headers=faults.retry_after(wait)
            )
        if codes is not None:
            batch.items += 1
            stats.recipients += 1
            stats.rejected += 1
            return err(codes[0])
        if not faults.charge(rendered.parts):
            stats.refused += 1
            return err(301)
        batch.items += 1
        stats.recipients += 1
        stats.accepted += 1
        delay = batch.delay_minutes(time.time()) * self.minute_seconds
        ids = self.ledger.accept(
            [to],
            rendered.text,
            climsgid=batch.climsgid,
            parts=rendered.parts,
            sender=batch.sender or (self.two_way_number if batch.mo else ""),
            callback=batch.callback,
            joined=to,
            options=batch.options,
            due=time.monotonic() + delay if delay > 0.0 else 0.0,
        )
        return "ID: " + ids[0]

    def _quicksend(self, params: Params, is_post: bool) -> Answer:
        stats = self.stats
        refusal = self._authenticate(params)
        if refusal is not None:
            stats.refused += 1
            return refusal
        batch = self._batch(params)
        if batch is None:
            stats.refused += 1
            return err(201)
        if len(batch.pieces) > 1:
            stats.refused += 1
            return err(202)  # placeholders: this batch has no template that can go out as is
        to = _split_numbers(params, is_post)
        if isinstance(to, int):
            stats.refused += 1
            return err(to)
        rendered = batch.render(params)
        if isinstance(rendered, int):
            stats.refused += 1
            return err(rendered)
        numbers, joined = to
        answer = self._send(
            _SendRequest(
                numbers,
                joined,
                rendered.text,
                rendered.parts,
                batch.climsgid,
                batch.sender,
                batch.callback,
                batch.mo,
                batch.delay_minutes(time.time()),
                batch.options,
            )
        )
        if isinstance(answer, str) and not answer.startswith(_NO_CREDIT):
            batch.items += 1
        return answer

    def _endbatch(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        batch = self._batch(params)
        if batch is None:
            return err(201)
        self.batches.end(batch.batch_id)
        return "OK"

    # -- queries -----------------------------------------------------------------------------------

    def _query_target(self, params: Params) -> LedgerEntry | str:
        """The message a query names (by ``apimsgid``, else ``climsgid``), or the ERR line."""
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        api_msg_id = params.get("apimsgid")
        if api_msg_id:
            entry = self.ledger.find(api_msg_id)
            return err(103) if entry is None else entry
        climsgid = params.get("climsgid")
        if climsgid:
            entry = self.ledger.find_by_climsgid(climsgid)
            return err(104) if entry is None else entry
        return err(109)

    def _querymsg(self, params: Params, is_post: bool) -> Answer:
        throttled = self.queries.admit()
        if throttled is not None:
            return web.Response(status=429, text="429: Too Many Requests", headers=throttled)
        return self.queries.legacy_answer(self._query_target(params))

    def _getmsgcharge(self, params: Params, is_post: bool) -> Answer:
        throttled = self.queries.admit()
        if throttled is not None:
            return web.Response(status=429, text="429: Too Many Requests", headers=throttled)
        return self.queries.charge_answer(self._query_target(params))

    def _delmsg(self, params: Params, is_post: bool) -> Answer:
        entry = self._query_target(params)
        if isinstance(entry, str):
            return entry
        stopped = self.ledger.cancel(entry.api_msg_id)
        if stopped is not None:
            credit = self.faults.credit
            if credit is not None:
                self.faults.credit = credit + stopped.parts
            if self.callbacks is not None:
                self.callbacks.on_cancelled(stopped)
        return f"ID: {entry.api_msg_id} Status: {self.ledger.status(entry.api_msg_id)}"

    def _route_coverage(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        msisdn = params.get("msisdn", "").strip().removeprefix("+")
        if not msisdn:
            return err(101)
        if not (len(msisdn) <= 15 and msisdn.isascii() and msisdn.isdigit()):
            return err(105)
        prefixes = self.faults.reject_prefixes
        if prefixes and msisdn.startswith(prefixes):
            return ROUTE_UNSUPPORTED
        return ROUTE_SUPPORTED + f"{CREDITS_PER_PART:g}"

    def _getbalance(self, params: Params, is_post: bool) -> Answer:
        refusal = self._authenticate(params)
        if refusal is not None:
            return refusal
        credit = self.faults.credit
        return f"Credit: {UNLIMITED_CREDIT if credit is None else credit:.3f}"


# -- pure helpers ------------------------------------------------------------------------------


def _abort(request: web.Request) -> web.Response:
    """Abort the connection; aiohttp then fails to write the returned response and moves on."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


async def _read_params(request: web.Request) -> Params:
    """Form parameters of the body (POST) and of the query string; the body wins, then the
    first occurrence of a name. Names are lowercased."""
    params: Params = {}
    if request.method == "POST" and request.body_exists:
        if request.headers.get("Content-Type", "").startswith("multipart/"):
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, str):
                    params.setdefault(name.lower(), value)
        else:
            body = await request.read()
            _parse_form(body.decode("utf-8", "replace"), params)
    query = request.rel_url.raw_query_string
    if query:
        _parse_form(query, params)
    return params


def _parse_form(data: str, into: Params) -> None:
    """Parse ``application/x-www-form-urlencoded`` into ``into`` without overwriting names."""
    for pair in data.split("&"):
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        name = name.lower()
        if not name or name in into:
            continue
        if "%" in value or "+" in value:
            if name == "to":  # thousands of %2C: replace them in C, unquote only what remains
                value = value.replace("%2C", ",").replace("%2c", ",")
                if "%" in value or "+" in value:
                    value = unquote_plus(value)
            else:
                value = unquote_plus(value)
        into[name] = value


def _refusals(numbers: list[str], joined: str, faults: Faults) -> list[int] | None:
    """None when every number is accepted, else each number's error code (0: accepted).

    The common case, a batch of good numbers and no reject rule hit, is decided by one regular
    expression over the comma-joined string (and one C-level pass per reject rule); only a batch
    with a refusal is looked at number by number.
    """
    prefixes, suffixes = faults.reject_prefixes, faults.reject_suffixes
    if (
        _GOOD_NUMBERS.fullmatch(joined) is not None
        and not (prefixes and any(map(str.startswith, numbers, repeat(prefixes))))
        and not (suffixes and any(map(str.endswith, numbers, repeat(suffixes))))
    ):
        return None
    reject_code = faults.reject_code
    return [
        105
        if not (8 <= len(n) <= 15 and n.isascii() and n.isdigit() and n[0] != "0")
        else reject_code
        if (prefixes and n.startswith(prefixes)) or (suffixes and n.endswith(suffixes))
        else 0
        for n in numbers
    ]


def _parse_sendmsg(params: Params, is_post: bool) -> _SendRequest | int:
    """The request's numbers and message, or the whole-request error code (app docstring, 3.)."""
    to = _split_numbers(params, is_post)
    if isinstance(to, int):
        return to
    numbers, joined = to
    message = parse_message(params, time.time())
    if isinstance(message, int):
        return message
    return _SendRequest(
        numbers,
        joined,
        message.text,
        message.parts,
        message.climsgid,
        message.sender,
        message.callback,
        message.mo,
        message.delay_minutes,
        message.options,
    )


def _split_numbers(params: Params, is_post: bool) -> tuple[list[str], str] | int:
    """``to`` as a list of numbers and comma-joined, or 101 (missing, empty, too many)."""
    to = params.get("to")
    if not to:
        return 101
    numbers = to.split(",")
    if " " in to:
        numbers = [n.strip() for n in numbers]
    if "" in numbers:
        numbers = [n for n in numbers if n]
    joined = to if len(numbers) == to.count(",") + 1 and " " not in to else ",".join(numbers)
    if not numbers or len(numbers) > (MAX_NUMBERS_POST if is_post else MAX_NUMBERS_GET):
        return 101
    return numbers, joined
