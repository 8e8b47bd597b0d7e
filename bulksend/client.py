"""The gateway over aiohttp: one batch in, one outcome per recipient out, with the retry policy.

The client knows no protocol: a :class:`~bulksend.wire.WireProtocol` (``sendmsg``, the batch
interface, the One API) builds each request and parses each answer into per-recipient outcomes and
a request-level error class; this module sends, retries and paces. What it decides from the class:

The distinction this module exists for is *never sent* versus *maybe sent*:

* **certainly not processed** — the TCP connect failed or timed out, or the protocol says so
  (``TRANSIENT``: HTTP 429/502/503/504, ``ERR: 901``, One API code 19 or 5xx; ``SESSION``:
  ``ERR: 003`` or an expired batch id, renewed through the protocol's preparation steps first).
  These are retried with exponential backoff and jitter, honouring ``Retry-After``, within a
  bounded number of attempts and a bounded total time (tenacity strategies, see :class:`RetryPolicy`);
* **maybe processed** — the connection was lost or timed out after the request was written, or
  the answer says nothing certain (an unexpected HTTP status, an unreadable body). Never retried:
  the batch's recipients come back :attr:`BatchStatus.UNKNOWN`;
* **refused** — a whole-request error of the fatal or request class (auth, frozen account, no
  credit, IP lockdown, bad parameters): :attr:`BatchStatus.FATAL`, nothing was processed (unless
  the protocol says some may have been: then ``UNKNOWN`` and the campaign stops).

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
from collections.abc import Awaitable, Callable, Sequence
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

from bulksend.errors import ErrorClass, GatewayError, ProtocolError, redact
from bulksend.flow import FlowControl, Ticket
from bulksend.wire import Answer, Batch, Outcome, Request, RequestError, Step, WireProtocol
from bulksend.wire.legacy import Auth

__all__ = [
    "BatchOutcome",
    "BatchStatus",
    "ClientSettings",
    "Gateway",
    "RetryPolicy",
]

log = logging.getLogger("bulksend.client")

# An answer for 600 numbers is about 32 KB; anything near this is not a sendmsg answer.
MAX_ANSWER_BYTES = 1 << 20


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or ``None`` once it grows past ``limit`` (never buffers more)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            resp.close()
            return None
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
    ``api_ids`` fast path the campaign uses) and ``results`` one outcome per recipient."""

    status: BatchStatus
    answer: Answer | None = None
    attempts: int = 1
    reason: str = ""
    error: GatewayError | None = None

    @property
    def results(self) -> tuple[Outcome, ...]:
        return self.answer.outcomes if self.answer is not None else ()

    @property
    def anomalies(self) -> tuple[str, ...]:
        return self.answer.anomalies if self.answer is not None else ()


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
    """One keep-alive connection pool to the gateway, shared by every batch of a campaign, and the
    wire protocol its requests speak."""

    def __init__(self, settings: ClientSettings, wire: WireProtocol) -> None:
        self.settings = settings
        self.wire = wire
        self.flow = FlowControl(settings.concurrency, settings.rate)
        self.outcomes: Counter[str] = Counter()
        """message-request attempts by outcome: answered, throttled, not_processed, unknown."""
        self.on_request: Callable[[float], None] | None = None
        """Called with each attempt's duration in seconds (metrics)."""
        self._session: aiohttp.ClientSession | None = None
        self._prepare_lock = asyncio.Lock()
        self._generation = 0
        self._base = settings.endpoint.rstrip("/")

    def ready_for(self, batch: Batch) -> bool:
        """Whether ``batch``'s request would leave at once if sent now: no preparation step
        due (log in, a batch template) and flow control admitting it without a wait. A hint."""
        return self.wire.prepare(batch) is None and self.flow.admits_now()

    def batch_limit(self, requested: int) -> int:
        """The largest batch to send now (smaller than ``requested`` on a slow account)."""
        return self.flow.batch_limit(min(requested, self.wire.max_batch))

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

    # -- session state (log in, batch templates) ---------------------------------------------------

    async def prepare(self, batch: Batch | None = None) -> None:
        """Run the protocol's preparation steps for ``batch`` (``None``: log in, if the protocol
        has a session). Concurrent callers share one run. :class:`GatewayError` when refused."""
        if self.wire.prepare(batch) is None:
            return
        async with self._prepare_lock:
            await self._run_steps(batch)

    async def login(self) -> None:
        """Obtain the protocol's session state before the first batch (fail early on bad
        credentials)."""
        await self.prepare(None)

    async def _renew(self, error: RequestError, generation: int, batch: Batch) -> None:
        """The gateway said the session state ``generation`` used is stale: drop it (once, however
        many senders found out) and prepare again."""
        async with self._prepare_lock:
            if generation == self._generation:
                self.wire.invalidate(error)
                self._generation += 1
            await self._run_steps(batch)

    async def _run_steps(self, batch: Batch | None) -> None:
        for _ in range(8):
            step = self.wire.prepare(batch)
            if step is None:
                return
            status, headers, body = await self._step(step)
            try:
                self.wire.prepared(step, status, headers, body)
            except ProtocolError as exc:
                # A step sends no message: an answer we cannot read is retried like a 503.
                raise GatewayError(
                    0, f"unreadable answer to {step.name}: {exc}", ErrorClass.TRANSIENT
                ) from None
            self._generation += 1
            log.info("%s done (session generation %d)", step.name, self._generation)
        raise GatewayError(0, "the protocol kept asking for preparation steps", ErrorClass.FATAL)

    async def _exchange(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """One request that sends no message (a step, an ``endbatch``): status, headers, body."""
        assert self._session is not None
        async with self._session.request(
            request.method,
            self._base + request.path,
            data=request.body or None,
            headers=request.header_map(),
        ) as resp:
            body = await _read_capped(resp, MAX_ANSWER_BYTES)
            return resp.status, dict(resp.headers), body or b""

    async def _step(self, step: Step) -> tuple[int, dict[str, str], bytes]:
        try:
            return await self._exchange(step.request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(
                0, f"cannot {step.name}: {_describe(exc)}", ErrorClass.TRANSIENT
            ) from None

    async def finish(self) -> None:
        """Close the protocol's session state (``endbatch``); best effort, never raises."""
        if self._session is None:
            return
        for request in self.wire.finish():
            try:
                await self._exchange(request)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.debug("closing the protocol session: %s", _describe(exc))

    # -- sending -----------------------------------------------------------------------------------

    async def send(
        self,
        batch: Batch | Sequence[str],
        before_first_request: Callable[[], Awaitable[None]] | None = None,
    ) -> BatchOutcome:
        """Send one batch and say what became of each recipient. Never raises for gateway trouble.

        ``batch``: a :class:`~bulksend.wire.Batch`, or just numbers (rows 0..n-1).
        ``before_first_request`` is awaited once, right before the first request leaves (after the
        rate limiter and the window admitted it): the journal records the batch's intent there and
        waits until it is on stable storage, so a batch still waiting for its turn is not "maybe
        sent", and one that left is never forgotten by a machine crash.
        """
        if not isinstance(batch, Batch):
            numbers = list(batch)
            batch = Batch(list(range(len(numbers))), numbers)
        hook: list[Callable[[], Awaitable[None]]] = (
            [before_first_request] if before_first_request else []
        )
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
                    outcome = await self._attempt(batch, hook)
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
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.debug("retrying a batch after: %s", redact(str(exc)))

    async def _attempt(
        self, batch: Batch, hook: list[Callable[[], Awaitable[None]]]
    ) -> BatchOutcome:
        assert self._session is not None
        flow = self.flow
        wire = self.wire
        size = len(batch.rows)
        # Stale session state is renewed and the batch resent at once (it was not processed):
        # backing off first could outlive a short session timeout again.
        for renewal in range(3):
            try:
                await self.prepare(batch)
            except GatewayError as exc:
                return _refused_step(exc)
            ticket = await flow.acquire(size)
            # The session state this request uses is what is current once it may leave: a
            # renewal that happened while it waited for its slot is not stale for it.
            generation = self._generation
            if size > flow.batch_limit(size):
                flow.failed(ticket, processed=False)
                await flow.release(ticket)
                raise _Resize
            try:
                request = wire.build(batch)
                if hook:
                    await hook.pop()()
                answer = await self._request(request, batch, ticket)
            except _MaybeProcessed:
                flow.failed(ticket)
                raise
            finally:
                await flow.release(ticket)
            error = answer.error
            if error is None:
                if answer.unknown_reason:
                    flow.failed(ticket)
                    return BatchOutcome(BatchStatus.UNKNOWN, reason=answer.unknown_reason)
                flow.succeeded(ticket)
                if answer.anomalies:
                    log.warning(
                        "gateway answer anomalies: %s", redact("; ".join(answer.anomalies[:5]))
                    )
                return BatchOutcome(BatchStatus.ANSWERED, answer)
            if error.processed:  # refused, yet some recipients may have been processed
                flow.failed(ticket)
                gateway_error = GatewayError(error.code, error.description, error.error_class)
                return BatchOutcome(
                    BatchStatus.UNKNOWN, reason=redact(str(error)), error=gateway_error
                )
            flow.failed(ticket, processed=False)  # refused as a whole: nothing was processed
            if error.error_class is ErrorClass.SESSION:
                try:
                    await self._renew(error, generation, batch)
                except GatewayError as exc:
                    return _refused_step(exc)
                if renewal < 2:
                    continue
                raise _NotProcessed(f"{error} again after renewing the session")
            gateway_error = GatewayError(error.code, error.description, error.error_class)
            return BatchOutcome(BatchStatus.FATAL, reason=str(error), error=gateway_error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(self, request: Request, batch: Batch, ticket: Ticket) -> Answer:
        started = time.monotonic()
        outcome = "unknown"
        try:
            answer = await self._request_once(request, batch, ticket)
            outcome = "answered"
            return answer
        except _NotProcessed as exc:
            outcome = "throttled" if exc.throttled else "not_processed"
            raise
        finally:
            self.outcomes[outcome] += 1
            if self.on_request is not None:
                self.on_request(time.monotonic() - started)

    async def _request_once(self, request: Request, batch: Batch, ticket: Ticket) -> Answer:
        assert self._session is not None
        try:
            async with self._session.request(
                request.method,
                self._base + request.path,
                data=request.body or None,
                headers=request.header_map() if request.headers else None,
            ) as resp:
                status = resp.status
                body = await _read_capped(resp, MAX_ANSWER_BYTES)
                if body is None:
                    if 200 <= status < 300:
                        raise _MaybeProcessed(
                            f"answer larger than {MAX_ANSWER_BYTES} bytes; "
                            "it may have been processed"
                        )
                    body = b""  # an error page: its status says enough
                answer = self.wire.parse(status, resp.headers, body, batch)
                error = answer.error
                if error is not None and error.error_class is ErrorClass.TRANSIENT:
                    throttled = status == 429
                    if throttled:
                        self.flow.throttled_by_gateway(ticket, error.retry_after)
                    else:
                        self.flow.failed(ticket, processed=False)
                    if status >= 300:
                        # Do not pool a connection the server (or a proxy) may be tearing down:
                        # a request sent on it next would fail as "maybe processed".
                        resp.close()
                    raise _NotProcessed(
                        redact(str(error)), retry_after=error.retry_after, throttled=throttled
                    )
                return answer
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


def _refused_step(exc: GatewayError) -> BatchOutcome:
    """A preparation step (log in, ``startbatch``) failed: it sent no message, so what the gateway
    did not process is retried like any request; a refusal stops the campaign."""
    if exc.error_class is ErrorClass.TRANSIENT:
        raise _NotProcessed(str(exc)) from None
    return BatchOutcome(BatchStatus.FATAL, reason=str(exc), error=exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)
