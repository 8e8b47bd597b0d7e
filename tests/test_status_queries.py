"""The simulators' status side without a network: statuses over time, expiry, the query bucket."""

from __future__ import annotations

from collections import Counter

from bulksend.simulator.faults import Faults
from bulksend.simulator.ledger import Ledger
from bulksend.simulator.status_queries import StatusQueries


def _queries(**faults: float) -> tuple[Ledger, StatusQueries]:
    ledger = Ledger()
    return ledger, StatusQueries(ledger, Faults(**faults))


def test_a_message_is_003_until_twice_the_delivery_delay_then_final_for_good() -> None:
    ledger, queries = _queries(delivery_delay=10.0, delivery_failure_rate=0.0)
    [api_msg_id] = ledger.accept(["27821234567"], "hi")
    entry = ledger.find(api_msg_id)
    assert entry is not None
    assert queries.status(entry, now=entry.time + 19.9) == ("003", entry.time)
    assert queries.status(entry, now=entry.time + 20.0) == ("004", entry.time + 20.0)
    assert ledger.status(api_msg_id) == "004"  # getmsgcharge and later queries agree
    assert queries.status(entry, now=entry.time)[0] == "004"
    assert queries.stats.by_status == Counter({"003": 1, "004": 2})


def test_final_statuses_fail_at_the_failure_rate_with_the_dispatchers_codes() -> None:
    ledger, queries = _queries(delivery_delay=0.0, delivery_failure_rate=0.2)
    ids = ledger.accept([f"2782{i:07d}" for i in range(5000)], "hi")
    statuses: Counter[str] = Counter()
    for api_msg_id in ids:
        entry = ledger.find(api_msg_id)
        assert entry is not None
        status, _ = queries.status(entry)
        statuses[status] += 1
    failed = 5000 - statuses["004"]
    assert 850 < failed < 1150
    assert set(statuses) <= {"004", "005", "007", "009", "010"}


def test_a_message_played_by_callbacks_keeps_the_dispatchers_status() -> None:
    ledger, queries = _queries(delivery_delay=0.0)
    [api_msg_id] = ledger.accept(["27821234567"], "hi", callback=7)
    entry = ledger.find(api_msg_id)
    assert entry is not None
    assert queries.status(entry, now=entry.time + 100)[0] == "003"  # not decided here
    ledger.set_status(api_msg_id, "007")
    assert queries.status(entry)[0] == "007"


def test_expired_ids_and_the_query_bucket() -> None:
    ledger, queries = _queries()
    [api_msg_id] = ledger.accept(["27821234567"], "hi")
    entry = ledger.find(api_msg_id)
    assert entry is not None
    assert not queries.expired(entry)
    queries.message_ttl = 60.0
    assert not queries.expired(entry, now=entry.time + 59)
    assert queries.expired(entry, now=entry.time + 61)
    assert queries.legacy_answer("ERR: 103, Unknown API message ID").startswith("ERR: 103")
    assert queries.stats.unknown_ids == 1

    queries.query_mps = 5.0
    admitted = [queries.admit() is None for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3
    assert queries.stats.throttled == 3 and queries.stats.queries == 8
    refused = queries.admit()
    assert refused is not None and int(refused["Retry-After"]) >= 1
