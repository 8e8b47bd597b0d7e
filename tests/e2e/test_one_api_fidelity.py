"""The One API as its reference describes it, end to end against the simulator over loopback:
200 messages a request, 202/207/400 answers, and ``clientMessageId`` = the row's key, by which
``--resend-unknown`` reconciles rows from delivery receipts."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

from bulksend.campaign import run_campaign_async
from bulksend.journal import Journal
from bulksend.reconcile import BY_KEY
from bulksend.rowkey import campaign_tag, client_message_id
from bulksend.simulator import Faults
from bulksend.simulator.one_api import OneApiSimulator
from tests.e2e.protocols import Wire
from tests.e2e.support import check_against_ledger, read_results, write_numbers

ONE = Wire("one")
PERSONALISED = Wire("one-personalised")


def _tag(results: Path) -> str:
    """The key tag of the campaign whose results file is ``results`` (from its journal)."""
    header = Journal(results).intent_path.read_text(encoding="utf-8").splitlines()[0]
    tag = campaign_tag(json.loads(header))
    assert tag is not None
    return tag


async def test_a_campaign_whose_requests_are_refused_whole_records_rejected_and_no_unknown(
    tmp_path: Path,
) -> None:
    """Every recipient opted out: each request is answered 400 with one refused entry per
    message and a null global error. Rejected with code 26, not unknown, and the campaign goes
    on to the end."""
    numbers = write_numbers(tmp_path / "in.csv", 600)
    async with ONE.simulator(Faults(seed=5, reject_prefixes=("27",))) as sim:
        sim.reject_code = 26
        settings = ONE.settings(sim, tmp_path / "in.csv", check_balance=False)
        summary = await run_campaign_async(settings)
        stats = sim.stats
    assert summary.exit_code == 0 and not summary.stopped
    assert (summary.accepted, summary.rejected, summary.unknown) == (0, 600, 0)
    assert summary.rejected_by_code == {"026": 600}
    results = read_results(tmp_path / "in.results.csv")
    assert sorted(r["to"] for r in results) == sorted(numbers)
    assert {(r["status"], r["error_code"]) for r in results} == {("rejected", "026")}
    assert len(sim.ledger) == 0
    assert stats.requests == 3 and stats.rejected == 600  # 200 a request, all answered 400


async def test_a_mixed_request_is_read_entry_by_entry(tmp_path: Path) -> None:
    """Some recipients refused, the others accepted: a 207, each recipient its own outcome."""
    path = tmp_path / "in.csv"
    numbers = write_numbers(path, 400)
    refused = {n for n in numbers if n.endswith(("3", "7"))}
    async with ONE.simulator(Faults(seed=5, reject_suffixes=("3", "7"))) as sim:
        summary = await run_campaign_async(ONE.settings(sim, path))
        results = read_results(tmp_path / "in.results.csv")
        assert check_against_ledger(results, sim) == {
            "accepted": 400 - len(refused),
            "rejected": len(refused),
        }
    assert summary.exit_code == 0 and summary.unknown == 0
    assert {r["to"] for r in results if r["status"] == "rejected"} == refused
    assert {r["error_code"] for r in results if r["status"] == "rejected"} == {"025"}


async def test_requests_carry_200_messages_and_batch_size_lowers_it(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    write_numbers(path, 1000)
    async with ONE.simulator() as sim:
        summary = await run_campaign_async(ONE.settings(sim, path, check_balance=False))
        assert summary.accepted == 1000 and summary.requests == 5 == sim.stats.requests
    async with ONE.simulator() as sim:
        summary = await run_campaign_async(
            ONE.settings(sim, path, batch_size=50, out=tmp_path / "fifty.csv", check_balance=False)
        )
        assert summary.accepted == 1000 and summary.requests == 20 == sim.stats.requests
    # A gateway that takes fewer per request refuses the whole request (400/22): not processed,
    # the campaign stops, nothing unknown and nothing sent.
    async with OneApiSimulator(max_messages=100) as sim:
        summary = await run_campaign_async(
            ONE.settings(sim, path, out=tmp_path / "small.csv", concurrency=1)
        )
        assert summary.exit_code != 0 and summary.unknown == 0 and len(sim.ledger) == 0


async def test_every_message_carries_its_rows_key_stable_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    PERSONALISED.write_input(path, 300)
    results_path = tmp_path / "in.results.csv"
    async with PERSONALISED.simulator(Faults(seed=2, credit=120)) as sim:
        first = await run_campaign_async(PERSONALISED.settings(sim, path, allow_partial=True))
        assert 0 < first.accepted < 300
        sim.faults.credit = None
        rest = await run_campaign_async(PERSONALISED.settings(sim, path))
        assert rest.exit_code == 0 and len(sim.ledger) == 300
        tag = _tag(results_path)
        by_id = {e.api_msg_id: e.climsgid for e in sim.ledger.entries}
    results = read_results(results_path)
    assert len(results) == 300
    for r in results:
        assert by_id[r["api_msg_id"]] == client_message_id(tag, int(r["row"]))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_resend_unknown_reconciles_by_client_message_id_not_by_number(
    tmp_path: Path,
) -> None:
    """Without dedupe every number stands on two rows, each with its own text. Requests whose
    answers are lost leave rows unknown; the receipts name each message's row by its key, so
    the rerun records the right row accepted (with the id of the message that carried that
    row's text) and sends only the rows the gateway never saw."""
    path = tmp_path / "in.csv"
    rows = PERSONALISED.write_input(path, 400)
    with path.open("a", encoding="utf-8") as f:  # every number again, with other texts
        f.writelines(f"+{n},Again{i},{5000 + i}\n" for i, n in enumerate(rows))
    port = _free_port()
    faults = Faults(seed=11, drop_after_rate=0.3, drop_before_rate=0.2, delivery_delay=0.0)
    results_path = tmp_path / "in.results.csv"
    common = {
        "dedupe": False,
        "batch_size": 20,
        "concurrency": 4,
        "receipts_listen": f"127.0.0.1:{port}",
    }
    async with PERSONALISED.simulator(faults, callback_url=f"http://127.0.0.1:{port}/") as sim:
        first = await run_campaign_async(PERSONALISED.settings(sim, path, **common))
        unknown = {r["row"] for r in read_results(results_path) if r["status"] == "unknown"}
        tag = _tag(results_path)
        sent_rows = {e.climsgid for e in sim.ledger.entries}
        seen = {row for row in unknown if client_message_id(tag, int(row)) in sent_rows}
        assert seen and unknown - seen and first.unknown == len(unknown)

        sim.faults.drop_after_rate = sim.faults.drop_before_rate = 0.0
        again = await run_campaign_async(
            PERSONALISED.settings(sim, path, resend_unknown=True, **common)
        )
        entries = list(sim.ledger.entries)
    assert again.exit_code == 0 and again.reconciled == len(seen)
    final = {r["row"]: r for r in read_results(results_path)}
    assert len(final) == 800 and {r["status"] for r in final.values()} == {"accepted"}
    assert {final[row]["error"] for row in seen} == {BY_KEY}
    # Each row's id is the message that carried its own key and its own text, sent once.
    by_id = {e.api_msg_id: e for e in entries}
    texts = _texts(path)
    for row, r in final.items():
        entry = by_id[r["api_msg_id"]]
        assert entry.climsgid == client_message_id(tag, int(row))
        assert entry.text == texts[int(row)]
    assert max(Counter(e.climsgid for e in entries).values()) == 1
    assert len(entries) == 800


def _texts(path: Path) -> dict[int, str]:
    """row -> the text that row must carry (row 1 is the header)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    out: dict[int, str] = {}
    for row, line in enumerate(lines, 2):
        _, name, order = line.split(",")
        out[row] = f"Hi {name}, your order {order} ships today"
    return out
