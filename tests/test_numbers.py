"""normalise(): which number a cell means, or why it means none."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulksend.errors import InputError
from bulksend.numbers import NumberPolicy, Reason, normalise

PLAIN = NumberPolicy()
STRICT = NumberPolicy(strict=True)
ZA = NumberPolicy("ZA")
GB = NumberPolicy("GB")
US = NumberPolicy("US")


@pytest.mark.parametrize(
    "raw",
    [
        "27821234567",
        "+27821234567",
        "+27 82 123 4567",
        "0027821234567",
        "00 27 82 123 4567",
        "+27-82-123-4567",
        "+27.82.123.4567",
        "+27 (82) 123/4567",
        "(+27) 82 123 4567",
        "+27\u00a082\u00a0123\u00a04567",  # NBSP, as spreadsheets and web pages write it
        "+27\u202f82\u2009123 4567",  # narrow and thin spaces
        "+27\u201182\u2013123\u20144567",  # non-breaking hyphen, en and em dashes
        "  27821234567\t",
        '"27821234567"',
        "'27821234567",  # Excel's text prefix
        "\u201c+27 82 123 4567\u201d",
        "\u202a+27 82 123 4567\u202c",  # bidi marks copied from a phone's contact card
        "\ufeff27821234567",
    ],
)
def test_international_forms_normalise_to_digits(raw: str) -> None:
    assert normalise(raw, PLAIN) == "27821234567"


def test_trunk_zero_in_parentheses_after_country_code_is_dropped() -> None:
    assert normalise("+44 (0)7911 123456", PLAIN) == "447911123456"
    assert normalise("0044 (0) 20 7946 0000", PLAIN) == "442079460000"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", Reason.EMPTY),
        ("   ", Reason.EMPTY),
        ('""', Reason.EMPTY),
        ("-", Reason.EMPTY),
        ("+", Reason.EMPTY),
        ("2.7821234567E+11", Reason.EXCEL_SCIENTIFIC),
        ("2,78E+11", Reason.EXCEL_SCIENTIFIC),
        ("2.78e11", Reason.EXCEL_SCIENTIFIC),
        ("2.78209E+11", Reason.EXCEL_SCIENTIFIC),
        (" 2.78E+11 ", Reason.EXCEL_SCIENTIFIC),
        ("=+27821234567", Reason.EXCEL_FORMULA),
        ('="27821234567"', Reason.EXCEL_FORMULA),
        ("=27821234567", Reason.EXCEL_FORMULA),
        ("+=27821234567", Reason.EXCEL_FORMULA),
        ("27821234567.0", Reason.EXCEL_DECIMAL),
        ("27821234567,00", Reason.EXCEL_DECIMAL),
        ("phone", Reason.BAD_CHARS),
        ("2782123456x", Reason.BAD_CHARS),
        ("+27 82 123 4567 ext 5", Reason.BAD_CHARS),
        ("27821234567,27831234567", Reason.BAD_CHARS),  # two numbers in one cell
        ("\uff12\uff17\uff18\uff12\uff11\uff12\uff13\uff14\uff15\uff16\uff17", Reason.BAD_CHARS),
        ("\u0662\u0667\u0668\u0662\u0661\u0662\u0663\u0664\u0665\u0666\u0667", Reason.BAD_CHARS),
        ("2782\x001234567", Reason.BAD_CHARS),
        ("1234567", Reason.TOO_SHORT),
        ("+27 82", Reason.TOO_SHORT),
        ("1234567890123456", Reason.TOO_LONG),
        ("+27 82 123 4567 8901 2", Reason.TOO_LONG),
        ("+0821234567", Reason.NO_COUNTRY_CODE),
        ("00 0821234567", Reason.NO_COUNTRY_CODE),
        ("28123456789", Reason.NO_COUNTRY_CODE),  # +28 is unassigned
        ("1202555012", Reason.WRONG_LENGTH),  # NANP numbers have 11 digits
        ("278212345678901", Reason.WRONG_LENGTH),
        ("0821234567", Reason.NATIONAL_WITHOUT_COUNTRY),
        ("082 123 4567", Reason.NATIONAL_WITHOUT_COUNTRY),
    ],
)
def test_refused_cells_name_their_reason(raw: str, reason: Reason) -> None:
    assert normalise(raw, PLAIN) is reason


def test_reasons_are_their_text() -> None:
    assert str(Reason.EMPTY) == "empty"
    assert f"{Reason.TOO_SHORT}" == "too short (fewer than 8 digits)"
    assert isinstance(Reason.EMPTY, str)


@pytest.mark.parametrize(
    ("raw", "policy", "expected"),
    [
        ("082 123 4567", ZA, "27821234567"),
        ("0821234567", ZA, "27821234567"),
        ("011 123 4567", ZA, "27111234567"),  # a landline goes through libphonenumber
        ("07911 123456", GB, "447911123456"),
        ("020 7946 0000", GB, "442079460000"),
        ("06 1234 5678", NumberPolicy("IT"), "390612345678"),  # Italy keeps the 0
        ("(202) 555-0123", US, "12025550123"),  # NANP: no trunk 0, 10 digits are national
        ("202-555-0123", US, "12025550123"),
        ("1 202 555 0123", US, "12025550123"),
        ("011 44 7911 123456", US, "447911123456"),  # US international prefix
        ("312 345 6789", NumberPolicy("IT"), "393123456789"),  # Italian mobile, no trunk prefix
        ("8 912 345 67 89", NumberPolicy("RU"), "79123456789"),  # Russian trunk prefix 8
        # International numbers stay international under a default country.
        ("+44 7911 123456", ZA, "447911123456"),
        ("447911123456", ZA, "447911123456"),
        ("27821234567", ZA, "27821234567"),
        ("0044 7911 123456", ZA, "447911123456"),
    ],
)
def test_national_numbers_convert_with_default_country(
    raw: str, policy: NumberPolicy, expected: str
) -> None:
    assert normalise(raw, policy) == expected


@pytest.mark.parametrize(
    ("raw", "policy"),
    [("821234567", ZA), ("82 123 4567", ZA), ("7911123456", GB)],
)
def test_national_number_that_lost_its_zero_is_refused_not_sent_abroad(
    raw: str, policy: NumberPolicy
) -> None:
    # 821234567 read as international is +82 (Korea): never guess, refuse.
    assert normalise(raw, policy) is Reason.EXCEL_LOST_ZERO
    assert normalise(raw, PLAIN) is not Reason.EXCEL_LOST_ZERO


def test_impossible_national_number_is_refused_for_the_region() -> None:
    assert normalise("099 1234 5678 9", ZA) is Reason.INVALID_FOR_REGION


def test_short_bare_number_is_read_as_national_and_checked() -> None:
    assert normalise("123", ZA) is Reason.TOO_SHORT


def test_strict_checks_the_numbering_plan_structural_only_the_shape() -> None:
    unassigned = "27001234567"  # +27 with a possible length, but no such range in the plan
    assert normalise(unassigned, PLAIN) == unassigned
    assert normalise(unassigned, STRICT) is Reason.NOT_VALID_NUMBER
    assert normalise("+27 82 123 4567", STRICT) == "27821234567"
    assert normalise("0821234567", NumberPolicy("ZA", strict=True)) == "27821234567"
    assert normalise("0201234567", ZA) == "27201234567"
    assert normalise("0201234567", NumberPolicy("ZA", strict=True)) is Reason.NOT_VALID_NUMBER


def test_default_country_is_validated_and_normalised() -> None:
    assert NumberPolicy("za").default_country == "ZA"
    assert NumberPolicy(" gb ").default_country == "GB"
    assert NumberPolicy("UK").default_country == "GB"
    with pytest.raises(InputError, match=r"unknown --default-country 'XX'"):
        NumberPolicy("XX")
    with pytest.raises(InputError):
        NumberPolicy("001")


def test_policy_is_a_frozen_value() -> None:
    assert NumberPolicy("ZA") == NumberPolicy("za")
    assert hash(NumberPolicy("ZA", strict=True)) == hash(NumberPolicy("ZA", strict=True))
    with pytest.raises(AttributeError):
        NumberPolicy().strict = True  # type: ignore[misc]


POLICIES = st.sampled_from([PLAIN, STRICT, ZA, GB, US, NumberPolicy("IT"), NumberPolicy("RU")])


def _is_msisdn(result: str | Reason) -> bool:
    return (
        type(result) is str
        and result.isascii()
        and result.isdigit()
        and 8 <= len(result) <= 15
        and result[0] != "0"
    )


@settings(max_examples=500, deadline=None)
@given(raw=st.text(), policy=POLICIES)
def test_normalise_never_raises_and_returns_digits_or_a_reason(
    raw: str, policy: NumberPolicy
) -> None:
    result = normalise(raw, policy)
    assert isinstance(result, Reason) or _is_msisdn(result)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.text(alphabet="0123456789+-.()/ =eE,'\"\u00a0x", max_size=24),
    policy=POLICIES,
)
def test_normalise_on_number_like_text(raw: str, policy: NumberPolicy) -> None:
    result = normalise(raw, policy)
    assert isinstance(result, Reason) or _is_msisdn(result)


VALID = ["27821234567", "447911123456", "12025550123", "4915123456789", "919812345678"]


@given(
    number=st.sampled_from(VALID),
    seps=st.lists(st.sampled_from(["", " ", "-", ".", "\u00a0", "/"]), min_size=15, max_size=15),
    prefix=st.sampled_from(["+", "00", "+ ", "00 "]),
)
def test_separators_and_prefix_never_change_the_digits(
    number: str, seps: list[str], prefix: str
) -> None:
    written = prefix + "".join(d + sep for d, sep in zip(number, seps, strict=False))
    assert normalise(written, PLAIN) == number
    assert normalise(written, ZA) == number
