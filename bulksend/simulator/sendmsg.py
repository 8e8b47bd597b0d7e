"""``sendmsg``: a message to one or more numbers, from the request to the answer.

:class:`SendmsgCalls` answers ``/http/sendmsg`` and holds the steps every message command shares
(:meth:`SendmsgCalls._send`: per-number refusals, the throttle, credit, the ledger and the
answer, steps 3-7 of :mod:`bulksend.simulator.app`'s docstring), which the batch interface's
``quicksend`` uses as it is. The message's own parameters are :mod:`bulksend.simulator.message`'s;
this module owns the numbers (``to``: split, counted against :data:`MAX_NUMBERS_GET` /
:data:`MAX_NUMBERS_POST`, checked by :func:`_refusals`) and what is done with them.

What it promises: a request is refused as a whole (nothing charged, nothing in the ledger) or
processed as a whole; each number gets exactly one ``ID:`` or ``ERR:`` line, in request order.
The common case, a batch of good numbers and no reject rule hit, is decided by one regular
expression over the comma-joined ``to``.
"""

from __future__ import annotations

import re
import time
from itertools import repeat
from typing import NamedTuple

from aiohttp import web

from bulksend.simulator.account import AccountCalls, Answer, Params
from bulksend.simulator.codes import err
from bulksend.simulator.faults import Faults
from bulksend.simulator.message import parse_message

__all__ = ["MAX_NUMBERS_GET", "MAX_NUMBERS_POST", "SendmsgCalls"]

MAX_NUMBERS_GET = 300
MAX_NUMBERS_POST = 600

_GOOD_NUMBER = "[1-9][0-9]{7,14}"  # 8-15 ASCII digits, no leading 0 (hence no 00 prefix)
_GOOD_NUMBERS = re.compile(f"{_GOOD_NUMBER}(?:,{_GOOD_NUMBER})*")


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


class SendmsgCalls(AccountCalls):
    """``sendmsg``, and the steps every message command shares (see the module docstring)."""

    minute_seconds: float
    two_way_number: str

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
        ``quicksend``; steps 4-7 of the app docstring)."""
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
