"""The intent log's reserved space: appends overwrite NUL bytes in place; readers take complete
lines without NULs; a resume cuts the reserve and a torn last line."""

from __future__ import annotations

import os
from pathlib import Path

from bulksend.journal import Journal
from bulksend.journal.files import ReservedLog, cut_torn_tail, log_lines


def _lines(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8") as f:
        return list(log_lines(f))


def test_appends_fill_the_reserve_without_growing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"header\n")
    log = ReservedLog(path)
    log.append(b"I 1 0-9 27820000001\n")
    size = path.stat().st_size
    assert size >= ReservedLog.RESERVE  # reserved at the first append
    for i in range(2, 1000):
        log.append(f"I {i} 0-9 27820000001\n".encode())
    assert path.stat().st_size == size  # the size (metadata) did not change again
    os.close(log.fd)
    lines = _lines(path)
    assert lines[0] == "header\n" and lines[1] == "I 1 0-9 27820000001\n" and len(lines) == 1000
    assert path.read_bytes()[log.end :] == bytes(size - log.end)


def test_the_reserve_grows_when_a_write_needs_more(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"h\n")
    log = ReservedLog(path)
    big = b"x" * (ReservedLog.RESERVE + 10) + b"\n"
    log.append(big)
    log.append(b"after\n")
    os.close(log.fd)
    assert _lines(path) == ["h\n", big.decode(), "after\n"]
    assert path.stat().st_size >= log.end + ReservedLog.RESERVE - len(b"after\n")


def test_reopening_appends_after_the_last_line_not_after_the_reserve(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"h\n")
    first = ReservedLog(path)
    first.append(b"one\n")
    os.close(first.fd)
    again = ReservedLog(path)
    assert again.end == len(b"h\none\n")
    again.append(b"two\n")
    os.close(again.fd)
    assert _lines(path) == ["h\n", "one\n", "two\n"]


def test_cut_drops_the_reserve_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"h\nI 1 0-1 a,b\nI 2 2-3 c" + bytes(5000))  # the crash tore I 2
    cut_torn_tail(path)
    assert path.read_bytes() == b"h\nI 1 0-1 a,b\n"
    path.write_bytes(b"h\nD 1\n" + bytes(70_000))  # a reserve longer than one read block
    cut_torn_tail(path)
    assert path.read_bytes() == b"h\nD 1\n"
    path.write_bytes(b"h\nno newline at all" + b"y" * 70_000)
    cut_torn_tail(path)
    assert path.read_bytes() == b"h\n"


def test_a_write_the_disk_never_got_is_no_line(tmp_path: Path) -> None:
    """After a machine crash an overwrite in place may be missing (NULs) while a later one is on
    disk: the lines that hold NULs are dropped, the complete ones around them kept."""
    path = tmp_path / "log"
    hole = bytes(len("I 2 2-3 c,d\n"))
    path.write_bytes(b"h\nI 1 0-1 a,b\n" + hole + b"D 1\nW 120\nI 3 4" + bytes(100))
    assert _lines(path) == ["h\n", "I 1 0-1 a,b\n", "W 120\n"]
    cut_torn_tail(path)
    assert path.read_bytes().endswith(b"W 120\n")


def test_a_journal_keeps_no_reserve_once_closed_and_resumes_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    journal = Journal(out)
    journal.open("fp", describe={})
    seq = journal.intend([1, 2], ["27820000001", "27820000002"])
    log = out.with_name(out.name + ".journal")
    assert log.stat().st_size >= ReservedLog.RESERVE  # running: the reserve is there
    journal._close_fds()  # killed: nothing more happens to the files
    again = Journal(out)
    state = again.open("fp", describe={})
    # The intent's rows may have been sent: unknown, never pending.
    assert 1 in state.done and 2 in state.done and state.counts.get("unknown") == 2
    assert seq == 1
    again.close()
    assert b"\0" not in log.read_bytes()  # closed: compacted, no reserve left
