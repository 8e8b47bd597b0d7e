"""The gateway's vocabulary: error codes with their exact descriptions, and message statuses.

This module owns the text the simulator puts on the wire for every ``ERR:`` answer, so that one
table (copied from ``clickatell-http-api.md``) decides both the code and its wording. It promises
that :func:`err` renders exactly ``ERR: NNN, <description>`` with a three-digit code, and that
:data:`RECIPIENT_CODES` lists the codes that refuse one number rather than a whole request (the
only codes a ``reject_code`` knob may take).
"""

from __future__ import annotations

__all__ = [
    "DESCRIPTIONS",
    "RECIPIENT_CODES",
    "STATUS_CANCELLED",
    "STATUS_DELIVERED_TO_GATEWAY",
    "STATUS_SCHEDULED",
    "err",
]

DESCRIPTIONS: dict[int, str] = {
    1: "Authentication failed",
    2: "Unknown username or password",
    3: "Session ID expired",
    4: "Account frozen",
    5: "Missing session ID",
    7: "IP lockdown violation",
    101: "Invalid or missing parameters",
    102: "Invalid user data header",
    103: "Unknown API message ID",
    104: "Unknown client message ID",
    105: "Invalid destination address",
    106: "Invalid source address",
    107: "Empty message",
    108: "Invalid or missing API ID",
    109: "Missing message ID",
    113: "Maximum message parts exceeded",
    114: "Cannot route message",
    115: "Message expired",
    116: "Invalid Unicode data",
    120: "Invalid delivery time",
    121: "Destination mobile number blocked",
    122: "Destination mobile opted out",
    123: "Invalid Sender ID",
    128: "Number delisted",
    201: "Invalid batch ID",
    202: "No batch template",
    301: "No credit left",
    901: "Internal error - please retry",
}
"""Every error code the simulator can answer, with the documented description."""

RECIPIENT_CODES: frozenset[int] = frozenset({105, 114, 115, 121, 122, 128})
"""Codes that refuse a single destination number; the rest of the request goes through."""

STATUS_DELIVERED_TO_GATEWAY = "003"
"""The status of every accepted message until delivery receipts move it on."""
STATUS_CANCELLED = "006"
"""User cancelled message delivery: a scheduled message stopped by ``delmsg``."""
STATUS_SCHEDULED = "011"
"""Queued for later delivery: a ``deliv_time``/``scheduled_time`` message before its time."""


def err(code: int) -> str:
    """``ERR: NNN, description`` for a code of :data:`DESCRIPTIONS` (KeyError for any other)."""
    return f"ERR: {code:03d}, {DESCRIPTIONS[code]}"
