"""The per-row rules of the recipient file: a row of cells in, a number to send or a refusal out.

:class:`~bulksend.source.RecipientSource` reads the file (bytes, text, lines, the layout) and
hands this module's :class:`RowRules` the rows as cell lists; the rules turn them into
:class:`Block` s of ``(row, msisdn)`` pairs and :class:`Reject` s and keep :class:`SourceStats`.
Each row, in this order, the first rule that applies deciding:

1. no cell in the chosen column: rejected (``empty``, or ``missing column N (name)``);
2. the number does not normalise (:func:`bulksend.numbers.normalise`): rejected with its reason
   (``not valid UTF-8`` when the cell holds bytes the file's encoding could not decode);
3. on an opt-out list (any :class:`Exclusions`, e.g. :class:`~bulksend.optout.OptOuts`):
   rejected ``opted out (FILE)``;
4. with a template only: the row's values do not make a message the template accepts
   (:meth:`~bulksend.template.BoundTemplate.check`): rejected with the template's reason, *before*
   dedupe, so a refused row does not claim its number;
5. with dedupe, a number already seen: ``duplicate of row N`` (counted in ``stats.duplicates``,
   not in ``stats.rejected``);
6. otherwise sent: its row and number go to the block (with a template, its text and values too).

What it promises: every row lands in exactly one block, once, in file order, so
``stats.rows == stats.valid + stats.duplicates + sum(stats.rejected.values())``; a rejected cell is
kept printable (:data:`RAW_CHARS` at most, undecodable bytes as U+FFFD). There are two loops, the
plain one and the templated one: a copy rather than a branch, so that reading without a template
costs what it did before templates (the plain loop is the hot path of every campaign).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bulksend.dedupe import FirstRowTable
from bulksend.gsm import MessageShape
from bulksend.numbers import NumberPolicy, Reason, normalise
from bulksend.template import BoundTemplate, PartsStats

__all__ = [
    "RAW_CHARS",
    "Batch",
    "Block",
    "Exclusions",
    "Reject",
    "RowRules",
    "SourceStats",
    "Unreadable",
]

RAW_CHARS = 200  # how much of a rejected cell the Reject keeps

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

Batch = Iterable[Sequence[str]]
"""Rows of cells, as the reader hands them to the rules (a list, a ``map``, an ``islice``)."""


class Exclusions(Protocol):
    """What the rules need of an opt-out list (:class:`~bulksend.optout.OptOuts` is one)."""

    lookup: Callable[[int], int | None]  # a number (MSISDN as an int) -> its list, or None

    def reasons(self) -> list[str]:
        """The reject reason of each list, by list number."""
        ...


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that will not be sent: its row number, the cell as read, and why."""

    row: int
    raw: str
    reason: str


@dataclass(slots=True)
class Block:
    """Consecutive input rows: the numbers to send and the rows refused, in file order.

    ``len(rows) + len(rejects)`` is the number of rows the block covers, at most ``block_rows``;
    ``last_row`` is the last of them. With a template, ``contents[i]`` is the text for
    ``msisdns[i]`` and ``fields[i]`` its placeholder values in ``template.fields`` order; both are
    None without one.
    """

    rows: list[int]
    msisdns: list[str]
    rejects: list[Reject]
    last_row: int
    contents: list[str] | None = None
    fields: list[tuple[str, ...]] | None = None


@dataclass
class SourceStats:
    """Counts so far, updated at each block. Layout fields are set once the head is read."""

    rows: int = 0  # data rows (the header excluded)
    valid: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # by reason, duplicates excluded
    header: bool = False
    column: int | str = 0  # the header cell of the chosen column, or its index without a header
    column_index: int = 0
    delimiter: str = ""  # "" for one number per line
    encoding: str = "utf-8"
    parts: PartsStats = field(default_factory=PartsStats)  # of the valid rows; with a template only


class Unreadable(str):
    """Stands in for the cell of a row that has none to offer (an overlong line, a short row).

    It is an empty string, so the hot loop treats it like any cell that does not normalise and only
    the reject path looks at ``reason``.
    """

    reason: str
    raw: str

    def __new__(cls, reason: str, raw: str) -> Unreadable:
        self = super().__new__(cls, "")
        self.reason = reason
        self.raw = raw
        return self


class RowRules:
    """Rows of cells to :class:`Block` s: the plain loop and the templated one (see the module
    docstring). A base of :class:`~bulksend.source.RecipientSource`, which sets the attributes
    below (the reading settings, and what the reader learnt of the file) before the first row."""

    path: str
    policy: NumberPolicy
    dedupe: bool
    compact_dedupe: bool
    opt_outs: Exclusions | None
    block_rows: int
    stats: SourceStats
    _bound: BoundTemplate | None  # the template bound to the header, once the layout is known
    _bad_bytes: str  # the reason for a cell the file's encoding could not decode

    def _blocks(self, batches: Iterator[Batch]) -> Iterator[Block]:
        """The hot loop: each row to a number or a reject, cut into blocks of ``block_rows``.

        (Whole-list variants with ``map``/``setdefault`` in C measured no faster than this loop.)
        """
        if self._bound is not None:
            yield from self._templated_blocks(batches, self._bound)
            return
        st = self.stats
        policy = self.policy
        index = st.column_index
        block_rows = self.block_rows
        dedupe = self.dedupe
        first_row_of = self._first_rows(12).setdefault  # ~12 bytes a row
        opt_outs = self.opt_outs
        listed = opt_outs.lookup if opt_outs is not None else None
        opted_out = opt_outs.reasons() if opt_outs is not None else []
        rejected = st.rejected
        row = start = 1 if st.header else 0
        end = row + block_rows
        rows: list[int] = []
        msisdns: list[str] = []
        rejects: list[Reject] = []
        add_row, add_msisdn = rows.append, msisdns.append
        for batch in batches:
            for cells in batch:
                row += 1
                try:
                    value = cells[index]
                except IndexError:
                    rejects.append(self._refused(row, self._short(cells), Reason.EMPTY))
                else:
                    msisdn = normalise(value, policy)
                    if type(msisdn) is Reason:
                        rejects.append(self._refused(row, value, msisdn))
                    elif listed is not None and (number := listed(key := int(msisdn))) is not None:
                        why = opted_out[number]
                        rejected[why] += 1
                        rejects.append(Reject(row, _printable(value), why))
                    elif (
                        dedupe
                        and (first := first_row_of(key if listed is not None else int(msisdn), row))
                        is not row
                    ):
                        st.duplicates += 1
                        rejects.append(Reject(row, _printable(value), f"duplicate of row {first}"))
                    else:
                        add_row(row)
                        add_msisdn(msisdn)
                if row == end:
                    st.rows += row - start
                    st.valid += len(rows)
                    yield Block(rows, msisdns, rejects, row)
                    start, end = row, row + block_rows
                    rows, msisdns, rejects = [], [], []
                    add_row, add_msisdn = rows.append, msisdns.append
        if row > start:
            st.rows += row - start
            st.valid += len(rows)
            yield Block(rows, msisdns, rejects, row)

    def _templated_blocks(self, batches: Iterator[Batch], bound: BoundTemplate) -> Iterator[Block]:
        """:meth:`_blocks` with each valid row rendered and checked by ``bound`` as well.

        A copy of the loop rather than a branch in it, so reading without a template costs what it
        did. The check comes before dedupe: a row refused for its values does not claim its number,
        and a later row with the same number and good values is sent.
        """
        st = self.stats
        policy = self.policy
        index = st.column_index
        block_rows = self.block_rows
        dedupe = self.dedupe
        first_row_of = self._first_rows(40).setdefault  # ~40 bytes a row with a name or two
        opt_outs = self.opt_outs
        listed = opt_outs.lookup if opt_outs is not None else None
        opted_out = opt_outs.reasons() if opt_outs is not None else []
        rejected = st.rejected
        check = bound.check
        row = start = 1 if st.header else 0
        end = row + block_rows
        rows: list[int] = []
        msisdns: list[str] = []
        contents: list[str] = []
        fields: list[tuple[str, ...]] = []
        shapes: list[MessageShape] = []
        rejects: list[Reject] = []
        for batch in batches:
            for cells in batch:
                row += 1
                try:
                    value = cells[index]
                except IndexError:
                    rejects.append(self._refused(row, self._short(cells), Reason.EMPTY))
                else:
                    msisdn = normalise(value, policy)
                    if type(msisdn) is Reason:
                        rejects.append(self._refused(row, value, msisdn))
                    elif listed is not None and (number := listed(key := int(msisdn))) is not None:
                        why = opted_out[number]
                        rejected[why] += 1
                        rejects.append(Reject(row, _printable(value), why))
                    elif isinstance(rendered := check(cells), str):
                        rejected[rendered] += 1
                        rejects.append(Reject(row, _printable(value), rendered))
                    elif (
                        dedupe
                        and (first := first_row_of(key if listed is not None else int(msisdn), row))
                        is not row
                    ):
                        st.duplicates += 1
                        rejects.append(Reject(row, _printable(value), f"duplicate of row {first}"))
                    else:
                        rows.append(row)
                        msisdns.append(msisdn)
                        contents.append(rendered.text)
                        fields.append(rendered.values)
                        shapes.append(rendered.shape)
                if row == end:
                    st.rows += row - start
                    st.valid += len(rows)
                    st.parts.add_all(shapes)
                    yield Block(rows, msisdns, rejects, row, contents, fields)
                    start, end = row, row + block_rows
                    rows, msisdns, contents, fields, shapes, rejects = [], [], [], [], [], []
        if row > start:
            st.rows += row - start
            st.valid += len(rows)
            st.parts.add_all(shapes)
            yield Block(rows, msisdns, rejects, row, contents, fields)

    def _first_rows(self, bytes_per_row: int) -> dict[int, int] | FirstRowTable:
        """Number -> the first row that held it, for dedupe: a compact table sized from the
        input's size (``bytes_per_row`` a row) when asked for, else a dict."""
        if not self.compact_dedupe:
            return {}
        try:
            expected = os.stat(self.path).st_size // bytes_per_row
        except OSError:
            expected = 0
        return FirstRowTable(expected if self.dedupe else 0)

    def _refused(self, row: int, value: str, reason: Reason) -> Reject:
        if type(value) is Unreadable:
            why, raw = value.reason, value.raw
        elif reason is Reason.BAD_CHARS and not value.isascii() and self._undecodable(value):
            why, raw = self._bad_bytes, value
        else:
            why, raw = reason.value, value
        self.stats.rejected[why] += 1
        return Reject(row, _printable(raw), why)

    def _undecodable(self, value: str) -> bool:
        if self._bad_bytes == "not valid UTF-8":
            return _ESCAPED_BYTE.search(value) is not None
        return "\ufffd" in value

    def _short(self, cells: Sequence[str]) -> Unreadable:
        """The stand-in cell of a row without the chosen column: blank, or too few cells."""
        if not any(c.strip() for c in cells):
            return Unreadable(Reason.EMPTY.value, "")
        st = self.stats
        why = f"missing column {st.column_index}"
        if st.header:
            why += f" ({st.column})"
        return Unreadable(why, (st.delimiter or ",").join(cells))


def _printable(text: str) -> str:
    """The cell as a rejects file can hold it: trimmed, invalid bytes as U+FFFD, at most RAW_CHARS."""
    text = text.strip()
    if len(text) > RAW_CHARS:
        text = text[:RAW_CHARS] + "…"
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
