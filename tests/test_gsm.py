"""GSM 03.38 tables, part counting and UCS-2 hex: the rules in bulksend.gsm's docstring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.errors import ConfigError, InputError
from bulksend.gsm import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Encoding,
    MessageShape,
    analyse,
    auto_parts,
    choose_encoding,
    decode_ucs2_hex,
    encode_ucs2_hex,
    is_gsm7,
    part_count,
    septet_length,
    ucs2_length,
    wire_text,
)

GSM7 = Encoding.GSM7
UCS2 = Encoding.UCS2
EMOJI = "😀"  # U+1F600: outside the BMP, a surrogate pair in UTF-16
EXTENSION_CHARS = sorted(GSM7_EXTENSION)

# Characters from every cost class: GSM basic, GSM extension, BMP non-GSM, astral.
mixed_char = st.sampled_from(["a", "@", "\n", "€", "^", "\f", "ç", "`", "Ж", "中", EMOJI, "🇿"])
mixed_text = st.lists(mixed_char, max_size=500).map("".join)
any_text = st.one_of(mixed_text, st.text(max_size=400))


def reference_parts(text: str, encoding: Encoding) -> int:
    """Count parts by literally filling SMS parts one character at a time."""
    if encoding is GSM7:
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single_max, per_part = 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single_max, per_part = 70, 67
    if sum(costs) <= single_max:
        return 1
    parts: list[int] = [0]
    for cost in costs:
        if parts[-1] + cost > per_part:
            parts.append(0)
        parts[-1] += cost
    return len(parts)


# --- the alphabet ---------------------------------------------------------------------------


def test_basic_alphabet_is_the_127_characters_of_3gpp_23_038_without_escape() -> None:
    assert len(GSM7_BASIC) == 127
    assert "\x1b" not in GSM7_BASIC
    expected = (
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
    assert frozenset(expected) == GSM7_BASIC


def test_greek_capitals_in_the_basic_table_are_the_greek_code_points() -> None:
    greek = {"Δ": 0x394, "Φ": 0x3A6, "Γ": 0x393, "Λ": 0x39B, "Ω": 0x3A9}
    greek |= {"Π": 0x3A0, "Ψ": 0x3A8, "Σ": 0x3A3, "Θ": 0x398, "Ξ": 0x39E}
    for char, code_point in greek.items():
        assert ord(char) == code_point
        assert char in GSM7_BASIC
    assert "\N{OHM SIGN}" not in GSM7_BASIC
    assert "\N{GREEK CAPITAL LETTER ALPHA}" not in GSM7_BASIC  # looks like A, is not GSM-7


def test_extension_table_is_the_ten_escaped_characters() -> None:
    assert frozenset("^{}\\[~]|€\f") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize("char", EXTENSION_CHARS)
def test_every_extension_char_counts_two_septets(char: str) -> None:
    assert is_gsm7(char)
    assert septet_length(char) == 2
    assert septet_length("a" + char + "b") == 4


def test_euro_sign_is_an_extension_char_not_basic() -> None:
    assert "€" in GSM7_EXTENSION
    assert "€" not in GSM7_BASIC
    assert septet_length("5€") == 3


@pytest.mark.parametrize("char", ["@", "£", "$", "¥", "¤", "§", "¡", "¿", "_", "Ç", "ß", "à", "\n"])
def test_basic_table_spot_checks_count_one_septet(char: str) -> None:
    assert char in GSM7_BASIC
    assert septet_length(char) == 1


def test_capital_c_cedilla_is_gsm7_but_small_c_cedilla_is_not() -> None:
    assert is_gsm7("Ç")
    assert not is_gsm7("ç")
    assert choose_encoding("Ça va") is GSM7
    assert choose_encoding("garçon") is UCS2


def test_backtick_is_not_gsm7() -> None:
    assert not is_gsm7("`")
    assert choose_encoding("`code`") is UCS2


@pytest.mark.parametrize("char", ["`", "ç", "Ж", "\t", "\x1b", EMOJI])
def test_non_gsm_chars_count_one_septet_as_the_gateways_question_mark(char: str) -> None:
    assert not is_gsm7(char)
    assert septet_length(char) == 1


# --- GSM-7 parts ----------------------------------------------------------------------------


def test_empty_text_is_one_part() -> None:
    assert part_count("", GSM7) == 1
    assert part_count("", UCS2) == 1


def test_160_gsm_chars_fit_one_part() -> None:
    assert part_count("a" * 160, GSM7) == 1


def test_161_gsm_chars_need_two_parts() -> None:
    assert part_count("a" * 161, GSM7) == 2


def test_306_gsm_chars_fit_two_parts_and_307_need_three() -> None:
    assert part_count("a" * 306, GSM7) == 2
    assert part_count("a" * 307, GSM7) == 3


def test_extension_chars_count_double_toward_the_single_part_limit() -> None:
    assert part_count("a" * 158 + "€", GSM7) == 1  # 160 septets
    assert part_count("a" * 159 + "€", GSM7) == 2  # 161 septets


def test_extension_char_is_not_split_across_the_153_boundary() -> None:
    text = "a" * 152 + "€" + "a" * 152  # 306 septets, but € cannot take septets 153-154
    assert septet_length(text) == 306
    assert part_count(text, GSM7) == 3


def test_extension_char_filling_the_last_two_septets_of_a_part_stays_in_it() -> None:
    text = "a" * 151 + "€" + "a" * 153  # part 1: 151 + 2 = 153 exactly
    assert septet_length(text) == 306
    assert part_count(text, GSM7) == 2


def test_text_of_only_extension_chars_wastes_one_septet_per_part() -> None:
    # 76 ext chars = 152 septets per part, so 153 of them need 3 parts despite 306 septets.
    assert part_count("€" * 153, GSM7) == 3
    assert part_count("€" * 152, GSM7) == 2


# --- UCS-2 parts ----------------------------------------------------------------------------


def test_70_ucs2_units_fit_one_part() -> None:
    assert part_count("Ж" * 70, UCS2) == 1


def test_71_ucs2_units_need_two_parts() -> None:
    assert part_count("Ж" * 71, UCS2) == 2


def test_134_ucs2_units_fit_two_parts_and_135_need_three() -> None:
    assert part_count("Ж" * 134, UCS2) == 2
    assert part_count("Ж" * 135, UCS2) == 3


def test_emoji_count_two_utf16_units() -> None:
    assert ucs2_length(EMOJI) == 2
    assert ucs2_length("Hi " + EMOJI) == 5
    assert part_count("Ж" * 68 + EMOJI, UCS2) == 1  # 70 units
    assert part_count("Ж" * 69 + EMOJI, UCS2) == 2  # 71 units


def test_emoji_is_never_split_across_the_67_boundary() -> None:
    text = "Ж" * 66 + EMOJI + "Ж" * 66  # 134 units, but the pair cannot take units 67-68
    assert ucs2_length(text) == 134
    assert part_count(text, UCS2) == 3


def test_lone_surrogate_counts_one_unit_and_does_not_raise() -> None:
    assert ucs2_length("a\udcff") == 2
    assert part_count("\udcff" * 71, UCS2) == 2


# --- choosing the encoding ------------------------------------------------------------------


def test_auto_picks_gsm7_for_gsm_text_including_extension_chars() -> None:
    assert choose_encoding("Price: 5€ {net}") is GSM7
    assert choose_encoding("") is GSM7


def test_auto_picks_ucs2_for_anything_outside_gsm7() -> None:
    assert choose_encoding("Привет") is UCS2
    assert choose_encoding("ok " + EMOJI) is UCS2


def test_on_always_picks_ucs2() -> None:
    assert choose_encoding("plain ascii", "on") is UCS2


def test_off_picks_gsm7_for_gsm_text() -> None:
    assert choose_encoding("plain [ascii]", "off") is GSM7


def test_off_refuses_non_gsm_text_naming_the_first_offending_char() -> None:
    with pytest.raises(InputError) as caught:
        choose_encoding("ok ç then Ж", "off")
    assert str(caught.value) == (
        "text contains characters outside the GSM 03.38 alphabet (e.g. 'ç'); "
        "use --unicode auto or on"
    )


def test_unknown_unicode_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auto, on, off"):
        choose_encoding("hi", "yes")


def test_ucs2_text_with_a_lone_surrogate_is_refused_before_sending() -> None:
    with pytest.raises(InputError, match=r"lone surrogate U\+DCFF at character 2"):
        choose_encoding("ab\udcff")
    with pytest.raises(InputError):
        encode_ucs2_hex("\ud83d")


# --- analyse and the wire text --------------------------------------------------------------


def test_analyse_reports_encoding_units_and_parts() -> None:
    assert analyse("a" * 152 + "€" + "a" * 152) == MessageShape(GSM7, 306, 3)
    assert analyse("Hi " + EMOJI) == MessageShape(UCS2, 5, 1)
    assert analyse("Hi", "on") == MessageShape(UCS2, 2, 1)


def test_concat_is_the_part_count() -> None:
    assert analyse("a" * 200).concat == 2
    assert MessageShape(UCS2, 140, 3).concat == 3


def test_wire_text_is_the_text_itself_for_gsm7() -> None:
    assert wire_text("Price: 5€", GSM7) == "Price: 5€"


def test_wire_text_is_uppercase_utf16be_hex_for_ucs2() -> None:
    assert wire_text("Hi", UCS2) == "00480069"
    assert encode_ucs2_hex("é€") == "00E920AC"


def test_emoji_encodes_as_a_surrogate_pair() -> None:
    assert encode_ucs2_hex(EMOJI) == "D83DDE00"
    assert decode_ucs2_hex("D83DDE00") == EMOJI


def test_decode_accepts_lowercase_hex_and_empty_text() -> None:
    assert decode_ucs2_hex("00480069") == "Hi"
    assert decode_ucs2_hex("d83dde00") == EMOJI
    assert decode_ucs2_hex("") == ""


@pytest.mark.parametrize(
    ("hex_text", "reason"),
    [
        ("004", "odd number of digits"),
        ("00480", "odd number of digits"),
        ("004800", "not a multiple of 4"),
        ("00G8", "non-hex character 'G'"),
        ("0048 0069", "non-hex character ' '"),
        ("D83D", "lone surrogate D83D at unit 0"),
        ("0041DE00", "lone surrogate DE00 at unit 1"),
        ("D83D0041", "lone surrogate D83D at unit 0"),
    ],
)
def test_decode_rejects_malformed_hex_saying_why(hex_text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_ucs2_hex(hex_text)


# --- properties -----------------------------------------------------------------------------


@given(mixed_text, mixed_char)
def test_appending_a_char_never_lowers_the_gsm7_part_count(text: str, char: str) -> None:
    assert part_count(text + char, GSM7) >= part_count(text, GSM7)


@given(mixed_text, mixed_char)
def test_appending_a_char_never_lowers_the_ucs2_part_count(text: str, char: str) -> None:
    assert part_count(text + char, UCS2) >= part_count(text, UCS2)


@given(any_text)
def test_part_count_matches_filling_parts_char_by_char(text: str) -> None:
    assert part_count(text, GSM7) == reference_parts(text, GSM7)
    assert part_count(text, UCS2) == reference_parts(text, UCS2)


@given(st.text(max_size=300))  # hypothesis text never holds lone surrogates
def test_decode_inverts_encode(text: str) -> None:
    encoded = encode_ucs2_hex(text)
    assert encoded == encoded.upper()
    assert len(encoded) == 4 * ucs2_length(text)
    assert decode_ucs2_hex(encoded) == text


@given(any_text)
def test_is_gsm7_iff_every_char_is_basic_or_extension(text: str) -> None:
    assert is_gsm7(text) == all(c in GSM7_BASIC | GSM7_EXTENSION for c in text)


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=400))
def test_gsm7_text_has_at_least_one_septet_per_char(text: str) -> None:
    assert septet_length(text) >= len(text)
    assert septet_length(text) == len(text) + sum(c in GSM7_EXTENSION for c in text)


@given(any_text)
def test_analyse_agrees_with_the_single_functions(text: str) -> None:
    shape = analyse(text)
    assert shape.encoding is choose_encoding(text)
    length = septet_length if shape.encoding is GSM7 else ucs2_length
    assert shape.units == length(text)
    assert shape.parts == part_count(text, shape.encoding)


@given(
    st.text(
        alphabet=st.sampled_from(
            [*sorted(GSM7_BASIC | GSM7_EXTENSION), "`", "\t", "é", "ë", "陈", "😀"]
        ),
        max_size=400,
    )
)
def test_auto_parts_agrees_with_part_count_of_the_auto_encoding(text: str) -> None:
    encoding = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
    assert auto_parts(text) == part_count(text, encoding)
