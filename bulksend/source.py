"""Stream the recipient file into blocks of numbers to send and rows refused.

This module owns reading the recipient file: bytes on disk in, :class:`Block` s of
``(row, msisdn)`` pairs and :class:`Reject` s out, in file order. It is the reading loop (bytes ->
text -> lines -> the layout: delimiter, column, header -> rows of cells); what each row becomes (a
number, an opt-out, a template's refusal, a duplicate) is :mod:`bulksend.rows`', whose
:class:`~bulksend.rows.RowRules` :class:`RecipientSource` extends. Together they promise:

* **Every row is accounted for once.** Each data row lands in exactly one block, either in
  ``rows``/``msisdns`` or in ``rejects``, so ``stats.rows == stats.valid + stats.duplicates +
  sum(stats.rejected.values())``. Row numbers are what a spreadsheet shows: 1-based, the header
  (when there is one) is row 1, and a quoted cell that spans several lines is one row.
* **A bad row never stops the file.** A number that does not normalise, bytes that are not valid
  UTF-8 in the number's cell, NUL bytes, a row without the chosen column, a line longer than
  1 MiB, broken quoting: that row is rejected with a reason and reading goes on.
* **A bad file fails before the first block**, with :class:`~bulksend.errors.InputError` naming
  the file: missing, a directory, unreadable, empty, header only, binary (or an Excel workbook),
  no column that looks like phone numbers, a ``--column`` that is not there.
* **Streaming.** The file is read in 1 MiB chunks and blocks are yielded as they fill, so memory is
  flat in the file size when dedupe is off (tracemalloc peak: 12-21 MB, the same for 300 k and
  1 M rows). Dedupe keeps a ``dict[int, int]`` (number -> first row) that costs about 105 bytes
  per unique number on CPython 3.11 x86-64 (tracemalloc: 106 B per number at 1 M and 2 M unique
  numbers, up to 124 B just after the dict doubles, e.g. at 1.4 M; reading a 1 M-row file with
  dedupe peaks 102 MB above reading it without), i.e. ~1 GiB for 10 M unique numbers. With
  ``compact_dedupe`` (what :mod:`bulksend.reader` uses for big files) it is a
  :class:`~bulksend.dedupe.FirstRowTable` instead: 27-35 bytes per unique number, ~0.4-0.8 µs more
  CPU per row.

Reading rules:

* Encoding: UTF-8 with or without BOM; UTF-16 and UTF-32 with a BOM. Bytes that are not valid UTF-8
  are kept (``surrogateescape``); they only reject a row when they are in the number's cell
  (reason ``not valid UTF-8``), so a Latin-1 name in another column costs nothing.
* Lines end with LF, CRLF or (old Mac exports) CR, as the first line end says. Fields follow the
  csv module with ``"`` quoting (chunks without a quote are split with ``str.split``). A quoted
  cell may span lines; a quote that is never closed costs only its own row: once that row would
  span more than 64 lines or 1 MiB, its first line is read on its own and the lines after it are
  read again as rows. Lines over 1 MiB are refused before csv sees them, so the process-wide
  ``csv.field_size_limit`` is left alone (a field over it makes csv refuse the line, which is then
  split on the delimiter instead).
* Delimiter: the candidates ``,`` ``;`` tab ``|`` that occur in the first lines are each tried on
  up to 50 rows, and must split most rows into 2+ cells. The winner is the one that finds the
  phone column (or the named ``--column``), then whose column holds numbers, then the one that
  splits rows most consistently, then the earlier candidate. No candidate: one number per line.
* Column: ``--column NAME`` matches a header cell case-insensitively; ``--column INDEX`` (an int or
  a string of digits) is 0-based. Auto-detection takes the columns where at least half of the
  non-empty cells in the first 50 rows look like phone numbers (numbers that normalise, and the shapes that only
  fail for a reason worth reporting: national without ``--default-country``, Excel damage); a
  column whose header says phone/mobile/msisdn/cell/tel/... wins, then the leftmost one among
  those with at least half as many numbers as the best.
* Header: the first row is a header when the chosen column's cell there is not a number and holds
  letters or no digits (``phone``, ``#``), or is empty while other cells hold words.

With a ``template`` (:class:`~bulksend.template.Template`, see that module for the language):

* it is bound to the header once the layout is known; a personalised text and a file without a
  header, or a placeholder that names no column, is an :class:`InputError` naming the file (before
  the first block, like the layout errors above, and the same through :mod:`bulksend.reader`);
* each row whose number is valid (and not opted out) is rendered and checked: a row the template
  refuses (a missing or empty value, too many parts, ...) is a :class:`Reject` with the number
  cell as ``raw`` and the template's reason. The check comes before dedupe, so a refused row does
  not claim its number;
* blocks carry ``contents`` (the text) and ``fields`` (the values) for each row to send, and
  ``stats.parts`` sums their parts and encodings;
* a quoted cell that spans lines keeps its line break, as LF (without a template only numbers are
  read, and a number never spans lines, so that path keeps csv's joining).

Without a template, the hot loop, the blocks and the stats are what they were before templates
(``contents``/``fields`` are None, ``stats.parts`` stays empty); reading a 200 k-row file measured
the same speed before and after.
"""

from __future__ import annotations

import codecs
import csv
import functools
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain, islice, repeat
from typing import BinaryIO, NamedTuple

from bulksend.errors import InputError
from bulksend.numbers import NumberPolicy, Reason, normalise
from bulksend.rows import (
    RAW_CHARS,
    Batch,
    Block,
    Exclusions,
    Reject,
    RowRules,
    SourceStats,
    Unreadable,
)
from bulksend.template import BoundTemplate, Template, check_options

__all__ = ["Block", "RecipientSource", "Reject", "SourceStats"]

CHUNK_BYTES = 1 << 20
MAX_LINE_CHARS = 1 << 20
MAX_RECORD_LINES = 64  # a quoted cell may hold an address or a note; more is an unclosed quote
SAMPLE_ROWS = 50
SAMPLE_CHARS = 256 * 1024
DELIMITERS = (",", ";", "\t", "|")

_DEFAULT_POLICY = NumberPolicy()

# Shapes that fail normalisation for a reason worth showing the user, so the column is still
# recognised as the phone column (a column of national numbers without --default-country must
# not become "no column looks like phone numbers").
_PHONE_SHAPED = frozenset(
    {
        Reason.NATIONAL_WITHOUT_COUNTRY,
        Reason.EXCEL_SCIENTIFIC,
        Reason.EXCEL_FORMULA,
        Reason.EXCEL_DECIMAL,
        Reason.EXCEL_LOST_ZERO,
        Reason.INVALID_FOR_REGION,
        Reason.NOT_VALID_NUMBER,
    }
)
_HEADER_HINTS = frozenset(
    {
        "phone", "phones", "msisdn", "mobile", "mobiles", "cell", "cellphone", "cellular", "tel",
        "telephone", "gsm", "to", "recipient", "recipients", "destination", "handy", "celular",
        "movil", "móvil", "telefone", "telefono", "teléfono", "mobil", "mobiel", "portable",
        "whatsapp",
    }
)  # fmt: skip
_TOKEN_SPLIT = re.compile(r"[\s_\-./#:()]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive or an Excel .xlsx workbook; export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel .xls workbook; export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"%PDF", "a PDF document"),
)


class _Layout(NamedTuple):
    delimiter: str
    column: int
    header: bool
    name: str  # the header cell, "" without a header


class _Candidate(NamedTuple):
    score: tuple[
        bool, bool, float, int
    ]  # layout found, its column holds numbers, consistency, order
    layout: _Layout | None
    first: Sequence[str]  # the first row as this delimiter splits it
    width: int  # the most common number of cells


class RecipientSource(RowRules):
    """The recipient file as a stream of :class:`Block` s; see the module docstring for the rules."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        column: str | int | None = None,
        policy: NumberPolicy = _DEFAULT_POLICY,
        dedupe: bool = True,
        block_rows: int = 2048,
        compact_dedupe: bool = False,
        opt_outs: Exclusions | None = None,
        template: Template | None = None,
        max_parts: int | None = None,
        unicode: str = "auto",
    ) -> None:
        if block_rows < 1:
            raise ValueError("block_rows must be at least 1")
        self.path = os.fspath(path)
        self.policy = policy
        self.dedupe = dedupe
        # A FirstRowTable (~27 B per unique number) instead of a dict (~105 B), at ~0.8 µs more
        # CPU per row: for big files, read in their own process (bulksend.reader).
        self.compact_dedupe = compact_dedupe
        self.opt_outs = opt_outs
        self.block_rows = block_rows
        # With a template each row is also rendered and checked (see bulksend.template); it is
        # bound to the header once the layout is known.
        if template is not None:
            check_options(unicode, max_parts)
        self.template = template
        self.max_parts = max_parts
        self.unicode = unicode
        self._bound: BoundTemplate | None = None
        self._column: str | int | None
        if isinstance(column, str):
            name = column.strip()
            if not name:
                raise InputError("--column must not be empty", path=self.path)
            self._column = int(name) if name.isascii() and name.isdigit() else name
        elif isinstance(column, int) and column < 0:
            raise InputError(f"--column index must be 0 or more, not {column}", path=self.path)
        else:
            self._column = column
        self.stats = SourceStats()
        self.bytes_read = 0  # for progress: how far into the file the reader is
        self._bad_bytes = "not valid UTF-8"
        self._csv = _dialect(",")

    # -- public ------------------------------------------------------------------------------------

    def blocks(self) -> Iterator[Block]:
        """Read the file from the start, yielding blocks of at most ``block_rows`` rows.

        Raises :class:`InputError` for whole-file problems before the first block (and for a read
        error mid-file). Each call starts over with fresh ``stats``.
        """
        self.stats = SourceStats()
        self.bytes_read = 0
        with self._open() as f:
            batches = self._batches(self._lines(self._texts(f)))
            yield from self._blocks(batches)

    # -- bytes -> text -> lines ----------------------------------------------------------------------

    def _open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise InputError("no such file", path=self.path) from None
        except IsADirectoryError:
            raise InputError("is a directory, not a file", path=self.path) from None
        except PermissionError:
            raise InputError("permission denied", path=self.path) from None
        except OSError as e:
            raise InputError(f"cannot open: {e.strerror or e}", path=self.path) from None

    def _read(self, f: BinaryIO) -> bytes:
        try:
            data = f.read(CHUNK_BYTES)
            self.bytes_read += len(data)
            return data
        except IsADirectoryError:
            raise InputError("is a directory, not a file", path=self.path) from None
        except OSError as e:
            raise InputError(f"read error: {e.strerror or e}", path=self.path) from None

    def _texts(self, f: BinaryIO) -> Iterator[str]:
        """Decoded text in ~1 MiB pieces; settles the encoding and refuses binary files first."""
        data = self._read(f)
        while len(data) < 4 and (more := self._read(f)):  # enough to see any BOM
            data += more
        encoding = "utf-8"
        for bom, name in _BOMS:
            if data.startswith(bom):
                encoding, data = name, data[len(bom) :]
                break
        self.stats.encoding = encoding
        if not data:
            data = self._read(f)
        if not data:
            raise InputError("empty file: no rows", path=self.path)
        decoder: codecs.IncrementalDecoder
        if encoding.startswith("utf-8"):
            decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
            self._bad_bytes = "not valid UTF-8"
        else:
            decoder = codecs.getincrementaldecoder(encoding)("replace")
            self._bad_bytes = f"not valid {encoding[:6].upper()}"
        text = decoder.decode(data, final=not data)
        self._refuse_binary(data, text)
        while data:
            if text:
                yield text
            data = self._read(f)
            text = decoder.decode(data, final=not data)
        if text:
            yield text

    def _refuse_binary(self, data: bytes, text: str) -> None:
        for magic, what in _MAGIC:
            if data.startswith(magic):
                raise InputError(f"does not look like a text/CSV file: {what}", path=self.path)
        head = text[:65536]
        controls = len(_CONTROL.findall(head))
        if controls > 8 and controls * 50 > len(head):
            hint = ""
            nul_odd, nul_even = data[1:4096:2].count(0), data[0:4096:2].count(0)
            if max(nul_odd, nul_even) > 10 * (min(nul_odd, nul_even) + 1):
                hint = " (UTF-16 without a byte-order mark? save it as UTF-8)"
            raise InputError(f"does not look like a text/CSV file{hint}", path=self.path)

    def _lines(self, texts: Iterator[str]) -> Iterator[tuple[list[str], bool] | Unreadable]:
        """Complete lines, a chunk at a time, with whether the chunk holds a quote.

        A line longer than ``MAX_LINE_CHARS`` becomes an :class:`Unreadable` of its own and is
        skipped up to its end without being held in memory.
        """
        carry = ""
        newline = ""
        skipping = False
        for piece in texts:
            if skipping:
                end = piece.find(newline or "\n")
                if end < 0:
                    continue
                piece, skipping = piece[end + 1 :], False
            text = carry + piece if carry else piece
            if not newline:
                newline = _line_end(text)
            if newline == "\n" and "\r" in text:
                text = text.replace("\r\n", "\n")
            lines = text.split(newline or "\n")
            carry = lines.pop()
            if lines:
                quoted = '"' in text
                if max(map(len, lines)) > MAX_LINE_CHARS:
                    yield from self._overlong_split(lines, quoted)
                else:
                    yield lines, quoted
            if len(carry) > MAX_LINE_CHARS:
                yield self._overlong(carry)
                carry, skipping = "", True
        if carry:
            yield [carry], '"' in carry

    def _overlong(self, line: str) -> Unreadable:
        return Unreadable(f"line longer than {MAX_LINE_CHARS} characters", line[:RAW_CHARS])

    def _overlong_split(
        self, lines: list[str], quoted: bool
    ) -> Iterator[tuple[list[str], bool] | Unreadable]:
        run: list[str] = []
        for line in lines:
            if len(line) > MAX_LINE_CHARS:
                if run:
                    yield run, quoted
                    run = []
                yield self._overlong(line)
            else:
                run.append(line)
        if run:
            yield run, quoted

    # -- lines -> rows of cells ----------------------------------------------------------------------

    def _batches(self, chunks: Iterator[tuple[list[str], bool] | Unreadable]) -> Iterator[Batch]:
        """Settle the layout from the head of the file, then yield the data rows as cell lists."""
        head: list[tuple[list[str], bool] | Unreadable] = []
        sample: list[str] = []
        nonblank = chars = 0
        complete = True  # the head is the whole file
        for chunk in chunks:
            head.append(chunk)
            if isinstance(chunk, Unreadable):
                continue
            for line in chunk[0]:
                sample.append(line)
                chars += len(line)
                nonblank += 1 if line.strip() else 0
                if nonblank > SAMPLE_ROWS or chars > SAMPLE_CHARS:
                    break
            if nonblank > SAMPLE_ROWS or chars > SAMPLE_CHARS:
                complete = False
                break
        unreadable = sum(1 for c in head if isinstance(c, Unreadable))
        if not head:
            raise InputError("empty file: no rows", path=self.path)
        if complete and not nonblank and not unreadable:
            raise InputError("empty file: no rows (only blank lines)", path=self.path)
        layout = self._layout(sample, complete and not unreadable)
        if isinstance(head[0], Unreadable):  # the first row is not readable, so not a header
            layout = layout._replace(header=False, name="")
        if layout.header and complete and nonblank + unreadable <= 1:
            raise InputError("no data rows (only a header)", path=self.path)
        st = self.stats
        st.delimiter, st.header, st.column_index = layout.delimiter, layout.header, layout.column
        st.column = layout.name if layout.header else layout.column
        self._csv = _dialect(layout.delimiter or ",")
        width = layout.column + 1
        self._bound = None
        if self.template is not None:
            header = None
            if layout.header:
                header = [_name(c) for c in self._split_sample(sample[:1], layout.delimiter)[0]]
            try:
                self._bound = self.template.bind(
                    header, unicode=self.unicode, max_parts=self.max_parts
                )
            except InputError as exc:
                raise InputError(exc.reason, path=self.path) from None
            width = max(width, self._bound.width)
        return self._rows(layout, chain(head, chunks), width)

    def _rows(
        self,
        layout: _Layout,
        chunks: Iterator[tuple[list[str], bool] | Unreadable],
        width: int,
    ) -> Iterator[Batch]:
        """Data rows as cells; at least ``width`` of them where the row has that many."""
        skip_header = layout.header
        keep_breaks = self._bound is not None
        carried: list[str] = []
        for chunk in chunks:
            batch: Batch
            if isinstance(chunk, Unreadable):
                if carried:  # an unclosed quote ran into an overlong line: settle it first
                    yield _parse_quoted(carried, self._csv, at_end=True)[0]
                    carried = []
                yield ((chunk,) * width,)
                continue
            lines, quoted = chunk
            if keep_breaks and (quoted or carried) and layout.delimiter:
                # csv drops the line break of a cell spanning lines it is given without their
                # ends; a number never spans lines, but a templated address must keep its break.
                lines = [line + "\n" for line in lines]
            if carried:
                lines, quoted, carried = carried + lines, True, []
            if quoted and layout.delimiter:
                rows, carried = _parse_quoted(lines, self._csv, at_end=False)
                if sum(map(len, carried)) > MAX_LINE_CHARS:  # an open quote, not a long cell
                    rows += _settle(carried, self._csv)
                    carried = []
                if not rows:
                    continue
                batch = rows
            elif layout.delimiter:
                batch = map(str.split, lines, repeat(layout.delimiter), repeat(width))
            else:
                batch = zip(lines)
            if skip_header:
                batch, skip_header = islice(batch, 1, None), False
            yield batch
        if carried:
            batch = _parse_quoted(carried, self._csv, at_end=True)[0]
            yield islice(batch, 1, None) if skip_header else batch

    # -- the layout: delimiter, column, header ----------------------------------------------------------

    def _layout(self, sample: list[str], complete: bool) -> _Layout:
        present = [d for d in DELIMITERS if any(d in line for line in sample)]
        candidates = [self._try(sample, d, pref) for pref, d in enumerate(present)]
        candidates.append(self._try(sample, "", len(present)))
        best = max(candidates, key=lambda c: c.score)
        if best.layout is not None:
            return best.layout
        fallback = max(candidates, key=lambda c: (c.score[2], c.width, c.score[3]))
        if isinstance(self._column, str):
            found = ", ".join(repr(_name(c)) for c in fallback.first[:30]) or "(nothing)"
            raise InputError(
                f"column {self._column!r} not found in the header; it has: {found}",
                path=self.path,
            )
        if isinstance(self._column, int):
            raise InputError(
                f"column {self._column} not found: rows have {fallback.width} column(s)"
                " (--column INDEX counts from 0)",
                path=self.path,
            )
        filled = [line for line in sample if line.strip()]
        if complete and len(filled) == 1 and any(ch.isalpha() for ch in filled[0]):
            raise InputError("no data rows (only a header)", path=self.path)
        raise InputError("no column looks like phone numbers; use --column", path=self.path)

    def _split_sample(self, sample: list[str], delimiter: str) -> list[Sequence[str]]:
        if not delimiter:
            return [[line] for line in sample]
        return _settle(sample, _dialect(delimiter))[: SAMPLE_ROWS + 1]

    def _try(self, sample: list[str], delimiter: str, pref: int) -> _Candidate:
        """How well ``delimiter`` explains the sample, and the layout it gives if any."""
        rows = self._split_sample(sample, delimiter)
        filled = [r for r in rows if any(c.strip() for c in r)]
        widths = Counter(len(r) for r in filled)
        width, count = widths.most_common(1)[0] if widths else (0, 0)
        consistency = count / len(filled) if filled else 0.0
        if delimiter and width < 2:
            return _Candidate((False, False, 0.0, -pref), None, rows[0] if rows else [], width)
        if not delimiter:
            consistency = 0.0  # one column is the fallback, never a better split
        first = rows[0] if rows else []
        data = rows[1:] if len(rows) > 1 else rows
        index = self._pick_column(first, data, width)
        if index is None:
            return _Candidate((False, False, consistency, -pref), None, first, width)
        header = isinstance(self._column, str) or self._is_header(first, index)
        name = _name(first[index]) if header and index < len(first) else ""
        layout = _Layout(delimiter, index, header, name)
        phones = self._phones_in(data, index) > 0
        return _Candidate((True, phones, consistency, -pref), layout, first, width)

    def _pick_column(
        self, first: Sequence[str], data: list[Sequence[str]], width: int
    ) -> int | None:
        if isinstance(self._column, str):
            wanted = self._column.casefold()
            for i, cell in enumerate(first):
                if _name(cell).casefold() == wanted:
                    return i
            return None
        if isinstance(self._column, int):
            return self._column if self._column < max(width, len(first)) else None
        counts = [self._phones_in(data, i) for i in range(max(map(len, data), default=0))]
        best = max(counts, default=0)
        if not best:
            return None
        for i, phones in enumerate(counts):
            if phones and i < len(first) and _is_hint(first[i]):
                return i
        return next(i for i, phones in enumerate(counts) if phones * 2 >= best)

    def _phones_in(self, data: list[Sequence[str]], index: int) -> int:
        """How many phone-like cells column ``index`` has, or 0 if they are not the majority."""
        cells = [r[index] for r in data if len(r) > index and r[index].strip()]
        phones = sum(1 for c in cells if self._phone_like(c))
        return phones if phones * 2 >= len(cells) else 0

    def _phone_like(self, cell: str) -> bool:
        result = normalise(cell, self.policy)
        return type(result) is not Reason or result in _PHONE_SHAPED

    def _is_header(self, first: Sequence[str], index: int) -> bool:
        cell = first[index].strip() if index < len(first) else ""
        if cell:
            if self._phone_like(cell):
                return False
            return any(ch.isalpha() for ch in cell) or not any(ch.isdigit() for ch in cell)
        return any(any(ch.isalpha() for ch in c) for c in first) and not any(
            self._phone_like(c) for c in first if c.strip()
        )


def _line_end(text: str) -> str:
    """The file's line end, judged by the first one in ``text``.

    LF or CRLF give LF (CRLF is folded to LF before splitting), a lone CR gives CR (old Mac
    exports), and "" means not yet known: no line end so far, or a CR at the very end of ``text``
    that may be the first half of a CRLF.
    """
    cr, lf = text.find("\r"), text.find("\n")
    if cr < 0 or 0 <= lf < cr:
        return "\n" if lf >= 0 else ""
    if cr + 1 == len(text):
        return ""
    return "\n" if text[cr + 1] == "\n" else "\r"


def _parse_quoted(
    lines: list[str], dialect: type[csv.Dialect], at_end: bool
) -> tuple[list[Sequence[str]], list[str]]:
    """Parse lines holding quotes with the csv module; return rows and an unfinished row's lines.

    A row still inside quotes at the end of ``lines`` is carried (unless ``at_end``) so the next
    chunk can finish it. A row that spans more than ``MAX_RECORD_LINES`` lines, or that the csv
    module refuses, is read alone from its first line (leniently) and the lines after it are read
    again as rows.
    """
    try:
        rows: list[Sequence[str]] = list(csv.reader(lines, dialect))
    except csv.Error:
        return _parse_quoted_by_row(lines, dialect, at_end)
    if len(rows) != len(lines):  # some row spans lines: check each one
        return _parse_quoted_by_row(lines, dialect, at_end)
    if not at_end and lines and lines[-1].count('"') % 2:
        return rows[:-1], lines[-1:]
    return rows, []


def _parse_quoted_by_row(
    lines: list[str], dialect: type[csv.Dialect], at_end: bool
) -> tuple[list[Sequence[str]], list[str]]:
    """The careful pass of :func:`_parse_quoted`: a row at a time, watching how many lines it takes."""
    rows: list[Sequence[str]] = []
    start, n, last_start = 0, len(lines), 0
    while start < n:
        reader = csv.reader(islice(lines, start, None), dialect)
        used = 0
        try:
            for cells in reader:
                if reader.line_num - used > MAX_RECORD_LINES:
                    break
                last_start = start + used
                rows.append(cells)
                used = reader.line_num
            else:
                break
        except csv.Error:
            pass
        first = start + used
        rows.append(_lenient(lines[first], dialect))
        last_start, start = first, first + 1
    if not at_end and rows and sum(line.count('"') for line in lines[last_start:]) % 2:
        rows.pop()
        return rows, lines[last_start:]
    return rows, []


def _lenient(line: str, dialect: type[csv.Dialect]) -> Sequence[str]:
    """One line on its own: csv if it can, a plain split if csv refuses it."""
    try:
        return next(csv.reader([line], dialect), [])
    except csv.Error:
        return line.split(dialect.delimiter)


def _settle(lines: list[str], dialect: type[csv.Dialect]) -> list[Sequence[str]]:
    """Rows of the sample: a row still open at its end is read line by line, not as one row."""
    rows, carried = _parse_quoted(lines, dialect, at_end=False)
    while carried:
        rows.append(_lenient(carried[0], dialect))
        more, carried = _parse_quoted(carried[1:], dialect, at_end=False)
        rows.extend(more)
    return rows


@functools.cache
def _dialect(delimiter: str) -> type[csv.Dialect]:
    class Dialect(csv.Dialect):
        pass

    Dialect.delimiter = delimiter
    Dialect.quotechar = '"'
    Dialect.doublequote = True
    Dialect.skipinitialspace = True
    Dialect.lineterminator = "\n"
    Dialect.quoting = csv.QUOTE_MINIMAL
    Dialect.strict = False
    return Dialect


def _name(cell: str) -> str:
    """A header cell as a name: without surrounding blanks or quotes (one-column files keep them)."""
    return cell.strip().strip("\"'").strip()


def _is_hint(cell: str) -> bool:
    words = _TOKEN_SPLIT.split(_name(cell).casefold())
    return any(w in _HEADER_HINTS for w in words)
