"""Opt-out / suppression lists: numbers a campaign must not text (``--exclude FILE``, repeatable).

Each list is read like a recipient file (CSV or one number per line, any format the reader
accepts) and normalised with the campaign's own number policy, so ``082 123 4567`` in a list
excludes ``+27 82 123 4567`` in the recipients. What it promises:

* **Memory.** A :class:`~bulksend.dedupe.FirstRowTable` from number to list (about 25-35 bytes per
  excluded number) plus a bitmap filter of 2 bytes per number: a 1 M-number list costs about
  30 MB (measured in ``tests/test_optout.py``'s docstring figures and the issue-11 note).
* **Speed.** The recipient reader asks :meth:`OptOuts.list_of` only when the bitmap says the
  number may be listed (about 1 row in 16 that are not); the common "not listed" answer is a few
  bytecodes, so a 1 M-number list costs well under 0.2 µs per recipient row.
* **Naming.** A listed number is refused as ``opted out (FILE)``, FILE being the first list (in the
  order given) that holds it.
* Rows of a list that are not numbers are skipped and counted (:attr:`OptOuts.skipped`); an empty
  or header-only list excludes nothing; a missing or unreadable one is an
  :class:`~bulksend.errors.InputError`.

:func:`append_opt_outs` adds numbers the gateway refused as opted out (``ERR 122``) to a list file,
so the next campaign excludes them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from bulksend.dedupe import FirstRowTable
from bulksend.errors import InputError, StorageError
from bulksend.numbers import NumberPolicy

__all__ = ["OptOuts", "append_opt_outs", "load_opt_outs"]

_FILTER_BITS_PER_NUMBER = 16


def _mix(key: int) -> int:
    return key ^ (key >> 17) ^ (key >> 31)


class OptOuts:
    """The excluded numbers of one or more lists (see the module docstring)."""

    __slots__ = ("_bits", "_mask", "names", "skipped", "table")

    def __init__(self, names: Sequence[str], expected: int = 0) -> None:
        self.names = list(names)
        self.table = FirstRowTable(expected)
        self._bits = bytearray(1)
        self._mask = 7
        self.skipped: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.table)

    @property
    def nbytes(self) -> int:
        return self.table.nbytes + len(self._bits)

    def add(self, key: int, list_number: int) -> None:
        """``list_number`` is 1-based: the position of its file in :attr:`names`. Call
        :meth:`finish` after the last one."""
        self.table.setdefault(key, list_number)

    def finish(self) -> None:
        """Build the bitmap filter for the numbers held (before :meth:`list_of` is asked)."""
        size = 1 << 13
        while size < _FILTER_BITS_PER_NUMBER * max(len(self.table), 1):
            size <<= 1
        bits = bytearray(size >> 3)
        mask = size - 1
        for key in self.table.stored_keys():
            h = _mix(key) & mask
            bits[h >> 3] |= 1 << (h & 7)
        self._bits, self._mask = bits, mask

    def list_of(self, key: int) -> str | None:
        """The list that excludes ``key`` (an MSISDN as an int), or None."""
        h = _mix(key) & self._mask
        if not self._bits[h >> 3] & (1 << (h & 7)):
            return None
        number = self.table.get(key)
        return self.names[number - 1] if number else None


def load_opt_outs(paths: Iterable[Path], policy: NumberPolicy) -> OptOuts:
    """Read the lists in order (the first one that holds a number names it)."""
    from bulksend.source import RecipientSource  # source imports this module

    paths = list(paths)
    expected = 0
    for path in paths:
        with contextlib.suppress(OSError):
            expected += os.stat(path).st_size // 12
    opt_outs = OptOuts([str(p) for p in paths], expected)
    for number, path in enumerate(paths, start=1):
        source = RecipientSource(path, policy=policy, dedupe=False, block_rows=8192)
        try:
            for block in source.blocks():
                for msisdn in block.msisdns:
                    opt_outs.add(int(msisdn), number)
        except InputError as exc:
            if exc.reason.startswith(("empty file", "no data rows")):
                continue
            raise InputError(f"opt-out list: {exc.reason}", path=str(path), row=exc.row) from None
        rejected = sum(source.stats.rejected.values())
        if rejected:
            opt_outs.skipped[str(path)] = rejected
    opt_outs.finish()
    return opt_outs


def append_opt_outs(path: Path, msisdns: Iterable[str]) -> None:
    """Append ``+<number>`` lines to ``path`` (created 0600) in one write; StorageError on failure."""
    data = "".join(f"+{m}\n" for m in msisdns).encode()
    if not data:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(str(path), exc, "open") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise StorageError(str(path), exc) from None
    finally:
        os.close(fd)
