"""Client edge cases, one at a time (aioresponses), plus a real refused connection."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses

from bulksend.client import (
    BatchStatus,
    ClientSettings,
    Gateway,
    RetryPolicy,
    _NotProcessed,
    _WaitHonouringRetryAfter,
)
from bulksend.wire import Verdict
from bulksend.wire.legacy import Auth, MessageOptions, SendmsgTemplate, SendmsgWire

ENDPOINT = "http://gateway.invalid"
URL = f"{ENDPOINT}/http/sendmsg"
ID1 = "0d1d4e7f8bc14ad2a6c6f9d6fbcc3e01"
NUMBERS = ["27821234567", "27831234567"]
FAST = RetryPolicy(max_attempts=3, max_total_seconds=5, initial_backoff=0.001, max_backoff=0.01)


def _sendmsg(settings: ClientSettings, text: str = "hi") -> SendmsgWire:
    return SendmsgWire(
        SendmsgTemplate(MessageOptions(text=text)),
        settings.auth,
        use_session=settings.use_session,
        method=settings.method,
    )


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = ClientSettings(
        endpoint=ENDPOINT, auth=Auth("1", "u", "secret-pw"), concurrency=4, retry=FAST
    )
    async with Gateway(settings, _sendmsg(settings)) as gw:
        yield gw


async def test_answer_is_matched_per_number(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(
            URL, body=f"ERR: 114, Cannot route message To: 27831234567\nID: {ID1} To: 27821234567"
        )
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.ANSWERED
    assert outcome.results[0].api_msg_id == ID1
    assert outcome.results[1].verdict is Verdict.REJECTED


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_not_processed_statuses_are_retried(gateway: Gateway, status: int) -> None:
    with aioresponses() as m:
        m.post(URL, status=status, headers={"Retry-After": "0"})
        m.post(URL, body=f"ID: {ID1} To: 27821234567\nID: {ID1[::-1]} To: 27831234567")
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.ANSWERED and outcome.attempts == 2


async def test_throttled_request_is_retried_and_teaches_a_rate(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, status=429, headers={"Retry-After": "0"})
        m.post(URL, body=f"ID: {ID1}")
        outcome = await gateway.send(NUMBERS[:1])
    assert outcome.status is BatchStatus.ANSWERED and outcome.attempts == 2
    assert gateway.flow.throttled == 1 and gateway.flow.rate is not None


async def test_throttled_batch_too_big_for_the_learned_rate_comes_back_to_be_split(
    gateway: Gateway,
) -> None:
    with aioresponses() as m:
        m.post(URL, status=429, headers={"Retry-After": "0"})
        outcome = await gateway.send(NUMBERS)
    # Nothing known but "2 numbers were too many just now": at most 2/s, 1 per request.
    assert outcome.status is BatchStatus.RESIZE and gateway.batch_limit(2) == 1


async def test_err_901_is_retried_then_gives_up_as_not_sent(gateway: Gateway) -> None:
    with aioresponses() as m:
        for _ in range(3):
            m.post(URL, body="ERR: 901, Internal error")
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.NOT_SENT
    assert outcome.attempts == 3
    assert "901" in outcome.reason


async def test_read_timeout_is_unknown_and_not_retried(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, exception=TimeoutError())
        m.post(URL, body=f"ID: {ID1}")
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.UNKNOWN and outcome.attempts == 1


async def test_connection_lost_after_sending_is_unknown(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, exception=aiohttp.ServerDisconnectedError())
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.UNKNOWN
    assert "may have been processed" in outcome.reason


async def test_html_page_with_200_is_unknown(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, body="<html><body>Service temporarily unavailable</body></html>")
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.UNKNOWN


async def test_http_500_is_unknown_not_retried(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, status=500)
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.UNKNOWN and outcome.attempts == 1


@pytest.mark.parametrize("body", ["ERR: 001, Authentication failed", "ERR: 301, No credit left"])
async def test_fatal_whole_request_error(gateway: Gateway, body: str) -> None:
    with aioresponses() as m:
        m.post(URL, body=body)
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.FATAL
    assert outcome.error is not None and outcome.error.fatal


async def test_http_404_is_fatal(gateway: Gateway) -> None:
    with aioresponses() as m:
        m.post(URL, status=404)
        outcome = await gateway.send(NUMBERS)
    assert outcome.status is BatchStatus.FATAL


async def test_refused_connection_is_retried_then_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        settings = ClientSettings(
            endpoint=f"http://127.0.0.1:{port}", auth=Auth("1", "u", "pw"), retry=FAST
        )
        async with Gateway(settings, _sendmsg(settings)) as gw:
            outcome = await gw.send(NUMBERS)
    assert outcome.status is BatchStatus.NOT_SENT and outcome.attempts == 3
    assert "cannot connect" in outcome.reason


async def test_session_expiry_logs_in_again_and_retries() -> None:
    settings = ClientSettings(
        endpoint=ENDPOINT, auth=Auth("1", "u", "pw"), use_session=True, retry=FAST
    )
    async with Gateway(settings, _sendmsg(settings)) as gw:
        with aioresponses() as m:
            m.post(f"{ENDPOINT}/http/auth", body="OK: " + "a" * 32)
            m.post(f"{ENDPOINT}/http/auth", body="OK: " + "b" * 32)
            m.post(URL, body="ERR: 003, Session ID expired")
            m.post(URL, body=f"ID: {ID1}")
            await gw.login()
            outcome = await gw.send(["27821234567"])
        # Renewed and resent at once, within the same attempt (no backoff).
        assert outcome.status is BatchStatus.ANSWERED and outcome.attempts == 1
        assert gw.wire.session.auth.session_id == "b" * 32


def test_wait_honours_retry_after_over_backoff() -> None:
    wait = _WaitHonouringRetryAfter(RetryPolicy(initial_backoff=0.1, max_backoff=1, jitter=0))

    class State:
        attempt_number = 1

        class outcome:
            @staticmethod
            def exception() -> BaseException:
                return _NotProcessed("HTTP 429", retry_after=7.0)

    assert wait(State()) == 7.0  # type: ignore[arg-type]


async def test_a_preparation_step_not_processed_is_retried_not_fatal() -> None:
    """A 503 or ERR 901 on ``startbatch`` (which sends no message) is retried like any request
    the gateway did not process; the item then goes out once."""
    from bulksend.wire import Batch
    from bulksend.wire.batch import BatchInterfaceWire

    settings = ClientSettings(endpoint=ENDPOINT, auth=Auth("1", "u", "pw"), retry=FAST)
    wire = BatchInterfaceWire("Hi #name#", ("name",), settings.auth)
    async with Gateway(settings, wire) as gw:
        with aioresponses() as m:
            m.post(f"{ENDPOINT}/http_batch/startbatch", status=503)
            m.post(f"{ENDPOINT}/http_batch/startbatch", body="ERR: 901, Internal error")
            m.post(f"{ENDPOINT}/http_batch/startbatch", body="ID: " + "b" * 32)
            m.post(f"{ENDPOINT}/http_batch/senditem", body=f"ID: {ID1}")
            outcome = await gw.send(Batch([2], ["27821234567"], ["Hi Anna"], [("Anna",)]))
    assert outcome.status is BatchStatus.ANSWERED, outcome.reason
    assert outcome.results[0].verdict is Verdict.ACCEPTED and outcome.attempts == 3


async def test_a_refused_preparation_step_is_fatal() -> None:
    from bulksend.wire import Batch
    from bulksend.wire.batch import BatchInterfaceWire

    settings = ClientSettings(endpoint=ENDPOINT, auth=Auth("1", "u", "pw"), retry=FAST)
    wire = BatchInterfaceWire("Hi #name#", ("name",), settings.auth)
    async with Gateway(settings, wire) as gw:
        with aioresponses() as m:
            m.post(f"{ENDPOINT}/http_batch/startbatch", body="ERR: 001, Authentication failed")
            outcome = await gw.send(Batch([2], ["27821234567"], ["Hi Anna"], [("Anna",)]))
    assert outcome.status is BatchStatus.FATAL and "001" in outcome.reason


async def test_a_renewal_the_gateway_did_not_process_is_retried() -> None:
    """ERR 003, then a 503 on the new login: the login is retried (it sends no message) and the
    batch goes out once."""
    settings = ClientSettings(
        endpoint=ENDPOINT, auth=Auth("1", "u", "pw"), use_session=True, retry=FAST
    )
    async with Gateway(settings, _sendmsg(settings)) as gw:
        with aioresponses() as m:
            m.post(f"{ENDPOINT}/http/auth", body="OK: " + "a" * 32)
            m.post(URL, body="ERR: 003, Session ID expired")
            m.post(f"{ENDPOINT}/http/auth", status=503)
            m.post(f"{ENDPOINT}/http/auth", body="OK: " + "b" * 32)
            m.post(URL, body=f"ID: {ID1}")
            await gw.login()
            outcome = await gw.send(["27821234567"])
    assert outcome.status is BatchStatus.ANSWERED, outcome.reason
    assert outcome.results[0].verdict is Verdict.ACCEPTED and outcome.attempts == 2
