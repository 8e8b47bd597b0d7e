"""Replies (MO, "two-way" messages) and opt-out keywords: pure rules, no I/O.

The gateway pushes a recipient's reply to the account's reply URL in one of two formats
(``clickatell-http-api.md``, "Replies (MO, "two-way") callbacks" and the One API section):

* **legacy**, a GET or POST form: ``api_id``, ``moMsgId`` (the reply's own id), ``from`` (who
  replied, international digits), ``to`` (the two-way number), ``timestamp``
  (``YYYY-MM-DD HH:MM:SS``, the gateway's local time, documented as GMT+2), ``text`` (in
  ``charset``), ``charset``, ``udh`` (hex). Read by :func:`parse_form_reply`.
* **One API**, a JSON POST: ``integrationId``, ``messageId`` (the reply's id), ``replyMessageId``
  (the message replied to, when known), ``apiKey``, ``fromNumber``, ``toNumber``, ``timestamp``
  (ms since the epoch), ``text``, ``charset``, ``udh``, ``network``, ``keyword``. Read by
  :func:`parse_json_reply`; the ``apiKey`` is never kept.

Both give a :class:`Reply`, or the reason the callback is refused (a string). What is promised:

* ``mo_msg_id`` is 1-64 ASCII letters, digits, ``-`` or ``_`` (the idempotency key); ``sender``
  is the replier's number as international digits (a leading ``+`` or ``00`` is dropped), 6-15
  of them; the two-way number may be absent.
* ``sent_at`` is the gateway's timestamp as UTC ISO 8601 (``2015-02-04T07:30:36Z`` for the legacy
  ``2015-02-04 09:30:36``), empty when the callback has none; a legacy callback carrying unix
  seconds instead, or an ISO 8601 time with an offset, is read too (lenient in).
* ``text`` is decoded with the callback's ``charset`` (``ISO-8859-1``, ``UTF-8``, ``UCS-2`` as
  hex UTF-16BE, ...; an unknown charset is read as UTF-8 with replacement characters).

:class:`OptOutKeywords` decides whether a reply opts out: the reply's first word(s) equal one
of the keywords, case-insensitively, punctuation and spacing ignored (``"Stop."``, ``"stop
please"``, ``"Opt-Out"`` opt out; ``"Stopwatch"`` and ``"please stop"`` do not). A One API reply
with no text is judged by its ``keyword`` field. :data:`DEFAULT_OPT_OUT_KEYWORDS` are the words
of the industry practice and of the US FCC's 2025 rule on revoking consent.

:func:`reply_line` renders a reply as one line of the replies file (header
:data:`REPLIES_HEADER`); :func:`split_reply_line` reads it back. The text column is CSV-quoted,
with backslash, CR and LF written as ``\\\\``, ``\\r``, ``\\n`` so that every reply is one
physical line (a torn last line can be cut off after a crash, like a receipt's).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

__all__ = [
    "DEFAULT_OPT_OUT_KEYWORDS",
    "REPLIES_HEADER",
    "OptOutKeywords",
    "Reply",
    "is_json_reply",
    "parse_form_reply",
    "parse_json_reply",
    "reply_line",
    "split_reply_line",
]

REPLIES_HEADER = (
    "received_at,mo_msg_id,reply_to_msg_id,from,to,sent_at,opt_out,keyword,network,charset,udh,text"
)
REPLY_FIELDS = REPLIES_HEADER.count(",") + 1

DEFAULT_OPT_OUT_KEYWORDS: tuple[str, ...] = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
)
"""Replies starting with one of these opt out (case, punctuation and spacing ignored)."""

GATEWAY_UTC_OFFSET = timezone(timedelta(hours=2))
"""The legacy reply timestamp is the gateway's local time, documented as GMT+2."""

_ID_CHARS = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NUMBER = re.compile(r"(?:\+|00)?([1-9][0-9]{5,14})")
_TWO_WAY = re.compile(r"(?:\+|00)?([0-9]{1,20})")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_LEGACY_TIME = "%Y-%m-%d %H:%M:%S"


class Reply(NamedTuple):
    """One validated reply; absent fields are empty strings."""

    mo_msg_id: str
    reply_to_msg_id: str
    sender: str
    """Who replied: international digits, no ``+``."""
    to: str
    """The two-way number (or short code) replied to."""
    sent_at: str
    text: str
    charset: str
    udh: str
    network: str
    keyword: str


# -- keywords -------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """Case-folded words of ``text``: every character that is not a letter or digit separates."""
    return tuple("".join(c if c.isalnum() else " " for c in text.casefold()).split())


class OptOutKeywords:
    """The phrases that opt a recipient out; :meth:`match` tells which one a reply starts with."""

    __slots__ = ("_phrases", "keywords")

    def __init__(self, keywords: Iterable[str] = DEFAULT_OPT_OUT_KEYWORDS) -> None:
        self.keywords = tuple(k.strip() for k in keywords if k.strip())
        phrases = [_words(k) for k in self.keywords]
        if not self.keywords or not all(phrases):
            raise ValueError("opt-out keywords must each hold a letter or digit")
        # Longest first, so "opt out" is reported rather than a shorter keyword "opt".
        self._phrases = sorted(zip(phrases, self.keywords, strict=True), key=lambda p: -len(p[0]))

    @classmethod
    def parse(cls, text: str) -> OptOutKeywords:
        """From ``"STOP,QUIT,opt out"`` (comma-separated); ValueError if it holds none."""
        return cls(text.split(","))

    def match(self, text: str) -> str | None:
        """The keyword ``text`` starts with (as configured), or None."""
        words = _words(text[:200])  # a keyword is at the start: never fold a whole long text
        for phrase, keyword in self._phrases:
            if words[: len(phrase)] == phrase:
                return keyword
        return None

    def opts_out(self, reply: Reply) -> str | None:
        """The keyword by which ``reply`` opts out (its text, else its ``keyword`` field)."""
        return self.match(reply.text if reply.text.strip() else reply.keyword)


# -- legacy form ----------------------------------------------------------------------------------


def _codec(charset: str) -> str:
    name = charset.strip().lower().replace("_", "-")
    if name in ("ucs2", "ucs-2", "utf-16", "utf16"):
        return "utf-16-be"
    try:
        return codecs.lookup(name).name if name else "utf-8"
    except LookupError:
        return "utf-8"


def _decode_text(raw: bytes, charset: str) -> str:
    codec = _codec(charset)
    if codec == "utf-16-be":
        # Clickatell writes UCS-2 replies as hex of the UTF-16BE code units, like unicode=1 texts.
        stripped = raw.strip()
        if stripped and len(stripped) % 4 == 0 and _HEX.fullmatch(stripped.decode("latin-1")):
            return bytes.fromhex(stripped.decode("ascii")).decode(codec, "replace")
    return raw.decode(codec, "replace")


def _raw_text(forms: Sequence[str]) -> bytes | None:
    """The undecoded bytes of the first ``text`` field of the raw forms (body first)."""
    for form in forms:
        for pair in form.split("&"):
            name, _, value = pair.partition("=")
            if name.lower() == "text":
                return unquote_to_bytes(value.replace("+", " "))
    return None


def _legacy_time(value: str) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` (GMT+2), unix seconds or ISO 8601 -> UTC ISO; None if unreadable."""
    value = value.strip()
    if not value:
        return ""
    try:
        if value.isdigit():
            moment = datetime.fromtimestamp(int(value), UTC)
        else:
            try:
                moment = datetime.strptime(value, _LEGACY_TIME).replace(tzinfo=GATEWAY_UTC_OFFSET)
            except ValueError:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=GATEWAY_UTC_OFFSET)
    except (ValueError, OverflowError, OSError):
        return None
    return _iso(moment)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sender(value: str) -> str | None:
    m = _NUMBER.fullmatch(value.strip().replace(" ", ""))
    return m.group(1) if m else None


def _two_way(value: str) -> str | None:
    value = value.strip()
    if not value:
        return ""
    m = _TWO_WAY.fullmatch(value.replace(" ", ""))
    return m.group(1) if m else None


def parse_form_reply(params: Mapping[str, str], forms: Sequence[str] = ()) -> Reply | str:
    """The reply a legacy callback's parameters (names lowercased, values URL-decoded as UTF-8)
    describe, or the reason it is refused. ``forms`` are the raw (still URL-encoded) body and query
    string: the text is decoded from them with the callback's ``charset``."""
    mo_msg_id = params.get("momsgid", "")
    if not _ID_CHARS.fullmatch(mo_msg_id):
        return "moMsgId must be 1-64 letters, digits, - or _"
    sender = _sender(params.get("from", ""))
    if sender is None:
        return "from must be the replier's international number"
    to = _two_way(params.get("to", ""))
    if to is None:
        return "to must be digits"
    sent_at = _legacy_time(params.get("timestamp", ""))
    if sent_at is None:
        return "timestamp must be YYYY-MM-DD HH:MM:SS"
    charset = params.get("charset", "")
    udh = params.get("udh", "").strip()
    if not _HEX.fullmatch(udh):
        return "udh must be hex"
    raw = _raw_text(forms)
    text = params.get("text", "") if raw is None else _decode_text(raw, charset)
    return Reply(mo_msg_id, "", sender, to, sent_at, text, charset, udh, "", "")


# -- One API JSON ---------------------------------------------------------------------------------


def is_json_reply(body: bytes) -> bool:
    """Whether a JSON callback body is a reply rather than a delivery status (cheap: replies name
    ``fromNumber``, statuses do not)."""
    return b'"fromNumber"' in body


def _json_text(value: object) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def parse_json_reply(body: bytes) -> Reply | str:
    """The reply a One API JSON callback describes, or the reason it is refused."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"malformed JSON reply: {exc}"
    if not isinstance(data, dict):
        return "malformed JSON reply: not an object"
    fields: dict[str, str] = {}
    for name in (
        "messageId",
        "replyMessageId",
        "fromNumber",
        "toNumber",
        "text",
        "charset",
        "udh",
        "network",
        "keyword",
    ):
        value = _json_text(data.get(name))
        if value is None:
            return f"{name} must be a string"
        fields[name] = value
    if not _ID_CHARS.fullmatch(fields["messageId"]):
        return "messageId must be 1-64 letters, digits, - or _"
    reply_to = fields["replyMessageId"]
    if reply_to and not _ID_CHARS.fullmatch(reply_to):
        return "replyMessageId must be up to 64 letters, digits, - or _"
    sender = _sender(fields["fromNumber"])
    if sender is None:
        return "fromNumber must be the replier's international number"
    to = _two_way(fields["toNumber"])
    if to is None:
        return "toNumber must be digits"
    sent_at = ""
    stamp = data.get("timestamp")
    if stamp is not None:
        if isinstance(stamp, bool) or not isinstance(stamp, int | float | str):
            return "timestamp must be milliseconds since the epoch"
        try:
            sent_at = _iso(datetime.fromtimestamp(float(stamp) / 1000, UTC))
        except (ValueError, OverflowError, OSError):
            return "timestamp must be milliseconds since the epoch"
    udh = fields["udh"].strip()
    if not _HEX.fullmatch(udh):
        return "udh must be hex"
    return Reply(
        fields["messageId"],
        reply_to,
        sender,
        to,
        sent_at,
        fields["text"],
        fields["charset"],
        udh,
        fields["network"],
        fields["keyword"],
    )


# -- the replies file -----------------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n"})
_UNESCAPE = re.compile(r"\\(.)")


def _csv(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def reply_line(received_at: str, reply: Reply, opt_out: str | None) -> str:
    """One line of the replies file (with its newline); ``opt_out`` is the matched keyword."""
    fields = (
        received_at,
        reply.mo_msg_id,
        reply.reply_to_msg_id,
        reply.sender,
        reply.to,
        reply.sent_at,
        "1" if opt_out else "0",
        opt_out or "",
        reply.network,
        reply.charset,
        reply.udh,
        reply.text.translate(_ESCAPES),
    )
    return ",".join(map(_csv, fields)) + "\n"


def split_reply_line(line: str) -> list[str] | None:
    """The fields of one replies-file line (text unescaped), None if it is not one."""
    try:
        [fields] = list(csv.reader([line], strict=True))
    except (csv.Error, ValueError):
        return None
    if len(fields) != REPLY_FIELDS:
        return None
    fields[-1] = _UNESCAPE.sub(lambda m: {"r": "\r", "n": "\n"}.get(m[1], m[1]), fields[-1])
    return fields
