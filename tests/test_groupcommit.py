"""Group commit: writers waiting at the same moment share one fdatasync."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bulksend.errors import StorageError
from bulksend.groupcommit import GroupCommit


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each fdatasync, as the size of the file it flushed (slow enough for writers to pile up)."""
    calls: list[int] = []
    real = os.fdatasync

    def slow(fd: int) -> None:
        calls.append(os.fstat(fd).st_size)
        real(fd)
        time.sleep(0.02)

    monkeypatch.setattr(os, "fdatasync", slow)
    return calls


async def test_writers_at_the_same_moment_share_one_fdatasync(
    tmp_path: Path, synced: list[int]
) -> None:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    commit = GroupCommit(lambda: fd, str(tmp_path / "log"))

    async def writer(i: int) -> int:
        os.write(fd, f"line {i}\n".encode())
        ticket = commit.wrote()
        await commit.durable(ticket)
        return ticket

    await asyncio.gather(*(writer(i) for i in range(64)))
    os.close(fd)
    assert commit.synced == 64
    assert 1 <= commit.rounds <= GroupCommit.OVERLAP + 1  # the first rounds start early
    assert len(synced) == commit.rounds


async def test_a_write_made_during_a_round_waits_for_the_next(
    tmp_path: Path, synced: list[int]
) -> None:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    commit = GroupCommit(lambda: fd, str(tmp_path / "log"))
    os.write(fd, b"first\n")
    first = asyncio.create_task(commit.durable(commit.wrote()))
    await asyncio.sleep(0.005)  # the round for "first" is running
    os.write(fd, b"second\n")
    await commit.durable(commit.wrote())
    await first
    os.close(fd)
    assert synced == [6, 13]  # the second flush saw the second line


async def test_covered_writes_need_no_round(tmp_path: Path, synced: list[int]) -> None:
    commit = GroupCommit(lambda: -1, "log")
    ticket = commit.wrote()
    commit.covered()
    await commit.durable(ticket)
    assert synced == []


async def test_a_failed_fdatasync_is_a_storage_error_for_every_waiter(tmp_path: Path) -> None:
    commit = GroupCommit(lambda: 999_999, str(tmp_path / "gone"))  # not an open descriptor
    tickets = [commit.wrote() for _ in range(3)]
    outcomes = await asyncio.gather(*(commit.durable(t) for t in tickets), return_exceptions=True)
    assert all(isinstance(o, StorageError) and "gone" in str(o) for o in outcomes)
    assert commit.synced == 0
