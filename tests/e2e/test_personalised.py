"""Personalised campaigns end to end: per-row rendering and its rejects, parts per row in the dry
run and the credit pre-flight, the template as part of the campaign's identity, and ``status``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulksend.campaign import run_campaign_async
from bulksend.errors import ConfigError
from bulksend.simulator import Faults
from bulksend.status import campaign_status
from tests.e2e.protocols import Wire
from tests.e2e.support import check_against_ledger, read_results

TEXT = "Hi #name#, your code is #code#."
LONG = "x" * 150  # with the rest of the text: two GSM-7 parts


def _write(path: Path) -> None:
    rows = [
        "phone,name,code",
        "+27820000001,Anna,1",  # 1 part
        f"+27820000002,{LONG},2",  # 2 parts
        "+27820000003,陈,3",  # UCS-2, 1 part
        "+27820000004,,4",  # empty: refused
        "+27820000005,Sipho",  # short row: refused
        f"+27820000006,{'y' * 400},6",  # 3+ parts: refused with --max-parts 2
        "+27820000007,Zoë,7",  # UCS-2 (ë is not GSM-7)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.mark.parametrize("wire", [Wire("batch"), Wire("one-personalised")], ids=str)
async def test_rows_render_or_are_refused_with_their_reason(wire: Wire, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    _write(path)
    async with wire.simulator() as sim:
        dry = await run_campaign_async(
            wire.settings(sim, path, text=TEXT, max_parts=2, dry_run=True)
        )
        assert (dry.valid, dry.input_rejected) == (4, 3)
        assert (dry.parts_min, dry.parts_max, dry.credits_estimate) == (1, 2, 5)
        assert dry.personalised and dry.protocol == wire.name.split("-")[0]
        summary = await run_campaign_async(wire.settings(sim, path, text=TEXT, max_parts=2))
        results = read_results(tmp_path / "in.results.csv")
        assert check_against_ledger(results, sim) == {"accepted": 4}
        texts = {e.to: e.text for e in sim.ledger.entries}
    assert summary.exit_code == 0
    assert texts["27820000001"] == "Hi Anna, your code is 1."
    assert texts["27820000003"] == "Hi 陈, your code is 3."
    assert texts["27820000007"] == "Hi Zoë, your code is 7."
    rejects = {r["row"]: r["reason"] for r in read_results(tmp_path / "in.rejects.csv")}
    assert rejects == {
        "5": "column 'name' is empty",
        "6": "column 'code' missing",
        "7": rejects["7"],
    }
    assert "more than --max-parts 2" in rejects["7"]

    status = campaign_status(tmp_path / "in.results.csv")
    assert status.pending == 0 and status.input_valid == 4  # refused rows are not pending

    # The template is the campaign's identity: another text on the same results is refused.
    async with wire.simulator() as sim:
        with pytest.raises(ConfigError, match="another campaign"):
            await run_campaign_async(wire.settings(sim, path, text="Hello #name#", max_parts=2))


async def test_the_credit_pre_flight_counts_each_row_at_its_own_parts(tmp_path: Path) -> None:
    wire = Wire("one-personalised")
    path = tmp_path / "in.csv"
    _write(path)
    # 4 sendable rows needing 1 + 2 + 1 + 1 = 5 credits.
    async with wire.simulator(Faults(credit=4)) as sim:
        short = await run_campaign_async(wire.settings(sim, path, text=TEXT, max_parts=2))
        assert short.exit_code == 2 and short.credits_needed == 5
        assert "does not cover" in short.stopped and len(sim.ledger) == 0
        partial = await run_campaign_async(
            wire.settings(sim, path, text=TEXT, max_parts=2, allow_partial=True)
        )
        # In file order: rows 2 (1 credit), 3 (2 credits), 4 (1 credit) fit in 4; row 8 waits.
        assert partial.credit_limit == 3 and partial.accepted == 3
        assert sorted(e.to for e in sim.ledger.entries) == [
            "27820000001",
            "27820000002",
            "27820000003",
        ]
    async with wire.simulator(Faults(credit=100)) as sim:
        rest = await run_campaign_async(wire.settings(sim, path, text=TEXT, max_parts=2))
        assert rest.exit_code == 0 and [e.to for e in sim.ledger.entries] == ["27820000007"]


@pytest.mark.parametrize("wire", [Wire("batch"), Wire("one-personalised")], ids=str)
async def test_columns_named_like_positions_or_parameters_fill_their_own_placeholders(
    wire: Wire, tmp_path: Path
) -> None:
    """The batch interface's fields are positional (``#field1#`` … on the wire); a column that is
    literally called ``field1``, ``field2`` or ``to`` is just a name: every row gets its own text,
    checked in the gateway's ledger (whose batch interface fills only ``#fieldN#``)."""
    path = tmp_path / "in.csv"
    path.write_text(
        "phone,field2,to,field1\n"
        "+27820000001,Mr,Anna,R50\n"
        "+27820000002,Ms,Zoë,R7\n"
        "+27820000003,Dr,陈,R1\n",
        encoding="utf-8",
    )
    text = "#field2# #to#, you owe #field1#. #field2# #to#: pay by Friday #1."
    async with wire.simulator() as sim:
        summary = await run_campaign_async(wire.settings(sim, path, text=text))
        results = read_results(tmp_path / "in.results.csv")
        assert check_against_ledger(results, sim) == {"accepted": 3}
        texts = {e.to: e.text for e in sim.ledger.entries}
    assert summary.exit_code == 0
    assert texts == {
        "27820000001": "Mr Anna, you owe R50. Mr Anna: pay by Friday #1.",
        "27820000002": "Ms Zoë, you owe R7. Ms Zoë: pay by Friday #1.",
        "27820000003": "Dr 陈, you owe R1. Dr 陈: pay by Friday #1.",
    }
