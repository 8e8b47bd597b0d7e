"""The processes of ``bulksend bench``: the simulator, the launcher that measures each child, and
the baselines put beside bulksend (how each one is started and read).

:class:`SimulatorProcess` runs ``python -m bulksend simulate`` on a free loopback port (restarted
if something else stops it). :func:`measure` runs one child to its end through :data:`LAUNCHER`, a
tiny interpreter that reaps it with ``os.wait4`` for its CPU time and peak RSS, with a time limit.

Each baseline is a standalone script in ``benchmarks/baselines/`` run with the same interpreter as
the harness, in its own process, against the same simulator and the same input file, so that its
wall time, CPU time and peak RSS are measured exactly like bulksend's. Every script prints one JSON
line (``recipients``, ``accepted``, ``requests``, ``elapsed``) that :func:`parse_result` reads.

* (a) ``doc_get``: the documentation's loop, one ``GET /http/sendmsg`` per number with ``requests``;
* (b) ``session_post``: sequential 600-number POSTs on one keep-alive ``requests.Session``;
* (c) ``aiohttp_ceiling``: bare aiohttp + uvloop at the same concurrency, prepared bodies, answers
  discarded: the Python ceiling;
* (d) ``wrk``: the simulator's own capacity, measured by ``wrk`` posting one 600-number body
  (only when ``wrk`` is on ``PATH``).

(a) and (b) are serial loops whose rate does not depend on how many numbers they send, so they send
a prefix of the input sized to take a few seconds (:func:`baseline_size`), and are reported as rates.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote_plus

__all__ = [
    "BASELINES",
    "BATCH",
    "KINDS",
    "LAUNCHER",
    "Baseline",
    "ChildResult",
    "SimulatorProcess",
    "Usage",
    "baseline_command",
    "baseline_size",
    "measure",
    "parse_result",
    "parse_wrk",
    "rss_floor_kb",
    "scripts_dir",
    "write_wrk_body",
    "wrk_command",
    "wrk_path",
    "wrk_version",
]

LISTENING = "bulksend simulator listening on "
"""The start of the line ``bulksend simulate`` prints once it listens; the URL follows."""

BATCH = 600
"""Numbers per POST, the API's maximum (bulksend's default batch size)."""


@dataclass(frozen=True)
class Baseline:
    """One baseline: its key, the letter of the issue, a label, and its script (or tool)."""

    kind: str
    letter: str
    label: str
    script: str


BASELINES: tuple[Baseline, ...] = (
    Baseline("doc_get", "a", "docs: 1 GET per number", "doc_get_loop.py"),
    Baseline("session_post", "b", "requests.Session, serial 600-number POSTs", "session_posts.py"),
    Baseline("aiohttp_ceiling", "c", "bare aiohttp+uvloop ceiling", "aiohttp_ceiling.py"),
    Baseline("wrk", "d", "wrk: simulator capacity", "wrk_sendmsg.lua"),
)
KINDS: dict[str, Baseline] = {baseline.kind: baseline for baseline in BASELINES}


class ChildResult(NamedTuple):
    """What a child process reported about its own sending (not measured from outside)."""

    sent: int
    accepted: int
    requests: int
    elapsed: float


DOC_GET_MAX = 2000
"""At most this many single-number GETs for (a), the issue's "small N"."""
SERIAL_SECONDS = 5.0
"""(a) and (b) get a prefix of the input that takes about this long at the simulated latency."""


def scripts_dir() -> Path:
    """``benchmarks/baselines`` of the source tree this module belongs to."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "baselines"


def baseline_size(kind: str, recipients: int, latency: float, doc_max: int = DOC_GET_MAX) -> int:
    """How many numbers baseline ``kind`` sends at this latency (all of them for the ceiling)."""
    if kind == "doc_get":
        if latency > 0:
            return min(recipients, doc_max, max(20, round(SERIAL_SECONDS / latency)))
        return min(recipients, doc_max)
    if kind == "session_post":
        requests = max(5, round(SERIAL_SECONDS / latency)) if latency > 0 else 300
        return min(recipients, requests * BATCH)
    return recipients


def baseline_command(
    kind: str, *, url: str, input_path: Path, concurrency: int, limit: int, text: str
) -> list[str]:
    """The argv that runs the Python baseline ``kind`` (not ``wrk``)."""
    script = scripts_dir() / KINDS[kind].script
    return [
        sys.executable,
        str(script),
        *("--url", url, "--file", str(input_path)),
        *("--concurrency", str(concurrency), "--limit", str(limit), "--text", text),
    ]


def parse_result(stdout: str) -> ChildResult:
    """The JSON line a baseline script printed last (ValueError when there is none)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            return ChildResult(
                sent=int(data["recipients"]),
                accepted=int(data["accepted"]),
                requests=int(data["requests"]),
                elapsed=float(data["elapsed"]),
            )
    raise ValueError(f"no result line in {stdout[-300:]!r}")


def wrk_path() -> str | None:
    """Where ``wrk`` is, or None."""
    return shutil.which("wrk")


def wrk_version() -> str:
    """The first line ``wrk -v`` prints ('' when wrk is missing)."""
    path = wrk_path()
    if path is None:
        return ""
    done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    )


def write_wrk_body(path: Path, input_path: Path, text: str, credentials: Mapping[str, str]) -> None:
    """A 600-number ``sendmsg`` form body made of the first numbers of the input file."""
    with input_path.open(encoding="utf-8") as handle:
        digits = (line.strip().lstrip("+") for line in handle)
        numbers = list(itertools.islice((d for d in digits if d.isdigit()), BATCH))
    fields = [(key, credentials[key]) for key in ("api_id", "user", "password")] + [("text", text)]
    head = "&".join(f"{key}={quote_plus(value)}" for key, value in fields)
    path.write_bytes(f"{head}&to={'%2C'.join(numbers)}".encode("ascii"))


def wrk_command(url: str, concurrency: int, seconds: float, body_path: Path) -> list[str]:
    """The argv for wrk: one thread (the other core is the simulator's), ``concurrency`` sockets."""
    return [
        wrk_path() or "wrk",
        *("-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"),
        *("-s", str(scripts_dir() / "wrk_sendmsg.lua"), url, "--", str(body_path)),
    ]


def parse_wrk(stdout: str) -> ChildResult:
    """wrk's report as numbers: every request carries :data:`BATCH` numbers; non-2xx answers and
    socket errors count as not accepted."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", stdout)
    if done is None:
        raise ValueError(f"no request count in wrk output {stdout[-300:]!r}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout
    )
    failed = int(bad.group(1)) if bad else 0
    if errors:
        failed += sum(int(errors.group(i)) for i in range(1, 5))
    requests = int(done.group(1))
    return ChildResult(
        sent=requests * BATCH,
        accepted=max(0, requests - failed) * BATCH,
        requests=requests,
        elapsed=float(done.group(2)) * unit,
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SimulatorProcess:
    """A ``bulksend simulate`` process on a free loopback port, restartable (:meth:`ensure`) in
    case something else on the machine stops it; a context manager that always stops it."""

    def __init__(
        self, latency: float, jitter: float, log_path: Path, extra: Sequence[str] = ()
    ) -> None:
        self.command = [sys.executable, "-m", "bulksend", "simulate", "--host", "127.0.0.1"]
        self.command += ["--latency", str(latency), "--jitter", str(jitter), *extra]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.restarts = 0

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=30)
        line = self.process.stdout.readline().decode("utf-8", "replace") if ready else ""
        if not line.startswith(LISTENING):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r} (see {self.log_path})")
        self.url = line[len(LISTENING) :].strip()

    def ensure(self) -> bool:
        """Start it again if it is not running; whether it had to be restarted."""
        if self.alive():
            return False
        self.stop()
        self.restarts += 1
        self.start()
        return True

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# The direct child of a process inherits its parent's peak RSS as a floor for ``ru_maxrss`` (Linux
# records the old memory's high-water mark at exec, and vfork shares the parent's memory), so
# children are spawned by this tiny interpreter, not by the harness: their floor is its few MB
# (reported as ``rss_floor_kb``). It waits for the child with ``os.wait4``, writes
# "exit wall cpu maxrss_kb" to its first argument, and turns SIGTERM into SIGKILL for the child.
LAUNCHER = """
import os, signal, sys, time
result, out, err, *command = sys.argv[1:]
flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
dup = [(os.POSIX_SPAWN_DUP2, os.open(out, flags, 0o600), 1),
       (os.POSIX_SPAWN_DUP2, os.open(err, flags, 0o600), 2)]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ, file_actions=dup, setsigmask=set())
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(result, "w") as handle:
    cpu = usage.ru_utime + usage.ru_stime
    handle.write(f"{os.waitstatus_to_exitcode(status)} {wall} {cpu} {usage.ru_maxrss}")
"""


class Usage(NamedTuple):
    """What one child cost, measured from outside (and what it printed)."""

    exit_code: int
    wall: float
    cpu: float
    max_rss_kb: int
    sim_cpu: float
    stdout: str


def measure(
    command: Sequence[str], env: Mapping[str, str], timeout: float, scratch: Path, sim_pid: int
) -> Usage:
    """Run ``command`` (``command[0]`` an absolute path) to its end, through :data:`LAUNCHER`;
    killed after ``timeout`` seconds. ``sim_pid``'s CPU use over the run is recorded too."""
    result, out, err = scratch / "child.usage", scratch / "child.out", scratch / "child.err"
    result.unlink(missing_ok=True)
    sim_before = _cpu_seconds(sim_pid)
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), str(out), str(err)]
    process = subprocess.Popen([*launcher, *command], env=dict(env), stdin=subprocess.DEVNULL)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            process.terminate()  # the launcher kills its child, reaps it and exits
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    sim_cpu = _cpu_seconds(sim_pid) - sim_before
    if not result.exists():
        raise RuntimeError(f"the launcher of {command[0]} failed (exit {process.returncode})")
    code, wall, cpu, rss = result.read_text().split()
    stdout = out.read_text("utf-8", "replace")
    if int(code) != 0:
        stdout += "\n" + err.read_text("utf-8", "replace")[-500:]
    return Usage(int(code), float(wall), float(cpu), int(rss), sim_cpu, stdout)


def rss_floor_kb(env: Mapping[str, str], scratch: Path) -> int:
    """The peak RSS a child shows whatever it does: the launcher's, seen through ``/bin/true``."""
    true = shutil.which("true") or "/bin/true"
    return measure([true], env, 30, scratch, os.getpid()).max_rss_kb
