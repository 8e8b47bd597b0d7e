"""``bulksend track`` against both real simulators over loopback TCP: statuses that progress, 429s,
reruns that ask only what is not final, ids the gateway no longer keeps, and the lock."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulksend.campaign import run_campaign_async
from bulksend.config import AccountSettings
from bulksend.errors import CampaignLocked, GatewayError
from bulksend.receipts import FINAL_STATUSES, RECEIPTS_HEADER, ReceiptServer
from bulksend.report import build_report
from bulksend.simulator import DEFAULT_API_ID, DEFAULT_PASSWORD, DEFAULT_USER, Faults
from bulksend.simulator.one_api import DEFAULT_API_KEY
from bulksend.track import DEFAULT_CONCURRENCY, TrackOptions, TrackSnapshot, track_campaign
from tests.e2e.protocols import Wire
from tests.e2e.support import bulksend_cmd, cli_env, read_results

WIRES = [Wire("sendmsg"), Wire("one")]
FAST = TrackOptions(rate=2000.0, concurrency=16)


def _account(wire: Wire, sim: Any) -> AccountSettings:
    if wire.api == "one":
        return AccountSettings(api="one", api_key=DEFAULT_API_KEY, endpoint=sim.url)
    return AccountSettings(
        endpoint=sim.url, user=DEFAULT_USER, api_id=DEFAULT_API_ID, password=DEFAULT_PASSWORD
    )


def _receipts(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        assert f.readline().rstrip("\n") == RECEIPTS_HEADER
        return list(csv.DictReader(f, fieldnames=RECEIPTS_HEADER.split(",")))


async def _campaign(wire: Wire, sim: Any, tmp_path: Path, count: int) -> Path:
    wire.write_input(tmp_path / "in.csv", count)
    summary = await run_campaign_async(wire.settings(sim, tmp_path / "in.csv"))
    assert summary.accepted == count
    return tmp_path / "in.results.csv"


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_track_records_statuses_as_they_progress_and_a_rerun_asks_nothing(
    tmp_path: Path, wire: Wire
) -> None:
    async with wire.simulator(
        Faults(seed=7, delivery_delay=3600.0, delivery_failure_rate=0.3)
    ) as sim:
        results = await _campaign(wire, sim, tmp_path, 120)
        account = _account(wire, sim)

        # Just sent: every message is with the gateway, none delivered yet.
        first = await track_campaign(results, account, FAST)
        assert first.by_status == {"003": 120} and first.queries == 120
        assert first.still_pending == 120 and first.exit_code == 0
        receipts_path = tmp_path / "in.receipts.csv"
        assert Counter(r["status"] for r in _receipts(receipts_path)) == {"003": 120}

        # Asked again while nothing moved: 120 queries, not one new line (idempotent).
        again = await track_campaign(results, account, FAST)
        assert again.queries == 120 and again.receipts_written == 0
        assert len(_receipts(receipts_path)) == 120

        # Time passes at the gateway: every message reaches its final status.
        sim.faults.delivery_delay = 0.0
        final = await track_campaign(results, account, FAST)
        assert final.queries == 120 and final.still_pending == 0
        assert final.delivered + final.failed == 120 and 0 < final.failed < 120
        lines = _receipts(receipts_path)
        finals = {r["api_msg_id"]: r["status"] for r in lines if r["status"] in FINAL_STATUSES}
        assert len(finals) == 120
        for api_msg_id, status in finals.items():  # what the gateway says, and says again
            assert sim.ledger.status(api_msg_id) == status
        numbers = {r["api_msg_id"]: r["to"] for r in read_results(results)}
        assert all(r["to"] == numbers[r["api_msg_id"]] for r in lines)

        # A finished campaign: not one query.
        asked_before = sim.queries.stats.queries
        done = await track_campaign(results, account, FAST)
        assert done.queries == 0 and done.settled_before == 120 and done.rounds == 0
        assert sim.queries.stats.queries == asked_before


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_rerun_asks_only_about_messages_without_a_final_status(
    tmp_path: Path, wire: Wire
) -> None:
    async with wire.simulator(Faults(seed=8, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 90)
        # A receiver got final callbacks for a third of them earlier.
        ids = [r["api_msg_id"] for r in read_results(results)]
        receipts_path = tmp_path / "in.receipts.csv"
        async with ReceiptServer(receipts_path) as server, aiohttp.ClientSession() as http:
            for api_msg_id in ids[:30]:
                form = {"apiMsgId": api_msg_id, "status": "004", "timestamp": "1700000000"}
                async with http.post(server.url, data=form) as resp:
                    assert resp.status == 200
        before = sim.queries.stats.queries
        summary = await track_campaign(results, _account(wire, sim), FAST)
        assert summary.settled_before == 30 and summary.queries == 60
        assert sim.queries.stats.queries - before == 60
        assert summary.delivered + summary.failed == 60


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_429s_pause_the_queries_and_every_message_is_still_answered(
    tmp_path: Path, wire: Wire
) -> None:
    async with wire.simulator(Faults(seed=9, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 80)
        sim.queries.query_mps = 40.0  # a bucket of one second's worth, as the gateway's
        sim.faults.throttle_retry_after = "fractional"
        summary = await track_campaign(results, _account(wire, sim), FAST)
        stats = sim.queries.stats
        assert summary.throttled > 0 and summary.throttled == stats.throttled
        assert summary.answered == 80 and summary.unanswered == 0 and summary.exit_code == 0
        assert summary.queries == stats.queries == 80 + summary.throttled


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_until_final_polls_until_every_message_is_final(tmp_path: Path, wire: Wire) -> None:
    async with wire.simulator(Faults(seed=10, delivery_delay=0.4)) as sim:
        results = await _campaign(wire, sim, tmp_path, 40)
        seen: list[TrackSnapshot] = []
        options = TrackOptions(rate=2000.0, concurrency=8, until_final=True, poll_interval=0.2)
        summary = await track_campaign(
            results, _account(wire, sim), options, on_progress=seen.append
        )
        assert summary.still_pending == 0 and summary.delivered + summary.failed == 40
        assert summary.rounds >= 2  # the first round came before 0.8 s had passed
        assert seen[-1].done and any(s.waiting > 0 for s in seen)


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_ids_the_gateway_no_longer_keeps_are_recorded_unknown_once(
    tmp_path: Path, wire: Wire
) -> None:
    async with wire.simulator(Faults(seed=11, delivery_delay=3600.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 20)
        sim.queries.message_ttl = 0.0
        summary = await track_campaign(results, _account(wire, sim), FAST)
        assert summary.gone == 20 and summary.by_status == {"001": 20}
        assert {r["status"] for r in _receipts(tmp_path / "in.receipts.csv")} == {"001"}
        assert sim.queries.stats.unknown_ids == 20
        again = await track_campaign(results, _account(wire, sim), FAST)
        assert again.queries == 0


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_revoked_credentials_stop_the_run_with_a_gateway_error(
    tmp_path: Path, wire: Wire
) -> None:
    async with wire.simulator(Faults(seed=12)) as sim:
        results = await _campaign(wire, sim, tmp_path, 20)
        wire.revoke(sim)
        with pytest.raises(GatewayError):
            await track_campaign(results, _account(wire, sim), FAST)
        assert sim.queries.stats.answered == 0


async def test_messages_older_than_max_age_are_not_asked_about(tmp_path: Path) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=13)) as sim:
        results = await _campaign(wire, sim, tmp_path, 10)
        os.utime(results)  # sent_at is what counts, not the file's time
        options = TrackOptions(rate=2000.0, max_age=1e-6)
        summary = await track_campaign(results, _account(wire, sim), options)
        assert summary.queries == 0 and summary.too_old == 10


async def test_a_running_receiver_makes_track_refuse_naming_it(tmp_path: Path) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=14)) as sim:
        results = await _campaign(wire, sim, tmp_path, 10)
        async with ReceiptServer(tmp_path / "in.receipts.csv"):
            with pytest.raises(CampaignLocked, match=f"pid {os.getpid()}"):
                await track_campaign(results, _account(wire, sim), FAST)
        assert sim.queries.stats.queries == 0


async def test_track_command_exits_3_beside_a_receiver_process_and_0_after(
    tmp_path: Path,
) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=15, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 10)
        receiver = subprocess.Popen(
            bulksend_cmd(
                "receipts", "--listen", "127.0.0.1:0", "--out", str(tmp_path / "in.receipts.csv")
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            assert "listening" in receiver.stdout.readline()
            track = bulksend_cmd("track", str(results), "--endpoint", sim.url, "--rate", "500")
            refused = await _run(track)
            assert refused.returncode == 3, refused.stderr
            assert f"pid {receiver.pid}" in refused.stderr, refused.stderr
            assert "receipts --listen" in refused.stderr  # the holder's command line
            assert DEFAULT_PASSWORD not in refused.stderr + refused.stdout
            assert sim.queries.stats.queries == 0
        finally:
            receiver.terminate()
            receiver.wait(timeout=30)
        done = await _run([*track, "--json"])
        assert done.returncode == 0, done.stderr
        assert '"queries": 10' in done.stdout
        assert DEFAULT_PASSWORD not in done.stderr + done.stdout


async def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """A child process while this loop keeps serving the simulator."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), err.decode())


async def test_until_final_stops_after_the_round_that_settles_everything(tmp_path: Path) -> None:
    wire = Wire("one")
    async with wire.simulator(Faults(seed=16, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 30)
        options = TrackOptions(rate=2000.0, until_final=True, poll_interval=60.0)
        summary = await track_campaign(results, _account(wire, sim), options)
        assert summary.rounds == 1 and summary.still_pending == 0
        assert summary.elapsed < 30  # it did not wait a minute for a round with nothing to ask


async def test_answers_lost_with_the_unsynced_tail_are_asked_again_and_never_doubled(
    tmp_path: Path,
) -> None:
    """A machine crash keeps only what was fsynced: a prefix of the receipts file, maybe cut
    inside a line. The next run cuts the torn line, asks again exactly the messages whose final
    status was lost, and no (message, status) is on file twice."""
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=17, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 200)
        account = _account(wire, sim)
        await track_campaign(results, account, FAST)
        receipts_path = tmp_path / "in.receipts.csv"
        data = receipts_path.read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 20  # 20 bytes into a line past the middle
        receipts_path.write_bytes(data[:cut])
        kept = len(_receipts(receipts_path)) - 1  # whole lines that survived
        again = await track_campaign(results, account, FAST)
        assert again.settled_before == kept and again.queries == 200 - kept
        lines = _receipts(receipts_path)
        assert len(lines) == 200
        assert len({(r["api_msg_id"], r["status"]) for r in lines}) == 200
        assert all(r["status"] in FINAL_STATUSES for r in lines)


async def test_a_killed_track_leaves_a_file_the_next_run_finishes(tmp_path: Path) -> None:
    wire = Wire("one")
    async with wire.simulator(Faults(seed=18, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 150)
        proc = await asyncio.create_subprocess_exec(
            *bulksend_cmd(
                "track", str(results), "--endpoint", sim.url, "--api", "one", "--rate", "100"
            ),
            env=cli_env(BULKSEND_API_KEY=DEFAULT_API_KEY),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        while sim.queries.stats.answered < 40:
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        answered = sim.queries.stats.answered
        summary = await track_campaign(results, _account(wire, sim), FAST)
        lines = _receipts(tmp_path / "in.receipts.csv")
        # Every answer written before the kill stays; the rest is asked now (the few answered
        # but not yet written when the kill came are asked again, never written twice).
        assert summary.settled_before + summary.queries == 150
        assert answered - DEFAULT_CONCURRENCY <= summary.settled_before <= answered
        assert len(lines) == 150 == len({r["api_msg_id"] for r in lines})


async def test_a_legacy_session_is_renewed_when_it_expires_mid_run(tmp_path: Path) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=19, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 80)
        account = AccountSettings(
            endpoint=sim.url,
            user=DEFAULT_USER,
            api_id=DEFAULT_API_ID,
            password=DEFAULT_PASSWORD,
            auth="session",
        )

        async def expire_midway() -> None:
            while sim.queries.stats.answered < 30:
                await asyncio.sleep(0.01)
            sim.expire_sessions()

        expiring = asyncio.create_task(expire_midway())
        summary = await track_campaign(results, account, TrackOptions(rate=300.0))
        await expiring
        assert summary.answered == 80 and summary.unanswered == 0
        assert sim.queries.stats.refused >= 1  # the ERR 003 answers, then a new session


async def test_legacy_charges_come_with_getmsgcharge_and_reach_the_report(tmp_path: Path) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=20, delivery_delay=0.0)) as sim:
        results = await _campaign(wire, sim, tmp_path, 40)
        options = TrackOptions(rate=2000.0, charges=True)
        summary = await track_campaign(results, _account(wire, sim), options)
        assert summary.queries == 40 and summary.delivered + summary.failed == 40
        lines = _receipts(tmp_path / "in.receipts.csv")
        assert {r["charge"] for r in lines} == {"1.0"}
        report = build_report(results, tmp_path / "in.receipts.csv")
        assert report.credits == 40.0


async def test_a_gateway_that_answers_nothing_stops_the_run_early(tmp_path: Path) -> None:
    wire = Wire("sendmsg")
    async with wire.simulator(Faults(seed=22)) as sim:
        results = await _campaign(wire, sim, tmp_path, 200)
        sim.faults.commands = frozenset({"querymsg"})
        sim.faults.http_503_rate = 1.0
        options = TrackOptions(rate=2000.0, concurrency=4, max_attempts=2, initial_backoff=0.01)
        summary = await track_campaign(results, _account(wire, sim), options)
        assert summary.exit_code == 2 and "answered none of the last 10" in summary.stopped
        assert 10 <= summary.unanswered < 20 and summary.answered == 0
        assert summary.still_pending == 200
