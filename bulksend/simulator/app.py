"""The simulated gateway: Clickatell's legacy HTTP API served by aiohttp, with faults on demand.

:class:`Simulator` owns the server's life cycle, the account (credentials, sessions, credit through
:class:`~bulksend.simulator.faults.Faults`), the :class:`~bulksend.simulator.ledger.Ledger` and the
request handlers; with a ``callback_url`` it also runs a
:class:`~bulksend.simulator.callbacks.CallbackDispatcher` that plays each message's delivery and
pushes the status callbacks (``sendmsg`` with ``callback`` 1-7). It imports nothing of
bulksend's client side, so it checks the client independently; of ours it uses only ``bulksend.gsm`` (part counting, UCS-2 hex).

This module is the server and the request's path (routes, the connection cap, faults, reading
the parameters; steps 0-1 below); the commands are answered in three rooms the
:class:`Simulator` is made of, each a base class over the same state:

* ``account.py`` (:class:`~bulksend.simulator.account.AccountCalls`): credentials, sessions and
  authentication (step 2), ``auth``, ``ping``, ``getbalance``, ``querymsg``, ``getmsgcharge``,
  ``delmsg``, ``routeCoverage``;
* ``sendmsg.py`` (:class:`~bulksend.simulator.sendmsg.SendmsgCalls`): ``sendmsg``, and the steps
  every message command shares (3-7);
* ``http_batch.py`` (:class:`~bulksend.simulator.http_batch.BatchCalls`): ``startbatch``,
  ``senditem``, ``quicksend``, ``endbatch``.

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
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_plus

from aiohttp import web

from bulksend.simulator.account import (
    CREDITS_PER_PART,
    ROUTE_SUPPORTED,
    ROUTE_UNSUPPORTED,
    UNLIMITED_CREDIT,
    Answer,
    Credentials,
    Params,
    SimulatorStats,
)
from bulksend.simulator.batches import Batches
from bulksend.simulator.callbacks import CallbackDispatcher
from bulksend.simulator.codes import err
from bulksend.simulator.faults import Fault, Faults
from bulksend.simulator.http_batch import BatchCalls
from bulksend.simulator.ledger import Ledger
from bulksend.simulator.sendmsg import MAX_NUMBERS_GET, MAX_NUMBERS_POST
from bulksend.simulator.server import ServedApp
from bulksend.simulator.status_queries import StatusQueries

__all__ = [
    "CREDITS_PER_PART",
    "DEFAULT_API_ID",
    "DEFAULT_MINUTE_SECONDS",
    "DEFAULT_PASSWORD",
    "DEFAULT_TWO_WAY_NUMBER",
    "DEFAULT_USER",
    "MAX_NUMBERS_GET",
    "MAX_NUMBERS_POST",
    "ROUTE_SUPPORTED",
    "ROUTE_UNSUPPORTED",
    "UNLIMITED_CREDIT",
    "Answer",
    "Handler",
    "Params",
    "Process",
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

_MESSAGE_COMMANDS = frozenset({"sendmsg", "senditem", "quicksend"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Process = Callable[[Params, bool], Answer]


class Simulator(BatchCalls, ServedApp):
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
        """``querymsg``/``getmsgcharge``: statuses over time, their throttle, counters."""
        """The batch interface's live batches (``/http_batch/``, ``batches.py``)."""
        self.stats = SimulatorStats()
        self._credentials = Credentials(user, password, api_id)
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
