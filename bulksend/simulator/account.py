"""The simulated account: who may call it, and the calls that ask about it.

:class:`AccountCalls` is the floor of :class:`~bulksend.simulator.app.Simulator`'s command
handlers. It holds (as attributes the simulator sets) the account's credentials and sessions,
its credit (through :class:`~bulksend.simulator.faults.Faults`), its ledger and the request
counters (:class:`SimulatorStats`), and it answers:

* authentication for every command (:meth:`AccountCalls._authenticate`, step 2 of the app
  docstring): a session id alone, else ``api_id`` then ``user`` and ``password``;
* ``auth`` (a new session) and ``ping`` (extends one);
* ``querymsg``, ``getmsgcharge`` and ``delmsg`` (by ``apimsgid``, else ``climsgid``; ``delmsg``
  stops a scheduled message and refunds its credit); the two queries answer through
  :class:`~bulksend.simulator.status_queries.StatusQueries` (statuses over time, a throttle of
  their own, counters);
* ``getbalance`` and ``/utils/routeCoverage.php``.

The exact answers are in :mod:`bulksend.simulator.app`'s docstring ("The other answers"). Like
every command handler these are synchronous: the request handler calls one between reading the
parameters and answering, so no other request sees the account half-changed. Nothing of
bulksend's client side is imported.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

from aiohttp import web

from bulksend.simulator.callbacks import CallbackDispatcher
from bulksend.simulator.codes import err
from bulksend.simulator.faults import Faults
from bulksend.simulator.ledger import Ledger, LedgerEntry
from bulksend.simulator.status_queries import StatusQueries

__all__ = [
    "CREDITS_PER_PART",
    "ROUTE_SUPPORTED",
    "ROUTE_UNSUPPORTED",
    "UNLIMITED_CREDIT",
    "AccountCalls",
    "Answer",
    "Credentials",
    "Params",
    "SimulatorStats",
]

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

Params = dict[str, str]
Answer = str | web.Response  # a text answer (HTTP 200), or an HTTP-level refusal (429)


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
class Credentials:
    user: str
    password: str = field(repr=False)
    api_id: str


class AccountCalls:
    """The account's state and calls (see the module docstring). The simulator sets the
    attributes below in its ``__init__``."""

    faults: Faults
    ledger: Ledger
    callbacks: CallbackDispatcher | None
    stats: SimulatorStats
    queries: StatusQueries
    _credentials: Credentials
    _sessions: dict[str, float]  # session id -> monotonic time of last use

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

    # -- auth, ping, and authenticating every call ------------------------------------------------

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
