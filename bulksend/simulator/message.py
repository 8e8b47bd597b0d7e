"""What one ``sendmsg`` asks the gateway to send: its body, its cost and its options, validated.

:func:`parse_message` is pure: it reads the request's parameters (names already lowercased) and
returns a :class:`Message`, or the code of the whole-request ``ERR:`` answer the real gateway would
give. The destination list (``to``) is ``sendmsg.py``'s and authentication ``account.py``'s;
everything else a ``sendmsg`` carries is decided here, first failing check wins:

* ``msg_type``: ``SMS_TEXT`` (default), ``SMS_FLASH`` or one of the Nokia types of
  :data:`MSG_TYPES`, any letter case (lenient: clients differ) → else 101.
* Body. With ``data`` the message is binary: ``data`` and the optional ``udh`` are hex (``text``
  and ``unicode`` are then ignored). ``data`` not an even number of hex digits → 101; ``udh`` not
  hex, or its first octet (UDHL) not the number of octets after it → 102; nothing at all (no
  UDH, empty data) → 107; UDH + data over 140 octets → 113 (the gateway does not split a binary
  message: it would need more parts than allowed). A binary message is one part. ``udh`` without
  ``data`` → 101 (a text message carries no client UDH on this API).
  Without ``data``: ``text`` missing → 101; ``unicode`` other than ``0``/``1`` → 101;
  ``unicode=1`` with bad UTF-16 hex → 116; empty text → 107.
* ``concat`` not an integer ≥ 1 → 101; parts above ``concat`` (capped at the documented maximum
  3) → 113. ``max_credits`` not a finite number ≥ 0 → 101; below the message's cost (one credit
  per part) → 113, the same "longer than you allowed" refusal (the gateway checks it before
  charging, so nothing is charged).
* ``callback`` (or its alias ``msg_callback``; ``callback`` wins when both come) not 0-7 → 101;
  ``climsgid`` not 1-32 ASCII letters/digits → 101.
* ``deliv_time`` not an integer 0-10080 (minutes) → 120; ``scheduled_time`` not a unix time at
  most 7 days ahead → 120 (a time already past means "now"); ``validity`` not an integer ≥ 0
  (minutes) → 101. When both ``scheduled_time`` and ``deliv_time`` come, the absolute
  ``scheduled_time`` decides the delay.
* ``mo`` other than ``0``/``1`` → 101; ``from`` neither 1-16 digits nor 1-11 ASCII letters, digits
  or spaces → 106. ``mo=1`` without ``from`` is accepted (the documented convention: widely used
  clients send it on every request); the handler sends from the account's two-way number.

``deliv_ack``, ``req_feat``, ``escalate``, ``queue`` and any parameter unknown here are accepted
and passed through. Every parameter but the credentials, ``to`` and ``text`` is kept, as sent,
in :attr:`Message.options` (``name=value&...``, names sorted, URL-encoded: no comma, quote or
newline, so it sits in a CSV field as it is); :func:`parse_options` reads it back.
"""

from __future__ import annotations

import math
import re
import string
from typing import NamedTuple
from urllib.parse import parse_qsl, quote_plus

from bulksend.gsm import Encoding, decode_ucs2_hex, part_count

__all__ = [
    "MAX_BINARY_OCTETS",
    "MAX_CONCAT",
    "MAX_DELIV_TIME_MINUTES",
    "MAX_SCHEDULE_AHEAD_SECONDS",
    "MSG_TYPES",
    "NOT_OPTIONS",
    "Message",
    "options_of",
    "parse_message",
    "parse_options",
]

MAX_CONCAT = 3
MAX_DELIV_TIME_MINUTES = 10080
MAX_SCHEDULE_AHEAD_SECONDS = 7 * 24 * 3600
MAX_BINARY_OCTETS = 140
MSG_TYPES: frozenset[str] = frozenset(
    {
        "SMS_TEXT",
        "SMS_FLASH",
        "SMS_NOKIA_OLOGO",
        "SMS_NOKIA_GLOGO",
        "SMS_NOKIA_PICTURE",
        "SMS_NOKIA_RINGTONE",
        "SMS_NOKIA_RTTL",
        "SMS_NOKIA_CLEAN",
        "SMS_NOKIA_VCARD",
        "SMS_NOKIA_VCAL",
    }
)
"""Every ``msg_type`` the legacy API documents (compared upper-cased)."""

NOT_OPTIONS: frozenset[str] = frozenset({"to", "text", "user", "password", "api_id", "session_id"})
"""Parameters never copied into :attr:`Message.options` (the password above all)."""

_HEX = frozenset(string.hexdigits)
_UNRESERVED = re.compile("[A-Za-z0-9_.~-]+")  # what quote_plus leaves alone


class Message(NamedTuple):
    """A valid ``sendmsg`` body with what it costs and how it was asked to travel."""

    text: str
    """The text as the handset shows it (UCS-2 hex decoded); empty for a binary message."""
    parts: int
    """SMS parts, and so credits per recipient."""
    climsgid: str
    sender: str
    """``from`` as sent (empty when absent)."""
    mo: bool
    callback: int
    """``callback``/``msg_callback``, 0-7."""
    delay_minutes: float
    """Minutes until the message leaves (``deliv_time`` / ``scheduled_time``); 0: at once."""
    options: str
    """Every other parameter as sent, ``name=value&...`` (see the module docstring)."""


def _quote(value: str) -> str:
    """``quote_plus``, skipped for the usual value that needs no quoting (it is the slow part)."""
    return value if _UNRESERVED.fullmatch(value) else quote_plus(value)


def options_of(params: dict[str, str]) -> str:
    """The parameters of a request but credentials, ``to`` and ``text``, as ``a=1&b=2``
    (what ``urlencode`` of the sorted items gives)."""
    return "&".join(
        f"{_quote(name)}={_quote(value)}"
        for name, value in sorted(params.items())
        if name not in NOT_OPTIONS
    )


def parse_options(options: str) -> dict[str, str]:
    """The inverse of :func:`options_of` (an empty string is no options)."""
    return dict(parse_qsl(options, keep_blank_values=True))


def _int_param(value: str | None, default: int) -> int | None:
    """The integer a parameter holds (``default`` when absent or empty), None if not one."""
    if not value:
        return default
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        return None
    return int(value)


def _is_hex(value: str) -> bool:
    return len(value) % 2 == 0 and _HEX.issuperset(value)


def _body(params: dict[str, str]) -> tuple[str, int] | int:
    """The text and its parts, or the error code (module docstring, "Body")."""
    data = params.get("data")
    udh = params.get("udh")
    if data is not None:
        if not _is_hex(data):
            return 101
        udh = udh or ""
        if udh and not (_is_hex(udh) and int(udh[:2], 16) == len(udh) // 2 - 1):
            return 102
        octets = (len(udh) + len(data)) // 2
        if octets == 0:
            return 107
        if octets > MAX_BINARY_OCTETS:
            return 113
        return "", 1
    if udh is not None:
        return 101
    text = params.get("text")
    if text is None:
        return 101
    unicode = params.get("unicode", "")
    if unicode == "1":
        try:
            text = decode_ucs2_hex(text)
        except ValueError:
            return 116
        encoding = Encoding.UCS2
    elif unicode in ("", "0"):
        encoding = Encoding.GSM7
    else:
        return 101
    if not text:
        return 107
    return text, part_count(text, encoding)


def _delay_minutes(params: dict[str, str], now: float) -> float | None:
    """Minutes until the message leaves, or None for an invalid delivery time (120)."""
    deliv_time = _int_param(params.get("deliv_time"), 0)
    if deliv_time is None or deliv_time > MAX_DELIV_TIME_MINUTES:
        return None
    scheduled = params.get("scheduled_time")
    if scheduled:
        when = _int_param(scheduled, 0)
        if when is None or when > now + MAX_SCHEDULE_AHEAD_SECONDS:
            return None
        return max(0.0, (when - now) / 60.0)
    return float(deliv_time)


def parse_message(params: dict[str, str], now: float) -> Message | int:
    """The request's message, or the whole-request error code; ``now`` is the unix time."""
    msg_type = params.get("msg_type")
    if msg_type and msg_type.upper() not in MSG_TYPES:
        return 101
    body = _body(params)
    if isinstance(body, int):
        return body
    text, parts = body

    concat = _int_param(params.get("concat"), 1)
    if concat is None or concat < 1:
        return 101
    if parts > min(concat, MAX_CONCAT):
        return 113
    max_credits = params.get("max_credits")
    if max_credits:
        try:
            allowed = float(max_credits)
        except ValueError:
            return 101
        if not (math.isfinite(allowed) and allowed >= 0):
            return 101
        if parts > allowed:
            return 113

    callback = _int_param(params.get("callback") or params.get("msg_callback"), 0)
    if callback is None or callback > 7:
        return 101
    climsgid = params.get("climsgid", "")
    if climsgid and not (len(climsgid) <= 32 and climsgid.isascii() and climsgid.isalnum()):
        return 101

    delay = _delay_minutes(params, now)
    if delay is None:
        return 120
    if _int_param(params.get("validity"), 0) is None:
        return 101

    mo = params.get("mo", "")
    if mo not in ("", "0", "1"):
        return 101
    sender = params.get("from", "")
    if sender:
        digits = sender.isdigit() and sender.isascii() and len(sender) <= 16
        alpha = len(sender) <= 11 and sender.isascii() and sender.replace(" ", "").isalnum()
        if not (digits or alpha):
            return 106
    return Message(text, parts, climsgid, sender, mo == "1", callback, delay, options_of(params))
