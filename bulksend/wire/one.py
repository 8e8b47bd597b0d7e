"""Clickatell's current API (the "One API", ``platform.clickatell.com``) as a pure wire protocol.

No I/O; of ours it imports only :mod:`bulksend.errors`. What this module promises:

* :class:`OneApi` implements :class:`~bulksend.wire.WireProtocol`: at most :data:`MAX_BATCH`
  (200, the reference's limit for SMS) messages per ``POST /v1/message``, each with its own
  ``to`` and ``content``, plus the campaign's :class:`OneOptions` (``from``, ``clientMessageId``
  per message, ``validityPeriod``, ``binary``/``udh``, ``charset``). Everything but ``to``, ``content`` and ``clientMessageId`` is
  encoded once per campaign; a batch costs one JSON string escape per ``to`` and ``content``.
* The API key lives only in :class:`ApiKey` (registered with
  :func:`~bulksend.errors.register_secret`, so :func:`~bulksend.errors.redact` masks it anywhere)
  and in the ``Authorization`` header of a :class:`~bulksend.wire.Request`, whose ``repr`` names
  headers without their values. No exception raised here quotes it.
* :meth:`OneApi.parse` matches answer entries to batch items by ``to`` (a leading ``+`` ignored),
  never by position: the k-th entry for a number belongs to the k-th occurrence of that number in
  the batch (the gateway keeps the relative order of a number's messages). Anything it cannot tie
  to a recipient with certainty makes that recipient ``UNKNOWN``: a number missing from the
  answer, or answered a different number of times than asked (then every occurrence of it), an entry that is not well formed (``accepted`` not a
  boolean, an accepted entry without ``apiMessageId``, a refused one without an error code, an
  accepted one that also carries an error), a body that is not the JSON of a send answer, an HTTP
  status that does not say what happened. Entries for numbers never asked for are anomalies.
* **HTTP statuses as the reference gives them.** 202 (every message accepted) and 207 (some
  accepted, some not) are read entry by entry. **400 with message entries and a null global
  error** means none was accepted: each recipient is ``REJECTED`` with its entry's own code and
  class (25 invalid, 26 opted out: ``RECIPIENT``, so the campaign goes on), certainly not sent; an
  entry in it that nevertheless says ``accepted`` leaves its recipient ``UNKNOWN``.
* Request-level failures (a global ``error`` object, no entries) become
  :class:`~bulksend.wire.RequestError` with the class of :data:`ERROR_CODES`, whatever the status
  (400 malformed / too many messages, 401 key, 402 balance, 404, 503): HTTP 429 (code 43) and any
  5xx are ``TRANSIENT`` (not processed: retry, honouring ``Retry-After``); a 4xx with an error
  object has its code's class; a bare 401/403/404/405 is ``FATAL`` (wrong key or URL); any other
  status without an error object (a bare 400 included) says nothing certain: ``UNKNOWN``. A 2xx
  answer with a request-level ``error`` *and* message entries contradicts itself: every recipient
  is ``UNKNOWN`` and the error is ``FATAL`` (stop; some may have been sent).
* :func:`parse_balance`, :func:`parse_status` (``GET /v1/message/<id>``) and
  :func:`parse_callback` (the JSON delivery callback) return small named tuples or raise
  :class:`~bulksend.errors.GatewayError` / :class:`~bulksend.errors.ProtocolError`.
"""

from __future__ import annotations

import json
import json.encoder
import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, NamedTuple

from bulksend.errors import (
    ConfigError,
    ErrorClass,
    GatewayError,
    ProtocolError,
    register_secret,
)
from bulksend.wire import (
    Answer,
    BatchItem,
    Outcome,
    Request,
    RequestError,
    Step,
    Verdict,
    retry_after,
)
from bulksend.wire import Batch as WireBatch

__all__ = [
    "BALANCE_PATH",
    "ERROR_CODES",
    "MAX_BATCH",
    "MESSAGE_PATH",
    "ApiKey",
    "Balance",
    "OneApi",
    "OneOptions",
    "OneWire",
    "StatusReport",
    "classify",
    "parse_balance",
    "parse_callback",
    "parse_status",
]

MAX_BATCH = 200
"""Messages one ``POST /v1/message`` may carry (the current reference; older pages said 100)."""
MESSAGE_PATH = "/v1/message"
BALANCE_PATH = "/v1/balance"

_F, _RC, _T, _RQ = ErrorClass.FATAL, ErrorClass.RECIPIENT, ErrorClass.TRANSIENT, ErrorClass.REQUEST

ERROR_CODES: Mapping[int, tuple[str, ErrorClass]] = {
    1: ("Invalid or missing API key", _F),
    2: ("Account is not active", _F),
    3: ("Integration is not active", _F),
    7: ("IP address not approved", _F),
    # "Internal error" without "please retry": whether it was processed is not said, so stop.
    18: ("Internal error", _F),
    19: ("Internal error - please retry", _T),
    20: ("Insufficient account balance", _F),
    21: ("Malformed payload", _RQ),
    22: ("Too many messages in the request", _RQ),
    23: ("Invalid or missing parameter", _RQ),
    24: ("Content too long", _RQ),
    25: ("Invalid recipient address", _RC),
    26: ("Recipient opted out", _RC),
    27: ("Recipient not on channel", _RC),
    28: ("Not available on sandbox", _RC),
    40: ("Character set not supported", _RQ),
    43: ("Rate limit exceeded", _T),
    44: ("Sender ID suspended", _F),
    45: ("Sender ID not of this integration", _F),
    46: ("Demo access expired", _F),
    100: ("Maximum message parts exceeded", _RQ),
    101: ("Destination does not support two-way", _RC),
    # US destinations only: the rest of a campaign can go on.
    110: ("US traffic needs a two-way integration", _RC),
    111: ("US traffic needs STOP handling", _RC),
}
"""Every One API error code of the shared notes with its description and class."""

RATE_LIMIT_CODE = 43
_FATAL_HTTP = frozenset({401, 403, 404, 405})


def classify(code: int, *, per_recipient: bool = False) -> ErrorClass:
    """Class of a One API error code. Unknown codes stop a campaign when they refuse a whole
    request and refuse only their recipient on a message entry (as for the legacy codes)."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known[1]
    return ErrorClass.RECIPIENT if per_recipient else ErrorClass.FATAL


# --------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class ApiKey:
    """The integration's API key: the whole ``Authorization`` header value. Never printed."""

    value: str = field(repr=False)

    def __post_init__(self) -> None:
        value = self.value
        if not value:
            raise ConfigError("the One API key is empty")
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ConfigError(
                "the One API key must be printable ASCII without spaces (is it the right value?)"
            )
        register_secret(value)

    @property
    def authorization(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "ApiKey(***)"


_SENDER_ALPHA = re.compile(r"[A-Za-z0-9 ]{1,11}")
_SENDER_DIGITS = re.compile(r"[0-9]{1,16}")
_ID_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,20}")
_CHARSET = re.compile(r"[A-Za-z0-9._-]{1,40}")
_HEX = frozenset(string.hexdigits)


def _is_hex(value: str) -> bool:
    return len(value) % 2 == 0 and _HEX.issuperset(value)


@dataclass(frozen=True, slots=True)
class OneOptions:
    """Per-campaign options of every message (all optional)."""

    sender: str | None = None
    """``from``: a two-way number (1-16 digits) or an alphanumeric sender id (1-11)."""
    client_message_id_prefix: str | None = None
    """When set, each message carries ``clientMessageId`` = prefix + its row number."""
    validity_period: int | None = None
    """``validityPeriod``: minutes the network keeps trying (>= 1)."""
    binary: bool = False
    """``binary``: each message's content is its payload as hex."""
    udh: str | None = None
    """``udh``: the user data header as hex (binary messages only)."""
    charset: str | None = None
    """``charset`` of the content, e.g. ``UTF-8``."""

    def validate(self) -> None:
        """Raise :class:`ProtocolError` for options the gateway would refuse outright."""
        if self.sender is not None and not (
            _SENDER_DIGITS.fullmatch(self.sender) or _SENDER_ALPHA.fullmatch(self.sender)
        ):
            raise ProtocolError("from must be 1-16 digits or 1-11 letters, digits or spaces")
        prefix = self.client_message_id_prefix
        if prefix is not None and not _ID_PREFIX.fullmatch(prefix):
            raise ProtocolError("the clientMessageId prefix must be 0-20 letters, digits, - or _")
        if self.validity_period is not None and self.validity_period < 1:
            raise ProtocolError(
                f"validityPeriod must be at least 1 minute, not {self.validity_period}"
            )
        if self.udh is not None:
            if not self.binary:
                raise ProtocolError("udh needs a binary message")
            if not _is_hex(self.udh):
                raise ProtocolError("udh must be hex octets")
        if self.charset is not None and not _CHARSET.fullmatch(self.charset):
            raise ProtocolError(f"charset {self.charset!r} is not a character set name")

    def json_fields(self) -> str:
        """The options as JSON object members, each preceded by a comma (empty for none)."""
        members: list[tuple[str, object]] = []
        if self.sender is not None:
            members.append(("from", self.sender))
        if self.validity_period is not None:
            members.append(("validityPeriod", self.validity_period))
        if self.binary:
            members.append(("binary", True))
        if self.udh is not None:
            members.append(("udh", self.udh))
        if self.charset is not None:
            members.append(("charset", self.charset))
        return "".join(f",{json.dumps(name)}:{json.dumps(value)}" for name, value in members)


_quote: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string literal (non-ASCII kept as is): the C encoder ``json.dumps`` itself uses."""


def _digits(msisdn: str) -> bool:
    return msisdn.isdigit() and msisdn.isascii()


class OneApi:
    """The One API behind :class:`~bulksend.wire.WireProtocol`: build ``POST /v1/message``
    requests for batches of at most :data:`MAX_BATCH` and parse their answers."""

    __slots__ = ("_headers", "_id_prefix", "_tail", "key", "options")

    def __init__(self, key: ApiKey, options: OneOptions | None = None) -> None:
        options = options if options is not None else OneOptions()
        options.validate()
        self.key = key
        self.options = options
        self._tail = options.json_fields() + "}"
        prefix = options.client_message_id_prefix
        self._id_prefix = None if prefix is None else ',"clientMessageId":"' + prefix
        self._headers = (
            ("Authorization", key.authorization),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        )

    def __repr__(self) -> str:
        return f"OneApi({self.options!r}, key hidden)"

    @property
    def max_batch(self) -> int:
        return MAX_BATCH

    # -- building ----------------------------------------------------------------------------------

    def build(self, batch: Sequence[BatchItem]) -> Request:
        """The ``POST /v1/message`` request for ``batch`` (1 to :data:`MAX_BATCH` items, each
        ``msisdn`` digits and ``content`` non-empty; hex for a binary campaign)."""
        return self.build_lists(
            [item.row for item in batch],
            [item.msisdn for item in batch],
            [item.content for item in batch],
        )

    def build_lists(
        self, rows: Sequence[int], msisdns: Sequence[str], contents: Sequence[str]
    ) -> Request:
        """:meth:`build` from the pipeline's parallel lists."""
        if not 1 <= len(rows) <= MAX_BATCH:
            raise ProtocolError(
                f"a One API request carries 1-{MAX_BATCH} messages, not {len(rows)}"
            )
        binary = self.options.binary
        tail, id_prefix = self._tail, self._id_prefix
        joined = "".join(msisdns)
        if not (joined.isdigit() and joined.isascii()) or not all(msisdns):
            bad = next(r for r, m in zip(rows, msisdns, strict=True) if not _digits(m))
            raise ProtocolError(f"row {bad}: the number must be digits only")
        if not all(contents):
            bad = next(r for r, c in zip(rows, contents, strict=True) if not c)
            raise ProtocolError(f"row {bad}: the content is empty")
        if binary:
            for row, content in zip(rows, contents, strict=True):
                if not _is_hex(content):
                    raise ProtocolError(f"row {row}: a binary message's content must be hex octets")
        first = contents[0]
        if contents.count(first) == len(contents):  # one text for all: escaped once
            quoted = _quote(first)
            if id_prefix is None:
                entries = [
                    f'{{"channel":"sms","to":"{m}","content":{quoted}{tail}' for m in msisdns
                ]
            else:
                entries = [
                    f'{{"channel":"sms","to":"{m}","content":{quoted}{id_prefix}{r}"{tail}'
                    for r, m in zip(rows, msisdns, strict=True)
                ]
        elif id_prefix is None:
            entries = [
                f'{{"channel":"sms","to":"{m}","content":{q}{tail}'
                for m, q in zip(msisdns, map(_quote, contents), strict=True)
            ]
        else:
            entries = [
                f'{{"channel":"sms","to":"{m}","content":{_quote(c)}{id_prefix}{r}"{tail}'
                for r, m, c in zip(rows, msisdns, contents, strict=True)
            ]
        text = '{"messages":[' + ",".join(entries) + "]}"
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            bad = next(r for r, c in zip(rows, contents, strict=True) if not _encodable(c))
            raise ProtocolError(f"row {bad}: the content is not valid Unicode text") from None
        return Request("POST", MESSAGE_PATH, body, self._headers)

    def balance_request(self) -> Request:
        """``GET /v1/balance``."""
        return Request("GET", BALANCE_PATH, b"", self._headers[:1] + self._headers[2:])

    def status_request(self, api_msg_id: str) -> Request:
        """``GET /v1/message/<apiMessageId>``."""
        if not (api_msg_id.isalnum() and api_msg_id.isascii()):
            raise ProtocolError("an apiMessageId is letters and digits")
        return Request(
            "GET", f"{MESSAGE_PATH}/{api_msg_id}", b"", self._headers[:1] + self._headers[2:]
        )

    # -- parsing -----------------------------------------------------------------------------------

    def parse(
        self, status: int, headers: Mapping[str, str], body: bytes, batch: Sequence[BatchItem]
    ) -> Answer:
        """One outcome per batch item (module docstring); never raises for what the gateway says."""
        return self.parse_numbers(status, headers, body, [item.msisdn for item in batch])

    def parse_numbers(
        self, status: int, headers: Mapping[str, str], body: bytes, batch: Sequence[str]
    ) -> Answer:
        """:meth:`parse` for the requested numbers, in request order."""
        doc = _load(body)
        error_obj = doc.get("error") if isinstance(doc, dict) else None
        entries = doc.get("messages") if isinstance(doc, dict) else None
        error = _error_of(error_obj)

        if status == 429 or 500 <= status <= 599:
            code, description = error or (
                (RATE_LIMIT_CODE, ERROR_CODES[RATE_LIMIT_CODE][0]) if status == 429 else (0, "")
            )
            return _refused(
                batch,
                RequestError(
                    code,
                    description or f"HTTP {status}",
                    ErrorClass.TRANSIENT,
                    status,
                    retry_after(headers),
                ),
            )
        if not 200 <= status <= 299:
            if error is not None:
                code, description = error
                return _refused(
                    batch, RequestError(code, description, classify(code), status, None)
                )
            if status == 400 and error_obj is None and isinstance(entries, list) and entries:
                return _none_accepted(batch, entries)
            if status in _FATAL_HTTP:
                return _refused(
                    batch, RequestError(0, f"HTTP {status}", ErrorClass.FATAL, status, None)
                )
            return _all_unknown(batch, f"HTTP {status} without a One API error")
        if doc is None:
            return _all_unknown(batch, "answer is not JSON")
        if not isinstance(doc, dict):
            return _all_unknown(batch, "answer is not a JSON object")
        if error_obj is not None:
            if error is None:
                return _all_unknown(batch, "answer has a malformed request-level error")
            code, description = error
            if entries:
                return _refused(
                    batch,
                    RequestError(
                        code,
                        f"contradictory answer: request-level error {code} ({description}) "
                        f"and {len(entries) if isinstance(entries, list) else 'odd'} message "
                        "entries; some messages may have been sent",
                        ErrorClass.FATAL,
                        status,
                        None,
                        processed=True,
                    ),
                )
            return _refused(batch, RequestError(code, description, classify(code), status, None))
        if not isinstance(entries, list):
            return _all_unknown(batch, "answer has no messages list")
        return _all_accepted(batch, entries) or _match(batch, entries)


def _none_accepted(batch: Sequence[str], entries: list[Any]) -> Answer:
    """A 400 with message entries and a null global error: the reference's "none accepted",
    each recipient refused with its own code. Entries are matched by ``to`` as for a 207; an
    entry that says ``accepted`` contradicts the status, so its recipient is ``UNKNOWN`` (the
    id it names kept in the description), never accepted and never sent again."""
    answer = _match(batch, entries)
    outcomes = answer.outcomes
    if all(o.verdict is not Verdict.ACCEPTED for o in outcomes):
        return answer
    anomalies = list(answer.anomalies)
    fixed: list[Outcome] = []
    for number, outcome in zip(batch, outcomes, strict=True):
        if outcome.verdict is Verdict.ACCEPTED:
            anomalies.append(f"HTTP 400 yet an entry accepted for {number}")
            outcome = Outcome(
                Verdict.UNKNOWN,
                description="HTTP 400 (none accepted) yet the entry says accepted "
                f"(api id {outcome.api_msg_id})",
            )
        fixed.append(outcome)
    return Answer(tuple(fixed), anomalies=tuple(anomalies))


class OneWire:
    """The pipeline's :class:`~bulksend.wire.WireProtocol` for the One API: no session state (the
    key travels in every request), up to :data:`MAX_BATCH` messages per request, each with its
    own content (the campaign's ``text`` when the batch carries none) and, once
    :meth:`key_rows` was called, its row's ``clientMessageId``."""

    name = "one"

    def __init__(self, api: OneApi, text: str) -> None:
        self.api = api
        self.text = text

    def key_rows(self, prefix: str) -> None:
        """From now on every message carries ``clientMessageId`` = ``prefix`` + its row number
        (the campaign's row key, :mod:`bulksend.rowkey`)."""
        api = self.api
        self.api = OneApi(api.key, replace(api.options, client_message_id_prefix=prefix))

    @property
    def max_batch(self) -> int:
        return MAX_BATCH

    def prepare(self, batch: WireBatch | None) -> Step | None:
        return None

    def prepared(self, step: Step, status: int, headers: Mapping[str, str], body: bytes) -> None:
        raise AssertionError("the One API has no preparation steps")  # pragma: no cover

    def invalidate(self, error: RequestError) -> None:
        return None

    def build(self, batch: WireBatch) -> Request:
        contents = batch.contents
        if contents is None:
            contents = [self.text] * len(batch.rows)
        return self.api.build_lists(batch.rows, batch.msisdns, contents)

    def parse(
        self, status: int, headers: Mapping[str, str], body: bytes, batch: WireBatch
    ) -> Answer:
        return self.api.parse_numbers(status, headers, body, batch.msisdns)

    def finish(self) -> list[Request]:
        return []


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _load(body: bytes) -> Any:
    """The JSON document of a body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _error_of(obj: object) -> tuple[int, str] | None:
    """``(code, description)`` of a One API error object, or None if it is not one."""
    if not isinstance(obj, dict):
        return None
    code = obj.get("code")
    if isinstance(code, str) and code.isdigit() and code.isascii():
        code = int(code)  # lenient: some answers quote their codes
    if not isinstance(code, int) or isinstance(code, bool) or code < 0:
        return None
    description = obj.get("description")
    return code, description if isinstance(description, str) else ""


def _refused(batch: Sequence[str], error: RequestError) -> Answer:
    return Answer.refused(len(batch), error)


def _all_unknown(batch: Sequence[str], reason: str) -> Answer:
    return Answer.unknown(len(batch), reason)


def _entry_outcome(entry: Mapping[str, Any]) -> tuple[Outcome, str | None]:
    """The outcome an entry states, and an anomaly when it is malformed (then UNKNOWN)."""
    accepted = entry.get("accepted")
    api_msg_id = entry.get("apiMessageId")
    error_obj = entry.get("error")
    if accepted is True:
        if isinstance(api_msg_id, str) and api_msg_id and error_obj is None:
            return Outcome(Verdict.ACCEPTED, api_msg_id), None
        reason = "accepted entry without apiMessageId or with an error"
    elif accepted is False:
        error = _error_of(error_obj)
        if error is not None:
            code, description = error
            return Outcome(
                Verdict.REJECTED, "", code, description, classify(code, per_recipient=True)
            ), None
        reason = "refused entry without an error code"
    else:
        reason = "entry without a boolean 'accepted'"
    described = f"malformed answer entry: {reason}"
    return Outcome(Verdict.UNKNOWN, description=described), described


def _all_accepted(batch: Sequence[str], entries: list[Any]) -> Answer | None:
    """The common answer without per-recipient objects: one well-formed accepted entry per
    number, in request order (then matching by ``to`` and by position agree). ``None`` for
    anything else, which :func:`_match` then decides. Checked with C-level list operations."""
    n = len(batch)
    if len(entries) != n:
        return None
    try:
        tos = list(map(_dict_get, entries, repeat("to")))
        accepted = list(map(_dict_get, entries, repeat("accepted")))
        ids = list(map(_dict_get, entries, repeat("apiMessageId")))
        errors = list(map(_dict_get, entries, repeat("error")))
    except TypeError:  # an entry that is not an object
        return None
    if tos != list(batch) or errors.count(None) != n:
        return None
    if accepted.count(True) != n or set(map(type, accepted)) != {bool}:
        return None  # 1 == True: the types tell a JSON 1 from true
    if set(map(type, ids)) != {str} or "" in ids:
        return None
    return Answer(api_ids=ids, numbers=batch)


_dict_get = dict.get


def _match(batch: Sequence[str], entries: list[Any]) -> Answer:
    wanted: dict[str, list[int]] = {}
    for i, msisdn in enumerate(batch):
        wanted.setdefault(msisdn, []).append(i)
    anomalies: list[str] = []
    answered: dict[str, list[Outcome]] = {}
    for entry in entries:
        to = entry.get("to") if isinstance(entry, dict) else None
        if not isinstance(to, str) or not to:
            anomalies.append("answer entry without a 'to' number")
            continue
        to = to.removeprefix("+")
        if to not in wanted:
            anomalies.append(f"answer entry for a number not in the request: {to[:20]}")
            continue
        outcome, anomaly = _entry_outcome(entry)
        if anomaly is not None:
            anomalies.append(f"{anomaly} ({to})")
        answered.setdefault(to, []).append(outcome)

    missing = Outcome(Verdict.UNKNOWN, description="number missing from the gateway's answer")
    outcomes: list[Outcome] = [missing] * len(batch)
    for number, positions in wanted.items():
        got = answered.get(number)
        if not got:
            continue
        if len(got) != len(positions):
            # Too many entries: which is real cannot be known. Too few for a repeated number:
            # which occurrence lacks one cannot be known either. Every occurrence is unknown.
            ids = ";".join(o.api_msg_id for o in got if o.api_msg_id)
            anomalies.append(f"{len(got)} answer entries for {number}, {len(positions)} requested")
            odd = Outcome(
                Verdict.UNKNOWN,
                description=f"number answered {len(got)} times, asked {len(positions)} times"
                + (f" (api ids {ids})" if ids else ""),
            )
            for i in positions:
                outcomes[i] = odd
            continue
        for i, outcome in zip(positions, got, strict=True):
            outcomes[i] = outcome
    absent = sum(1 for o in outcomes if o is missing)
    if absent:
        anomalies.append(f"{absent} requested message(s) missing from the answer")
    return Answer(tuple(outcomes), anomalies=tuple(anomalies))


# --------------------------------------------------------------------------------------------------
# Balance, message status, delivery callbacks


class Balance(NamedTuple):
    amount: float
    currency: str


class StatusReport(NamedTuple):
    """A message's status, from ``GET /v1/message/<id>`` or a delivery callback."""

    api_msg_id: str
    client_message_id: str
    to: str
    status_code: str
    """Three digits, as the legacy statuses (``004`` received by recipient)."""
    status: str
    """The status name, e.g. ``RECEIVED_BY_RECIPIENT``."""
    timestamp: float
    """Unix seconds (the wire carries milliseconds)."""


def _document(status: int, body: bytes, what: str) -> dict[str, Any]:
    """The answer's JSON object; GatewayError for an error object, ProtocolError otherwise."""
    doc = _load(body)
    error = _error_of(doc.get("error")) if isinstance(doc, dict) else None
    if error is not None:
        code, description = error
        raise GatewayError(code, description, classify(code))
    if not 200 <= status <= 299:
        raise ProtocolError(f"{what} answered HTTP {status}", _quote_body(body))
    if not isinstance(doc, dict):
        raise ProtocolError(f"{what} answer is not a JSON object", _quote_body(body))
    return doc


def _quote_body(body: bytes) -> str:
    return body[: ProtocolError.MAX_QUOTE * 2].decode("utf-8", "replace")


def parse_balance(status: int, body: bytes) -> Balance:
    """``{"balance": <number>, "currency": "..."}`` from ``GET /v1/balance``."""
    doc = _document(status, body, "balance")
    amount = doc.get("balance")
    if isinstance(amount, str):
        try:
            amount = float(amount)
        except ValueError:
            amount = None
    if not isinstance(amount, int | float) or isinstance(amount, bool) or not math.isfinite(amount):
        raise ProtocolError("balance answer has no numeric 'balance'", _quote_body(body))
    currency = doc.get("currency")
    return Balance(float(amount), currency if isinstance(currency, str) else "")


def _status_code(value: object) -> str | None:
    if isinstance(value, str) and value.isdigit() and value.isascii() and len(value) <= 3:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 999:
        return f"{value:03d}"
    return None


def _report(doc: Mapping[str, Any], id_field: str, body: bytes, what: str) -> StatusReport:
    api_msg_id = doc.get(id_field)
    if not isinstance(api_msg_id, str) or not api_msg_id:
        raise ProtocolError(f"{what} has no {id_field}", _quote_body(body))
    code = _status_code(doc.get("statusCode"))
    if code is None:
        raise ProtocolError(f"{what} has no valid statusCode", _quote_body(body))
    stamp = doc.get("timestamp")
    if isinstance(stamp, str) and stamp.isdigit():
        stamp = int(stamp)
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not math.isfinite(stamp):
        raise ProtocolError(f"{what} has no numeric timestamp", _quote_body(body))

    def text(name: str) -> str:
        value = doc.get(name)
        return value if isinstance(value, str) else ""

    to = text("to").removeprefix("+")
    return StatusReport(
        api_msg_id, text("clientMessageId"), to, code, text("status"), float(stamp) / 1000.0
    )


def parse_status(status: int, body: bytes) -> StatusReport:
    """The answer to ``GET /v1/message/<id>``: ``apiMessageId``, ``clientMessageId``, ``to``,
    ``statusCode``, ``status``, ``timestamp`` (ms)."""
    return _report(_document(status, body, "message status"), "apiMessageId", body, "status")


def parse_callback(body: bytes) -> StatusReport:
    """A JSON delivery callback: ``messageId`` (the apiMessageId), ``clientMessageId``, ``to``,
    ``statusCode`` (a number, or digits), ``status``, ``timestamp`` (ms). Field names are read as
    sent; ProtocolError for anything else."""
    doc = _load(body)
    if not isinstance(doc, dict):
        raise ProtocolError("callback body is not a JSON object", _quote_body(body))
    return _report(doc, "messageId", body, "callback")
