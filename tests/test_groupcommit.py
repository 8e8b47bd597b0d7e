"""Group commit: writers waiting at the same moment share one fdatasync, on a flusher thread."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulksend.errors import StorageError
from bulksend.groupcommit import GroupCommit


@dataclass
class Flush:
    size: int  # the file's size when the fdatasync started: what it covers
    started: float
    ended: float = 0.0


class Disk:
    """``os.fdatasync`` replaced: each call recorded, taking ``seconds`` (a slow disk)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.flushes: list[Flush] = []
        self.lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        flush = Flush(os.fstat(fd).st_size, time.monotonic())
        os.fsync(fd)
        time.sleep(self.seconds)
        flush.ended = time.monotonic()
        with self.lock:
            self.flushes.append(flush)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    disk = Disk(0.02)
    monkeypatch.setattr(os, "fdatasync", disk)
    return disk


class Other:
    """Another task on the loop, counting the steps it gets to run."""

    def __init__(self, pause: float) -> None:
        self.steps = 0
        self.running = True
        self.task = asyncio.create_task(self._run(pause))

    async def _run(self, pause: float) -> None:
        while self.running:
            self.steps += 1
            await asyncio.sleep(pause)

    async def stop(self) -> None:
        self.running = False
        await self.task


def _log(tmp_path: Path) -> tuple[int, GroupCommit]:
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return fd, GroupCommit(lambda: fd, str(tmp_path / "log"))


async def test_writers_at_the_same_moment_share_one_fdatasync(tmp_path: Path, disk: Disk) -> None:
    fd, commit = _log(tmp_path)

    async def writer(i: int) -> int:
        os.write(fd, f"line {i}\n".encode())
        ticket = commit.wrote()
        await commit.durable(ticket)
        return ticket

    await asyncio.gather(*(writer(i) for i in range(64)))
    commit.close()
    os.close(fd)
    assert commit.synced == 64
    # The first writer's round starts at once; the 63 others share the next one.
    assert 1 <= commit.rounds <= 2
    assert len(disk.flushes) == commit.rounds


async def test_a_write_made_during_a_round_waits_for_the_next(tmp_path: Path, disk: Disk) -> None:
    fd, commit = _log(tmp_path)
    os.write(fd, b"first\n")
    first = asyncio.create_task(commit.durable(commit.wrote()))
    await asyncio.sleep(0.005)  # the round for "first" is running
    os.write(fd, b"second\n")
    await commit.durable(commit.wrote())
    await first
    commit.close()
    os.close(fd)
    assert [f.size for f in disk.flushes] == [6, 13]  # the second flush saw the second line


async def test_covered_writes_need_no_round(tmp_path: Path, disk: Disk) -> None:
    commit = GroupCommit(lambda: -1, "log")
    ticket = commit.wrote()
    commit.covered()
    await commit.durable(ticket)
    commit.close()
    assert disk.flushes == []


async def test_a_failed_fdatasync_is_a_storage_error_for_every_waiter_and_after(
    tmp_path: Path,
) -> None:
    commit = GroupCommit(lambda: 999_999, str(tmp_path / "gone"))  # not an open descriptor
    tickets = [commit.wrote() for _ in range(3)]
    outcomes = await asyncio.gather(*(commit.durable(t) for t in tickets), return_exceptions=True)
    assert all(isinstance(o, StorageError) and "gone" in str(o) for o in outcomes)
    assert commit.synced == 0
    with pytest.raises(StorageError, match="gone"):
        await commit.durable(commit.wrote())
    commit.close()


async def test_a_real_fdatasync_failure_reaches_the_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    fd, commit = _log(tmp_path)
    os.write(fd, b"line\n")
    with pytest.raises(StorageError, match="Input/output error"):
        await commit.durable(commit.wrote())
    commit.close()
    os.close(fd)


async def test_a_quick_round_is_waited_for_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds under half a millisecond: a writer waits without handing the loop to the other
    tasks for the whole round (it yields once, for the writers of the same moment)."""
    disk = Disk(0.0003)
    monkeypatch.setattr(os, "fdatasync", disk)
    # However slow a loaded machine makes a round, the wait stays in place in this test.
    monkeypatch.setattr(GroupCommit, "SPIN", 10.0)
    fd, commit = _log(tmp_path)
    other = Other(0)
    await asyncio.sleep(0)
    for i in range(20):
        os.write(fd, f"line {i}\n".encode())
        before = other.steps
        await commit.durable(commit.wrote())
        assert other.steps - before <= 2  # one trip round the loop, not one per poll
    await other.stop()
    commit.close()
    os.close(fd)
    assert commit.rounds == 20 and commit.waits["on the loop"] == 0


async def test_a_slow_disk_does_not_hold_the_loop(tmp_path: Path, disk: Disk) -> None:
    """Rounds of 20 ms: a writer awaits its round; the loop serves the others meanwhile."""
    fd, commit = _log(tmp_path)
    os.write(fd, b"warm up\n")
    await commit.durable(commit.wrote())  # learns that rounds are slow
    other = Other(0.001)
    os.write(fd, b"line\n")
    await commit.durable(commit.wrote())
    await other.stop()
    commit.close()
    os.close(fd)
    assert other.steps >= 5


async def test_flush_starts_the_round_at_once(tmp_path: Path, disk: Disk) -> None:
    """:meth:`flush` hands the round over: its fdatasync runs while the caller goes on."""
    fd, commit = _log(tmp_path)
    os.write(fd, b"line\n")
    ticket = commit.wrote()
    commit.flush()
    asked = time.monotonic()
    await asyncio.sleep(0.03)  # the caller's own work
    waited = time.monotonic()
    await commit.durable(ticket)
    assert time.monotonic() - waited < 0.01  # the round was over already
    assert disk.flushes[0].started <= asked + 0.005
    commit.close()
    os.close(fd)


async def test_close_fails_a_waiter_whose_round_never_ran(tmp_path: Path, disk: Disk) -> None:
    fd, commit = _log(tmp_path)
    os.write(fd, b"first\n")
    first = asyncio.create_task(commit.durable(commit.wrote()))
    await asyncio.sleep(0.005)  # its round is running
    os.write(fd, b"second\n")
    second = asyncio.create_task(commit.durable(commit.wrote()))
    await asyncio.sleep(0.001)  # the second waits for the next round
    commit.close()
    await first  # its round was under way: it ended
    with pytest.raises(StorageError, match="closed before"):
        await second
    os.close(fd)


async def test_every_write_is_covered_by_a_flush_that_started_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promise, under a random mix of writers and flush times: ``durable`` returns only once
    a flush that started after the write (its size covers the write) has ended."""
    rng = random.Random(5)
    disk = Disk(0.0)
    real = disk.__call__

    def jittery(fd: int) -> None:
        disk.seconds = rng.choice((0.0, 0.0002, 0.001, 0.004))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", jittery)
    fd, commit = _log(tmp_path)
    checks: list[tuple[int, float]] = []

    async def writer(i: int) -> None:
        for j in range(15):
            await asyncio.sleep(rng.choice((0, 0, 0.0005, 0.002)))
            os.write(fd, f"writer {i} line {j}\n".encode())
            size = os.fstat(fd).st_size
            ticket = commit.wrote()
            if rng.random() < 0.5:
                commit.flush()
            await commit.durable(ticket)
            checks.append((size, time.monotonic()))

    await asyncio.gather(*(writer(i) for i in range(24)))
    commit.close()
    os.close(fd)
    assert len(checks) == 24 * 15
    for size, returned in checks:
        assert any(f.size >= size and f.ended <= returned for f in disk.flushes), size
    assert commit.rounds < len(checks)  # shared
