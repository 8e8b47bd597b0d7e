"""One runner per campaign: a kernel-released lock on ``<file>.lock`` beside the file it guards.

A campaign is its results file, whatever path names it: the lock file sits beside the file's real
path (symlinks and relative paths resolved), so two runs that reach the same results file through
different names meet at the same lock. What it promises:

* **Exclusive while held.** :meth:`FileLock.acquire` takes an exclusive ``flock`` without
  waiting (it retries for a quarter of a second only, so a ``bulksend status`` peeking at that very
  moment does not make a starting run refuse). A second holder, in this process or another, gets
  :class:`~bulksend.errors.CampaignLocked` naming the holder.
* **Released by the kernel.** ``kill -9`` of the holder closes its descriptor and the lock is gone;
  a lock *file* left behind never blocks anyone (only a held lock does). The holder's forked
  children (the reader process) close their inherited copy at once (:func:`close_inherited`), so
  a child that outlives its parent for a moment cannot keep the campaign locked.
* **Says who holds it.** The holder writes one JSON line into the lock file: pid, host, start
  time and its command line with secrets masked. :func:`probe` reads it without disturbing the
  holder (a shared lock tried for a microsecond, never waited for).

The lock file is created with mode 0600 and never deleted: deleting it while another process
waits on it would let two runners hold two different files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from bulksend.errors import CampaignLocked, StorageError, redact

__all__ = ["FileLock", "LockProbe", "close_inherited", "held_by", "lock_path_for", "probe"]

_ACQUIRE_TRIES = 25
_ACQUIRE_PAUSE = 0.01
_held_fds: set[int] = set()


def lock_path_for(path: str | os.PathLike[str]) -> Path:
    """``<real path of path>.lock``: one lock per file, however it is named."""
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + ".lock")


def _argv_without_secrets() -> list[str]:
    out: list[str] = []
    for arg in sys.argv:
        if arg.startswith(("--password", "--api-key", "--token")):
            name = arg.split("=", 1)[0]
            out.append(f"{name}=***" if "=" in arg else name)
        else:
            out.append(redact(arg))
    return out


def describe_holder(what: str) -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "what": what,
        "command": " ".join(_argv_without_secrets()),
    }


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = os.pread(fd, 64 * 1024, 0)
        holder = json.loads(data.decode("utf-8", "replace").strip() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def format_holder(holder: dict[str, object]) -> str:
    if not holder:
        return "another process (it has not said which yet)"
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    text += f", started {holder.get('started', '?')}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text


def held_by(guarded: str | os.PathLike[str], holder: dict[str, object]) -> CampaignLocked:
    """The refusal for a file another run holds, naming that run."""
    return CampaignLocked(
        f"{guarded} is in use by another bulksend run ({format_holder(holder)}); "
        "nothing was sent. Wait for it to finish, or stop it first "
        f"(`bulksend status {guarded}` shows it)",
        holder,
    )


class FileLock:
    """An exclusive, kernel-released lock guarding one file (see the module docstring)."""

    def __init__(self, guarded: str | os.PathLike[str], what: str = "campaign") -> None:
        self.guarded = Path(guarded)
        self.path = lock_path_for(guarded)
        self.what = what
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> FileLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError as exc:
            raise StorageError(str(self.path.parent), exc, "use the output directory") from None
        except OSError as exc:
            raise StorageError(str(self.path), exc, "create the lock file") from None
        for attempt in range(_ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < _ACQUIRE_TRIES:
                    time.sleep(_ACQUIRE_PAUSE)
                    continue
                holder = _read_holder(fd)
                os.close(fd)
                raise held_by(self.guarded, holder) from None
            except OSError as exc:
                os.close(fd)
                raise StorageError(str(self.path), exc, "lock") from None
        try:
            data = (json.dumps(describe_holder(self.what), sort_keys=True) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as exc:
            os.close(fd)
            raise StorageError(str(self.path), exc) from None
        self._fd = fd
        _held_fds.add(fd)
        return self

    def release(self) -> None:
        """Release (closing the descriptor releases the lock; the file stays)."""
        if self._fd >= 0:
            _held_fds.discard(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def close_inherited() -> None:
    """In a forked child: close the copies of the parent's lock descriptors (see the docstring)."""
    for fd in list(_held_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_fds.clear()


@dataclass(frozen=True, slots=True)
class LockProbe:
    """What :func:`probe` saw: whether the file is held, and the holder's own description."""

    held: bool
    holder: dict[str, object]
    lock_path: str


def probe(guarded: str | os.PathLike[str]) -> LockProbe:
    """Is ``guarded`` held by a runner? Read-only: never creates the lock file, never waits."""
    path = lock_path_for(guarded)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return LockProbe(False, {}, str(path))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return LockProbe(True, _read_holder(fd), str(path))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return LockProbe(False, _read_holder(fd), str(path))
    finally:
        os.close(fd)
