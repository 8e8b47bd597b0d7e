"""``Ledger.accept_messages``: a request of personalised messages is one ledger batch and one CSV
write, with the same record as accepting each message on its own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bulksend.simulator import read_ledger
from bulksend.simulator.ledger import AcceptedBatch, Ledger

NUMBERS = ["27820000001", "27820000002", "27820000003", "27820000001"]
TEXTS = ["Hi Ann", 'Say "cheese", Bob', "Hi Ann", "Grüße, Ann\nline two"]
IDS = ["c-1", "c-2", "c-1", "c-4"]
PARTS = [1, 1, 1, 2]
SENDERS = ["ACME", "ACME", "ACME", "ACME"]
OPTIONS = ["", "validityPeriod=60", "", ""]


def accept_all(ledger: Ledger, **extra: object) -> list[str]:
    return ledger.accept_messages(
        list(NUMBERS),
        TEXTS,
        climsgids=IDS,
        parts=PARTS,
        senders=SENDERS,
        options=OPTIONS,
        **extra,  # type: ignore[arg-type]
    )


def without_id_and_time(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [(row[0], *row[2:4], *row[5:]) for row in rows]


def test_same_record_as_one_accept_per_message(tmp_path: Path) -> None:
    one, each = Ledger(), Ledger()
    one.open(tmp_path / "one.csv")
    each.open(tmp_path / "each.csv")
    ids = accept_all(one)
    for number, text, climsgid, parts, sender, option in zip(
        NUMBERS, TEXTS, IDS, PARTS, SENDERS, OPTIONS, strict=True
    ):
        each.accept([number], text, climsgid=climsgid, parts=parts, sender=sender, options=option)
    one.close()
    each.close()
    assert len(ids) == len(set(ids)) == len(one) == 4
    assert [e.api_msg_id for e in one] == ids
    assert without_id_and_time(one.entries) == without_id_and_time(each.entries)
    assert without_id_and_time(read_ledger(tmp_path / "one.csv")) == without_id_and_time(
        read_ledger(tmp_path / "each.csv")
    )
    assert read_ledger(tmp_path / "one.csv") == one.entries
    assert one.entries[1].option_map == {"validityPeriod": "60"}
    assert one.count_for("27820000001") == 2


def test_one_write_and_one_flush_per_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger()
    ledger.open(tmp_path / "l.csv")
    handle = ledger._file
    assert handle is not None
    calls: list[str] = []
    write, flush = handle.write, handle.flush
    monkeypatch.setattr(handle, "write", lambda text: calls.append("write") or write(text))
    monkeypatch.setattr(handle, "flush", lambda: calls.append("flush") or flush())
    accept_all(ledger)
    assert calls == ["write", "flush"]
    assert len(ledger._batches) == 1


def test_lookups_by_id_and_client_id_and_status() -> None:
    ledger = Ledger()
    ledger.accept(["27829999999"], "before", climsgid="c-4")
    ids = accept_all(ledger)
    for i, api_msg_id in enumerate(ids):
        entry = ledger.find(api_msg_id)
        assert entry is not None
        assert (entry.to, entry.text, entry.climsgid, entry.parts) == (
            NUMBERS[i],
            TEXTS[i],
            IDS[i],
            PARTS[i],
        )
        assert ledger.status(api_msg_id) == "003"
    found = ledger.find_by_climsgid("c-4")
    assert found is not None and found.api_msg_id == ids[3]
    found = ledger.find_by_climsgid("c-2")
    assert found is not None and found.api_msg_id == ids[1]
    ledger.set_status(ids[2], "004")
    assert ledger.status(ids[2]) == "004" and ledger.status(ids[0]) == "003"


def test_uniform_columns_are_stored_once() -> None:
    ledger = Ledger()
    accept_all(ledger)
    batch = ledger._batches[0]
    assert batch.sender == "ACME"  # the same for every message: one string
    assert batch.text == tuple(TEXTS) and batch.parts == tuple(PARTS)


def test_listeners_get_one_batch_per_group_of_identical_messages() -> None:
    ledger = Ledger()
    seen: list[AcceptedBatch] = []
    ledger.listeners.append(seen.append)
    ids = accept_all(ledger, callback=7)
    assert [(b.numbers, b.api_msg_ids, b.text, b.climsgid, b.parts) for b in seen] == [
        (["27820000001", "27820000003"], [ids[0], ids[2]], "Hi Ann", "c-1", 1),
        (["27820000002"], [ids[1]], 'Say "cheese", Bob', "c-2", 1),
        (["27820000001"], [ids[3]], "Grüße, Ann\nline two", "c-4", 2),
    ]
    assert all(b.callback == 7 and b.sender == "ACME" and b.due == 0.0 for b in seen)
    assert seen[1].options == "validityPeriod=60"


def test_without_numbers_and_scheduled_messages_can_be_stopped() -> None:
    ledger = Ledger(keep_numbers=False)
    ids = accept_all(ledger)
    found = ledger.find(ids[1])
    assert found is not None and found.to == "" and found.text == TEXTS[1]
    with pytest.raises(RuntimeError):
        ledger.entries  # noqa: B018
    scheduled = Ledger(keep_numbers=False)
    ids = accept_all(scheduled, due=time.monotonic() + 60)
    assert scheduled.status(ids[3]) == "011"
    stopped = scheduled.cancel(ids[3])
    assert stopped is not None
    assert (stopped.numbers, stopped.text, stopped.climsgid, stopped.parts) == (
        ["27820000001"],
        TEXTS[3],
        "c-4",
        2,
    )
    assert scheduled.status(ids[3]) == "006"


def test_empty_and_mismatched_inputs() -> None:
    ledger = Ledger()
    assert ledger.accept_messages([], [], climsgids=[], parts=[], senders=[], options=[]) == []
    with pytest.raises(ValueError, match="one text"):
        ledger.accept_messages(["1"], [], climsgids=[], parts=[], senders=[], options=[])
    assert len(ledger) == 0
