"""The gateway calls beside ``sendmsg``: the credit balance and stopping scheduled messages.

:class:`Account` is a small keep-alive client of its own (``async with Account(settings)``) for
``getbalance`` (the credit pre-flight) and ``delmsg`` (``bulksend cancel``). Like the sender it
retries only what the gateway certainly did not process (a refused connection, HTTP
429/502/503/504, ``ERR: 901``) with backoff and ``Retry-After``; an expired session is renewed and
the call repeated. Both calls are safe to repeat anyway: asking a balance changes nothing, and
stopping a message that is already stopped answers its status again. Gateway refusals raise
:class:`~bulksend.errors.GatewayError`; unreadable answers :class:`~bulksend.errors.ProtocolError`.

:class:`OneAccount` is the same for the One API (``GET /v1/balance`` with the API key in the
``Authorization`` header), with the same life cycle and retry rules: a refused connection, HTTP 429
or 5xx (the One API's "not processed", ``Retry-After`` honoured) and a transient error object
(19, 43) are retried with backoff, bounded by the retry policy; any other error object raises
:class:`~bulksend.errors.GatewayError` with its code's class. The key is never put in a message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import aiohttp

from bulksend.client import MAX_ANSWER_BYTES, ClientSettings, RetryPolicy
from bulksend.errors import ErrorClass, GatewayError, ProtocolError, redact, register_secret
from bulksend.wire import retry_after
from bulksend.wire.legacy import parse_auth, parse_getbalance, parse_querymsg
from bulksend.wire.one import BALANCE_PATH, ApiKey, OneApi, parse_balance

__all__ = ["Account", "OneAccount"]

T = TypeVar("T")

_NOT_PROCESSED = frozenset({429, 502, 503, 504})


class _Retry(Exception):
    """Not processed: try again (after ``retry_after`` or the backoff; ``at_once`` after a
    renewed session)."""

    def __init__(
        self, reason: str, retry_after: float | None = None, *, at_once: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.at_once = at_once


async def _retrying(policy: RetryPolicy, what: str, once: Callable[[], Awaitable[T]]) -> T:
    """``once()`` until it does not raise :class:`_Retry`, with exponential backoff, jitter and
    ``Retry-After``, within ``policy``'s attempts and total time."""
    delay = policy.initial_backoff
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.max_total_seconds
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await once()
        except _Retry as exc:
            if attempt == policy.max_attempts or loop.time() >= deadline:
                raise GatewayError(0, f"{what} kept failing: {exc}", ErrorClass.TRANSIENT) from None
            if not exc.at_once:
                wait = max(delay * (1 + random.random() * policy.jitter), exc.retry_after or 0)
                await asyncio.sleep(min(wait, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, policy.max_backoff)
    raise AssertionError("unreachable")  # pragma: no cover


class Account:
    """``getbalance`` and ``delmsg`` with the campaign's endpoint and credentials."""

    def __init__(
        self, settings: ClientSettings, session: aiohttp.ClientSession | None = None
    ) -> None:
        """``session``: an open keep-alive session to share (the campaign's gateway pool, so the
        pre-flight opens no connection of its own); it is left open."""
        self.settings = settings
        self._base = settings.endpoint.rstrip("/")
        self._session = session
        self._own_session = session is None
        self._auth = settings.auth
        self._login_lock = asyncio.Lock()

    async def __aenter__(self) -> Account:
        s = self.settings
        if not self._own_session:
            return self
        self._session = _open_session(s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def balance(self) -> float:
        """The account's credit (``getbalance``)."""
        return parse_getbalance(await self._call("/http/getbalance", []))

    async def stop_message(self, api_msg_id: str) -> str:
        """``delmsg``: stop a message that has not left yet; returns the status the gateway
        reports for it afterwards (``006``: stopped; another code: it had already gone on)."""
        _, status = parse_querymsg(await self._call("/http/delmsg", [("apimsgid", api_msg_id)]))
        return status

    async def _login(self, stale: object) -> None:
        async with self._login_lock:
            if self._auth is not stale:
                return
            body = await self._post("/http/auth", self.settings.auth.params())
            session_id = parse_auth(body)
            register_secret(session_id)
            self._auth = self.settings.auth.with_session(session_id)

    async def _call(self, path: str, params: list[tuple[str, str]]) -> str:
        use_session = self.settings.use_session

        async def once() -> str:
            if use_session and not self._auth.session_id:
                await self._login(self._auth)
            auth = self._auth
            body = await self._post(path, [*auth.params(), *params])
            stripped = body.strip()
            if stripped.startswith("ERR: 003") and use_session:
                await self._login(auth)
                raise _Retry("session expired", at_once=True)
            if stripped.startswith("ERR: 901"):
                raise _Retry("ERR 901")
            return body

        return await _retrying(self.settings.retry, path, once)

    async def _post(self, path: str, form: list[tuple[str, str]]) -> str:
        assert self._session is not None, "use Account as an async context manager"
        url = self._base + path
        try:
            async with self._session.post(url, data=form) as resp:
                if resp.status in _NOT_PROCESSED:
                    raise _Retry(f"HTTP {resp.status}", retry_after(resp.headers))
                body = await resp.content.read(MAX_ANSWER_BYTES)
                if resp.status != 200:
                    raise GatewayError(0, f"HTTP {resp.status} from {path}", ErrorClass.FATAL)
                return body.decode("utf-8", "replace")
        except aiohttp.ClientConnectorError as exc:
            raise _Retry(redact(f"cannot connect: {exc}")) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProtocolError(redact(f"{path}: {type(exc).__name__}: {exc}")) from None


def _open_session(s: ClientSettings) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=s.concurrency, ssl=s.verify_tls),
        timeout=aiohttp.ClientTimeout(
            total=s.connect_timeout + s.read_timeout, connect=s.connect_timeout
        ),
        headers={"User-Agent": s.user_agent},
    )


class OneAccount:
    """The One API's balance (``GET /v1/balance``) with the campaign's endpoint and key.

    Of :class:`~bulksend.client.ClientSettings` only ``endpoint``, the timeouts, ``verify_tls``,
    ``user_agent``, ``concurrency`` and ``retry`` are used (the legacy credentials are not).
    """

    def __init__(
        self,
        settings: ClientSettings,
        key: ApiKey,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """``session``: an open keep-alive session to share; it is left open."""
        self.settings = settings
        self._api = OneApi(key)
        self._base = settings.endpoint.rstrip("/")
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"OneAccount({self._base!r}, key hidden)"

    async def __aenter__(self) -> OneAccount:
        if self._own_session:
            self._session = _open_session(self.settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def balance(self) -> float:
        """The account's balance (in the account's currency, as the gateway states it)."""
        return await _retrying(self.settings.retry, BALANCE_PATH, self._balance_once)

    async def _balance_once(self) -> float:
        assert self._session is not None, "use OneAccount as an async context manager"
        request = self._api.balance_request()
        try:
            async with self._session.request(
                request.method, self._base + request.path, headers=request.header_map()
            ) as resp:
                body = await resp.content.read(MAX_ANSWER_BYTES)
                status, wait = resp.status, retry_after(resp.headers)
        except aiohttp.ClientConnectorError as exc:
            raise _Retry(redact(f"cannot connect: {exc}")) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProtocolError(redact(f"/v1/balance: {type(exc).__name__}: {exc}")) from None
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", wait)
        try:
            return parse_balance(status, body).amount
        except GatewayError as exc:
            if exc.error_class is ErrorClass.TRANSIENT:
                raise _Retry(str(exc), wait) from None
            raise
