"""Status queries on the simulated gateways: statuses that move on by themselves, a query throttle
and the queries' own counters.

Both simulators answer a message-status query (legacy ``/http/querymsg`` and ``/http/getmsgcharge``,
One API ``GET /v1/message/<id>``) through one :class:`StatusQueries`. What it promises:

* **Statuses progress over time, with or without callbacks.** A message whose delivery the
  callback dispatcher plays (sent with a callback value, to a simulator with a ``callback_url``)
  has the status the dispatcher gave it (the ledger's). Any other message is played here, on the
  same clock as the dispatcher: ``011`` while scheduled, then ``003`` (delivered to gateway) from
  the moment it left, then, ``2 x faults.delivery_delay`` seconds after it left, its final
  status: ``004``, or with probability ``faults.delivery_failure_rate`` an error (``007``,
  ``005``, ``010``, ``009``, as the dispatcher draws them). The draw is a pure function of the
  message id (a hash), so every query of one message agrees, whatever the order of queries;
  the final status is then written to the ledger (``getmsgcharge`` and later queries agree).
  A message stopped by ``delmsg`` stays ``006``.
* **Old ids expire.** With ``message_ttl`` set, a message accepted more than that many seconds
  ago is no longer known: the legacy API answers ``ERR: 103`` and the One API 404 (as for an id
  it never issued). ``None`` (the default): ids are kept for ever.
* **Queries are paced like any call.** ``query_mps`` (``None``: unlimited) is a token bucket of
  queries a second holding ``query_burst`` (default one second's worth); a query over it gets
  HTTP 429 with ``Retry-After`` rendered as ``faults.throttle_retry_after`` says, and is not
  answered (nothing counted but ``throttled``). It is separate from the message throttle
  (``faults.throttle_mps``), as the gateway's per-call limits are.
* **Counted.** :attr:`StatusQueries.stats`: every query lands in exactly one of ``answered``,
  ``unknown_ids`` (an id the gateway does not know or no longer keeps), ``refused`` (bad
  credentials, no id) or ``throttled``; ``by_status`` counts the answered ones by status.

Pure but for the clock and the ledger: no I/O; the handlers (``app.py``, ``one_api.py``) call
:meth:`StatusQueries.admit` first, then :meth:`StatusQueries.status` for a message they found.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

from bulksend.simulator.codes import (
    STATUS_CANCELLED,
    STATUS_DELIVERED_TO_GATEWAY,
    STATUS_SCHEDULED,
    err,
)
from bulksend.simulator.faults import Faults
from bulksend.simulator.ledger import Ledger, LedgerEntry

__all__ = ["QueryStats", "StatusQueries"]

DELIVERED = "004"
_ERROR_STATUSES = ("007", "007", "005", "010", "009", "007")
"""The dispatcher's error draw (``callbacks.py``): 007 half the time, else 005, 010, 009."""
_SETTLED = frozenset({"004", "005", "006", "007", "009", "010", "012", "014"})


@dataclass(slots=True)
class QueryStats:
    """Status queries since construction (see the module docstring)."""

    queries: int = 0
    answered: int = 0
    unknown_ids: int = 0
    refused: int = 0
    throttled: int = 0
    by_status: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "queries": self.queries,
            "answered": self.answered,
            "unknown_ids": self.unknown_ids,
            "refused": self.refused,
            "throttled": self.throttled,
            "by_status": dict(sorted(self.by_status.items())),
        }


def _draw(api_msg_id: str, failure_rate: float) -> str:
    """The final status of a message, a pure function of its id (uniform over ids)."""
    digest = hashlib.blake2b(api_msg_id.encode(), digest_size=8).digest()
    u = int.from_bytes(digest[:6]) / float(1 << 48)
    if u < failure_rate:
        return _ERROR_STATUSES[digest[6] % len(_ERROR_STATUSES)]
    return DELIVERED


class StatusQueries:
    """The status side of one simulator: progression, expiry, throttle, counters."""

    def __init__(
        self,
        ledger: Ledger,
        faults: Faults,
        *,
        query_mps: float | None = None,
        query_burst: float | None = None,
        message_ttl: float | None = None,
    ) -> None:
        self.ledger = ledger
        self.faults = faults
        self.stats = QueryStats()
        self.message_ttl = message_ttl
        """Seconds after acceptance a message id is still known (``None``: for ever)."""
        # A bucket of its own, with the message throttle's exact semantics.
        self._bucket = Faults(throttle_mps=query_mps, throttle_burst=query_burst)

    @property
    def query_mps(self) -> float | None:
        """Queries a second allowed through (``None``: unlimited); may change live."""
        return self._bucket.throttle_mps

    @query_mps.setter
    def query_mps(self, rate: float | None) -> None:
        self._bucket.throttle_mps = rate

    @property
    def query_burst(self) -> float | None:
        return self._bucket.throttle_burst

    @query_burst.setter
    def query_burst(self, burst: float | None) -> None:
        self._bucket.throttle_burst = burst

    def admit(self) -> dict[str, str] | None:
        """Count one query and take it from the bucket: ``None`` when admitted, else the
        headers of its 429 (``Retry-After``)."""
        self.stats.queries += 1
        wait = self._bucket.admit(1)
        if wait <= 0.0:
            return None
        self.stats.throttled += 1
        return self.faults.retry_after(wait)

    def refused(self) -> None:
        """The query was refused (credentials, no id): count it."""
        self.stats.refused += 1

    def unknown(self) -> None:
        """The query named an id the gateway does not know: count it."""
        self.stats.unknown_ids += 1

    def expired(self, entry: LedgerEntry, now: float | None = None) -> bool:
        """Whether the gateway no longer keeps this message (``message_ttl``)."""
        ttl = self.message_ttl
        return ttl is not None and (time.time() if now is None else now) - entry.time > ttl

    def status(self, entry: LedgerEntry, now: float | None = None) -> tuple[str, float]:
        """The message's status now and the unix time it took it (counted as answered)."""
        status, since = self._status(entry, time.time() if now is None else now)
        self.stats.answered += 1
        self.stats.by_status[status] += 1
        return status, since

    def _status(self, entry: LedgerEntry, now: float) -> tuple[str, float]:
        ledger = self.ledger
        api_msg_id = entry.api_msg_id
        recorded = ledger.status(api_msg_id)
        if recorded == STATUS_SCHEDULED:
            return recorded, entry.time
        left = entry.time + ledger.delay_of(api_msg_id)
        if recorded in _SETTLED or recorded == STATUS_CANCELLED:
            return recorded, left + 2 * self.faults.delivery_delay
        if ledger.callback_of(api_msg_id):
            return recorded, left  # the dispatcher plays it (and sets the final status)
        settles = left + 2 * self.faults.delivery_delay
        if now < settles:
            return STATUS_DELIVERED_TO_GATEWAY, left
        final = _draw(api_msg_id, self.faults.delivery_failure_rate)
        ledger.set_status(api_msg_id, final)
        return final, settles

    # -- the answers, per API ------------------------------------------------------------------

    def legacy_answer(self, target: LedgerEntry | str) -> str:
        """``querymsg``'s answer for what the handler found (an entry, or its ``ERR:`` line):
        ``ID: <id> Status: <NNN>``; an expired id is ``ERR: 103`` like one never issued."""
        found = self._found(target)
        if isinstance(found, str):
            return found
        status, _ = self.status(found)
        return f"ID: {found.api_msg_id} Status: {status}"

    def charge_answer(self, target: LedgerEntry | str) -> str:
        """``getmsgcharge``'s answer, by the same rules: ``apiMsgId: <id> charge: <parts> status:
        <NNN>`` (the charge is 0.0 once stopped by ``delmsg`` and refunded)."""
        found = self._found(target)
        if isinstance(found, str):
            return found
        status, _ = self.status(found)
        charge = 0.0 if status == STATUS_CANCELLED else float(found.parts)
        return f"apiMsgId: {found.api_msg_id} charge: {charge} status: {status}"

    def _found(self, target: LedgerEntry | str) -> LedgerEntry | str:
        """The entry, or the ``ERR:`` line to answer (counted)."""
        if isinstance(target, str):
            if target.startswith(("ERR: 103", "ERR: 104")):
                self.unknown()
            else:
                self.refused()
            return target
        if self.expired(target):
            self.unknown()
            return err(103)
        return target
