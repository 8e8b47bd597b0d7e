"""An append-only line file with idempotency keys and group commits, for callback receivers.

:class:`AppendFile` is the storage of :mod:`bulksend.receipts` (delivery receipts) and of
:mod:`bulksend.inbox` (replies and the opt-out list they feed). What it promises:

* **Group commit.** Every line submitted in one turn of the event loop is written with one
  ``write(2)``; the future :meth:`AppendFile.submit` returns resolves once that write returned (the
  line is then in the operating system's hands: it survives the process being killed, even by
  SIGKILL). :meth:`AppendFile.fsync_fd` tells the owner's timer when an ``fsync`` is due; the file
  is fsynced at close.
* **Keys.** Each line has an idempotency key the owner computes; :attr:`AppendFile.keys` holds them
  (rebuilt from the file by the owner's ``read_key`` when it is reopened). A write that fails
  forgets its lines' keys, so a retry can store them, and calls ``on_error`` (the owner stops
  accepting).
* **Reopening.** A torn last line (a kill in the middle of a write) is cut off first; a file whose
  header is not the expected one is refused with :class:`~bulksend.errors.ConfigError`.
* Created with mode 0600, the header (if any) written and fsynced before the first line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from bulksend.errors import ConfigError, StorageError

__all__ = ["FILE_MODE", "AppendFile"]

FILE_MODE = 0o600

Key = int | str


class AppendFile:
    """One append-only file, its keys and its group commit (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        on_error: Callable[[OSError, str], None],
        *,
        header: str | None,
        kind: str,
        read_key: Callable[[str], Key | None],
    ) -> None:
        """``header``: the first line (None: the file has none); ``kind`` names the file in
        errors ("receipts file"); ``read_key``: a line's key when reopening (None: skip it)."""
        self.path = path
        self.on_error = on_error
        self.header = header
        self.kind = kind
        self.read_key = read_key
        self.keys: set[Key] = set()
        self._fd = -1
        self._buffer: list[str] = []
        self._buffered_keys: list[Key] = []
        self._pending: asyncio.Future[None] | None = None
        self._dirty = False

    def open(self) -> int:
        """Open (creating with the header, or resuming an existing file); the keys on file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existing = 0
            if self.path.exists() and self.path.stat().st_size > 0:
                existing = self._load()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StorageError(str(self.path), exc, "open") from None
        try:
            with contextlib.suppress(OSError):
                os.fchmod(fd, FILE_MODE)
            if os.fstat(fd).st_size == 0 and self.header is not None:
                os.write(fd, (self.header + "\n").encode())
                os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise StorageError(str(self.path), exc) from None
        self._fd = fd
        return existing

    def _load(self) -> int:
        """Cut a torn last line, check the header, rebuild the keys (streaming the file)."""
        with self.path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            tail_start = max(0, size - 65536)  # a line is far shorter than this
            f.seek(tail_start)
            cut = tail_start + f.read().rfind(b"\n") + 1
            if cut != size:
                f.truncate(cut)
        keys = self.keys
        read_key = self.read_key
        with self.path.open(encoding="utf-8", errors="replace", newline="") as f:
            if self.header is not None:
                header = f.readline().rstrip("\r\n")
                if header and header != self.header:
                    raise ConfigError(f"{self.path} is not a {self.kind} (header {header[:80]!r})")
            for line in f:
                key = read_key(line)
                if key is not None:
                    keys.add(key)
        return len(keys)

    def submit(self, line: str, key: Key) -> asyncio.Future[None]:
        """Buffer one new line (ending in a newline); the future resolves once it is written."""
        self._buffer.append(line)
        self.keys.add(key)
        self._buffered_keys.append(key)
        return self.written()

    def written(self) -> asyncio.Future[None]:
        """A future for the current group commit (already done when nothing is buffered)."""
        loop = asyncio.get_running_loop()
        if self._pending is None:
            if not self._buffer:
                done: asyncio.Future[None] = loop.create_future()
                done.set_result(None)
                return done
            self._pending = loop.create_future()
            loop.call_soon(self._flush)
        return self._pending

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        data = "".join(self._buffer).encode("utf-8")
        keys = self._buffered_keys
        self._buffer, self._buffered_keys = [], []
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.keys.difference_update(keys)
            self.on_error(exc, "write")
            if pending is not None and not pending.done():
                pending.set_exception(exc)
                pending.exception()  # retrieved by the waiters; silence "never retrieved"
            return
        self._dirty = True
        if pending is not None and not pending.done():
            pending.set_result(None)

    def fsync_fd(self) -> int | None:
        """The fd to fsync if the file grew since the last call, else None."""
        if not self._dirty or self._fd < 0:
            return None
        self._dirty = False
        return self._fd

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._buffer:
            self._flush()
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self.on_error(exc, "fsync")
        finally:
            os.close(self._fd)
            self._fd = -1
