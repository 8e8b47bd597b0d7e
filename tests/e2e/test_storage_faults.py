"""Storage faults stop a campaign fast and clean (issue 9), with real processes over loopback.

Each file of the campaign fails in turn: the results file, the journal, the rejects file, the
receipts file (a small tmpfs, root only; a symlink puts just that one file on it), the results
file again through ``RLIMIT_FSIZE`` (EFBIG, no root needed), the summary JSON (``/dev/full``) and
an output directory that cannot be written (read-only mount as root, ``chmod`` otherwise). Every
run must end within 15 s with exit code 4, name the file and the OS error, print no traceback and
leave no child behind; the resume after the space is freed sends nothing twice and keeps every
accepted ID.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bulksend.receipts import receipts_path_for
from bulksend.simulator import read_ledger
from tests.e2e.support import (
    cli_env,
    read_results,
    send_cmd,
    start_simulator_process,
    stop_process,
)

CONCURRENCY = 8
BATCH = 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmallFs:
    """A tmpfs of a few hundred KB (root only), grown with :meth:`grow` to free space."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")

    def hold(self, path: Path) -> None:
        """Put just ``path`` on this file system: a symlink to a file here."""
        (self.path / path.name).touch()
        path.symlink_to(self.path / path.name)

    def grow(self) -> None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(self.path)], check=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], SmallFs]]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made: list[SmallFs] = []

    def make(size: str) -> SmallFs:
        fs = SmallFs(tmp_path / f"fs{len(made)}", size)
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.unmount()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Path, int]]:
    ledger = tmp_path / "ledger.csv"
    receipts_port = _free_port()
    proc, url = start_simulator_process(
        "--ledger",
        str(ledger),
        "--latency",
        "0.02",
        "--callback-url",
        f"http://127.0.0.1:{receipts_port}/",
        "--delivery-delay",
        "0.05",
    )
    try:
        yield url, ledger, receipts_port
    finally:
        stop_process(proc)


def _input(path: Path, count: int, invalid_every: int = 0) -> None:
    lines = ["phone\n"]
    for i in range(count):
        if invalid_every and i % invalid_every == 0:
            lines.append(f"not a number {i} {'x' * 40}\n")
        else:
            lines.append(f"+2782{i:07d}\n")
    path.write_text("".join(lines))


def _send(
    url: str, input_path: Path, *extra: str, preexec: Callable[[], None] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = send_cmd(
        url,
        input_path,
        "--concurrency",
        str(CONCURRENCY),
        "--batch-size",
        str(BATCH),
        *extra,
        text="disk test",
    )
    started = time.monotonic()
    done = subprocess.run(
        cmd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )
    return done, time.monotonic() - started


def _no_process_left(marker: str) -> None:
    """No process (an orphaned or zombie reader child) still has ``marker`` in its command line."""
    deadline = time.monotonic() + 5
    while True:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    left.append(entry.name)
            except OSError:
                continue
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes left behind: {left}"


def _assert_stopped(done: subprocess.CompletedProcess[str], took: float, path: Path) -> None:
    assert done.returncode == 4, (done.returncode, done.stderr[-2000:])
    assert took < 15, f"took {took:.1f} s to stop"
    assert str(path.name) in done.stderr, done.stderr[-2000:]
    assert any(
        reason in done.stderr
        for reason in ("No space left on device", "File too large", "Read-only file system")
    ), done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout


def _resume_and_check(url: str, ledger: Path, input_path: Path, results: Path, *extra: str) -> None:
    done, _ = _send(url, input_path, *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    time.sleep(0.3)
    entries = read_ledger(ledger)
    per_number = Counter(e.to for e in entries)
    assert max(per_number.values()) == 1, "a number was sent twice"
    lines = read_results(results)
    accepted = {(r["to"], r["api_msg_id"]) for r in lines if r["status"] == "accepted"}
    unknown = {r["to"] for r in lines if r["status"] == "unknown"}
    ledger_pairs = {(e.to, e.api_msg_id) for e in entries}
    assert accepted <= ledger_pairs
    assert all(to in unknown for to, _ in ledger_pairs - accepted), "an accepted ID was lost"
    # The batches in flight when the disk filled, and at worst each sender's next batch whose
    # intent it wrote early and could not mark abandoned on the full disk.
    assert len(unknown) <= 2 * CONCURRENCY * BATCH, "more than the open intents became unknown"
    assert Counter(r["row"] for r in lines).most_common(1)[0][1] == 1


@pytest.mark.slow
@pytest.mark.parametrize("which", ["results", "journal"])
def test_full_disk_under_results_or_journal_stops_with_exit_4_then_resumes(
    tmp_path: Path, gateway: tuple[str, Path, int], small_fs: Callable[[str], SmallFs], which: str
) -> None:
    url, ledger, _ = gateway
    input_path = tmp_path / f"in-{which}.csv"
    _input(input_path, 320_000)  # over 4 MB: read in a child process, which must not linger
    results = tmp_path / "out.csv"
    fs = small_fs("256k")
    victim = results if which == "results" else results.with_name("out.csv.journal")
    fs.hold(victim)

    done, took = _send(url, input_path, "--out", str(results))
    _assert_stopped(done, took, victim)
    _no_process_left(input_path.name)
    fs.grow()
    _resume_and_check(url, ledger, input_path, results, "--out", str(results))


def test_full_rejects_file_stops_with_exit_4(
    tmp_path: Path, gateway: tuple[str, Path, int], small_fs: Callable[[str], SmallFs]
) -> None:
    url, ledger, _ = gateway
    input_path = tmp_path / "in.csv"
    _input(input_path, 60_000, invalid_every=2)
    fs = small_fs("96k")
    rejects = tmp_path / "in.rejects.csv"
    fs.hold(rejects)
    done, took = _send(url, input_path)
    _assert_stopped(done, took, rejects)
    # The results and the journal were fine: the batches in flight were recorded, none unknown.
    assert not [r for r in read_results(tmp_path / "in.results.csv") if r["status"] == "unknown"]
    fs.grow()
    _resume_and_check(url, ledger, input_path, tmp_path / "in.results.csv")


def test_full_receipts_file_stops_with_exit_4(
    tmp_path: Path, gateway: tuple[str, Path, int], small_fs: Callable[[str], SmallFs]
) -> None:
    url, ledger, receipts_port = gateway
    input_path = tmp_path / "in.csv"
    _input(input_path, 30_000)
    fs = small_fs("32k")
    receipts = receipts_path_for(tmp_path / "in.results.csv")
    fs.hold(receipts)
    listen = ("--callback", "2", "--receipts-listen", f"127.0.0.1:{receipts_port}")
    done, took = _send(url, input_path, "--concurrency", "2", *listen)
    _assert_stopped(done, took, receipts)
    fs.grow()
    _resume_and_check(url, ledger, input_path, tmp_path / "in.results.csv", *listen)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killing signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_file_size_limit_efbig_stops_with_exit_4_without_root(
    tmp_path: Path, gateway: tuple[str, Path, int]
) -> None:
    url, ledger, _ = gateway
    input_path = tmp_path / "in.csv"
    _input(input_path, 30_000)
    done, took = _send(url, input_path, preexec=_limit_file_size)
    _assert_stopped(done, took, tmp_path / "in.results.csv")
    _no_process_left(str(input_path))
    _resume_and_check(url, ledger, input_path, tmp_path / "in.results.csv")


def test_summary_json_that_cannot_be_written_exits_4(
    tmp_path: Path, gateway: tuple[str, Path, int]
) -> None:
    url, _, _ = gateway
    input_path = tmp_path / "in.csv"
    _input(input_path, 2_000)
    done, _ = _send(url, input_path, "--summary-json", "/dev/full")
    assert done.returncode == 4, done.stderr
    assert "/dev/full" in done.stderr and "No space left on device" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(read_results(tmp_path / "in.results.csv")) == 2_000  # the campaign itself ran


def test_output_directory_that_cannot_be_written_is_refused_before_any_request(
    tmp_path: Path, gateway: tuple[str, Path, int], small_fs: Callable[[str], SmallFs]
) -> None:
    url, ledger, _ = gateway
    input_path = tmp_path / "in.csv"
    _input(input_path, 2_000)
    fs = small_fs("1m")
    fs.remount("ro")
    done, _ = _send(url, input_path, "--out", str(fs.path / "out.csv"))
    assert done.returncode == 4, done.stderr
    assert "Read-only file system" in done.stderr and str(fs.path) in done.stderr
    assert "Traceback" not in done.stderr
    time.sleep(0.2)
    assert not ledger.exists() or not read_ledger(ledger), "a request left"
