"""The ``clientMessageId`` of a row: one stable key that ties callbacks and status answers to it.

Pure: no I/O; imports nothing of ours at module level (:func:`key_rows` imports the One API wire
when it meets one). What it promises:

* **The format** is ``bs`` + the campaign's tag (12 lowercase hex digits) + ``r`` + the input row
  number in decimal, e.g. ``bs3f9a0c12d4e7r1042``. Only ASCII letters and digits, at most
  :data:`MAX_LENGTH` (32) characters for any row below 10^17: it fits the strictest documented
  limit of a client message id (the legacy ``climsgid``, "up to 32 alphanumeric chars"; the
  shared notes give the One API's ``clientMessageId`` no other), and :mod:`bulksend.receipts`
  stores it as sent (``cli_msg_id``). ``r`` is not a hex digit, so the key splits back without
  ambiguity (:func:`row_of`).
* **The tag** (:func:`campaign_tag`) is the first 12 hex digits of SHA-256 over the journal
  header's ``fingerprint`` (text, sender, options) and ``created`` (when the results file was
  started). Every run of one results file has the same header, so a row keeps its key across
  runs and receipts from an earlier run still match it; another campaign (another text, or the
  same text started again into another results file or after ``--restart``) has another tag, so
  its receipts never match, even when they share a receipts file and a number.
* **A key names the row it was sent for.** After the input is re-keyed (an edited file resumed by
  number) a row may have moved since: a receipt is joined to the row its key names only when its
  number is that row's number (:mod:`bulksend.reconcile`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = [
    "MAX_LENGTH",
    "PREFIX",
    "campaign_tag",
    "client_message_id",
    "key_prefix",
    "key_rows",
    "row_of",
]

PREFIX = "bs"
TAG_DIGITS = 12
MAX_LENGTH = 32
"""The longest key (rows below 10^17)."""

_KEY = re.compile(rf"{PREFIX}([0-9a-f]{{{TAG_DIGITS}}})r([0-9]{{1,17}})")


def campaign_tag(header: Mapping[str, object]) -> str | None:
    """The tag of the campaign whose journal header is ``header``; ``None`` when the header has
    no fingerprint or no creation time (then no row is keyed)."""
    fingerprint, created = header.get("fingerprint"), header.get("created")
    if not isinstance(fingerprint, str) or not isinstance(created, str):
        return None
    if not fingerprint or not created:
        return None
    digest = hashlib.sha256(f"{fingerprint}\n{created}".encode()).hexdigest()
    return digest[:TAG_DIGITS]


def key_prefix(tag: str) -> str:
    """What precedes the row number in every key of the campaign ``tag``."""
    return f"{PREFIX}{tag}r"


def client_message_id(tag: str, row: int) -> str:
    """The key of ``row`` in the campaign ``tag``."""
    return f"{PREFIX}{tag}r{row}"


def row_of(key: str, tag: str) -> int | None:
    """The row ``key`` names when it is a key of the campaign ``tag``; ``None`` for anything
    else (another campaign's key, a client id that is not ours, the empty string)."""
    m = _KEY.fullmatch(key)
    if m is None or m.group(1) != tag:
        return None
    return int(m.group(2))


def is_key(key: str) -> bool:
    """Whether ``key`` has the form of a row key (of any campaign)."""
    return _KEY.fullmatch(key) is not None


def key_rows(wire: object, header: Mapping[str, object]) -> str | None:
    """Make a One API wire set ``clientMessageId`` on every message to its row's key in the
    campaign of ``header``; returns the tag (``None``: nothing to do, another protocol or a
    header without identity)."""
    if getattr(wire, "name", None) != "one":
        return None
    tag = campaign_tag(header)
    if tag is None:
        return None
    from bulksend.wire.one import OneWire

    if isinstance(wire, OneWire):
        wire.key_rows(key_prefix(tag))
        return tag
    return None
