"""GSM 03.38 alphabet, SMS part counting and the UCS-2 hex the gateway wants with ``unicode=1``.

This module owns every question of the form "how does this text travel and what does it cost":

* :data:`GSM7_BASIC` is the 3GPP TS 23.038 default alphabet (capital ``Ç`` at 0x09, not ``ç``)
  minus the escape code 0x1B, so 127 characters; :data:`GSM7_EXTENSION` holds the ten characters
  reached through that escape (``^ { } \\ [ ~ ] | €`` and form feed), each costing two septets.
  Anything else (the backtick, ``ç``, Greek look-alikes of Latin capitals, emoji) is not GSM-7.
* :func:`choose_encoding` picks GSM-7 or UCS-2 for ``--unicode auto|on|off``. ``off`` with text
  that needs UCS-2 is an :class:`~bulksend.errors.InputError` naming the first offending
  character, and so is UCS-2 text holding a lone surrogate (what undecodable bytes in argv become),
  which no gateway can carry. Counting never raises: :func:`septet_length` counts a non-GSM
  character as the one ``?`` a gateway would put in its place, :func:`ucs2_length` counts a lone
  surrogate as one unit.
* :func:`part_count` is what the handset sees: one part up to 160 septets / 70 UTF-16 units, then
  153 / 67 per part, filled greedily; a part never ends between the two septets of an extension
  character or the two units of a surrogate pair (so 152 plain + ``€`` + 152 plain is three parts,
  not ``ceil(306 / 153) = 2``). An empty text is one part. Appending a character never lowers the
  count.
* :func:`wire_text` / :func:`encode_ucs2_hex` give the ``text`` parameter: the text itself for
  GSM-7, UTF-16BE as uppercase hex for UCS-2 (``"Hi"`` -> ``"00480069"``). :func:`decode_ucs2_hex`
  is the exact inverse and raises :class:`ValueError` saying what is wrong with malformed hex.
* :func:`analyse` bundles encoding, units and parts into a :class:`MessageShape` for the sender's
  ``concat`` and the dry run's credit estimate.

Pure: no I/O, no state beyond tables built at import, O(len(text)) everywhere, with the common
cases (no extension characters, no emoji) done in C so the simulator can count parts per request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from bulksend.errors import ConfigError, InputError

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "Encoding",
    "MessageShape",
    "analyse",
    "auto_parts",
    "choose_encoding",
    "decode_ucs2_hex",
    "encode_ucs2_hex",
    "is_gsm7",
    "part_count",
    "septet_length",
    "ucs2_length",
    "wire_text",
]

_ESC = "\x1b"

# The default alphabet in code order, 16 per row, exactly as 3GPP TS 23.038 6.2.1 prints it.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_BASIC_TABLE) == 128

GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {_ESC}
"""The 127 characters of the GSM 03.38 default alphabet (escape 0x1B is not a character)."""

GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")
"""The extension-table characters: each is sent as ESC + code, so it costs two septets."""

_GSM7_ALL: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION
_EXTENSION_RE = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_NOT_GSM7_RE = re.compile("[^" + re.escape("".join(sorted(_GSM7_ALL))) + "]")
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")  # two UTF-16 units each
# ASCII that is not one septet of the default alphabet (controls, the backtick, the extension
# characters): text without any is GSM-7 at one septet a character.
_ASCII_NOT_PLAIN_RE = re.compile(
    "[" + re.escape("".join(c for c in map(chr, range(128)) if c not in GSM7_BASIC)) + "]"
)
_NOT_HEX_RE = re.compile("[^0-9A-Fa-f]")

_GSM7_SINGLE_MAX, _GSM7_PART = 160, 153
_UCS2_SINGLE_MAX, _UCS2_PART = 70, 67
_UNICODE_MODES = ("auto", "on", "off")


class Encoding(StrEnum):
    """How the text is carried: 7-bit default alphabet, or UTF-16 hex with ``unicode=1``."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"
    BINARY = "binary"  # udh + data as hex octets (no text)


@dataclass(frozen=True, slots=True)
class MessageShape:
    """What one text costs: its encoding, its length in that encoding's units, and its parts."""

    encoding: Encoding
    units: int  # septets (GSM7) or UTF-16 code units (UCS2)
    parts: int

    @property
    def concat(self) -> int:
        """The value for the gateway's ``concat`` parameter."""
        return self.parts


def is_gsm7(text: str) -> bool:
    """True if every character is in the default alphabet or its extension table."""
    return _GSM7_ALL.issuperset(text)


def septet_length(text: str) -> int:
    """GSM-7 septets: extension characters count 2, everything else (even non-GSM) counts 1."""
    return len(text) + len(_EXTENSION_RE.findall(text))


def ucs2_length(text: str) -> int:
    """UTF-16 code units: characters outside the BMP count 2, a lone surrogate counts 1."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def auto_parts(text: str) -> int:
    """Parts of ``text`` in the encoding ``--unicode auto`` picks (GSM-7 when it can carry it):
    ``part_count(text, choose_encoding(text))`` with a C-speed path for plain ASCII text."""
    if text.isascii() and _ASCII_NOT_PLAIN_RE.search(text) is None:
        n = len(text)
        return 1 if n <= _GSM7_SINGLE_MAX else -(-n // _GSM7_PART)
    return part_count(text, Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2)


def part_count(text: str, encoding: Encoding) -> int:
    """How many SMS parts ``text`` takes in ``encoding`` (the rules are in the module docstring)."""
    if encoding == Encoding.GSM7:
        return _parts(text, septet_length(text), encoding)
    return _parts(text, ucs2_length(text), encoding)


def _parts(text: str, units: int, encoding: Encoding) -> int:
    if encoding == Encoding.GSM7:
        single_max, per_part, double_re = _GSM7_SINGLE_MAX, _GSM7_PART, _EXTENSION_RE
    else:
        single_max, per_part, double_re = _UCS2_SINGLE_MAX, _UCS2_PART, _ASTRAL_RE
    if units <= single_max:
        return 1
    if units == len(text):  # no two-unit characters, so nothing can straddle a boundary
        return math.ceil(units / per_part)
    # Greedy fill, jumping a whole part at a time: a part ends one unit early exactly when a
    # two-unit character would start in its last slot. Unit offset of the k-th such character
    # is its string index plus the k extra units before it.
    double_starts = {m.start() + k for k, m in enumerate(double_re.finditer(text))}
    parts, start = 1, 0
    while units - start > per_part:
        end = start + per_part
        start = end - 1 if end - 1 in double_starts else end
        parts += 1
    return parts


def choose_encoding(text: str, unicode: str = "auto") -> Encoding:
    """The encoding for ``--unicode`` ``auto`` (GSM-7 if it can), ``on`` (UCS-2), ``off`` (GSM-7).

    Raises :class:`InputError` when ``off`` meets a non-GSM character or UCS-2 meets a lone
    surrogate, and :class:`ConfigError` for any other ``unicode`` value.
    """
    if unicode not in _UNICODE_MODES:
        raise ConfigError(f"unicode must be one of auto, on, off; got {unicode!r}")
    if unicode != "on" and is_gsm7(text):
        return Encoding.GSM7
    if unicode == "off":
        offending = _NOT_GSM7_RE.search(text)
        assert offending is not None
        example = offending.group()
        raise InputError(
            f"text contains characters outside the GSM 03.38 alphabet (e.g. {example!r}); "
            "use --unicode auto or on"
        )
    _check_no_lone_surrogate(text)
    return Encoding.UCS2


def _check_no_lone_surrogate(text: str) -> None:
    try:
        text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"text contains a lone surrogate U+{ord(text[exc.start]):04X} at character "
            f"{exc.start}, which is not valid Unicode (undecodable bytes?); fix the text's encoding"
        ) from None


def analyse(text: str, unicode: str = "auto") -> MessageShape:
    """Encoding, length and parts of ``text``; raises like :func:`choose_encoding`."""
    encoding = choose_encoding(text, unicode)
    units = septet_length(text) if encoding == Encoding.GSM7 else ucs2_length(text)
    return MessageShape(encoding, units, _parts(text, units, encoding))


def encode_ucs2_hex(text: str) -> str:
    """UTF-16BE as uppercase hex (``"Hi"`` -> ``"00480069"``); a lone surrogate is an InputError."""
    _check_no_lone_surrogate(text)
    return text.encode("utf-16-be").hex().upper()


def decode_ucs2_hex(hex_text: str) -> str:
    """Inverse of :func:`encode_ucs2_hex` (hex digits of either case); ValueError if malformed."""
    bad = _NOT_HEX_RE.search(hex_text)
    if bad is not None:
        raise ValueError(f"UCS-2 hex has a non-hex character {bad.group()!r} at {bad.start()}")
    if len(hex_text) % 2:
        raise ValueError(f"UCS-2 hex has an odd number of digits ({len(hex_text)})")
    if len(hex_text) % 4:
        raise ValueError(
            f"UCS-2 hex length {len(hex_text)} is not a multiple of 4 (one UTF-16 unit is 4 digits)"
        )
    data = bytes.fromhex(hex_text)
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        unit = data[exc.start : exc.start + 2].hex().upper()
        raise ValueError(
            f"UCS-2 hex has a lone surrogate {unit} at unit {exc.start // 2}"
        ) from None


BINARY_OCTETS = 140
"""Octets in one SMS: a binary message's UDH and data together must fit."""


def parse_hex(value: str, what: str) -> bytes:
    """``"0B05 04"`` -> bytes (spaces and a ``0x`` prefix allowed); InputError naming ``what``."""
    text = value.strip().replace(" ", "")
    if text[:2].lower() == "0x":
        text = text[2:]
    bad = _NOT_HEX_RE.search(text)
    if bad is not None:
        raise InputError(f"{what} is not hex: {bad.group()!r} at position {bad.start() + 1}")
    if len(text) % 2:
        raise InputError(f"{what} has an odd number of hex digits ({len(text)})")
    return bytes.fromhex(text)


def analyse_binary(udh: bytes, data: bytes) -> MessageShape:
    """A binary message is one SMS of at most 140 octets, UDH included (InputError past that)."""
    octets = len(udh) + len(data)
    if not data:
        raise InputError("the binary message (--data) is empty")
    if udh and udh[0] != len(udh) - 1:
        raise InputError(
            f"the UDH's first octet (its length) says {udh[0]} but {len(udh) - 1} octets follow"
        )
    if octets > BINARY_OCTETS:
        raise InputError(
            f"the binary message is {octets} octets (UDH {len(udh)} + data {len(data)}), more "
            f"than the {BINARY_OCTETS} of one SMS; split it with a concatenation UDH per part"
        )
    return MessageShape(Encoding.BINARY, octets, 1)


def wire_text(text: str, encoding: Encoding) -> str:
    """The ``text`` parameter: ``text`` itself for GSM-7, :func:`encode_ucs2_hex` for UCS-2."""
    return text if encoding == Encoding.GSM7 else encode_ucs2_hex(text)
