"""The Clickatell legacy HTTP API as pure functions: request forms in, answers parsed out. No I/O.

:class:`SendmsgWire` is its :class:`~bulksend.wire.WireProtocol` (one text, up to 600 numbers a
POST, 300 a GET), :class:`LegacySession` the authentication it shares with the batch interface
(:mod:`bulksend.wire.batch`), and :func:`http_answer` what an HTTP status alone says on this API.

What this module promises:

* :class:`SendmsgTemplate` builds ``sendmsg`` bodies. Everything but ``to`` is encoded once per
  campaign; a batch costs one ``join`` of its numbers. Secrets live only in the auth part, which the
  caller supplies per request (so a renewed session id needs no new template) and which never reaches
  a ``repr``.
* :func:`parse_sendmsg` maps every answer line to its number by the ``To:`` value, never by
  position. Numbers the answer leaves out, answers duplicated beyond what was asked and lines that
  are neither ``ID:`` nor ``ERR:`` make those numbers :attr:`Verdict.UNKNOWN`, never accepted. A
  whole-request ``ERR:`` comes back as a :class:`~bulksend.errors.GatewayError` with its class.
* The other answers (``auth``, ``ping``, ``querymsg``, ``getmsgcharge``, ``getbalance``) parse to
  plain values or raise :class:`~bulksend.errors.GatewayError` / :class:`~bulksend.errors.ProtocolError`.
* :data:`ERROR_CODES` classifies every code the spec lists (see :class:`~bulksend.errors.ErrorClass`).

Answers may use ``\\n`` or ``\\r\\n``, carry trailing blank lines, surrounding whitespace and lines
in any order. Anything else is a :class:`~bulksend.errors.ProtocolError` quoting the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode

from bulksend.errors import ErrorClass, GatewayError, ProtocolError, register_secret
from bulksend.wire import (
    Answer,
    Batch,
    Outcome,
    Request,
    RequestError,
    Step,
    Verdict,
    retry_after,
)

__all__ = [
    "ERROR_CODES",
    "MAX_NUMBERS_GET",
    "MAX_NUMBERS_POST",
    "STATUS_CODES",
    "Auth",
    "MessageOptions",
    "NumberResult",
    "SendmsgAnswer",
    "SendmsgTemplate",
    "Verdict",
    "classify",
    "parse_auth",
    "parse_getbalance",
    "parse_getmsgcharge",
    "parse_ping",
    "parse_querymsg",
    "parse_sendmsg",
]

MAX_NUMBERS_GET = 300
MAX_NUMBERS_POST = 600

ERROR_CODES: Mapping[int, tuple[str, ErrorClass]] = {
    1: ("Authentication failed", ErrorClass.FATAL),
    2: ("Unknown username or password", ErrorClass.FATAL),
    3: ("Session ID expired", ErrorClass.SESSION),
    4: ("Account frozen", ErrorClass.FATAL),
    5: ("Missing session ID", ErrorClass.REQUEST),
    7: ("IP lockdown violation", ErrorClass.FATAL),
    101: ("Invalid or missing parameters", ErrorClass.REQUEST),
    102: ("Invalid user data header", ErrorClass.REQUEST),
    103: ("Unknown API message ID", ErrorClass.QUERY),
    104: ("Unknown client message ID", ErrorClass.QUERY),
    105: ("Invalid destination address", ErrorClass.RECIPIENT),
    106: ("Invalid source address", ErrorClass.REQUEST),
    107: ("Empty message", ErrorClass.REQUEST),
    108: ("Invalid or missing API ID", ErrorClass.FATAL),
    109: ("Missing message ID", ErrorClass.QUERY),
    113: ("Maximum message parts exceeded", ErrorClass.REQUEST),
    114: ("Cannot route message", ErrorClass.RECIPIENT),
    115: ("Message expired", ErrorClass.RECIPIENT),
    116: ("Invalid Unicode data", ErrorClass.REQUEST),
    120: ("Invalid delivery time", ErrorClass.REQUEST),
    121: ("Destination mobile number blocked", ErrorClass.RECIPIENT),
    122: ("Destination mobile opted out", ErrorClass.RECIPIENT),
    123: ("Invalid Sender ID", ErrorClass.REQUEST),
    128: ("Number delisted", ErrorClass.RECIPIENT),
    130: ("Maximum MT limit exceeded", ErrorClass.FATAL),
    201: ("Invalid batch ID", ErrorClass.QUERY),
    202: ("No batch template", ErrorClass.QUERY),
    301: ("No credit left", ErrorClass.FATAL),
    901: ("Internal error", ErrorClass.TRANSIENT),
}

STATUS_CODES: Mapping[str, tuple[str, str]] = {
    "001": ("Message unknown", "unknown"),
    "002": ("Message queued", "intermediate"),
    "003": ("Delivered to gateway", "intermediate"),
    "004": ("Received by recipient", "delivered"),
    "005": ("Error with message", "error"),
    "006": ("User cancelled message delivery", "final"),
    "007": ("Error delivering message", "error"),
    "008": ("OK", "intermediate"),
    "009": ("Routing error", "error"),
    "010": ("Message expired", "error"),
    "011": ("Message queued for later delivery", "intermediate"),
    "012": ("Out of credit", "error"),
    "014": ("Maximum MT limit exceeded", "error"),
}


def classify(code: int, *, per_recipient: bool = False) -> ErrorClass:
    """Class of a gateway error code. Unknown codes are fatal for a whole request (stopping is the
    only safe reaction to an error we do not understand) and recipient-only on a ``To:`` line."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known[1]
    return ErrorClass.RECIPIENT if per_recipient else ErrorClass.FATAL


# --------------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class Auth:
    """How a request authenticates: a session id, or user + password + api_id. Never printed."""

    api_id: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    session_id: str = field(default="", repr=False)

    def params(self) -> list[tuple[str, str]]:
        if self.session_id:
            return [("session_id", self.session_id)]
        return [("api_id", self.api_id), ("user", self.user), ("password", self.password)]

    def encoded(self) -> str:
        """The auth part of a form body, already URL-encoded (``a=b&c=d``)."""
        return urlencode(self.params())

    def with_session(self, session_id: str) -> Auth:
        return Auth(self.api_id, self.user, self.password, session_id)

    def __repr__(self) -> str:
        kind = "session" if self.session_id else f"user={self.user!r} api_id={self.api_id!r}"
        return f"Auth({kind}, secrets hidden)"


@dataclass(frozen=True, slots=True)
class MessageOptions:
    """Everything of a ``sendmsg`` request except auth and ``to``.

    ``text`` is the wire text: the message itself, or its UCS-2 hex when ``unicode`` is set
    (see :func:`bulksend.gsm.wire_text`). ``extra`` passes advanced parameters through verbatim.
    """

    text: str
    sender: str | None = None
    mo: bool = False
    callback: int = 0
    climsgid: str | None = None
    unicode: bool = False
    concat: int = 1
    max_credits: float | None = None
    deliv_time: int | None = None
    scheduled_time: int | None = None
    validity: int | None = None
    escalate: int | None = None
    queue: int | None = None
    msg_type: str | None = None  # SMS_TEXT (the gateway's default), SMS_FLASH, ...
    udh: str | None = None  # binary message: user data header, hex
    data: str | None = None  # binary message: payload, hex (replaces text)
    extra: tuple[tuple[str, str], ...] = ()

    def params(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]]
        if self.data is not None:
            out = [("data", self.data)]
            if self.udh:
                out.append(("udh", self.udh))
        else:
            out = [("text", self.text)]
        if self.msg_type:
            out.append(("msg_type", self.msg_type))
        if self.sender:
            out.append(("from", self.sender))
        if self.mo:
            out.append(("mo", "1"))
        if self.callback:
            out.append(("callback", str(self.callback)))
        if self.climsgid:
            out.append(("climsgid", self.climsgid))
        if self.unicode:
            out.append(("unicode", "1"))
        if self.concat != 1:
            out.append(("concat", str(self.concat)))
        if self.max_credits is not None:
            out.append(("max_credits", _number(self.max_credits)))
        for name in ("deliv_time", "scheduled_time", "validity", "escalate", "queue"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, str(value)))
        out.extend(self.extra)
        return out

    def validate(self) -> None:
        """Raise :class:`ProtocolError` for a request the gateway would refuse outright."""
        if not self.text and not self.data:
            raise ProtocolError("the message text is empty")
        if self.msg_type is not None and self.msg_type not in MSG_TYPES:
            raise ProtocolError(f"msg_type must be one of {', '.join(MSG_TYPES)}")
        for name in ("udh", "data"):
            value = getattr(self, name)
            if value is not None and (len(value) % 2 or not _is_hex(value)):
                raise ProtocolError(f"{name} must be hex octets")
        if self.validity is not None and self.validity < 1:
            raise ProtocolError(f"validity must be at least 1 minute, not {self.validity}")
        if self.max_credits is not None and self.max_credits <= 0:
            raise ProtocolError(f"max_credits must be positive, not {self.max_credits}")
        if not 0 <= self.callback <= 7:
            raise ProtocolError(f"callback must be 0..7, not {self.callback}")
        if self.concat < 1:
            raise ProtocolError(f"concat must be at least 1, not {self.concat}")
        if self.mo and not self.sender:
            raise ProtocolError("mo=1 needs a sender (from)")
        if self.climsgid is not None and (
            len(self.climsgid) > 32 or not self.climsgid.isalnum() or not self.climsgid.isascii()
        ):
            raise ProtocolError("climsgid must be at most 32 alphanumeric characters")
        if self.deliv_time is not None and not 0 <= self.deliv_time <= 10080:
            raise ProtocolError(f"deliv_time must be 0..10080 minutes, not {self.deliv_time}")


MSG_TYPES = (
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
)


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class SendmsgTemplate:
    """Builds ``sendmsg`` form bodies for one message; the per-batch cost is joining the numbers."""

    __slots__ = ("_auth", "_prefix", "_static", "options")

    def __init__(self, options: MessageOptions) -> None:
        options.validate()
        self.options = options
        self._static = urlencode(options.params())
        self._auth: Auth | None = None
        self._prefix = ""

    def _auth_prefix(self, auth: Auth) -> str:
        # Auth changes only when a session is renewed: encode it once per Auth, not per batch.
        if auth is not self._auth:
            self._auth, self._prefix = auth, f"{auth.encoded()}&{self._static}&to="
        return self._prefix

    def body(self, auth: Auth, numbers: Sequence[str]) -> bytes:
        """The ``application/x-www-form-urlencoded`` body for a POST of ``numbers``."""
        return (self._auth_prefix(auth) + "%2C".join(numbers)).encode("ascii")

    def query(self, auth: Auth, numbers: Sequence[str]) -> str:
        """The query string for a GET of ``numbers`` (at most :data:`MAX_NUMBERS_GET`)."""
        if len(numbers) > MAX_NUMBERS_GET:
            raise ProtocolError(
                f"a GET carries at most {MAX_NUMBERS_GET} numbers, not {len(numbers)}"
            )
        return self._auth_prefix(auth) + quote_plus(",".join(numbers))


# --------------------------------------------------------------------------------------------------
# Answers


NumberResult = Outcome
"""What the answer says about one requested number (one occurrence of it)."""


_new_result = tuple.__new__


class SendmsgAnswer:
    """A parsed ``sendmsg`` answer.

    ``error`` is set for a whole-request ``ERR:`` (then ``results`` is empty: nothing was
    processed). Otherwise ``results[i]`` is the outcome for ``numbers[i]`` of the request, and
    ``anomalies`` lists what did not fit (lines for numbers never asked, duplicates, junk).

    A clean answer (the common case) is also available without per-number objects:
    ``api_ids[i]`` is the id for ``numbers[i]`` or ``None``, and ``rejections`` maps each number
    that was not accepted to its result. ``results`` is then built only when asked for.
    """

    __slots__ = ("_results", "anomalies", "api_ids", "error", "numbers", "rejections")

    def __init__(
        self,
        results: list[NumberResult] | None = None,
        error: GatewayError | None = None,
        anomalies: list[str] | None = None,
        *,
        api_ids: Sequence[str | None] | None = None,
        rejections: dict[str, NumberResult] | None = None,
        numbers: Sequence[str] = (),
    ) -> None:
        self._results = results
        self.error = error
        self.anomalies = anomalies if anomalies is not None else []
        self.api_ids = api_ids
        self.rejections = rejections if rejections is not None else {}
        self.numbers = numbers

    @property
    def results(self) -> list[NumberResult]:
        if self._results is None:
            ids = self.api_ids or []
            accepted = Verdict.ACCEPTED
            self._results = [
                _new_result(NumberResult, (accepted, api_id, 0, "", None))
                if api_id is not None
                else self.rejections[number]
                for number, api_id in zip(self.numbers, ids, strict=True)
            ]
        return self._results


_ID_LINE = re.compile(r"ID:\s*([0-9A-Za-z]{1,64})(?:\s+To:\s*(\+?\d{1,20}))?", re.IGNORECASE)
_ERR_LINE = re.compile(
    r"ERR:\s*(\d{1,3})\s*(?:,\s*(.*?))?(?:\s+To:\s*(\+?\d{1,20}))?", re.IGNORECASE
)
_MISSING = NumberResult(Verdict.UNKNOWN, description="number missing from the gateway's answer")


def _lines(body: str) -> list[str]:
    return [line.strip() for line in body.splitlines() if line.strip()]


def _whole_error(line: str) -> GatewayError | None:
    m = _ERR_LINE.fullmatch(line)
    if m is None or m.group(3) is not None:
        return None
    code = int(m.group(1))
    return GatewayError(code, m.group(2) or "", classify(code))


def parse_sendmsg(body: str, numbers: Sequence[str]) -> SendmsgAnswer:
    """Match a ``sendmsg`` answer to the requested ``numbers``.

    Raises :class:`ProtocolError` only when the answer as a whole is not a sendmsg answer (empty, or
    an HTML page). Individual odd lines become anomalies and leave their numbers ``UNKNOWN``.
    """
    if len(numbers) > 1:
        fast = _parse_clean_multi(body, numbers)
        if fast is not None:
            return fast
    lines = _lines(body)
    if not lines:
        raise ProtocolError("empty answer to sendmsg")
    if len(lines) == 1:
        whole = _whole_error(lines[0])
        # A bare ERR line is a per-recipient error only for a one-number request with a code of the
        # recipient class; for anything else it refuses the whole request.
        if whole is not None and not (
            len(numbers) == 1 and whole.error_class is ErrorClass.RECIPIENT
        ):
            return SendmsgAnswer([], error=whole)

    parsed: list[tuple[str | None, NumberResult]] = []
    anomalies: list[str] = []
    for line in lines:
        m = _ID_LINE.fullmatch(line)
        if m is not None:
            parsed.append((m.group(2), NumberResult(Verdict.ACCEPTED, api_msg_id=m.group(1))))
            continue
        m = _ERR_LINE.fullmatch(line)
        if m is not None:
            code = int(m.group(1))
            parsed.append(
                (
                    m.group(3),
                    NumberResult(
                        Verdict.REJECTED,
                        "",
                        code,
                        m.group(2) or "",
                        classify(code, per_recipient=True),
                    ),
                )
            )
            continue
        anomalies.append(f"unrecognised line: {_quote(line)}")

    if not parsed:
        raise ProtocolError("answer to sendmsg has no ID: or ERR: line", lines[0])

    # Lines without To: are only meaningful when exactly one number was asked for.
    if len(numbers) == 1 and len(parsed) == 1 and parsed[0][0] is None:
        return SendmsgAnswer([parsed[0][1]], anomalies=anomalies)

    wanted: dict[str, list[int]] = {}
    for i, number in enumerate(numbers):
        wanted.setdefault(number, []).append(i)
    answered: dict[str, list[NumberResult]] = {}
    for to, result in parsed:
        if to is None:
            anomalies.append(f"line without To: in a {len(numbers)}-number answer")
            continue
        to = to.lstrip("+")
        if to not in wanted:
            anomalies.append(f"answer for a number that was not requested: {to}")
            continue
        answered.setdefault(to, []).append(result)

    results = [_MISSING] * len(numbers)
    for number, positions in wanted.items():
        got = answered.get(number)
        if not got:
            continue
        if len(got) > len(positions):
            # More answers than requests for this number: which one is real cannot be known.
            ids = ";".join(r.api_msg_id for r in got if r.api_msg_id)
            anomalies.append(f"{len(got)} answer lines for {number}, {len(positions)} requested")
            dup = NumberResult(
                Verdict.UNKNOWN,
                description=f"number answered {len(got)} times"
                + (f" (api ids {ids})" if ids else ""),
            )
            for i in positions:
                results[i] = dup
            continue
        # The same number asked k times: the answers are interchangeable between its occurrences.
        for i, result in zip(positions, got, strict=False):
            results[i] = result
    missing = sum(1 for r in results if r is _MISSING)
    if missing:
        anomalies.append(f"{missing} requested number(s) missing from the answer")
    return SendmsgAnswer(results, anomalies=anomalies)


def _parse_clean_multi(body: str, numbers: Sequence[str]) -> SendmsgAnswer | None:
    """The fast path for a clean multi-number answer: canonical ``ID: x To: n`` lines (checked
    with C-level string operations over the whole body) plus any ``ERR: ... To: n`` lines, exactly
    one per requested number, nothing else. Returns ``None`` whenever anything is off, so that the
    careful line-by-line path decides."""
    n = len(numbers)
    errors: dict[str, NumberResult] = {}
    if "ERR" in body:
        kept: list[str] = []
        for line in body.splitlines():
            if "ERR" in line:
                m = _ERR_LINE.fullmatch(line.strip())
                if m is None or m.group(3) is None or m.group(3) in errors:
                    return None
                code = int(m.group(1))
                errors[m.group(3)] = NumberResult(
                    Verdict.REJECTED, "", code, m.group(2) or "", classify(code, per_recipient=True)
                )
            elif line and not line.isspace():
                kept.append(line)
        id_body = "\n".join(kept)
    else:
        id_body = body.strip()
    k = n - len(errors)
    by_to: dict[str, str] = {}
    if k:
        # Every line "ID: <id> To: <number>": four tokens a line, checked with C-level list ops.
        if id_body.count("\n") != k - 1 or not id_body.isascii():
            return None
        tokens = id_body.split()
        if len(tokens) != 4 * k or tokens[0::4].count("ID:") != k or tokens[2::4].count("To:") != k:
            return None
        id_tokens = tokens[1::4]
        if not "".join(id_tokens).encode("ascii").isalnum() or max(map(len, id_tokens)) > 64:
            return None
        to_tokens = tokens[3::4]
        if not errors and to_tokens == numbers:
            # Each line's To: is the number asked for at that place: matched by To:, cheaply.
            return SendmsgAnswer(api_ids=id_tokens, numbers=numbers)
        by_to = dict(zip(to_tokens, id_tokens, strict=True))
        if len(by_to) != k or not errors.keys().isdisjoint(by_to):
            return None
    elif id_body:
        return None
    ids: list[str | None] = list(map(by_to.get, numbers))
    if len(errors) != ids.count(None):
        return None  # a number answered neither with an ID nor with an ERR line
    if errors and not all(
        number in errors for number, i in zip(numbers, ids, strict=True) if i is None
    ):
        return None
    return SendmsgAnswer(api_ids=ids, rejections=errors, numbers=numbers)


def _quote(line: str, limit: int = 120) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "…")


def _single_line(body: str, command: str) -> str:
    lines = _lines(body)
    if not lines:
        raise ProtocolError(f"empty answer to {command}")
    if len(lines) > 1:
        raise ProtocolError(f"{command} answered {len(lines)} lines, expected one", lines[1])
    line = lines[0]
    whole = _whole_error(line)
    if whole is not None:
        raise whole
    return line


_OK = re.compile(r"OK:\s*(\S*)", re.IGNORECASE)


def parse_auth(body: str) -> str:
    """The session id from an ``auth`` answer (``OK: <session_id>``)."""
    line = _single_line(body, "auth")
    m = _OK.fullmatch(line)
    if m is None or not m.group(1):
        raise ProtocolError("auth answer is not 'OK: <session id>'", "OK: ***" if m else line)
    return m.group(1)


def parse_ping(body: str) -> None:
    """Accept ``OK:`` (with or without a trailing session id)."""
    line = _single_line(body, "ping")
    if _OK.fullmatch(line) is None:
        raise ProtocolError("ping answer is not 'OK:'", line)


_QUERY = re.compile(r"ID:\s*([0-9A-Za-z]{1,64})\s+Status:\s*(\d{3})", re.IGNORECASE)
# ``apiMsgId: <id> charge: <x> status: <NNN>`` is the documented answer (and what third-party
# clients parse); ``ID: <id> Charge: ...`` is what older notes said. Both are accepted.
_CHARGE = re.compile(
    r"(?:apiMsgId|ID):\s*([0-9A-Za-z]{1,64})\s+Charge:\s*([0-9.]+)\s+Status:\s*(\d{3})",
    re.IGNORECASE,
)
_CREDIT = re.compile(r"Credit:\s*(-?[0-9]+(?:\.[0-9]*)?)", re.IGNORECASE)


def parse_querymsg(body: str) -> tuple[str, str]:
    """``(api_msg_id, status)`` from ``ID: <id> Status: <NNN>``."""
    line = _single_line(body, "querymsg")
    m = _QUERY.fullmatch(line)
    if m is None:
        raise ProtocolError("querymsg answer is not 'ID: <id> Status: <NNN>'", line)
    return m.group(1), m.group(2)


def parse_getmsgcharge(body: str) -> tuple[str, float, str]:
    """``(api_msg_id, charge, status)`` from ``apiMsgId: <id> charge: <x> status: <NNN>`` (or the
    ``ID: <id> Charge: <x> Status: <NNN>`` spelling)."""
    line = _single_line(body, "getmsgcharge")
    m = _CHARGE.fullmatch(line)
    if m is None:
        raise ProtocolError(
            "getmsgcharge answer is not 'apiMsgId: <id> charge: <x> status: <NNN>'", line
        )
    return m.group(1), float(m.group(2)), m.group(3)


def parse_getbalance(body: str) -> float:
    """The balance from ``Credit: <float>``."""
    line = _single_line(body, "getbalance")
    m = _CREDIT.fullmatch(line)
    if m is None:
        raise ProtocolError("getbalance answer is not 'Credit: <number>'", line)
    return float(m.group(1))


# --------------------------------------------------------------------------------------------------
# The pipeline's wire protocol for sendmsg, and the auth the legacy interfaces share

SENDMSG_PATH = "/http/sendmsg"
AUTH_PATH = "/http/auth"
FORM_HEADERS = (("Content-Type", "application/x-www-form-urlencoded"),)

_NOT_PROCESSED_HTTP = frozenset({429, 502, 503, 504})
_REFUSED_HTTP = frozenset({401, 403, 404, 405})


def http_answer(status: int, headers: Mapping[str, str], size: int, path: str) -> Answer | None:
    """The answer an HTTP status alone gives on the legacy API (errors travel in 200 bodies),
    or ``None`` for a 200 whose body must be read: 429/502/503/504 were not processed (retry),
    401/403/404/405 refuse our request (wrong endpoint or access), anything else may have been
    processed."""
    if status == 200:
        return None
    if status in _NOT_PROCESSED_HTTP:
        error = RequestError(
            0, f"HTTP {status}", ErrorClass.TRANSIENT, status, retry_after(headers)
        )
        return Answer.refused(size, error)
    if status in _REFUSED_HTTP:
        return Answer.refused(
            size, RequestError(0, f"HTTP {status} from {path}", ErrorClass.REQUEST, status)
        )
    return Answer.unknown(size, f"HTTP {status}")


def form_request(path: str, params: Sequence[tuple[str, str]]) -> Request:
    return Request("POST", path, urlencode(params).encode("ascii"), FORM_HEADERS)


class LegacySession:
    """How legacy requests authenticate: user + password + api_id on every request, or (with
    ``use_session``) a session id from ``/http/auth``, obtained by a :class:`~bulksend.wire.Step`
    and dropped when the gateway says it expired (``ERR: 003``)."""

    def __init__(self, auth: Auth, use_session: bool) -> None:
        self._base = auth
        self.auth = auth
        self.use_session = use_session

    def step(self) -> Step | None:
        if not self.use_session or self.auth.session_id:
            return None
        return Step("auth", form_request(AUTH_PATH, self._base.params()))

    def take(self, status: int, body: bytes) -> None:
        if status != 200:
            error_class = (
                ErrorClass.TRANSIENT if status in _NOT_PROCESSED_HTTP else ErrorClass.FATAL
            )
            raise GatewayError(0, f"HTTP {status} from {AUTH_PATH}", error_class)
        session_id = parse_auth(body.decode("utf-8", errors="replace"))
        register_secret(session_id)
        self.auth = self._base.with_session(session_id)

    def invalidate(self) -> None:
        self.auth = self._base

    @property
    def lasting(self) -> Auth:
        """Credentials that do not expire (user, password, api_id): for a last request that
        no step will follow, such as ``endbatch`` after the campaign."""
        return self._base


class SendmsgWire:
    """``/http/sendmsg`` behind :class:`~bulksend.wire.WireProtocol`: the campaign's one message
    (:class:`SendmsgTemplate`) to up to 600 numbers per POST, 300 per GET. The fast path: a batch
    costs one join of its numbers, and a clean answer one split (:func:`parse_sendmsg`)."""

    name = "sendmsg"

    def __init__(
        self,
        template: SendmsgTemplate,
        auth: Auth,
        *,
        use_session: bool = False,
        method: str = "post",
    ) -> None:
        if method not in ("post", "get"):
            raise ProtocolError(f"method must be post or get, not {method!r}")
        self.template = template
        self.session = LegacySession(auth, use_session)
        self.method = method
        self._max = MAX_NUMBERS_GET if method == "get" else MAX_NUMBERS_POST

    def __repr__(self) -> str:
        return f"SendmsgWire({self.method}, {self.session.auth!r})"

    @property
    def max_batch(self) -> int:
        return self._max

    def prepare(self, batch: Batch | None) -> Step | None:
        return self.session.step()

    def prepared(self, step: Step, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.session.take(status, body)

    def invalidate(self, error: RequestError) -> None:
        self.session.invalidate()

    def build(self, batch: Batch) -> Request:
        numbers = batch.msisdns
        if not 1 <= len(numbers) <= self._max:
            raise ProtocolError(f"a sendmsg {self.method.upper()} carries 1-{self._max} numbers")
        auth = self.session.auth
        if self.method == "get":
            return Request("GET", f"{SENDMSG_PATH}?{self.template.query(auth, numbers)}", b"", ())
        return Request("POST", SENDMSG_PATH, self.template.body(auth, numbers), FORM_HEADERS)

    def parse(self, status: int, headers: Mapping[str, str], body: bytes, batch: Batch) -> Answer:
        numbers = batch.msisdns
        by_status = http_answer(status, headers, len(numbers), SENDMSG_PATH)
        if by_status is not None:
            return by_status
        return answer_of(parse_lines(body, numbers), status, len(numbers))

    def finish(self) -> list[Request]:
        return []


def parse_lines(body: bytes, numbers: Sequence[str]) -> SendmsgAnswer | str:
    """:func:`parse_sendmsg` over a body, or the reason it is not a sendmsg answer."""
    try:
        return parse_sendmsg(body.decode("utf-8", errors="replace"), numbers)
    except ProtocolError as exc:
        return f"unreadable answer: {exc}"


def answer_of(parsed: SendmsgAnswer | str, status: int, size: int) -> Answer:
    """A :class:`SendmsgAnswer` (or an unreadable body's reason) as a :class:`~bulksend.wire.Answer`."""
    if isinstance(parsed, str):
        return Answer.unknown(size, parsed)
    error = parsed.error
    if error is not None:
        if error.error_class is ErrorClass.RECIPIENT:
            # A bare recipient-class ERR for a whole multi-number request: every number.
            rejected = Outcome(
                Verdict.REJECTED, "", error.code, error.description, ErrorClass.RECIPIENT
            )
            return Answer((rejected,) * size)
        return Answer.refused(
            size, RequestError(error.code, error.description, error.error_class, status)
        )
    if parsed.api_ids is not None:
        return Answer(
            anomalies=parsed.anomalies,
            api_ids=parsed.api_ids,
            rejections=parsed.rejections,
            numbers=parsed.numbers,
        )
    return Answer(parsed.results, anomalies=parsed.anomalies)
