"""The gateway over aiohttp: one batch in, one outcome per number out, with the retry policy.

The distinction this module exists for is *never sent* versus *maybe sent*:

* **certainly not processed** — the TCP connect failed or timed out, HTTP 429/502/503/504, the
  gateway answered ``ERR: 901`` (internal error) or ``ERR: 003`` (session expired: we log in again
  first). These are retried with exponential backoff and jitter, honouring ``Retry-After``, within a
  bounded number of attempts and a bounded total time (tenacity strategies, see :class:`RetryPolicy`);
* **maybe processed** — the connection was lost or timed out after the request was written, an
  HTTP status that does not say "not processed", an answer that is not a sendmsg answer. Never
  retried: the batch's numbers come back :attr:`BatchStatus.UNKNOWN`;
* **refused** — a whole-request ``ERR:`` of the fatal or request class (auth, frozen account, no
  credit, IP lockdown, bad parameters): :attr:`BatchStatus.FATAL`, nothing was processed.

Throttling is also flow control (:class:`~bulksend.flow.FlowControl`): every request is admitted
through the pause a 429's ``Retry-After`` asks for, a window of requests in flight and pacing at the
rate (``rate``, a hard cap in messages per second, or the rate learned from 429s). A throttled
attempt is retried as soon as flow control admits it again and does not count against
``max_attempts`` (it is flow control, not a failure); ``max_total_seconds`` still bounds it.

No secret appears in a message produced here: exceptions from aiohttp are reduced to their class
and redacted text, and the session id is registered with :func:`bulksend.errors.register_secret`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Literal

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from bulksend.errors import ErrorClass, GatewayError, ProtocolError, redact, register_secret
from bulksend.flow import FlowControl, Ticket
from bulksend.protocol import (
    MAX_NUMBERS_GET,
    Auth,
    NumberResult,
    SendmsgAnswer,
    SendmsgTemplate,
    Verdict,
    parse_auth,
    parse_sendmsg,
)

__all__ = [
    "BatchOutcome",
    "BatchStatus",
    "ClientSettings",
    "Gateway",
    "RetryPolicy",
]

log = logging.getLogger("bulksend.client")

_NOT_PROCESSED_HTTP = frozenset({429, 502, 503, 504})

# An answer for 600 numbers is about 32 KB; anything near this is not a sendmsg answer.
MAX_ANSWER_BYTES = 1 << 20


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or :class:`_MaybeProcessed` once it grows past ``limit`` (never buffers more)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            resp.close()
            raise _MaybeProcessed(f"answer larger than {limit} bytes; it may have been processed")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries of what the gateway certainly did not process."""

    max_attempts: int = 8
    max_total_seconds: float = 300.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5


@dataclass(frozen=True, slots=True)
class ClientSettings:
    endpoint: str
    auth: Auth
    use_session: bool = False
    method: Literal["post", "get"] = "post"
    concurrency: int = 32
    rate: float | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_tls: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "bulksend"


class BatchStatus(StrEnum):
    ANSWERED = "answered"  # results holds one NumberResult per number
    UNKNOWN = "unknown"  # maybe processed: every number's outcome is unknown
    NOT_SENT = "not_sent"  # retries exhausted on certainly-not-processed failures
    FATAL = "fatal"  # whole request refused for a campaign-wide reason
    RESIZE = "resize"  # not processed: larger than flow control now allows; split and resend


@dataclass(slots=True)
class BatchOutcome:
    """What became of a batch. For ``ANSWERED``, ``answer`` holds the parsed answer (whose
    ``api_ids`` fast path the campaign uses) and ``results`` one result per number."""

    status: BatchStatus
    answer: SendmsgAnswer | None = None
    attempts: int = 1
    reason: str = ""
    error: GatewayError | None = None

    @property
    def results(self) -> list[NumberResult]:
        return self.answer.results if self.answer is not None else []

    @property
    def anomalies(self) -> list[str]:
        return self.answer.anomalies if self.answer is not None else []


class _NotProcessed(Exception):
    """An attempt the gateway certainly did not process: safe to retry."""

    def __init__(self, reason: str, retry_after: float | None = None, throttled: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.throttled = throttled


class _Resize(Exception):
    """The batch is larger than the learned rate allows in one request; nothing was sent."""


class _MaybeProcessed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Fatal(Exception):
    """An HTTP answer that says our request is wrong (bad endpoint, forbidden): not processed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class _WaitHonouringRetryAfter:
    """tenacity wait strategy: exponential backoff with jitter, but never less than Retry-After."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._base = wait_exponential_jitter(
            multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.jitter
        )

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if getattr(exc, "throttled", False):
            return 0.0  # flow control holds the retry until the pause is over
        base = float(self._base(state))
        retry_after = getattr(exc, "retry_after", None)
        return max(base, retry_after) if retry_after is not None else base


class _StopAfterFailures:
    """tenacity stop strategy: ``max_attempts`` failures that were not throttling, or
    ``max_total_seconds`` in all (a 429 is flow control, not a failure)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._failures = 0

    def __call__(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if not getattr(exc, "throttled", False):
            self._failures += 1
        elapsed = state.seconds_since_start or 0.0
        return (
            self._failures >= self._policy.max_attempts or elapsed >= self._policy.max_total_seconds
        )


class Gateway:
    """One keep-alive connection pool to the gateway, shared by every batch of a campaign."""

    def __init__(self, settings: ClientSettings, template: SendmsgTemplate) -> None:
        self.settings = settings
        self.template = template
        self.auth = settings.auth
        self.flow = FlowControl(settings.concurrency, settings.rate)
        self.outcomes: Counter[str] = Counter()
        """sendmsg attempts by outcome: answered, throttled, not_processed, unknown."""
        self.on_request: Callable[[float], None] | None = None
        """Called with each attempt's duration in seconds (metrics)."""
        self._session: aiohttp.ClientSession | None = None
        self._login_lock = asyncio.Lock()
        self._session_generation = 0
        base = settings.endpoint.rstrip("/")
        self._send_url = f"{base}/http/sendmsg"
        self._auth_url = f"{base}/http/auth"

    def batch_limit(self, requested: int) -> int:
        """The largest batch to send now (smaller than ``requested`` on a slow account)."""
        return self.flow.batch_limit(requested)

    async def __aenter__(self) -> Gateway:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.concurrency,
            limit_per_host=s.concurrency,
            ttl_dns_cache=300,
            use_dns_cache=True,
            ssl=s.verify_tls,
            enable_cleanup_closed=True,
        )
        # sock_read bounds each wait for data; total bounds an answer trickled byte by byte.
        timeout = aiohttp.ClientTimeout(
            total=s.connect_timeout + s.read_timeout,
            connect=s.connect_timeout,
            sock_connect=s.connect_timeout,
            sock_read=s.read_timeout,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": s.user_agent},
            raise_for_status=False,
            auto_decompress=True,
        )
        return self

    @property
    def http(self) -> aiohttp.ClientSession:
        """The keep-alive session, shared with the account calls (:mod:`bulksend.account`)."""
        assert self._session is not None, "use Gateway as an async context manager"
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- auth --------------------------------------------------------------------------------------

    async def login(self, *, stale_generation: int | None = None) -> None:
        """Obtain a session id (``/http/auth``). Concurrent callers share one login: whoever finds
        the generation already moved on since its failure just uses the new session."""
        if not self.settings.use_session:
            return
        async with self._login_lock:
            if stale_generation is not None and stale_generation != self._session_generation:
                return
            assert self._session is not None
            form = self.settings.auth.params()
            try:
                async with self._session.post(self._auth_url, data=form) as resp:
                    body = await resp.text()
                    if resp.status != 200:
                        raise GatewayError(
                            0, f"HTTP {resp.status} from /http/auth", ErrorClass.FATAL
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GatewayError(
                    0, f"cannot log in: {_describe(exc)}", ErrorClass.FATAL
                ) from None
            session_id = parse_auth(body)
            register_secret(session_id)
            self.auth = self.settings.auth.with_session(session_id)
            self._session_generation += 1
            log.info("logged in; session renewed (generation %d)", self._session_generation)

    # -- sending -----------------------------------------------------------------------------------

    async def send(
        self, numbers: Sequence[str], before_first_request: Callable[[], None] | None = None
    ) -> BatchOutcome:
        """Send one batch and say what became of each number. Never raises for gateway trouble.

        ``before_first_request`` runs once, right before the first request leaves (after the rate
        limiter and the window admitted it): the journal records the batch's intent there, so a
        batch still waiting for its turn is not "maybe sent".
        """
        hook: list[Callable[[], None]] = [before_first_request] if before_first_request else []
        policy = self.settings.retry
        attempts = 0
        retrying = AsyncRetrying(
            stop=_StopAfterFailures(policy),
            wait=_WaitHonouringRetryAfter(policy),
            retry=retry_if_exception_type(_NotProcessed),
            reraise=True,
            before_sleep=self._before_sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    outcome = await self._attempt(numbers, hook)
                    outcome.attempts = attempts
                    return outcome
        except _NotProcessed as exc:
            return BatchOutcome(
                BatchStatus.NOT_SENT,
                attempts=attempts,
                reason=f"gave up after {attempts} attempts: {exc.reason}",
            )
        except _MaybeProcessed as exc:
            return BatchOutcome(BatchStatus.UNKNOWN, attempts=attempts, reason=exc.reason)
        except _Resize:
            # The admission that found it too big sent nothing: not an attempt.
            return BatchOutcome(BatchStatus.RESIZE, attempts=attempts - 1, reason="resize")
        except _Fatal as exc:
            error = GatewayError(0, exc.reason, ErrorClass.REQUEST)
            return BatchOutcome(
                BatchStatus.FATAL, attempts=attempts, reason=exc.reason, error=error
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.debug("retrying a batch after: %s", redact(str(exc)))

    async def _attempt(
        self, numbers: Sequence[str], hook: list[Callable[[], None]]
    ) -> BatchOutcome:
        assert self._session is not None
        flow = self.flow
        # An expired session is renewed and the batch resent at once (it was not processed):
        # backing off first could outlive a short session timeout again.
        for renewal in range(3):
            generation = self._session_generation
            ticket = await flow.acquire(len(numbers))
            if len(numbers) > flow.batch_limit(len(numbers)):
                flow.failed(ticket, processed=False)
                await flow.release(ticket)
                raise _Resize
            try:
                if hook:
                    hook.pop()()
                text = await self._request(numbers, ticket)
                try:
                    answer = parse_sendmsg(text, numbers)
                except ProtocolError as exc:
                    raise _MaybeProcessed(f"unreadable answer: {exc}") from None
            except (_MaybeProcessed, _Fatal):
                flow.failed(ticket)
                raise
            finally:
                await flow.release(ticket)
            error = answer.error
            if error is None or error.error_class is ErrorClass.RECIPIENT:
                flow.succeeded(ticket)
            else:  # refused as a whole: nothing was processed
                flow.failed(ticket, processed=False)
            if error is None:
                break
            if error.error_class is ErrorClass.SESSION and self.settings.use_session:
                try:
                    await self.login(stale_generation=generation)
                except GatewayError as exc:
                    return BatchOutcome(BatchStatus.FATAL, reason=str(exc), error=exc)
                if renewal < 2:
                    continue
                raise _NotProcessed(f"session expired (ERR {error.code:03d}) again after login")
            if error.error_class is ErrorClass.TRANSIENT:
                raise _NotProcessed(f"ERR {error.code:03d}, {error.description}")
            if error.error_class is ErrorClass.RECIPIENT:
                # A bare recipient-class error for a whole multi-number request: every number.
                result = NumberResult(
                    Verdict.REJECTED, code=error.code, description=error.description
                )
                return BatchOutcome(BatchStatus.ANSWERED, SendmsgAnswer([result] * len(numbers)))
            return BatchOutcome(BatchStatus.FATAL, reason=str(error), error=error)
        if answer.anomalies:
            log.warning("gateway answer anomalies: %s", "; ".join(answer.anomalies[:5]))
        return BatchOutcome(BatchStatus.ANSWERED, answer)

    async def _request(self, numbers: Sequence[str], ticket: Ticket) -> str:
        started = time.monotonic()
        outcome = "unknown"
        try:
            text = await self._request_once(numbers, ticket)
            outcome = "answered"
            return text
        except _NotProcessed as exc:
            outcome = "throttled" if exc.throttled else "not_processed"
            raise
        finally:
            self.outcomes[outcome] += 1
            if self.on_request is not None:
                self.on_request(time.monotonic() - started)

    async def _request_once(self, numbers: Sequence[str], ticket: Ticket) -> str:
        assert self._session is not None
        try:
            if self.settings.method == "get":
                if len(numbers) > MAX_NUMBERS_GET:
                    raise ProtocolError(f"a GET carries at most {MAX_NUMBERS_GET} numbers")
                url = f"{self._send_url}?{self.template.query(self.auth, numbers)}"
                ctx = self._session.get(url)
            else:
                ctx = self._session.post(
                    self._send_url,
                    data=self.template.body(self.auth, numbers),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            async with ctx as resp:
                status = resp.status
                if status in _NOT_PROCESSED_HTTP:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    if status == 429:
                        self.flow.throttled_by_gateway(ticket, retry_after)
                    else:
                        self.flow.failed(ticket, processed=False)
                    # Do not pool a connection the server (or a proxy) may be tearing down:
                    # a request sent on it next would fail as "maybe processed".
                    resp.close()
                    raise _NotProcessed(
                        f"HTTP {status}", retry_after=retry_after, throttled=status == 429
                    )
                body = await _read_capped(resp, MAX_ANSWER_BYTES)
                if status != 200:
                    if status in (401, 403, 404, 405):
                        raise _Fatal(f"HTTP {status} from {self._send_url}")
                    raise _MaybeProcessed(f"HTTP {status}")
                return body.decode("utf-8", errors="replace")
        except aiohttp.ConnectionTimeoutError as exc:
            self.flow.failed(ticket, processed=False)
            raise _NotProcessed(f"connect timeout: {_describe(exc)}") from None
        except aiohttp.ClientConnectorError as exc:
            self.flow.failed(ticket, processed=False)
            raise _NotProcessed(f"cannot connect: {_describe(exc)}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _MaybeProcessed(
                f"{_describe(exc)} after the request was sent; it may have been processed"
            ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)
