"""The journal after a machine crash or a slip of the operator's bookkeeping: write-ahead (an
intent durable before its request leaves), ``D`` lines never trusted alone, the results watermark,
and the refusal of a journal whose results file is missing or older than it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bulksend.errors import ConfigError
from bulksend.journal import RESULTS_HEADER, ResultLine, read_results
from tests.test_journal import _accepted, _open


def _numbers(rows: list[int]) -> list[str]:
    return [f"2782{r:07d}" for r in rows]


def _sent_batches(path: Path, batches: list[list[int]]) -> None:
    journal = _open(path)
    for rows in batches:
        seq = journal.intend(rows, _numbers(rows))
        journal.complete(seq, _accepted(rows))
    journal.close()


def test_a_done_line_without_its_results_makes_the_rows_unknown_not_pending(
    tmp_path: Path,
) -> None:
    """A crash kept the journal's D line but not the results line it followed."""
    out = tmp_path / "out.csv"
    journal = _open(out)
    seq = journal.intend([1, 2, 3], _numbers([1, 2, 3]))
    journal.complete(seq, _accepted([1, 2, 3]))
    journal._close_fds()  # the machine died: no compaction
    out.write_text(RESULTS_HEADER + "\n" + "1,27820000001,accepted,x,,,1,\n")
    again = _open(out)
    state = again.state
    again.close()
    assert 2 in state.done and 3 in state.done  # not pending: never sent again
    assert state.recovered_unknown == 2
    statuses = {r["row"]: r["status"] for r in read_results(out)}
    assert statuses == {"1": "accepted", "2": "unknown", "3": "unknown"}


def test_an_abandoned_batch_returns_to_pending(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    journal = _open(out)
    seq = journal.intend([1, 2], _numbers([1, 2]))
    journal.abandon(seq)
    journal._close_fds()
    assert "A 1\n" in (tmp_path / "out.csv.journal").read_text()
    again = _open(out)
    assert len(again.state.done) == 0 and again.state.recovered_unknown == 0
    again.close()


def test_the_results_file_moved_away_with_its_journal_kept_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    _sent_batches(out, [[1, 2, 3], [4, 5]])
    out.rename(tmp_path / "elsewhere.csv")
    with pytest.raises(ConfigError) as refused:
        _open(out)
    message = str(refused.value)
    assert str(out) in message and str(tmp_path / "out.csv.journal") in message
    assert "put the results file back" in message and "--restart" in message
    assert "nothing was sent" in message
    assert not out.exists()  # nothing written either
    (tmp_path / "elsewhere.csv").rename(out)  # put back: a resume
    resumed = _open(out)
    assert len(resumed.state.done) == 5
    resumed.close()


def test_restart_moves_the_orphaned_journal_aside(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    _sent_batches(out, [[1, 2]])
    out.unlink()
    journal = _open(out, restart=True)
    journal.close()
    assert (tmp_path / "out.csv.journal.1").exists()
    assert out.read_text() == RESULTS_HEADER + "\n"


def test_a_journal_that_never_logged_a_batch_needs_no_results_file(tmp_path: Path) -> None:
    """A crash right after the journal was created, before the results file was on disk."""
    out = tmp_path / "out.csv"
    _open(out).close()
    out.unlink()
    _open(out).close()
    assert out.read_text() == RESULTS_HEADER + "\n"


@pytest.mark.parametrize("left", [b"", RESULTS_HEADER[:10].encode()])
def test_a_results_file_cut_inside_its_header_is_made_again(tmp_path: Path, left: bytes) -> None:
    out = tmp_path / "out.csv"
    _open(out).close()
    out.write_bytes(left)
    _open(out).close()
    assert out.read_text() == RESULTS_HEADER + "\n"


def test_an_older_copy_of_the_results_put_back_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    _sent_batches(out, [[1, 2, 3]])
    older = out.read_bytes()
    journal = _open(out)
    seq = journal.intend([4, 5], _numbers([4, 5]))
    journal.complete(seq, _accepted([4, 5]))
    journal.close()  # the journal's watermark now covers rows 4 and 5
    out.write_bytes(older)
    with pytest.raises(ConfigError) as refused:
        _open(out)
    message = str(refused.value)
    assert "older copy" in message and str(out) in message
    assert str(tmp_path / "out.csv.journal") in message and "--restart" in message
    assert out.read_bytes() == older  # left as it was


def test_the_timer_fsync_raises_the_watermark(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    journal = _open(out)
    seq = journal.intend([1], _numbers([1]))
    journal.complete(seq, _accepted([1]))
    for fd, _ in journal.fds():
        os.fsync(fd)
    journal.results_durable()
    size = out.stat().st_size
    journal._close_fds()
    assert f"W {size}\n" in (tmp_path / "out.csv.journal").read_text()


def test_resend_unknown_lowers_the_watermark_before_the_file_shrinks(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    journal = _open(out)
    seq = journal.intend([1, 2], _numbers([1, 2]))
    journal.complete(seq, [ResultLine(1, "27820000001", "unknown"), *_accepted([2])])
    journal.close()
    again = _open(out, resend_unknown=True)
    again.close()
    third = _open(out)  # not refused: the watermark followed the rewrite
    assert 1 not in third.state.done and 2 in third.state.done
    third.close()


async def test_an_intent_is_durable_once_durable_returns(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    journal = _open(out)
    seqs = []

    async def sender(rows: list[int]) -> None:
        seqs.append(journal.intend(rows, _numbers(rows)))
        await journal.durable()

    await asyncio.gather(*(sender([i]) for i in range(1, 33)))
    assert journal.commit.synced == journal.commit.written == 32
    assert journal.commit.rounds <= 3  # 32 senders at the same moment: a few flushes
    journal.close()
