"""Flow control on its own, with a fake clock: pacing, pauses, slot refunds and rate learning."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bulksend.flow import (
    ASSUMED_BURST_SECONDS,
    INITIAL_WINDOW,
    MARGIN,
    SLOW_START_GROWTH,
    FlowControl,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_without_a_rate_slow_start_opens_the_window_per_answer() -> None:
    flow = FlowControl(32, clock=Clock())
    assert flow.window == INITIAL_WINDOW and flow.rate is None
    tickets = [await flow.acquire(600) for _ in range(INITIAL_WINDOW)]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(flow.acquire(600), 0.05)  # the window is full
    for ticket in tickets:
        flow.succeeded(ticket)
        await flow.release(ticket)
    assert flow.window == INITIAL_WINDOW + SLOW_START_GROWTH * INITIAL_WINDOW


@pytest.mark.serial
async def test_a_rate_paces_requests_one_batch_apart_and_caps_batches_at_half_a_second() -> None:
    flow = FlowControl(32, rate=1000.0)  # the real clock: pacing sleeps for real
    assert flow.window == 32 and flow.batch_limit(600) == 500 and flow.batch_limit(100) == 100
    loop = asyncio.get_running_loop()
    started = loop.time()
    times = []
    for _ in range(4):
        ticket = await flow.acquire(100)
        times.append(loop.time() - started)
        flow.succeeded(ticket)
        await flow.release(ticket)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] < 0.05
    assert all(0.09 <= gap < 0.2 for gap in gaps), gaps


async def test_a_throttled_request_gives_its_slot_back_but_waits_for_the_pause() -> None:
    clock = Clock()
    flow = FlowControl(8, rate=100.0, clock=clock)
    ticket = await flow.acquire(50)  # leaves at once; the next slot is 0.5 s later
    pause = flow.throttled_by_gateway(ticket, 0.2)
    await flow.release(ticket)
    assert pause == 0.2 and flow.throttled == 1 and flow.paused_until == clock.now + 0.2
    # The refused request's 0.5 s are refunded: the retry may leave when the pause ends.
    assert flow._next_free == pytest.approx(clock.now + 0.2)


async def test_first_throttle_event_learns_an_upper_bound_then_a_tight_estimate() -> None:
    clock = Clock()
    flow = FlowControl(32, clock=clock)
    first = await flow.acquire(600)
    second = await flow.acquire(600)
    flow.succeeded(first)
    await flow.release(first)
    pause = flow.throttled_by_gateway(second, 1.0)
    await flow.release(second)
    # A = 600 admitted, n = 600 refused at once: loose, so the upper bound (A + n) / burst.
    assert pause == 1.0 and flow.events == 1
    assert flow.rate == pytest.approx(1200 / ASSUMED_BURST_SECONDS)
    assert flow.window == 32

    # After the pause the bucket is full; 600-message requests at exactly 1000/s...
    clock.now = flow.paused_until
    admitted = 0
    start = clock.now
    for i in range(18):
        clock.now = start + i * 0.6
        flow.paused_until = 0.0
        flow._next_free = 0.0
        ticket = await flow.acquire(600)
        flow.succeeded(ticket)
        await flow.release(ticket)
        admitted += 600
    clock.now = start + 18 * 0.6
    flow._next_free = 0.0
    refused = await flow.acquire(600)
    flow.throttled_by_gateway(refused, 1.0)
    # A = 10 800 in Δ = 10.8 s after a full bucket: the rate lies in [A, A + n) / (1 + Δ).
    estimate = flow.rate
    assert estimate is not None
    low, high = admitted / (1 + 10.8), (admitted + 600) / (1 + 10.8)
    assert MARGIN * low <= estimate <= MARGIN * high
    assert flow.batch_limit(600) <= estimate / 2


async def test_a_late_429_from_before_the_pause_refines_instead_of_starting_an_event() -> None:
    clock = Clock()
    flow = FlowControl(32, clock=clock)
    tickets = []
    flow.window = 3
    for _ in range(3):
        tickets.append(await flow.acquire(600))
    flow.throttled_by_gateway(tickets[1], 1.0)  # event: A = 600 (the first, not yet answered)
    assert flow.events == 1 and flow.rate == pytest.approx(1200)
    flow.throttled_by_gateway(tickets[0], 1.0)  # the first was refused too: A = 0
    flow.throttled_by_gateway(tickets[2], 1.0)  # left after the refused one: no change
    assert flow.events == 1 and flow.throttled == 3
    assert flow.rate == pytest.approx(600)


async def test_a_rate_cap_is_never_exceeded_by_learning() -> None:
    clock = Clock()
    flow = FlowControl(4, rate=500.0, clock=clock)
    ticket = await flow.acquire(200)
    flow.throttled_by_gateway(ticket, None)  # no Retry-After: a short pause of our own
    assert flow.rate is not None and flow.rate <= 500.0
    assert 0.0 < flow.paused_until - clock.now <= 1.0


async def test_admits_now_says_whether_a_request_would_leave_without_waiting() -> None:
    """The sender writes a batch's intent early only when its request would leave at once: no
    full window, no pacing due, no pause, nobody waiting ahead of it."""
    clock = Clock()
    unpaced = FlowControl(32, clock=clock)
    assert unpaced.admits_now()
    tickets = [await unpaced.acquire(600) for _ in range(INITIAL_WINDOW)]
    assert not unpaced.admits_now()  # the window is full
    waiting = asyncio.create_task(unpaced.acquire(600))
    await asyncio.sleep(0)
    assert unpaced._turn.locked() and not unpaced.admits_now()  # one waits ahead
    unpaced.succeeded(tickets[0])
    await unpaced.release(tickets[0])
    await waiting

    paced = FlowControl(8, rate=100.0, clock=clock)
    ticket = await paced.acquire(50)  # the next slot is 0.5 s later
    assert not paced.admits_now()
    clock.now += 0.5
    assert paced.admits_now()
    paced.throttled_by_gateway(ticket, 2.0)
    await paced.release(ticket)
    assert not paced.admits_now()  # paused
    clock.now += 2.0
    assert paced.admits_now()
