"""End-to-end campaigns: the real pipeline against the real simulator over loopback TCP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bulksend.campaign import Snapshot, run_campaign_async
from bulksend.config import CampaignSettings
from bulksend.errors import ConfigError, InputError
from bulksend.simulator import DEFAULT_PASSWORD, Simulator
from tests.e2e.support import check_against_ledger, read_results, write_numbers

MakeSettings = Callable[..., CampaignSettings]


async def test_campaign_sends_every_row_once_and_records_every_id(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 5000)
    simulator.faults.reject_suffixes = ("13",)
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    results = read_results(tmp_path / "in.results.csv")
    statuses = check_against_ledger(results, simulator)
    expected_rejects = sum(1 for n in numbers if n.endswith("13"))
    assert statuses == {"accepted": 5000 - expected_rejects, "rejected": expected_rejects}
    assert summary.exit_code == 0 and summary.pending == 0
    assert summary.accepted == 5000 - expected_rejects
    assert summary.rejected_by_code == {"114": expected_rejects}
    assert {r["to"] for r in results} == set(numbers)
    assert all(r["error_code"] == "114" for r in results if r["status"] == "rejected")
    assert summary.batches == 9  # 8 x 600 + 200


async def test_rerun_of_a_finished_campaign_sends_nothing(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 1500)
    settings = make_settings(simulator, tmp_path / "in.csv")
    await run_campaign_async(settings)
    again = await run_campaign_async(settings)
    assert len(simulator.ledger) == 1500
    assert again.accepted == 1500 and again.batches == 0 and again.resumed
    assert len(read_results(tmp_path / "in.results.csv")) == 1500


async def test_other_text_on_same_results_is_refused_unless_restart(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 100)
    await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    with pytest.raises(ConfigError, match="another campaign"):
        await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", text="Other"))
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", text="Other", restart=True)
    )
    assert summary.accepted == 100
    assert (tmp_path / "in.results.csv.1").exists()  # moved aside, never deleted
    assert len(simulator.ledger) == 200


async def test_http_503_and_err_901_are_retried_without_duplicates(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 6000)
    simulator.faults.http_503_rate = 0.2
    simulator.faults.err_901_rate = 0.1
    settings = make_settings(
        simulator, tmp_path / "in.csv", retry_attempts=30, retry_max_seconds=120.0
    )
    summary = await run_campaign_async(settings)
    statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)
    assert statuses == {"accepted": 6000}
    assert summary.requests > summary.batches  # retries happened
    assert simulator.stats.http_503 > 0 and simulator.stats.err_901 > 0


async def test_throttling_slows_the_sender_and_everything_arrives_once(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 6000)
    simulator.faults.throttle_mps = 2000
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", concurrency=16, batch_size=300)
    )
    statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)
    assert statuses == {"accepted": 6000}
    assert summary.throttled > 0


async def test_rate_cap_holds(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 1200)
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", rate=1000.0, batch_size=200)
    )
    assert summary.accepted == 1200
    # 1000/s with an initial bucket of one second's worth: at least ~0.2 s for the rest.
    assert summary.elapsed_seconds >= 0.15


async def test_connection_dropped_before_processing_is_unknown_then_resent_on_request(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 4000)
    simulator.faults.drop_before_rate = 0.3
    first = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    results = read_results(tmp_path / "in.results.csv")
    statuses = check_against_ledger(results, simulator)
    assert statuses["unknown"] > 0 and first.unknown == statuses["unknown"]
    assert len(simulator.ledger) == statuses["accepted"]  # the dropped ones were never processed

    simulator.faults.drop_before_rate = 0.0
    plain = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    assert plain.batches == 0  # unknown rows are not re-sent by default
    again = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", resend_unknown=True)
    )
    statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)
    assert statuses == {"accepted": 4000}
    assert again.accepted == 4000


async def test_connection_dropped_after_processing_is_recorded_unknown_never_resent(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 4000)
    simulator.faults.drop_after_rate = 0.3
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    results = read_results(tmp_path / "in.results.csv")
    statuses = check_against_ledger(results, simulator)
    assert statuses["unknown"] > 0
    assert statuses["accepted"] + statuses["unknown"] == 4000
    assert len(simulator.ledger) == 4000  # all processed, some answers lost
    assert summary.exit_code == 0
    assert all("may have been processed" in r["error"] for r in results if r["status"] == "unknown")


async def test_session_expiry_renews_without_losing_or_duplicating(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 9000)
    expired = {"done": False}

    def expire_midway(snap: Snapshot) -> None:
        if snap.sent >= 3000 and not expired["done"]:
            expired["done"] = True
            simulator.expire_sessions()

    settings = make_settings(simulator, tmp_path / "in.csv", auth="session", batch_size=300)
    summary = await run_campaign_async(settings, on_progress=expire_midway, progress_interval=0.01)
    assert expired["done"]
    statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)
    assert statuses == {"accepted": 9000}
    assert summary.exit_code == 0


async def test_session_ttl_expiry_is_renewed(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 1200)
    simulator.faults.session_ttl = 0.15
    settings = make_settings(
        simulator, tmp_path / "in.csv", auth="session", batch_size=100, concurrency=1, rate=600.0
    )
    summary = await run_campaign_async(settings)
    statuses = check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)
    assert statuses == {"accepted": 1200}
    assert summary.exit_code == 0
    assert simulator.stats.refused > 0  # sessions did expire (ERR 003) and were renewed


async def test_fatal_auth_error_midway_stops_then_resume_sends_only_the_rest(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    numbers = write_numbers(tmp_path / "in.csv", 12000)
    simulator.faults.latency = 0.01
    changed = {"done": False}

    def revoke(snap: Snapshot) -> None:
        if snap.sent >= 2400 and not changed["done"]:
            changed["done"] = True
            simulator.set_credentials(password="rotated-password")

    settings = make_settings(simulator, tmp_path / "in.csv", concurrency=2)
    first = await run_campaign_async(settings, on_progress=revoke, progress_interval=0.005)
    assert first.exit_code == 2
    assert "001" in first.stopped or "Authentication" in first.stopped
    assert first.pending > 0
    done_before = len(simulator.ledger)
    assert 0 < done_before < 12000

    simulator.set_credentials(password=DEFAULT_PASSWORD)
    second = await run_campaign_async(settings)
    assert second.exit_code == 0
    results = read_results(tmp_path / "in.results.csv")
    statuses = check_against_ledger(results, simulator)
    assert statuses == {"accepted": 12000}
    assert len(simulator.ledger) == 12000
    assert sorted(r["to"] for r in results) == sorted(numbers)


async def test_credit_running_out_mid_campaign_stops_with_exit_2_and_rest_pending(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    """The credit can still run out after the pre-flight (another campaign spends it): the
    gateway's ERR 301 stops the campaign with the rest pending."""
    write_numbers(tmp_path / "in.csv", 3000)
    simulator.faults.credit = 1000
    summary = await run_campaign_async(
        make_settings(
            simulator, tmp_path / "in.csv", concurrency=1, batch_size=500, check_balance=False
        )
    )
    assert summary.exit_code == 2
    assert "301" in summary.stopped
    assert summary.accepted == 1000 and summary.pending == 2000
    check_against_ledger(read_results(tmp_path / "in.results.csv"), simulator)


@pytest.mark.parametrize(
    ("text", "unicode", "parts"),
    [
        ("A" * 160, False, 1),
        ("A" * 161, False, 2),
        ("Grüße aus Köln ✓ 🎉", True, 1),
        ("😀" * 40, True, 2),
    ],
)
async def test_unicode_and_multipart_reach_the_gateway_correctly(
    tmp_path: Path,
    simulator: Simulator,
    make_settings: MakeSettings,
    text: str,
    unicode: bool,
    parts: int,
) -> None:
    write_numbers(tmp_path / "in.csv", 10)
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", text=text))
    assert summary.accepted == 10
    assert summary.encoding == ("ucs2" if unicode else "gsm7") and summary.parts == parts
    entry = simulator.ledger.entries[0]
    assert entry.text == text
    assert entry.parts == parts


async def test_text_over_max_parts_is_refused_before_anything_is_sent(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 10)
    with pytest.raises(InputError, match="max-parts"):
        await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", text="x" * 500))
    assert len(simulator.ledger) == 0
    assert not (tmp_path / "in.results.csv").exists()


async def test_get_method_sends_300_per_request(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 900)
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", method="get"))
    assert summary.accepted == 900 and summary.batches == 3


async def test_input_rejects_and_duplicates_are_accounted(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    rows = ["phone", "+27821234567", "27821234567", "2.78E+11", "hello", "", "+27831234567"]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    assert summary.accepted == 2
    rejects = (tmp_path / "in.rejects.csv").read_text(encoding="utf-8").splitlines()
    assert rejects[0] == "row,raw,reason"
    assert any("duplicate of row 2" in line for line in rejects)
    assert any("Excel" in line for line in rejects)
    assert summary.rows == summary.valid + summary.input_rejected


async def test_dry_run_counts_without_sending(
    tmp_path: Path, make_settings: MakeSettings, simulator: Simulator
) -> None:
    write_numbers(tmp_path / "in.csv", 1300)
    # Without credentials: no network at all.
    settings = make_settings(
        simulator, tmp_path / "in.csv", dry_run=True, text="ć" * 100, password=""
    )
    summary = await run_campaign_async(settings)
    assert summary.valid == 1300 and summary.batches == 3
    assert summary.parts == 2 and summary.encoding == "ucs2"
    assert summary.credits_estimate == 2600
    assert summary.balance_before is None
    assert simulator.stats.requests == 0
    # With credentials it also reads the balance (one getbalance), and still sends nothing.
    simulator.faults.credit = 2000
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", dry_run=True, text="ć" * 100)
    )
    assert summary.balance_before == 2000
    assert simulator.stats.requests == 1
    assert len(simulator.ledger) == 0
    assert not (tmp_path / "in.results.csv").exists()


async def test_summary_and_results_never_contain_the_password(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 700)
    simulator.faults.drop_after_rate = 0.5
    summary = await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    blob = summary.to_json() + repr(make_settings(simulator, tmp_path / "in.csv"))
    for path in tmp_path.iterdir():
        blob += path.read_text(encoding="utf-8", errors="replace")
    assert DEFAULT_PASSWORD not in blob
    assert json.loads(summary.to_json())["accepted"] == summary.accepted


async def test_results_files_are_private(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    write_numbers(tmp_path / "in.csv", 10)
    await run_campaign_async(make_settings(simulator, tmp_path / "in.csv"))
    for name in ("in.results.csv", "in.results.csv.journal", "in.rejects.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


async def test_reader_in_a_child_process_gives_the_same_campaign(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    rows = ["phone", *(f"+2782{i:07d}" for i in range(3000)), "bad", "+27820000005", ""]
    (tmp_path / "in.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", reader="process")
    )
    assert summary.accepted == 3000 and summary.input_rejected == 3
    assert summary.rows == 3003 and summary.duplicates == 1
    results = read_results(tmp_path / "in.results.csv")
    check_against_ledger(results, simulator)
    rejects = (tmp_path / "in.rejects.csv").read_text(encoding="utf-8")
    assert "duplicate of row 7" in rejects


async def test_reader_process_reports_a_bad_file_as_an_input_error(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    (tmp_path / "in.csv").write_text("name,city\nAnn,Durban\n", encoding="utf-8")
    with pytest.raises(InputError, match="no column looks like phone numbers"):
        await run_campaign_async(make_settings(simulator, tmp_path / "in.csv", reader="process"))


async def test_reader_process_ends_when_the_campaign_stops_early(
    tmp_path: Path, simulator: Simulator, make_settings: MakeSettings
) -> None:
    import multiprocessing

    write_numbers(tmp_path / "in.csv", 50_000)
    simulator.faults.credit = 1200
    summary = await run_campaign_async(
        make_settings(simulator, tmp_path / "in.csv", reader="process", concurrency=1)
    )
    assert summary.exit_code == 2
    assert not summary.input_complete  # the summary says more rows wait beyond "pending"
    assert not [p for p in multiprocessing.active_children() if p.name == "bulksend-reader"]


async def test_resend_unknown_uses_delivery_receipts_to_avoid_texting_twice(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    import socket

    from bulksend.simulator import Faults

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    numbers = write_numbers(tmp_path / "in.csv", 3000)
    faults = Faults(seed=3, drop_after_rate=0.3, drop_before_rate=0.2, delivery_delay=0.0)
    async with Simulator(faults=faults, callback_url=f"http://127.0.0.1:{port}/") as sim:
        settings = make_settings(
            sim,
            tmp_path / "in.csv",
            batch_size=100,
            callback=2,
            receipts_listen=f"127.0.0.1:{port}",
        )
        first = await run_campaign_async(settings)
        results = read_results(tmp_path / "in.results.csv")
        unknown = {r["to"] for r in results if r["status"] == "unknown"}
        seen = {e.to for e in sim.ledger.entries}
        assert unknown & seen and unknown - seen  # both kinds of "maybe sent"
        assert first.unknown == len(unknown)

        sim.faults.drop_after_rate = sim.faults.drop_before_rate = 0.0
        again = await run_campaign_async(
            make_settings(
                sim,
                tmp_path / "in.csv",
                batch_size=100,
                callback=2,
                receipts_listen=f"127.0.0.1:{port}",
                resend_unknown=True,
            )
        )
        # The ones the gateway had seen were found in the receipts, not sent again.
        assert again.reconciled == len(unknown & seen)
        per_number = Counter(e.to for e in sim.ledger.entries)
        assert max(per_number.values()) == 1
        assert set(per_number) == set(numbers)
        final = read_results(tmp_path / "in.results.csv")
        assert all(r["status"] == "accepted" for r in final) and len(final) == 3000
        ledger_ids = {(e.to, e.api_msg_id) for e in sim.ledger.entries}
        assert {(r["to"], r["api_msg_id"]) for r in final} == ledger_ids
