"""Personalised message text: ``#name#`` placeholders filled from the recipient file's columns.

This module owns the template language and the per-row question "what does this recipient get,
and can we send it". Pure: no I/O, imports only :mod:`bulksend.errors` and :mod:`bulksend.gsm`.

The language is ours; the legacy batch interface's wire maps each name to its positional
``#fieldK#`` (:mod:`bulksend.wire.batch`):

* A **placeholder** is ``#``, one or more ASCII letters, digits or underscores, ``#``. The text is
  scanned left to right and the first such run wins, so ``#a##b#`` is ``#a#`` then ``#b#``, and in
  ``#a#b#`` the middle ``#`` closes ``#a#`` and ``b#`` is literal. ``#1#`` is a placeholder (digits
  are name characters).
* **Every other** ``#`` **is literal**: a lone ``#`` (``Call #1 now``), ``##`` (there is no escape:
  an empty name is not a name), ``# x #`` (a space is not a name character). So a literal ``#``
  may touch a placeholder: ``##a##`` is ``#``, ``#a#``, ``#`` and renders as ``#Anne#``.
* ``#`` around letters that are not all ASCII (``#话题#``, ``#prénom#``) is literal text too: we
  take "letters" as ASCII ones, as the gateway's own field names are. But
  :meth:`Template.bind` refuses it when the header has a column of that name: the author meant a
  placeholder, and every recipient would get ``#prénom#``.

:meth:`Template.bind` maps each field to a column of the file's header row: the cell equal to the
field, else equal ignoring case and surrounding blanks, else equal once runs of anything but letters,
digits and ``_`` become ``_`` (``First Name`` answers ``#first_name#``); the leftmost cell wins
within each rule. A field without a column, or a personalised text without a header row, is an
InputError that names the field(s) and lists the columns. Binding also refuses a text that no row
could pass: literal text that ``--unicode off`` cannot carry, or literal text alone longer than
``--max-parts``.

:meth:`BoundTemplate.check` is the per-row decision, returning a :class:`RenderedRow` (the values,
the text, its :class:`~bulksend.gsm.MessageShape`) or the reason the row is refused:

* a value is the cell with surrounding whitespace stripped; the rendered text is the template with
  each placeholder replaced by its value, once (values are never re-scanned, so a value may hold
  ``#``);
* ``column 'first_name' missing``: the row has too few cells;
* ``column 'first_name' is empty``: blank after stripping (the gateway refuses an item with an
  empty placeholder with ``ERR: 101``, so we refuse it first);
* ``column 'first_name' is not valid UTF-8``: undecodable bytes in the cell (the reader keeps them
  as lone surrogates, which no gateway can carry);
* ``column 'first_name' holds a control character``: C0 controls other than LF and CR (a tab
  included), DEL, and C1 controls. Line breaks are allowed (a quoted address cell) and are GSM-7;
* ``message needs 4 parts, more than --max-parts 3``;
* the :func:`~bulksend.gsm.choose_encoding` reason when ``--unicode off`` meets a character outside
  GSM 03.38. With ``auto`` each row gets its own encoding: a name in Chinese makes that row UCS-2
  while the others stay GSM-7.

:class:`PartsStats` sums the shapes of the rows that will be sent, for the dry run's estimate
(one credit per part). Everything here pickles, to cross to the reader process.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from bulksend.errors import ConfigError, InputError
from bulksend.gsm import (
    GSM7_BASIC,
    Encoding,
    MessageShape,
    analyse,
    is_gsm7,
    part_count,
    septet_length,
)

__all__ = ["BoundTemplate", "PartsStats", "RenderedRow", "Template", "check_options"]

_UNICODE_MODES = ("auto", "on", "off")
_PLACEHOLDER = re.compile(r"#([A-Za-z0-9_]+)#")
_LOOKS_LIKE_PLACEHOLDER = re.compile(r"#(\w+)#")
_NOT_NAME = re.compile(r"[^0-9a-z_]+")
# Checked on all of a row's values at once; the rare hit is then traced to its column.
_BAD_VALUE = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\udc80-\udcff]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# ASCII that is not one septet of the default alphabet: controls, the backtick, the extension
# characters (two septets). Values without any are costed without gsm.analyse, which is 2/3 of
# the cost of a row otherwise.
_ASCII_NOT_PLAIN = re.compile(
    "[" + re.escape("".join(sorted(c for c in map(chr, range(128)) if c not in GSM7_BASIC))) + "]"
)
# The most septets one part holds, as gsm counts it, and the shapes of one-part GSM-7 texts.
_GSM7_ONE_PART = next(n for n in range(1, 1000) if part_count("a" * (n + 1), Encoding.GSM7) > 1)
_GSM7_SHAPES = tuple(MessageShape(Encoding.GSM7, n, 1) for n in range(_GSM7_ONE_PART + 1))


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed message text; build it with :meth:`parse`.

    ``fields`` are the distinct placeholder names in order of first appearance; ``render`` takes
    one value per field, in that order.
    """

    text: str
    fields: tuple[str, ...]
    # The text as a str.format pattern: literal braces doubled, each placeholder as {i} with i its
    # field's index. One C call renders a row, however many placeholders.
    pattern: str
    # Names between #s that are not placeholders for their non-ASCII letters (#prénom#, #话题#):
    # literal text, unless bind() finds a column of that name.
    lookalikes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Template:
        """Find the placeholders of ``text`` (the rules are in the module docstring)."""
        fields: dict[str, int] = {}
        pieces: list[str] = []
        at = 0
        for m in _PLACEHOLDER.finditer(text):
            pieces.append(_literal(text[at : m.start()]))
            index = fields.setdefault(m.group(1), len(fields))
            pieces.append(f"{{{index}}}")
            at = m.end()
        pieces.append(_literal(text[at:]))
        lookalikes = dict.fromkeys(
            m.group(1)
            for m in _LOOKS_LIKE_PLACEHOLDER.finditer(_PLACEHOLDER.sub("\0", text))
            if not m.group(1).isascii()
        )
        return cls(text, tuple(fields), "".join(pieces), tuple(lookalikes))

    @property
    def personalised(self) -> bool:
        """True if the text has any placeholder."""
        return bool(self.fields)

    def render(self, values: Sequence[str]) -> str:
        """The text with each placeholder replaced by its field's value (``values`` in field order)."""
        return self.pattern.format(*values)

    def bind(
        self, header: Sequence[str] | None, *, unicode: str = "auto", max_parts: int | None = None
    ) -> BoundTemplate:
        """Map each field to a column of ``header`` (None: the file has no header row).

        Raises :class:`InputError` for a field without a column, a personalised text without a
        header, or a text that no row could pass (see the module docstring).
        """
        check_options(unicode, max_parts)
        columns: list[int] = []
        if header is not None:
            for name in self.lookalikes:
                index = _column_of(name, header)
                if index is not None:
                    raise InputError(
                        f"#{name}# would be sent as it is: a placeholder name may only hold A-Z, "
                        f"a-z, 0-9 and _, so it cannot name the column {header[index].strip()!r}; "
                        "rename the column and the placeholder"
                    )
        if self.fields:
            if header is None:
                raise InputError(
                    f"the text has placeholders ({_hashed(self.fields)}) but the file has no "
                    "header row to name its columns; add a header row (e.g. phone,"
                    f"{','.join(self.fields)})"
                )
            missing = []
            for name in self.fields:
                index = _column_of(name, header)
                if index is None:
                    missing.append(name)
                else:
                    columns.append(index)
            if missing:
                which = "placeholder" if len(missing) == 1 else "placeholders"
                verb = "matches" if len(missing) == 1 else "match"
                have = ", ".join(repr(c.strip()) for c in header[:30]) or "(none)"
                more = f" and {len(header) - 30} more" if len(header) > 30 else ""
                raise InputError(
                    f"{which} {_hashed(missing)} {verb} no column of the header; its columns are: "
                    f"{have}{more}"
                )
        # Raises for unicode=off with literal text outside GSM 03.38.
        shape = analyse(self.render([""] * len(self.fields)), unicode)
        if max_parts is not None and shape.parts > max_parts:
            raise InputError(
                f"the text alone, without its placeholders' values, needs {shape.parts} parts, "
                f"more than --max-parts {max_parts}"
            )
        names = tuple(header[i].strip() for i in columns) if header is not None else ()
        return BoundTemplate(self, tuple(columns), names, unicode, max_parts)


class RenderedRow(NamedTuple):
    """What one recipient gets: the values in field order, the text, and what the text costs."""

    values: tuple[str, ...]
    text: str
    shape: MessageShape


class BoundTemplate:
    """A template whose fields are columns of one file; :meth:`check` decides each row.

    Built by :meth:`Template.bind`; read-only by convention.
    """

    __slots__ = ("_fast", "_literal_extra", "columns", "max_parts", "names", "template", "unicode")

    def __init__(
        self,
        template: Template,
        columns: tuple[int, ...],
        names: tuple[str, ...],
        unicode: str = "auto",
        max_parts: int | None = None,
    ) -> None:
        self.template = template
        self.columns = columns  # the column index of each field
        self.names = names  # the header cell of each field's column, for reasons
        self.unicode = unicode
        self.max_parts = max_parts
        literal = template.render([""] * len(template.fields))
        # The fast path of check(): with GSM-7 literal text, a row whose values hold only
        # characters of the basic table is GSM-7, and its septets are len(text) plus the literal's
        # extension characters. (ASCII is checked with a regex: faster than a set, same answer.)
        self._fast = unicode != "on" and is_gsm7(literal)
        self._literal_extra = septet_length(literal) - len(literal)

    def __repr__(self) -> str:
        return (
            f"BoundTemplate({self.template.text!r}, columns={self.columns}, "
            f"unicode={self.unicode!r}, max_parts={self.max_parts})"
        )

    @property
    def width(self) -> int:
        """How many cells a row needs for every field to have one."""
        return max(self.columns, default=-1) + 1

    def check(self, cells: Sequence[str]) -> RenderedRow | str:
        """The row's :class:`RenderedRow`, or why it cannot be sent (a ``str``)."""
        try:
            values = tuple([cells[i].strip() for i in self.columns])
        except IndexError:
            return self._missing(cells)
        if not all(values):
            return f"column {self.names[values.index('')]!r} is empty"
        text = self.template.pattern.format(*values)
        joined = "".join(values)
        if (
            self._fast
            and (
                (joined.isascii() and _ASCII_NOT_PLAIN.search(joined) is None)
                or GSM7_BASIC.issuperset(joined)
            )
            and (units := len(text) + self._literal_extra) <= _GSM7_ONE_PART
        ):
            return RenderedRow(values, text, _GSM7_SHAPES[units])
        if _BAD_VALUE.search(joined) is not None:
            return self._bad_value(values)
        try:
            shape = analyse(text, self.unicode)
        except InputError as exc:
            return exc.reason
        if self.max_parts is not None and shape.parts > self.max_parts:
            return f"message needs {shape.parts} parts, more than --max-parts {self.max_parts}"
        return RenderedRow(values, text, shape)

    def _missing(self, cells: Sequence[str]) -> str:
        width = len(cells)
        name = next(n for i, n in zip(self.columns, self.names, strict=True) if i >= width)
        return f"column {name!r} missing"

    def _bad_value(self, values: tuple[str, ...]) -> str:
        for name, value in zip(self.names, values, strict=True):
            if _UNDECODABLE.search(value) is not None:
                return f"column {name!r} is not valid UTF-8"
            if _BAD_VALUE.search(value) is not None:
                return f"column {name!r} holds a control character"
        raise AssertionError("unreachable: a bad character is in some value")


@dataclass(slots=True)
class PartsStats:
    """Parts of the messages that will be sent: the dry run's cost estimate (a credit a part)."""

    messages: int = 0
    min_parts: int = 0  # 0 until a message is added
    max_parts: int = 0
    total_parts: int = 0
    by_encoding: Counter[str] = field(default_factory=Counter)  # messages per Encoding value

    @property
    def credits(self) -> int:
        """The estimate: one credit per part (the account's price list may say otherwise)."""
        return self.total_parts

    def add(self, shape: MessageShape) -> None:
        parts = shape.parts
        if not self.messages or parts < self.min_parts:
            self.min_parts = parts
        if parts > self.max_parts:
            self.max_parts = parts
        self.messages += 1
        self.total_parts += parts
        self.by_encoding[shape.encoding._value_] += 1  # not .value: a property, 4x slower

    def add_all(self, shapes: Sequence[MessageShape]) -> None:
        """:meth:`add` for many at once (a block's worth: about 4x cheaper a shape)."""
        if not shapes:
            return
        parts = [shape.parts for shape in shapes]
        low, high = min(parts), max(parts)
        if not self.messages or low < self.min_parts:
            self.min_parts = low
        if high > self.max_parts:
            self.max_parts = high
        self.messages += len(parts)
        self.total_parts += sum(parts)
        self.by_encoding.update([shape.encoding._value_ for shape in shapes])

    def merge(self, other: PartsStats) -> None:
        """Add ``other``'s counts to these (e.g. the totals of two files)."""
        if other.messages:
            if not self.messages or other.min_parts < self.min_parts:
                self.min_parts = other.min_parts
            self.max_parts = max(self.max_parts, other.max_parts)
        self.messages += other.messages
        self.total_parts += other.total_parts
        self.by_encoding.update(other.by_encoding)


def check_options(unicode: str, max_parts: int | None) -> None:
    """Raise :class:`ConfigError` for a ``--unicode`` mode or ``--max-parts`` that cannot be."""
    if unicode not in _UNICODE_MODES:
        raise ConfigError(f"--unicode must be one of {', '.join(_UNICODE_MODES)}; got {unicode!r}")
    if max_parts is not None and max_parts < 1:
        raise ConfigError(f"--max-parts must be at least 1, not {max_parts}")


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _hashed(names: Iterable[str]) -> str:
    return ", ".join(f"#{n}#" for n in names)


def _column_of(name: str, header: Sequence[str]) -> int | None:
    """The header cell ``name`` refers to: exact, then ignoring case and blanks, then loosely."""
    for i, cell in enumerate(header):
        if cell == name:
            return i
    folded = name.casefold()
    for i, cell in enumerate(header):
        if cell.strip().casefold() == folded:
            return i
    for i, cell in enumerate(header):
        if _NOT_NAME.sub("_", cell.strip().casefold()).strip("_") == folded:
            return i
    return None
