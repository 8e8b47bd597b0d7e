"""The batch interface's state: templates registered by ``startbatch``, rendered by ``senditem``.

Pure apart from the clock and the id generator: :func:`parse_startbatch` validates a
``startbatch`` (the handler in ``app.py`` authenticates it first) into a :class:`BatchTemplate`
or the code of the ``ERR:`` answer; :meth:`BatchTemplate.render` fills it with one ``senditem``'s
parameters; :class:`Batches` holds the live batches with their expiry. The rules, first failing
check wins:

* ``startbatch``: ``template`` missing or empty → 202 (``No batch template``); ``data``/``udh``
  (no binary batches) → 101; ``unicode`` other than ``0``/``1`` → 101; ``unicode=1`` with a
  template that is not UTF-16BE hex → 116. The other options (``from``, ``mo``, ``callback`` /
  ``msg_callback``, ``msg_type``, ``concat``, ``validity``, ``deliv_time``, ``scheduled_time``,
  ``max_credits``, ``climsgid``) are checked exactly as ``sendmsg`` checks them
  (``message.py``), the template standing in for the text; the message length is not checked
  here (placeholders change it) but per item.
* **UCS-2 convention** (shared with ``bulksend.wire.batch``): with ``unicode=1`` the template is
  UTF-16BE hex, placeholders included, and is decoded before placeholders are looked for; every
  ``senditem`` value into that batch is UTF-16BE hex too (not hex → 116). Names stay ASCII.
* **Fields are positional**, as Clickatell's documents describe them: the only placeholders are
  ``#field1#`` … ``#fieldN#`` (:data:`PLACEHOLDER`: ``field`` in lower case, then a number
  without a leading zero), filled from the ``senditem`` parameters ``field1`` … ``fieldN``
  (parameter names are read case-insensitively: they arrive lower-cased). Any other ``#name#``
  (``#first_name#``, ``#Field1#``, ``#field01#``) is not a field: it stays in the text as
  written, and the ledger records it so. Rendering is one left-to-right pass: a value is never
  expanded again.
* ``senditem`` (:meth:`BatchTemplate.render`): a ``#fieldN#`` whose ``fieldN`` is missing or
  empty → 101; the rendered text longer than ``concat`` parts (at most 3) → 113, or costing more
  than ``max_credits`` → 113; parameters that fill no placeholder are ignored.
* ``quicksend`` with a template that has ``#fieldN#`` placeholders → 202: the batch has no
  template that can go out as it is (the public notes name no code; the simulator's convention).
* Expiry (:class:`Batches`): a batch is valid until ``endbatch``, until ``faults.batch_ttl``
  seconds after its start (24 h by default, the documented convention), and, with
  ``faults.batch_expire_every = K``, for K message requests (``senditem`` or ``quicksend``
  processed into it); then it answers 201 like an unknown id, for good.

A senditem message is recorded with the batch's options plus ``batch_id`` (``options_of``: sorted,
URL-encoded, never the credentials nor the template).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import NamedTuple

from bulksend.gsm import Encoding, decode_ucs2_hex, part_count
from bulksend.simulator.message import MAX_CONCAT, options_of, parse_message

__all__ = ["PLACEHOLDER", "BatchTemplate", "Batches", "Rendered", "parse_startbatch"]

PLACEHOLDER = re.compile(r"#(field[1-9][0-9]{0,5})#")
"""A template field as the gateway fills it: ``#field1#`` … ``#fieldN#``."""
_PRUNE_AT = 4096


class Rendered(NamedTuple):
    text: str
    parts: int


@dataclass(slots=True)
class BatchTemplate:
    """A registered ``startbatch``: the decoded template and the options every item shares."""

    batch_id: str
    template: str
    unicode: bool
    pieces: list[str]
    """``re.split`` of the template: literal, ``fieldN``, literal, ..., literal."""
    parts_limit: int
    max_credits: float | None
    sender: str
    mo: bool
    callback: int
    climsgid: str
    deliv_minutes: float
    scheduled_time: float | None
    options: str
    """The batch's options with ``batch_id``, as recorded for each of its messages."""
    started: float
    items: int = 0

    @property
    def names(self) -> list[str]:
        return self.pieces[1::2]

    def delay_minutes(self, now: float) -> float:
        """Minutes until an item sent at unix time ``now`` leaves."""
        if self.scheduled_time is not None:
            return max(0.0, (self.scheduled_time - now) / 60.0)
        return self.deliv_minutes

    def render(self, params: dict[str, str]) -> Rendered | int:
        """The item's text and parts, or the ``ERR:`` code (module docstring)."""
        pieces = self.pieces
        if len(pieces) == 1:
            text = pieces[0]
        else:
            out = pieces.copy()
            for i in range(1, len(pieces), 2):
                value = params.get(pieces[i])
                if not value:
                    return 101
                if self.unicode:
                    try:
                        value = decode_ucs2_hex(value)
                    except ValueError:
                        return 116
                    if not value:
                        return 101
                out[i] = value
            text = "".join(out)
        if not text:
            return 107
        parts = part_count(text, Encoding.UCS2 if self.unicode else Encoding.GSM7)
        if parts > self.parts_limit or (self.max_credits is not None and parts > self.max_credits):
            return 113
        return Rendered(text, parts)


def parse_startbatch(params: dict[str, str], now: float) -> BatchTemplate | int:
    """A new batch from a ``startbatch``'s parameters (names lower-cased), or the ``ERR:`` code."""
    template = params.get("template")
    if not template:
        return 202
    if "data" in params or "udh" in params:
        return 101
    unicode = params.get("unicode", "")
    if unicode == "1":
        try:
            template = decode_ucs2_hex(template)
        except ValueError:
            return 116
        if not template:
            return 202
    elif unicode not in ("", "0"):
        return 101
    # The options are checked as sendmsg checks them, with a one-part stand-in for the text.
    checked = {k: v for k, v in params.items() if k not in ("template", "unicode")}
    checked["text"] = "x"
    message = parse_message(checked, now)
    if isinstance(message, int):
        return message
    concat = int(params.get("concat") or 1)
    max_credits = params.get("max_credits")
    scheduled = params.get("scheduled_time")
    batch_id = os.urandom(16).hex()
    recorded = {k: v for k, v in params.items() if k != "template"}
    recorded["batch_id"] = batch_id
    pieces = PLACEHOLDER.split(template)
    return BatchTemplate(
        batch_id,
        template,
        unicode == "1",
        pieces,
        min(concat, MAX_CONCAT),
        float(max_credits) if max_credits else None,
        message.sender,
        message.mo,
        message.callback,
        message.climsgid,
        float(int(params.get("deliv_time") or 0)),
        float(int(scheduled)) if scheduled and scheduled.strip() else None,
        options_of(recorded),
        time.monotonic(),
    )


class Batches:
    """The live batches of the account, with expiry (``ttl`` seconds, ``expire_every`` items)."""

    def __init__(self) -> None:
        self._live: dict[str, BatchTemplate] = {}
        self.started = 0
        self.ended = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, batch_id: object) -> bool:
        """Whether ``batch_id`` was started and not ended (expiry is checked on use)."""
        return batch_id in self._live

    def add(self, batch: BatchTemplate, ttl: float) -> None:
        live = self._live
        if len(live) >= _PRUNE_AT:
            now = time.monotonic()
            for stale in [bid for bid, b in live.items() if now - b.started > ttl]:
                del live[stale]
                self.expired += 1
        live[batch.batch_id] = batch
        self.started += 1

    def get(
        self, batch_id: str | None, ttl: float, expire_every: int | None
    ) -> BatchTemplate | None:
        """The live batch ``batch_id``, or None (unknown, ended or expired: then forgotten)."""
        if not batch_id:
            return None
        batch = self._live.get(batch_id.lower())
        if batch is None:
            return None
        if time.monotonic() - batch.started > ttl or (
            expire_every is not None and batch.items >= expire_every
        ):
            del self._live[batch.batch_id]
            self.expired += 1
            return None
        return batch

    def end(self, batch_id: str) -> bool:
        """Forget a batch (``endbatch``); False if it was not live."""
        if self._live.pop(batch_id, None) is None:
            return False
        self.ended += 1
        return True

    def expire_all(self) -> None:
        """Forget every batch: the next use of any batch id answers ``ERR: 201``."""
        self.expired += len(self._live)
        self._live.clear()
