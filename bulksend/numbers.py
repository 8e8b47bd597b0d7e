"""Normalise and validate MSISDNs: the text of one spreadsheet cell in, the ``to`` digits out.

This module owns the question "which number does this cell mean, if any?". It is pure (no I/O) and
sits on the hot path, called once per input row. :func:`normalise` returns either the number in the
form Clickatell's ``to`` parameter wants (international digits, no ``+``, no ``00``) or the
:class:`Reason` it was refused. It never raises, and it never guesses digits: a cell that lost
information (Excel's scientific notation, a float's ``.0``, a national number that lost its leading
0) is refused with a reason that says so.

The rules, in the order they apply:

1. Surrounding whitespace, quotes (``"`` ``'``, typographic quotes, Excel's leading ``'``) and
   invisible marks (BOM, zero-width and bidi marks that come with numbers copied from phones and web
   pages) are stripped. Nothing left: ``EMPTY``.
2. Excel damage is detected before anything else: scientific notation (``2.7821234567E+11``,
   ``2,78E+11``, ``2.78e11``), a formula (``=+2782...``, ``="2782..."``, ``+=...``) and a float's
   decimal part (``27821234567.0``).
3. ``+`` at the start (also ``(+27) ...``), and spaces (incl. NBSP and thin spaces), dashes, dots,
   parentheses and ``/`` anywhere are dropped. Anything else that is not an ASCII digit (letters,
   a second ``+``, commas, NUL, Arabic-Indic or full-width digits): ``BAD_CHARS``.
4. A number written with ``+`` or ``00`` is international. ``+44 (0)20 ...`` drops the ``(0)``.
5. A number written without ``+``/``00`` ("bare"):

   * without ``default_country`` it must already be international; a leading ``0`` gives
     ``NATIONAL_WITHOUT_COUNTRY``.
   * with ``default_country`` it is *national* when it starts with ``0`` (``082 123 4567`` with ZA),
     when it is shorter than 8 digits (too short to be international), or when the region writes
     national numbers without a ``0`` trunk prefix (NANP, IT, ES, MX, DK, ...) and the digits are
     exactly one of the region's mobile numbers (``2025550123`` with US, ``3123456789`` with IT),
     or are the region's own non-0 trunk prefix plus a mobile number (``89123456789`` with RU).
     National numbers are converted with libphonenumber's metadata: trunk prefix stripped and a
     mobile pattern matched directly, anything else through ``phonenumbers.parse`` (landlines,
     Italy's kept 0, the US ``011`` international prefix), which must give a possible number
     (``INVALID_FOR_REGION`` otherwise).
   * every other bare number is international. In a region whose national numbers start with ``0``,
     a bare number that is exactly one of the region's mobile numbers, or is impossible
     internationally but shaped like a national number, is refused as ``EXCEL_LOST_ZERO``: it is
     most likely ``0821234567`` after Excel dropped the 0, and reading it as international would
     text a stranger abroad (``821234567`` reads as +82, Korea).
6. The result must have 8 to 15 digits, start with a real country calling code, and have a length
   the calling code's numbering plan allows (libphonenumber's "possible" lengths, checked from a
   table built lazily per prefix: no parsing). 0 is never a calling code. With ``strict`` it must
   also pass ``phonenumbers.is_valid_number`` (full numbering-plan validation, ~30 µs a number).

Speed: a cell that is already clean international digits costs ``isdigit``, ``isascii``, one dict
lookup and one set lookup: ~0.35 µs here. Separators and ``+`` cost ~1-1.5 µs, a
``default_country`` adds a regex match on bare numbers; libphonenumber itself is only called for
national numbers the metadata patterns cannot settle, and in ``strict`` mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata

from bulksend.errors import InputError

__all__ = ["NumberPolicy", "Reason", "normalise"]


class Reason(StrEnum):
    """Why a cell is not a number we will send to. The values are written to the rejects file."""

    EMPTY = "empty"
    EXCEL_SCIENTIFIC = (
        "Excel damage: scientific notation (e.g. 2.78E+11), cannot recover the digits"
    )
    EXCEL_FORMULA = "Excel damage: formula prefix (=, +=, ...)"
    EXCEL_DECIMAL = "Excel damage: decimal part (e.g. 27821234567.0), store the column as text"
    EXCEL_LOST_ZERO = (
        "Excel damage: national number without its leading 0? (e.g. 821234567), write 0 or +"
    )
    BAD_CHARS = "contains characters that are not digits or separators"
    TOO_SHORT = "too short (fewer than 8 digits)"
    TOO_LONG = "too long (more than 15 digits)"
    NO_COUNTRY_CODE = "no valid country calling code"
    WRONG_LENGTH = "wrong length for its country calling code"
    NATIONAL_WITHOUT_COUNTRY = "national number (leading 0) and no --default-country"
    INVALID_FOR_REGION = "not a possible national number for --default-country"
    NOT_VALID_NUMBER = "not a valid number in its country's numbering plan (--strict)"


# ---------------------------------------------------------------------------------------------
# Tables built once at import.

_MIN_DIGITS = 8
_MAX_DIGITS = 15

_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SPACES = " \t\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212"
_QUOTES = "\"'\u2018\u2019\u201c\u201d\u00ab\u00bb`"
_STRIP = _INVISIBLE + _SPACES + _QUOTES + "\r\n\x0b\x0c"
_DELETE = str.maketrans("", "", _INVISIBLE + _SPACES + _DASHES + ".()/")

_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+")
_DECIMAL = re.compile(r"\d+[.,]0+")


def _calling_codes_by_prefix() -> dict[str, str]:
    """Every 3-digit string that starts with a real calling code -> that code ("278" -> "27")."""
    codes = {str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    table: dict[str, str] = {}
    for n in range(100, 1000):
        prefix = str(n)
        for size in (1, 2, 3):
            if prefix[:size] in codes:
                table[prefix] = prefix[:size]
                break
    return table


_CC_OF_PREFIX = _calling_codes_by_prefix()


_LENGTHS_BY_PREFIX: dict[str, frozenset[int]] = {}


def _lengths(prefix: str) -> frozenset[int] | None:
    """Possible total digit counts (code + national number, within 8..15) for a 3-digit prefix.

    ``None`` when the prefix starts with no calling code. Filled lazily into
    ``_LENGTHS_BY_PREFIX``: loading every region's metadata at import costs ~0.2 s of start-up.
    """
    cached = _LENGTHS_BY_PREFIX.get(prefix)
    if cached is not None:
        return cached
    cc = _CC_OF_PREFIX.get(prefix)
    if cc is None:
        return None
    national: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(cc), ()):
        if region == "001":
            meta = PhoneMetadata.metadata_for_nongeo_region(int(cc))
        else:
            meta = PhoneMetadata.metadata_for_region(region)
        if meta is not None and meta.general_desc is not None:
            national.update(meta.general_desc.possible_length or ())
    totals = {len(cc) + n for n in national} or set(range(_MIN_DIGITS, _MAX_DIGITS + 1))
    lengths = frozenset(t for t in totals if _MIN_DIGITS <= t <= _MAX_DIGITS)
    _LENGTHS_BY_PREFIX[prefix] = lengths
    return lengths


_Test = Callable[[str], bool]


class _Region(NamedTuple):
    """What the bare-number rules need to know about ``default_country``, precomputed."""

    code: str  # "ZA"
    cc: str  # "27"
    trunk: str  # national (trunk) prefix: "0", "1" (NANP), "8" (RU), "" (IT, ES)
    zero_trunk: bool  # national numbers are written with a leading 0
    mobile: _Test  # is this exactly one of the region's mobile national numbers?
    general: _Test  # is this shaped like any national number of the region?


def _matcher(desc: Any) -> _Test:
    """A test for one number type of the region metadata; the length check spares most regexes."""
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return lambda _digits: False
    fullmatch = re.compile(pattern).fullmatch
    lengths = frozenset(getattr(desc, "possible_length", None) or ())
    if not lengths:
        return lambda digits: fullmatch(digits) is not None
    return lambda digits: len(digits) in lengths and fullmatch(digits) is not None


def _region(code: str) -> _Region:
    meta = PhoneMetadata.metadata_for_region(code)
    if meta is None:  # not for a region in SUPPORTED_REGIONS
        raise InputError(f"no numbering plan for --default-country {code!r}")
    trunk = meta.national_prefix or ""
    return _Region(
        code=code,
        cc=str(meta.country_code),
        trunk=trunk,
        zero_trunk=trunk.startswith("0"),
        mobile=_matcher(meta.mobile),
        general=_matcher(meta.general_desc),
    )


_REGION_ALIASES = {"UK": "GB"}


@dataclass(frozen=True, slots=True)
class NumberPolicy:
    """How to read numbers: the ``--default-country`` and ``--strict`` settings, validated once.

    ``default_country`` is an ISO 3166 region ("ZA", "gb"; "UK" is accepted for GB). An unknown
    region raises :class:`InputError` at construction, so a typo fails before any row is read.
    """

    default_country: str | None = None
    strict: bool = False
    _region: _Region | None = field(init=False, repr=False, compare=False, default=None)
    _plain: bool = field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        region = None
        if self.default_country is not None:
            code = self.default_country.strip().upper()
            code = _REGION_ALIASES.get(code, code)
            if code not in phonenumbers.SUPPORTED_REGIONS:
                raise InputError(f"unknown --default-country {self.default_country!r}")
            object.__setattr__(self, "default_country", code)
            region = _region(code)
        object.__setattr__(self, "_region", region)
        object.__setattr__(self, "_plain", region is None and not self.strict)


def normalise(raw: str, policy: NumberPolicy) -> str | Reason:
    """Return ``raw`` as international digits (``"27821234567"``), or the :class:`Reason` it isn't one.

    Never raises. :class:`Reason` is a ``str`` too: test the result with ``isinstance(r, Reason)``
    (or ``type(r) is Reason``), not ``isinstance(r, str)``.
    """
    if raw.isdigit() and raw.isascii():
        if policy._plain:
            lengths = _LENGTHS_BY_PREFIX.get(raw[:3])
            if lengths is not None and len(raw) in lengths:
                return raw
        return _bare(raw, policy)
    if raw[:1] == "+" and policy._plain:
        # "+27821234567", the most common shape of a clean international number.
        digits = raw[1:]
        if digits.isdigit() and digits.isascii() and digits[:1] != "0":
            lengths = _LENGTHS_BY_PREFIX.get(digits[:3])
            if lengths is not None and len(digits) in lengths:
                return digits
    return _messy(raw, policy)


def _messy(raw: str, policy: NumberPolicy) -> str | Reason:
    """Everything that is not already bare ASCII digits: strip, detect damage, drop separators."""
    s = raw.strip(_STRIP)
    if not s:
        return Reason.EMPTY
    if ("e" in s or "E" in s) and _SCIENTIFIC.fullmatch(s):
        return Reason.EXCEL_SCIENTIFIC
    first = s[0]
    if first == "=" or (first in "+-@" and s[1:2] == "="):
        return Reason.EXCEL_FORMULA
    if ("." in s or "," in s) and _DECIMAL.fullmatch(s):
        return Reason.EXCEL_DECIMAL
    plus = first == "+" or (first == "(" and s.lstrip("( ").startswith("+"))  # "(+27) 82 ..."
    if plus:
        s = s.replace("+", "", 1)
    digits = _drop_separators(s)
    if not digits:
        return Reason.EMPTY
    if not (digits.isdigit() and digits.isascii()):
        return Reason.BAD_CHARS
    if "(0)" in s and (plus or digits.startswith("00")):
        # "+44 (0)20 7946 0000": the trunk 0 in parentheses is not dialled from abroad.
        digits = _drop_separators(s.replace("(0)", "", 1))
    if plus:
        return _international(digits, policy)
    return _bare(digits, policy)


def _drop_separators(s: str) -> str:
    """Remove separators; plain spaces and dashes first because ``translate`` costs ~1 µs."""
    if " " in s:
        s = s.replace(" ", "")
    if "-" in s:
        s = s.replace("-", "")
    if s.isdigit():
        return s
    return s.translate(_DELETE)


def _international(digits: str, policy: NumberPolicy) -> str | Reason:
    """Check digits that claim to be international: length, calling code, plan length, --strict."""
    n = len(digits)
    if n < _MIN_DIGITS:
        return Reason.TOO_SHORT
    if n > _MAX_DIGITS:
        return Reason.TOO_LONG
    prefix = digits[:3]
    lengths = _LENGTHS_BY_PREFIX.get(prefix) or _lengths(prefix)
    if lengths is None:
        return Reason.NO_COUNTRY_CODE
    if n not in lengths:
        return Reason.WRONG_LENGTH
    if policy.strict and not _valid(digits):
        return Reason.NOT_VALID_NUMBER
    return digits


def _bare(digits: str, policy: NumberPolicy) -> str | Reason:
    """Digits written without ``+``/``00``: international, or national under ``default_country``."""
    if digits.startswith("00"):
        return _international(digits[2:], policy)
    region = policy._region
    if region is None:
        if digits[0] == "0":
            return Reason.NATIONAL_WITHOUT_COUNTRY
        return _international(digits, policy)
    if digits[0] == "0":
        trunk = region.trunk
        if region.zero_trunk and digits.startswith(trunk) and region.mobile(digits[len(trunk) :]):
            return _international(region.cc + digits[len(trunk) :], policy)
        return _national(digits, policy, region)
    if len(digits) < _MIN_DIGITS:
        return _national(digits, policy, region)
    if not region.zero_trunk:
        if region.mobile(digits):
            return _international(region.cc + digits, policy)
        trunk = region.trunk
        national = digits[len(trunk) :]
        if trunk and trunk != region.cc and digits.startswith(trunk) and region.mobile(national):
            return _international(region.cc + national, policy)  # RU "8 912 345 67 89"
        return _international(digits, policy)
    if region.mobile(digits):
        return Reason.EXCEL_LOST_ZERO
    result = _international(digits, policy)
    if result in _IMPOSSIBLE and region.general(digits):
        return Reason.EXCEL_LOST_ZERO
    return result


_IMPOSSIBLE = frozenset({Reason.NO_COUNTRY_CODE, Reason.WRONG_LENGTH, Reason.TOO_LONG})


def _national(digits: str, policy: NumberPolicy, region: _Region) -> str | Reason:
    """Convert a national number with libphonenumber (trunk prefixes, IDD like US 011, IT's 0)."""
    try:
        number = phonenumbers.parse(digits, region.code)
    except phonenumbers.NumberParseException:
        return Reason.INVALID_FOR_REGION
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    if len(e164) < _MIN_DIGITS:
        return Reason.TOO_SHORT
    if len(e164) > _MAX_DIGITS:
        return Reason.TOO_LONG
    if policy.strict:
        return e164 if phonenumbers.is_valid_number(number) else Reason.NOT_VALID_NUMBER
    if not phonenumbers.is_possible_number(number):
        return Reason.INVALID_FOR_REGION
    return _international(e164, policy)


def _valid(digits: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse("+" + digits, None)))
    except phonenumbers.NumberParseException:
        return False
