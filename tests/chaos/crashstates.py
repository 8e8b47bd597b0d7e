"""Crash states in the ALICE style: record a campaign's file operations, rebuild what a POSIX file
system may hold after the machine dies at any point, and resume from each state.

**Recording** (:class:`Recorder`): while a campaign runs in this process, the few ``os`` calls the
journal, the results and rejects files go through (``open`` with ``O_CREAT``/``O_TRUNC``,
``write``, ``pwrite``, ``fsync``/``fdatasync``, ``rename``/``replace``, ``unlink``, ``ftruncate``,
``dup``, ``close``) are wrapped, whichever thread makes them (the group commit flushes on a thread
of its own); every call on a file of the campaign's directory becomes an :class:`Op`, in the order
the calls returned, together with the number of messages the simulator had accepted at that moment
(``len(ledger)``). An ``fsync`` is recorded twice: when it starts (what it covers is what was
written by then) and when it returns (only then is that durable).

**Crash states** (:func:`crash_states`), for a crash just before op ``k``:

* each file keeps what was on stable storage at its last ``fsync``/``fdatasync`` before ``k``
  (the bytes written before that call *started*), plus any prefix of the writes after it, each
  at its offset: nothing, each whole write, the whole lot, and one write torn in the middle; a file
  written in place (``pwrite``: the intent log's reserve) may also have reached the disk out of
  order: every later write but one (a hole of what was there before) is a state too;
* the directory keeps the names it had at its last ``fsync``; each create, rename or unlink made
  since either happened or did not (every subset when there are at most four of them, else every
  ordered prefix), applied in order.

**Checking** (:func:`check_resume`): the gateway had accepted, at the crash, at least the ledger's
first ``accepted_at(k)`` messages (a lower bound: a request in flight may have been processed
later, so a double is never reported falsely, only possibly missed). The real resume runs to the
end on the state's files against the same simulator; then a number it sent that the gateway had
already accepted is **texted twice**; a row without a line, or recorded ``accepted`` with an id the
gateway never gave in this world, is **silently skipped**; an accepted message whose row is neither
recorded with its id nor ``unknown`` is a **lost id**. ``unknown`` rows are allowed and counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulksend.journal import read_results


@dataclass(frozen=True, slots=True)
class Op:
    """One recorded file operation. ``kind``: create, write, pwrite (``size``: the offset),
    syncstart, sync (``size``: its syncstart's index), dirsync, rename, unlink, trunc."""

    kind: str
    inode: int = -1
    name: str = ""
    dst: str = ""
    data: bytes = b""
    size: int = 0
    accepted: int = 0  # messages the gateway had accepted when the call returned


class Recorder:
    """Wraps ``os`` calls on files of ``directory`` (see the module docstring)."""

    NAMES = ("open", "write", "pwrite", "fsync", "fdatasync", "replace", "rename", "unlink",
             "ftruncate", "dup", "close")  # fmt: skip

    def __init__(self, directory: Path, accepted: Callable[[], int]) -> None:
        self.directory = os.path.realpath(directory)
        self.accepted = accepted
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}  # fd -> inode (-2: the directory)
        self._names: dict[str, int] = {}  # name -> inode, as the process sees it
        self._next = 0
        self._real: dict[str, Any] = {}

    def _mine(self, path: object) -> str | None:
        try:
            real = os.path.realpath(os.fspath(path))  # type: ignore[arg-type]
        except TypeError:
            return None
        if real == self.directory:
            return "."
        if os.path.dirname(real) == self.directory:
            return os.path.basename(real)
        return None

    def _add(self, op: Op) -> None:
        self.ops.append(Op(op.kind, op.inode, op.name, op.dst, op.data, op.size, self.accepted()))

    @contextlib.contextmanager
    def recording(self) -> Iterator[Recorder]:
        real = {name: getattr(os, name) for name in self.NAMES}
        self._real = real
        me = self

        def open_(path: Any, flags: int, mode: int = 0o777, *a: Any, **k: Any) -> int:
            name = me._mine(path)
            existed = name is not None and name != "." and os.path.exists(path)
            fd: int = real["open"](path, flags, mode, *a, **k)
            if name is None:
                return fd
            with me._lock:
                if name == ".":
                    me._fds[fd] = -2
                    return fd
                inode = me._names.get(name)
                if not existed or inode is None:
                    if inode is None and existed:  # there before the recording: durable as is
                        inode = me._new_inode()
                        me._names[name] = inode
                        me._add(Op("create", inode, name, data=Path(path).read_bytes()))
                    else:
                        inode = me._new_inode()
                        me._names[name] = inode
                        me._add(Op("create", inode, name))
                elif flags & os.O_TRUNC:
                    me._add(Op("trunc", inode, size=0))
                me._fds[fd] = inode
            return fd

        def write(fd: int, data: Any) -> int:
            n: int = real["write"](fd, data)
            inode = me._fds.get(fd)
            if inode is not None and inode >= 0:
                with me._lock:
                    me._add(Op("write", inode, data=bytes(memoryview(data)[:n])))
            return n

        def pwrite(fd: int, data: Any, offset: int) -> int:
            n: int = real["pwrite"](fd, data, offset)
            inode = me._fds.get(fd)
            if inode is not None and inode >= 0:
                with me._lock:
                    me._add(Op("pwrite", inode, data=bytes(memoryview(data)[:n]), size=offset))
            return n

        def sync(which: str) -> Callable[[int], None]:
            def call(fd: int) -> None:
                inode = me._fds.get(fd)
                if inode is None or inode == -2:
                    real[which](fd)
                    if inode is not None:
                        with me._lock:
                            me._add(Op("dirsync", inode))
                    return
                with me._lock:
                    mark = len(me.ops)
                    me._add(Op("syncstart", inode))
                real[which](fd)
                with me._lock:
                    me._add(Op("sync", inode, size=mark))

            return call

        def rename(which: str) -> Callable[..., None]:
            def call(src: Any, dst: Any, *a: Any, **k: Any) -> None:
                a_name, b_name = me._mine(src), me._mine(dst)
                real[which](src, dst, *a, **k)
                if a_name is not None and b_name is not None:
                    with me._lock:
                        inode = me._names.pop(a_name, -1)
                        me._names[b_name] = inode
                        me._add(Op("rename", inode, a_name, b_name))

            return call

        def unlink(path: Any, *a: Any, **k: Any) -> None:
            name = me._mine(path)
            real["unlink"](path, *a, **k)
            if name is not None:
                with me._lock:
                    me._add(Op("unlink", me._names.pop(name, -1), name))

        def ftruncate(fd: int, size: int) -> None:
            real["ftruncate"](fd, size)
            inode = me._fds.get(fd)
            if inode is not None and inode >= 0:
                with me._lock:
                    me._add(Op("trunc", inode, size=size))

        def dup(fd: int) -> int:
            new: int = real["dup"](fd)
            if fd in me._fds:
                me._fds[new] = me._fds[fd]
            return new

        def close(fd: int) -> None:
            me._fds.pop(fd, None)
            real["close"](fd)

        wrappers = {
            "open": open_,
            "write": write,
            "pwrite": pwrite,
            "fsync": sync("fsync"),
            "fdatasync": sync("fdatasync"),
            "replace": rename("replace"),
            "rename": rename("rename"),
            "unlink": unlink,
            "ftruncate": ftruncate,
            "dup": dup,
            "close": close,
        }
        try:
            for name, wrapper in wrappers.items():
                setattr(os, name, wrapper)
            yield self
        finally:
            for name, fn in real.items():
                setattr(os, name, fn)

    def _new_inode(self) -> int:
        self._next += 1
        return self._next


# -- the crash states (pure) -----------------------------------------------------------------------


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    # The writes not known durable, in order: (op index, offset, bytes).
    writes: list[tuple[int, int, bytes]] = field(default_factory=list)
    in_place: bool = False  # written with pwrite: later writes may land before earlier ones
    syncing: dict[int, bytes] = field(default_factory=dict)  # syncstart index -> what it covers
    synced_at: int = -1  # the syncstart index of the newest fsync that returned

    def image(self, writes: list[tuple[int, int, bytes]]) -> bytes:
        """The durable bytes with ``writes`` applied at their offsets (a gap reads as zeros)."""
        out = bytearray(self.durable)
        for _, offset, data in writes:
            if offset > len(out):
                out.extend(bytes(offset - len(out)))
            out[offset : offset + len(data)] = data
        return bytes(out)


@dataclass(frozen=True)
class CrashState:
    """What the disk holds after a crash just before op ``point``: name -> content."""

    point: int
    files: dict[str, bytes]
    accepted: int  # messages the gateway had certainly accepted
    note: str

    @property
    def key(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name] + b"\0")
        return h.hexdigest()


def _subsets(n: int) -> Iterator[tuple[bool, ...]]:
    if n <= 4:
        yield from itertools.product((False, True), repeat=n)
    else:
        for k in range(n + 1):
            yield tuple(i < k for i in range(n))


def crash_states(ops: list[Op], point: int) -> Iterator[CrashState]:
    """Every state the file system may hold after a crash just before ``ops[point]``."""
    files: dict[int, _File] = {}
    durable_names: dict[str, int] = {}
    names: dict[str, int] = {}
    pending: list[Op] = []  # namespace changes since the last directory fsync
    for index, op in enumerate(ops[:point]):
        if op.kind == "create":
            files[op.inode] = _File(bytearray(op.data), op.data)
            names[op.name] = op.inode
            pending.append(op)
        elif op.kind in ("write", "pwrite"):
            f = files[op.inode]
            offset = len(f.data) if op.kind == "write" else op.size
            if offset > len(f.data):
                f.data.extend(bytes(offset - len(f.data)))
            f.data[offset : offset + len(op.data)] = op.data
            f.writes.append((index, offset, op.data))
            f.in_place = f.in_place or op.kind == "pwrite"
        elif op.kind == "trunc":
            f = files[op.inode]
            del f.data[op.size :]
            f.durable = f.durable[: op.size]  # pessimistic: the cut may be durable already
            f.writes = [
                (i, offset, data[: op.size - offset])
                for i, offset, data in f.writes
                if offset < op.size
            ]
            f.syncing = {mark: image[: op.size] for mark, image in f.syncing.items()}
        elif op.kind == "syncstart":
            f = files[op.inode]
            f.syncing[index] = bytes(f.data)
        elif op.kind == "sync":
            f = files[op.inode]
            covered = f.syncing.pop(op.size, None)
            if covered is not None and op.size > f.synced_at:  # an older fsync covers less
                f.durable, f.synced_at = covered, op.size
                f.writes = [w for w in f.writes if w[0] > op.size]
        elif op.kind in ("rename", "unlink"):
            if op.kind == "rename":
                names[op.dst] = names.pop(op.name, op.inode)
            else:
                names.pop(op.name, None)
            pending.append(op)
        elif op.kind == "dirsync":
            durable_names = dict(names)
            pending = []
    accepted = ops[point - 1].accepted if point else 0
    # Each file: its durable bytes plus a prefix of the later writes (or all but one of them).
    choices: dict[int, list[tuple[bytes, str]]] = {}
    for inode, f in files.items():
        options = [(f.durable, "durable")]
        for k in range(1, len(f.writes) + 1):
            options.append((f.image(f.writes[:k]), f"{k} writes more"))
        if f.writes:
            _, offset, data = f.writes[-1]
            if len(data) > 1:
                torn = [*f.writes[:-1], (0, offset, data[: len(data) // 2])]
                options.append((f.image(torn), "last write torn"))
        if f.in_place and len(f.writes) > 1:
            for j in sorted({0, len(f.writes) // 2, len(f.writes) - 2}):
                hole = f.writes[:j] + f.writes[j + 1 :]
                options.append((f.image(hole), f"every write but #{j + 1} (a hole)"))
        choices[inode] = options
    for taken in _subsets(len(pending)):
        namespace = dict(durable_names)
        for op, happened in zip(pending, taken, strict=True):
            if not happened:
                continue
            if op.kind == "create":
                namespace[op.name] = op.inode
            elif op.kind == "rename":
                if op.name in namespace:
                    namespace[op.dst] = namespace.pop(op.name)
            else:
                namespace.pop(op.name, None)
        visible = sorted(set(namespace.values()))
        for combo in itertools.product(*(choices[i] for i in visible)):
            content = dict(zip(visible, combo, strict=True))
            yield CrashState(
                point,
                {name: content[inode][0] for name, inode in namespace.items()},
                accepted,
                "; ".join(
                    f"{name}: {content[inode][1]}" for name, inode in sorted(namespace.items())
                ),
            )


def process_view(ops: list[Op], point: int, name: str) -> bytes:
    """What the process saw in ``name`` just before ``ops[point]``: every byte written to the
    file that bore that name last (no crash)."""
    inode = max(op.inode for op in ops[:point] if op.kind == "create" and op.name == name)
    data = bytearray(next(op.data for op in ops if op.kind == "create" and op.inode == inode))
    for op in ops[:point]:
        if op.inode != inode:
            continue
        if op.kind in ("write", "pwrite"):
            offset = len(data) if op.kind == "write" else op.size
            if offset > len(data):
                data.extend(bytes(offset - len(data)))
            data[offset : offset + len(op.data)] = op.data
        elif op.kind == "trunc":
            del data[op.size :]
    return bytes(data)


def sample_states(ops: list[Op], limit: int, *, seed: int = 17) -> list[CrashState]:
    """Up to ``limit`` distinct crash states over the whole recording (every crash point is
    represented; torn writes are kept first)."""
    seen: dict[str, CrashState] = {}
    per_point: list[list[CrashState]] = []
    for point in range(len(ops) + 1):
        fresh = []
        for state in crash_states(ops, point):
            if state.key not in seen:
                seen[state.key] = state
                fresh.append(state)
        per_point.append(fresh)
    rng = random.Random(seed)
    chosen: list[CrashState] = []
    pools = [sorted(p, key=lambda s: "torn" not in s.note) for p in per_point if p]
    for pool in pools:
        rng.shuffle(pool[1:])
    # Round robin over the crash points until the limit.
    while len(chosen) < limit and any(pools):
        for pool in pools:
            if pool and len(chosen) < limit:
                chosen.append(pool.pop(0))
    return chosen


# -- checking a resume -----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What one resume did, against what the gateway had done before the crash."""

    twice: int = 0
    skipped: int = 0
    lost_ids: int = 0
    unknown: int = 0
    refused: str = ""


def materialise(state: CrashState, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in state.files.items():
        if not name.endswith(".lock"):
            (directory / name).write_bytes(data)


def judge(
    state: CrashState,
    results_path: Path,
    rows: dict[int, str],
    ledger_before_crash: list[tuple[str, str]],
    sent_by_resume: list[tuple[str, str]],
) -> Verdict:
    """Compare the resumed results with the simulator's ledger (see the module docstring).
    ``rows``: every valid input row -> its number; ledgers as ``(to, api_msg_id)``."""
    verdict = Verdict()
    before = Counter(to for to, _ in ledger_before_crash)
    after = Counter(to for to, _ in sent_by_resume)
    verdict.twice = sum(1 for to, c in after.items() if c + before.get(to, 0) > 1)
    real_ids = set(ledger_before_crash) | set(sent_by_resume)
    recorded: dict[int, dict[str, str]] = {}
    for line in read_results(results_path):
        recorded[int(line["row"])] = line
    for row, to in rows.items():
        line = recorded.get(row)
        if line is None or (
            line["status"] == "accepted" and (to, line["api_msg_id"]) not in real_ids
        ):
            verdict.skipped += 1
        elif line["status"] == "unknown":
            verdict.unknown += 1
    by_number = {line["to"]: line for line in recorded.values()}
    for to, api_id in ledger_before_crash:
        line = by_number.get(to)
        if line is None or not (
            line["status"] == "unknown"
            or (line["status"] == "accepted" and line["api_msg_id"] == api_id)
        ):
            verdict.lost_ids += 1
    return verdict
