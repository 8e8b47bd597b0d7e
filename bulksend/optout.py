"""Opt-out / suppression lists: numbers a campaign must not text (``--exclude FILE``, repeatable).

Each list is read like a recipient file (CSV or one number per line, any format the reader
accepts) and normalised with the campaign's own number policy, so ``082 123 4567`` in a list
excludes ``+27 82 123 4567`` in the recipients. What it promises:

* **Memory: about 10 bytes per excluded number.** The numbers live in one sorted ``array('q')``
  (8 bytes each: the number shifted left by 8 bits, the list it came from in the low byte) plus a
  bitmap filter of 16 bits per number. Loading peaks higher for a moment (the numbers as Python
  ints while they are sorted: about 80 bytes each). Measured by ``benchmarks/exclusion.py``.
* **Speed.** Loading is C-level where it can be: lists of bare international numbers (``+27...``,
  ``27...``, ``0027...``, one per line, a header allowed) are split and converted by ``int()``
  without the CSV reader, then sorted in one call; building the bitmap is the one Python loop
  (about 1.3 s for a million numbers in all, once, before the first message). Looking a
  recipient up costs a hash and a bit test when the number is not listed (nearly always), a
  binary search when the bitmap says it may be.
* **Naming.** A listed number is refused as ``opted out (FILE)``, FILE being the first list (in the
  order given) that holds it.
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
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path

from bulksend.errors import InputError, StorageError
from bulksend.numbers import NumberPolicy, Reason, normalise

__all__ = ["OptOuts", "append_opt_outs", "load_opt_outs"]

_FILTER_BITS_PER_NUMBER = 16
_MAX_LISTS = 255
_DELIMITED = re.compile(rb'[,;\t|"]')
_PLAIN = re.compile(rb"(?:\+|00)?([1-9][0-9]{6,14})")
_UNUSUAL = re.compile(rb"[^0-9+\s]|(?:^|\s)0(?!0)")  # letters etc., or a national 0...


def _mix(key: int) -> int:
    return key ^ (key >> 17) ^ (key >> 31)


class OptOuts:
    """The excluded numbers of one or more lists (see the module docstring)."""

    __slots__ = ("_bits", "_keys", "_mask", "distinct", "names", "skipped")

    def __init__(self, names: Sequence[str], tagged: Iterable[int] = ()) -> None:
        """``tagged`` holds ``number << 8 | list`` values, ``list`` 0-based into ``names``."""
        self.names = list(names)
        self._keys: array[int] = array("q", sorted(tagged))
        self.skipped: dict[str, int] = {}
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

    def __len__(self) -> int:
        """Distinct numbers excluded."""
        return self.distinct

    @property
    def nbytes(self) -> int:
        return len(self._keys) * self._keys.itemsize + len(self._bits)

    def filter(self) -> tuple[bytearray, int]:
        """The bitmap and its mask: ``key`` may be listed only if bit ``_mix(key) & mask`` is set
        (the recipient reader tests it inline, saving two calls per row)."""
        return self._bits, self._mask

    def list_of(self, key: int) -> str | None:
        """The first list that excludes ``key`` (an MSISDN as an int), or None."""
        h = _mix(key) & self._mask
        if not self._bits[h >> 3] & (1 << (h & 7)):
            return None
        keys = self._keys
        i = bisect_left(keys, key << 8)
        if i < len(keys) and keys[i] >> 8 == key:
            return self.names[keys[i] & 0xFF]
        return None


def _plain_numbers(data: bytes) -> tuple[list[int], list[str]] | None:
    """A list of bare international numbers, one per line: the numbers, and the other lines (for
    the number reader's own rules). None when the file has delimiters or quotes: a CSV, the CSV
    reader's job."""
    if _DELIMITED.search(data, 0, 1 << 16):
        return None
    first, _, body = data.partition(b"\n")
    head: list[bytes] = [first]
    if not _UNUSUAL.search(body):
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
    from bulksend.source import RecipientSource  # source imports this module

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
    tagged: list[int] = []
    skipped: dict[str, int] = {}
    for index, path in enumerate(paths):
        numbers, bad = _read_list(Path(path), policy)
        tagged.extend(map(operator.or_, map(operator.lshift, numbers, repeat(8)), repeat(index)))
        if bad:
            skipped[str(path)] = bad
    opt_outs = OptOuts([str(p) for p in paths], tagged)
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
