"""Opt-out / suppression lists: numbers a campaign must not text (``--exclude FILE``, repeatable).

Each list is read like a recipient file (CSV or one number per line, any format the reader
accepts) and normalised with the campaign's own number policy, so ``082 123 4567`` in a list
excludes ``+27 82 123 4567`` in the recipients. What it promises:

* **Naming.** A listed number is refused as ``opted out (FILE)``, FILE being the first list (in the
  order given) that holds it.
* **Two ways to hold the numbers, by size** (measured by ``benchmarks/exclusion.py``):

  - up to :data:`FAST_LIMIT` numbers (2 M) in all: a ``dict`` from number to list, built in C —
    about 0.4 s and **about 75 bytes per number** for a million, and a recipient is looked up
    with one C call (about 0.06 µs), so a list costs the campaign next to nothing per row;
  - above that: one sorted ``array('q')`` (``number << 8 | list``, 8 bytes) plus a bitmap filter
    of 16 bits per number: **about 10 bytes per number**, at about 0.5 µs per recipient row (a
    hash and a bit test in Python; a binary search when the bitmap says it may be listed) and a
    sort when loading.
* **Loading** is C-level where it can be: lists of bare international numbers (``+27...``,
  ``27...``, ``0027...``, one per line, a header allowed) are split and converted by ``int()``
  without the CSV reader.
* Rows of a list that are not numbers are skipped and counted (:attr:`OptOuts.skipped`); an empty
  or header-only list excludes nothing; a missing or unreadable one is an
  :class:`~bulksend.errors.InputError`. At most 255 lists.

:func:`append_opt_outs` adds numbers the gateway refused as opted out (``ERR 122``) to a list file,
so the next campaign excludes them.
"""

from __future__ import annotations

import operator
import os
import re
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from pathlib import Path

from bulksend.errors import InputError, StorageError
from bulksend.numbers import NumberPolicy, Reason, normalise
from bulksend.source import RecipientSource

__all__ = ["OptOuts", "append_opt_outs", "load_opt_outs"]

_FILTER_BITS_PER_NUMBER = 16
_MAX_LISTS = 255
_DELIMITED = re.compile(rb'[,;\t|"]')
_PLAIN = re.compile(rb"(?:\+|00)?([1-9][0-9]{6,14})")
_NATIONAL = re.compile(rb"(?m)^[ \t]*0[1-9]")  # a national number (0 then not 0)


FAST_LIMIT = 2_000_000
"""Up to this many listed numbers (all lists together) are held in a dict: fast, ~80 B each."""


def _mix(key: int) -> int:
    return key ^ (key >> 17) ^ (key >> 31)


class OptOuts:
    """The excluded numbers of one or more lists (see the module docstring)."""

    __slots__ = ("_bits", "_index", "_keys", "_mask", "distinct", "lookup", "names", "skipped")

    def __init__(self, names: Sequence[str], lists: Sequence[Sequence[int]]) -> None:
        """``lists[i]`` holds the numbers (MSISDNs as ints) of the list called ``names[i]``."""
        self.names = list(names)
        self.skipped: dict[str, int] = {}
        self._index: dict[int, int] | None = None
        self._keys: array[int] = array("q")
        self._bits = bytearray()
        self._mask = 0
        self.lookup: Callable[[int], int | None]
        if sum(map(len, lists)) <= FAST_LIMIT:
            index: dict[int, int] = {}
            for number in reversed(range(len(lists))):  # the first list that holds it wins
                index.update(zip(lists[number], repeat(number)))
            self._index = index
            self.distinct = len(index)
            self.lookup = index.get
        else:
            self._compact(lists)
            self.lookup = self._compact_lookup

    def _compact(self, lists: Sequence[Sequence[int]]) -> None:
        tagged: list[int] = []
        for number, numbers in enumerate(lists):
            tagged.extend(
                map(operator.or_, map(operator.lshift, numbers, repeat(8)), repeat(number))
            )
        tagged.sort()
        self._keys = array("q", tagged)
        del tagged
        size = 1 << 13
        while size < _FILTER_BITS_PER_NUMBER * max(len(self._keys), 1):
            size <<= 1
        bits = bytearray(size >> 3)
        mask = size - 1
        previous = distinct = 0
        for tagged_key in self._keys:
            key = tagged_key >> 8
            if key != previous:  # sorted: a number on several lists comes in a run
                distinct += 1
                previous = key
                h = _mix(key) & mask
                bits[h >> 3] |= 1 << (h & 7)
        self._bits, self._mask = bits, mask
        self.distinct = distinct

    def _compact_lookup(self, key: int) -> int | None:
        h = _mix(key) & self._mask
        if not self._bits[h >> 3] & (1 << (h & 7)):
            return None
        keys = self._keys
        i = bisect_left(keys, key << 8)
        if i < len(keys) and keys[i] >> 8 == key:
            return keys[i] & 0xFF
        return None

    def __len__(self) -> int:
        """Distinct numbers excluded."""
        return self.distinct

    @property
    def compact(self) -> bool:
        return self._index is None

    def list_of(self, key: int) -> str | None:
        """The first list that excludes ``key`` (an MSISDN as an int), or None."""
        number = self.lookup(key)
        return None if number is None else self.names[number]

    def reasons(self) -> list[str]:
        """The reject reason of each list, by list number (``opted out (FILE)``)."""
        return [f"opted out ({name})" for name in self.names]


def _plain_numbers(data: bytes) -> tuple[list[int], list[str]] | None:
    """A list of bare international numbers, one per line: the numbers, and the other lines (for
    the number reader's own rules). None when the file has delimiters or quotes: a CSV, the CSV
    reader's job."""
    if _DELIMITED.search(data, 0, 1 << 16):
        return None
    first, _, body = data.partition(b"\n")
    head: list[bytes] = [first]
    if (
        not body.translate(None, b"0123456789+ \t\r\n")  # digits, "+" and white space only
        and not _NATIONAL.search(body)
        and (b"\n" in body or b"\r" not in body)  # not an old-Mac CR-only file
    ):
        # Only digits, "+" and white space, and no national "0..." number: int() in C does it
        # ("+27..." and "0027..." both give 27...).
        try:
            return _with_head(list(map(int, body.split())), head)
        except ValueError:
            pass  # a "+" inside a token: the slow way
    numbers: list[int] = []
    others: list[str] = []
    match = _PLAIN.fullmatch
    for line in data.splitlines():
        token = line.strip()
        if not token:
            continue
        m = match(token)
        if m is None:
            others.append(token.decode("utf-8", "replace"))
        else:
            numbers.append(int(m.group(1)))
    return numbers, others


def _with_head(numbers: list[int], head: list[bytes]) -> tuple[list[int], list[str]]:
    others: list[str] = []
    for line in head:
        token = line.strip()
        m = _PLAIN.fullmatch(token)
        if m is not None:
            numbers.append(int(m.group(1)))
        elif token:
            others.append(token.decode("utf-8", "replace"))
    return numbers, others


def _read_list(path: Path, policy: NumberPolicy) -> tuple[list[int], int]:
    """The numbers of one list and how many of its rows are not numbers (a header aside)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("opt-out list: no such file", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"opt-out list: cannot read: {exc.strerror}", path=str(path)) from None
    plain = (
        None
        if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))
        else (_plain_numbers(data))
    )
    if plain is not None:
        numbers, others = plain
        skipped = 0
        for index, line in enumerate(others):  # national numbers, spaced ones: the reader's rules
            msisdn = normalise(line, policy)
            if type(msisdn) is not Reason:
                numbers.append(int(msisdn))
            elif not (
                index == 0
                and data.lstrip().startswith(line.encode())
                and not any(c.isdigit() for c in line)
            ):
                skipped += 1  # not a number, and not the header line
        return numbers, skipped
    source = RecipientSource(path, policy=policy, dedupe=False, block_rows=8192)
    numbers = []
    try:
        for block in source.blocks():
            numbers.extend(map(int, block.msisdns))
    except InputError as exc:
        if exc.reason.startswith(("empty file", "no data rows")):
            return [], 0
        raise InputError(f"opt-out list: {exc.reason}", path=str(path), row=exc.row) from None
    return numbers, sum(source.stats.rejected.values())


def load_opt_outs(paths: Iterable[Path], policy: NumberPolicy) -> OptOuts:
    """Read the lists in order (the first one that holds a number names it)."""
    paths = list(paths)
    if len(paths) > _MAX_LISTS:
        raise InputError(f"at most {_MAX_LISTS} opt-out lists, not {len(paths)}")
    lists: list[list[int]] = []
    skipped: dict[str, int] = {}
    for path in paths:
        numbers, bad = _read_list(Path(path), policy)
        lists.append(numbers)
        if bad:
            skipped[str(path)] = bad
    opt_outs = OptOuts([str(p) for p in paths], lists)
    opt_outs.skipped = skipped
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
