"""A compact number -> first-row table for deduplicating very large recipient files. Pure.

:class:`FirstRowTable` has the one operation dedupe needs, ``setdefault(number, row)``: the row
the number was first seen on, or ``row`` itself (the very object passed in) when it is new. It
stores keys and rows in two flat arrays with open addressing and linear probing, so a number costs
12 bytes a slot: 24-48 bytes per unique number at the load factors it keeps (at most 1/2), against
about 105 for a ``dict[int, int]`` of Python ints. The price is CPU: the probe loop runs in Python
(about 1 µs an insert against 0.15 µs for a dict), which is why the reader uses it where memory
matters most, for big files read in their own process (see :mod:`bulksend.reader`).

Keys are MSISDNs as integers (at most 15 digits, so below 2**63, and never 0); rows fit 32 bits.
"""

from __future__ import annotations

from array import array

__all__ = ["FirstRowTable"]

_EMPTY = 0


class FirstRowTable:
    """``setdefault``-only map from positive 63-bit ints to 32-bit rows (see the module doc)."""

    __slots__ = ("_keys", "_mask", "_rows", "_used")

    def __init__(self, expected: int = 0) -> None:
        size = 1 << 10
        while size < 2 * expected:
            size <<= 1
        self._alloc(size)
        self._used = 0

    def _alloc(self, size: int) -> None:
        self._keys = array("q", bytes(8 * size))
        self._rows = array("L" if array("L").itemsize == 4 else "I", bytes(4 * size))
        self._mask = size - 1

    def __len__(self) -> int:
        return self._used

    @property
    def nbytes(self) -> int:
        return len(self._keys) * (self._keys.itemsize + self._rows.itemsize)

    def setdefault(self, key: int, row: int) -> int:
        keys = self._keys
        mask = self._mask
        i = (key ^ (key >> 23)) & mask
        while True:
            k = keys[i]
            if k == key:
                return self._rows[i]
            if k == _EMPTY:
                keys[i] = key
                self._rows[i] = row
                self._used += 1
                if 2 * self._used > mask:
                    self._grow()
                return row
            i = (i + 1) & mask

    def get(self, key: int) -> int:
        """The row stored for ``key``, or 0 (rows are never 0)."""
        keys = self._keys
        mask = self._mask
        i = (key ^ (key >> 23)) & mask
        while True:
            k = keys[i]
            if k == key:
                return self._rows[i]
            if k == _EMPTY:
                return 0
            i = (i + 1) & mask

    def _grow(self) -> None:
        old_keys, old_rows = self._keys, self._rows
        self._alloc(2 * len(old_keys))
        keys, rows, mask = self._keys, self._rows, self._mask
        for k, r in zip(old_keys, old_rows, strict=True):
            if k != _EMPTY:
                i = (k ^ (k >> 23)) & mask
                while keys[i] != _EMPTY:
                    i = (i + 1) & mask
                keys[i] = k
                rows[i] = r
