"""One message-status query over aiohttp, for either API, classified for ``bulksend track``.

:class:`LegacyStatusCalls` asks ``/http/querymsg`` (or ``getmsgcharge``; POST form: the
credentials travel in the body, never in the URL) and :class:`OneStatusCalls` ``GET
/v1/message/<id>`` (the key in the ``Authorization`` header). Each :meth:`query` returns a :class:`StatusReply`, or raises:

* :class:`Throttled` -- HTTP 429 (or One API error 43): nothing answered; ``retry_after`` is the
  gateway's ``Retry-After`` (:func:`bulksend.wire.retry_after`), for flow control's pause;
* :class:`NotAnswered` -- anything else that leaves the status unknown for now: a refused or lost
  connection, a timeout, HTTP 5xx, ``ERR: 901`` / error 19, an unreadable answer. A status query
  changes nothing at the gateway, so unlike a message it is always safe to ask again;
* :class:`~bulksend.errors.GatewayError` of a fatal class -- bad credentials, a frozen account, a
  request the gateway calls malformed: the run stops (asking again would only repeat it).

An id the gateway does not know, or no longer keeps (legacy ``ERR: 103``/``104``/``116``, One
API 404), is not an error: it is the reply :data:`GONE` (status ``001``, "message unknown").
A legacy session (``auth = "session"``) is obtained once and renewed on ``ERR: 003``.

No secret reaches a message: aiohttp's exceptions are reduced to their class and redacted text.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import NamedTuple

import aiohttp

from bulksend.errors import ErrorClass, GatewayError, ProtocolError, redact, register_secret
from bulksend.wire import retry_after
from bulksend.wire.legacy import Auth, parse_auth, parse_getmsgcharge, parse_querymsg
from bulksend.wire.one import ApiKey, OneApi, parse_status

__all__ = [
    "GONE",
    "LegacyStatusCalls",
    "NotAnswered",
    "OneStatusCalls",
    "StatusReply",
    "Throttled",
]

MAX_ANSWER = 64 * 1024
"""A status answer is a line or a small JSON object; anything larger is not one."""
_UNKNOWN_ID_CODES = frozenset({103, 104, 116})
"""Legacy codes for an id the account does not know or no longer keeps (the notes name 116,
the gateway's table 103/104)."""
UNKNOWN_STATUS = "001"


class StatusReply(NamedTuple):
    """What the gateway said about one message; empty strings for what it did not say."""

    status: str
    """Three digits (``001`` for an id the gateway does not know)."""
    charge: str = ""
    timestamp: str = ""
    """Unix seconds of the status, when the gateway gives one."""
    cli_msg_id: str = ""


GONE = StatusReply(UNKNOWN_STATUS)


class Throttled(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("throttled (HTTP 429)")
        self.retry_after = retry_after


class NotAnswered(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


async def _read(resp: aiohttp.ClientResponse) -> bytes:
    body = await resp.content.read(MAX_ANSWER + 1)
    if len(body) > MAX_ANSWER:
        raise NotAnswered(f"answer larger than {MAX_ANSWER} bytes")
    return body


class LegacyStatusCalls:
    """``querymsg`` with the account's credentials (a session when ``use_session``); with
    ``charges``, ``getmsgcharge`` instead: the same one call per message, whose answer also
    carries the message's charge (credits in the report)."""

    def __init__(
        self, endpoint: str, auth: Auth, *, use_session: bool, charges: bool = False
    ) -> None:
        self._base = endpoint.rstrip("/")
        self._auth = auth
        self._use_session = use_session
        self._command = "getmsgcharge" if charges else "querymsg"
        self._login_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"LegacyStatusCalls({self._base!r}, credentials hidden)"

    async def query(self, http: aiohttp.ClientSession, api_msg_id: str) -> StatusReply:
        for _ in range(3):
            if self._use_session and not self._auth.session_id:
                await self._login(http, self._auth)
            auth = self._auth
            body = await self._post(
                http, f"/http/{self._command}", [*auth.params(), ("apimsgid", api_msg_id)]
            )
            charge = ""
            try:
                if self._command == "querymsg":
                    answered_id, status = parse_querymsg(body)
                else:
                    answered_id, credits, status = parse_getmsgcharge(body)
                    charge = repr(credits) if math.isfinite(credits) and credits >= 0 else ""
            except GatewayError as exc:
                if exc.code == 3 and self._use_session:
                    await self._login(http, auth)
                    continue
                if exc.code in _UNKNOWN_ID_CODES:
                    return GONE
                if exc.error_class is ErrorClass.TRANSIENT:
                    raise NotAnswered(str(exc)) from None
                raise
            except ProtocolError as exc:
                raise NotAnswered(f"unreadable {self._command} answer: {exc}") from None
            if answered_id.lower() != api_msg_id.lower():
                raise NotAnswered(f"{self._command} answered about another message ({answered_id})")
            return StatusReply(status, charge)
        raise NotAnswered("the session expired again after renewing it")

    async def _login(self, http: aiohttp.ClientSession, stale: Auth) -> None:
        async with self._login_lock:
            if self._auth is not stale:
                return  # another query renewed it meanwhile
            credentials = Auth(stale.api_id, stale.user, stale.password)  # not the stale session
            try:
                session_id = parse_auth(await self._post(http, "/http/auth", credentials.params()))
            except ProtocolError as exc:
                raise NotAnswered(f"unreadable auth answer: {exc}") from None
            except GatewayError as exc:
                if exc.error_class is ErrorClass.TRANSIENT:
                    raise NotAnswered(str(exc)) from None
                raise
            register_secret(session_id)
            self._auth = stale.with_session(session_id)

    async def _post(
        self, http: aiohttp.ClientSession, path: str, form: list[tuple[str, str]]
    ) -> str:
        try:
            async with http.post(self._base + path, data=form) as resp:
                if resp.status == 429:
                    raise Throttled(retry_after(resp.headers))
                if resp.status >= 500:
                    raise NotAnswered(f"HTTP {resp.status}", retry_after(resp.headers))
                body = await _read(resp)
                if resp.status != 200:
                    raise GatewayError(0, f"HTTP {resp.status} from {path}", ErrorClass.FATAL)
                return body.decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotAnswered(_describe(exc)) from None


class OneStatusCalls:
    """``GET /v1/message/<id>`` with the integration's key."""

    def __init__(self, endpoint: str, key: ApiKey) -> None:
        self._base = endpoint.rstrip("/")
        self._api = OneApi(key)

    def __repr__(self) -> str:
        return f"OneStatusCalls({self._base!r}, key hidden)"

    async def query(self, http: aiohttp.ClientSession, api_msg_id: str) -> StatusReply:
        try:
            request = self._api.status_request(api_msg_id)
        except ProtocolError:
            return GONE  # not an id the One API could have issued
        try:
            async with http.request(
                request.method, self._base + request.path, headers=request.header_map()
            ) as resp:
                status, wait = resp.status, retry_after(resp.headers)
                body = await _read(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotAnswered(_describe(exc)) from None
        if status == 429:
            raise Throttled(wait)
        if status >= 500:
            raise NotAnswered(f"HTTP {status}", wait)
        if status == 404:
            return GONE
        try:
            report = parse_status(status, body)
        except GatewayError as exc:
            if exc.error_class is ErrorClass.TRANSIENT:
                raise (Throttled(wait) if exc.code == 43 else NotAnswered(str(exc), wait)) from None
            raise
        except ProtocolError as exc:
            raise NotAnswered(f"unreadable status answer: {exc}") from None
        if report.api_msg_id.lower() != api_msg_id.lower():
            raise NotAnswered(f"the status answer is about another message ({report.api_msg_id})")
        stamp = report.timestamp
        return StatusReply(
            report.status_code,
            _charge(body),
            str(int(stamp)) if math.isfinite(stamp) and stamp > 0 else "",
            report.client_message_id,
        )


def _charge(body: bytes) -> str:
    """The answer's numeric ``charge``, as the receipts file writes it ("" when absent)."""
    try:
        value = json.loads(body).get("charge")
    except (ValueError, AttributeError):
        return ""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return repr(number)
    return ""
