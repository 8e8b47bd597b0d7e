"""Templates: #name# placeholders parsed, bound to header columns, and each row rendered or refused."""

from __future__ import annotations

import pickle
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend import gsm
from bulksend.errors import ConfigError, InputError
from bulksend.gsm import Encoding, MessageShape
from bulksend.template import BoundTemplate, PartsStats, RenderedRow, Template

HEADER = ["phone", "first_name", "order"]


def bound(text: str, header: list[str] | None = None, **kwargs: object) -> BoundTemplate:
    return Template.parse(text).bind(HEADER if header is None else header, **kwargs)  # type: ignore[arg-type]


def rendered(result: RenderedRow | str) -> RenderedRow:
    assert isinstance(result, RenderedRow), result
    return result


# -- parsing -----------------------------------------------------------------------------------------


def test_placeholders_in_first_appearance_order_without_repeats() -> None:
    t = Template.parse("Hi #first_name#, order #order# for #first_name#")
    assert t.fields == ("first_name", "order")
    assert t.personalised
    assert t.render(["Anne", "A1"]) == "Hi Anne, order A1 for Anne"


def test_text_without_placeholders_is_not_personalised_and_renders_as_itself() -> None:
    t = Template.parse("Sale ends today {really} 100% #1 deal")
    assert t.fields == ()
    assert not t.personalised
    assert t.render([]) == "Sale ends today {really} 100% #1 deal"


@pytest.mark.parametrize(
    ("text", "fields", "values", "out"),
    [
        ("#a##b#", ("a", "b"), ["x", "y"], "xy"),  # adjacent placeholders
        ("#a#b#", ("a",), ["x"], "xb#"),  # the middle # closes #a#
        ("Call #1 now", (), [], "Call #1 now"),  # a lone #
        ("Call #1# now", ("1",), ["5"], "Call 5 now"),  # digits are name characters
        ("## is not a name", (), [], "## is not a name"),
        ("##a##", ("a",), ["x"], "#x#"),  # literal # on both sides
        ("# a #", (), [], "# a #"),  # a space is not a name character
        ("#first-name#", (), [], "#first-name#"),
        ("#", (), [], "#"),
        ("", (), [], ""),
        ("#_#", ("_",), ["x"], "x"),
        ("Grüße #Name#, 你好 #x# €{0}", ("Name", "x"), ["Jörg", "李"], "Grüße Jörg, 你好 李 €{0}"),
    ],
)
def test_parse_and_render(text: str, fields: tuple[str, ...], values: list[str], out: str) -> None:
    t = Template.parse(text)
    assert t.fields == fields
    assert t.render(values) == out


def test_braces_in_values_and_text_are_literal() -> None:
    t = Template.parse("{} #a# {0} {a}")
    assert t.render(["{0}{}"]) == "{} {0}{} {0} {a}"


def test_non_ascii_name_between_hashes_is_literal_text() -> None:
    t = Template.parse("新品 #话题# #ok#")
    assert t.fields == ("ok",)
    assert t.render(["x"]) == "新品 #话题# x"
    assert rendered(t.bind(["phone", "ok"]).check(["1", "x"])).text == "新品 #话题# x"


def test_non_ascii_name_between_hashes_that_names_a_column_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        Template.parse("Bonjour #prénom#, #ok#").bind(["phone", "Prénom", "ok"])
    assert "#prénom#" in caught.value.reason
    assert "'Prénom'" in caught.value.reason


def test_template_pickles() -> None:
    t = Template.parse("Hi #a#")
    assert pickle.loads(pickle.dumps(t)) == t


# -- binding -----------------------------------------------------------------------------------------


def test_bind_exact_name() -> None:
    b = bound("Hi #first_name# #order#")
    assert b.columns == (1, 2)
    assert b.width == 3


def test_bind_exact_match_wins_over_a_case_insensitive_one_further_left() -> None:
    b = Template.parse("#Name#").bind(["phone", "NAME", "Name"])
    assert b.columns == (2,)


@pytest.mark.parametrize(
    "cell", ["First_Name", " first_name ", "FIRST_NAME", "First Name", "first-name"]
)
def test_bind_ignores_case_blanks_and_separators(cell: str) -> None:
    assert Template.parse("#first_name#").bind(["phone", cell]).columns == (1,)


def test_bind_missing_field_names_it_and_lists_the_columns() -> None:
    with pytest.raises(InputError) as caught:
        bound("Hi #first_name#, #surname# #city#")
    reason = caught.value.reason
    assert "#surname#, #city#" in reason
    assert "#first_name#" not in reason
    assert "'phone', 'first_name', 'order'" in reason


def test_bind_without_header_explains_placeholders_need_one() -> None:
    with pytest.raises(InputError) as caught:
        Template.parse("Hi #first_name#").bind(None)
    assert "no header row" in caught.value.reason
    assert "#first_name#" in caught.value.reason


def test_plain_text_binds_without_header() -> None:
    b = Template.parse("Hello").bind(None)
    assert rendered(b.check(["27821234567"])).text == "Hello"


def test_bind_refuses_literal_text_that_unicode_off_cannot_carry() -> None:
    with pytest.raises(InputError, match=r"GSM 03\.38"):
        bound("Привет #first_name#", unicode="off")


def test_bind_refuses_literal_text_already_over_max_parts() -> None:
    with pytest.raises(InputError, match="needs 2 parts, more than --max-parts 1"):
        bound("x" * 161 + "#first_name#", max_parts=1)


def test_bind_refuses_an_unknown_unicode_mode_and_max_parts_below_one() -> None:
    with pytest.raises(ConfigError):
        bound("#first_name#", unicode="maybe")
    with pytest.raises(ConfigError):
        bound("#first_name#", max_parts=0)


def test_one_missing_field_reads_as_one() -> None:
    with pytest.raises(InputError, match="placeholder #city# matches no column"):
        bound("#city#")


def test_bound_template_pickles() -> None:
    b = bound("Hi #first_name#", max_parts=2)
    again = pickle.loads(pickle.dumps(b))
    assert again.check(["1", "Anne"]) == b.check(["1", "Anne"])


# -- rows --------------------------------------------------------------------------------------------


def test_check_renders_with_stripped_values() -> None:
    row = rendered(bound("Hi #first_name#, order #order#").check(["27821234567", "  Anne ", "A1"]))
    assert row.values == ("Anne", "A1")
    assert row.text == "Hi Anne, order A1"
    assert row.shape == MessageShape(Encoding.GSM7, 17, 1)


def test_short_row_names_the_missing_column() -> None:
    b = bound("Hi #first_name#, order #order#")
    assert b.check(["27821234567", "Anne"]) == "column 'order' missing"
    assert b.check(["27821234567"]) == "column 'first_name' missing"


def test_reasons_use_the_header_as_written() -> None:
    b = Template.parse("Hi #first_name#").bind(["phone", "First Name"])
    assert b.check(["1", " "]) == "column 'First Name' is empty"


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_empty_value_is_refused(value: str) -> None:
    assert bound("Hi #first_name#").check(["1", value]) == "column 'first_name' is empty"


@pytest.mark.parametrize("value", ["An\x07ne", "An\tne", "An\x7fne", "An\x85ne", "A\x00"])
def test_control_characters_are_refused(value: str) -> None:
    assert (
        bound("Hi #first_name#").check(["1", value])
        == "column 'first_name' holds a control character"
    )


def test_line_breaks_in_a_value_are_kept() -> None:
    row = rendered(bound("At #first_name#").check(["1", "1 Main St\nFlat 2"]))
    assert row.text == "At 1 Main St\nFlat 2"
    assert row.shape.encoding is Encoding.GSM7


def test_undecodable_bytes_are_refused_as_not_utf8() -> None:
    value = b"Jos\xe9".decode("utf-8", "surrogateescape")
    assert bound("Hi #first_name#").check(["1", value]) == "column 'first_name' is not valid UTF-8"


def test_over_max_parts_is_refused_with_the_count() -> None:
    b = bound("Hi #first_name#", max_parts=3)
    assert rendered(b.check(["1", "x" * 400])).shape.parts == 3
    assert b.check(["1", "x" * 460]) == "message needs 4 parts, more than --max-parts 3"


def test_unicode_off_refuses_the_row_not_the_file() -> None:
    b = bound("Hi #first_name#", unicode="off")
    reason = b.check(["1", "李雷"])
    assert isinstance(reason, str)
    assert "GSM 03.38" in reason
    assert rendered(b.check(["1", "Anne"])).shape.encoding is Encoding.GSM7


def test_each_row_gets_its_own_encoding() -> None:
    b = bound("Hi #first_name#, order #order#")
    assert rendered(b.check(["1", "Anne", "A1"])).shape.encoding is Encoding.GSM7
    assert rendered(b.check(["1", "Émile", "A1"])).shape.encoding is Encoding.GSM7
    chinese = rendered(b.check(["1", "李雷", "A1"])).shape
    assert chinese == MessageShape(Encoding.UCS2, 15, 1)


def test_unicode_on_makes_every_row_ucs2() -> None:
    b = bound("Hi #first_name#", unicode="on")
    assert rendered(b.check(["1", "Anne"])).shape == MessageShape(Encoding.UCS2, 7, 1)


def test_extension_characters_count_two_septets() -> None:
    b = bound("€ #first_name#")
    assert rendered(b.check(["1", "Anne"])).shape.units == 7
    assert rendered(b.check(["1", "[Anne]"])).shape.units == 11


_CELLS = st.text(
    alphabet=st.sampled_from(
        list(string.ascii_letters + string.digits + " #{}[]€^`\n\r\t\x07éÇ李😀\x85\udce9Ω¤")
    ),
    max_size=200,
)


@given(
    text=st.sampled_from(["Hi #a#, #b#", "€[#a#]", "#a##b##a#", "日本 #b#", "`#a#` #b#"]),
    a=_CELLS,
    b=_CELLS,
    unicode=st.sampled_from(["auto", "on", "off"]),
    max_parts=st.sampled_from([None, 1, 2, 5]),
)
def test_check_agrees_with_gsm_analyse(
    text: str, a: str, b: str, unicode: str, max_parts: int | None
) -> None:
    t = Template.parse(text)
    try:
        bt = t.bind(["phone", "a", "b"], unicode=unicode, max_parts=max_parts)
    except InputError:
        return
    result = bt.check(["1", a, b])
    values = tuple({"a": a.strip(), "b": b.strip()}[f] for f in t.fields)
    if isinstance(result, str):
        if "" in values:
            assert result.endswith("is empty")
        return
    assert result.values == values
    assert result.text == t.render(values)
    assert result.shape == gsm.analyse(result.text, unicode)
    assert max_parts is None or result.shape.parts <= max_parts


_NAME_CHARS = string.ascii_letters + string.digits + "_"
_TEXTS = st.text(alphabet=st.sampled_from(list("ab_1 #{}é李")), max_size=40)


@given(text=_TEXTS, data=st.data())
def test_rendering_brings_no_new_placeholders(text: str, data: st.DataObject) -> None:
    """Values holding a character that is not a name character (and no #) cannot join literal #s
    into a placeholder, so the rendered text has none; every # in it comes from the literal text."""
    t = Template.parse(text)
    value = st.text(alphabet="xyz é-.", min_size=1, max_size=6).filter(
        lambda v: bool(set(v) - set(_NAME_CHARS))
    )
    values = [data.draw(value) for _ in t.fields]
    out = t.render(values)
    assert Template.parse(out).fields == ()
    assert out.count("#") == t.render([""] * len(t.fields)).count("#")


@given(st.text(alphabet=st.sampled_from(list("ab #_1{}é李€")), max_size=30))
def test_text_without_placeholders_renders_to_itself(text: str) -> None:
    t = Template.parse(text)
    if not t.personalised:
        assert t.render([]) == text


@given(
    st.text(alphabet=st.sampled_from(list("abc €[李😀é")), min_size=1, max_size=400),
    st.text(alphabet=st.sampled_from(list("abc €[李😀é")), max_size=20),
)
def test_parts_never_fall_as_a_value_grows(value: str, more: str) -> None:
    b = bound("Dear #first_name#, see you")
    short = rendered(b.check(["1", value + "."])).shape
    longer = rendered(b.check(["1", value + more + "."])).shape
    assert longer.parts >= short.parts


# -- stats -------------------------------------------------------------------------------------------


def test_parts_stats_add_and_merge() -> None:
    one, two = PartsStats(), PartsStats()
    assert (one.min_parts, one.max_parts, one.credits) == (0, 0, 0)
    one.add(MessageShape(Encoding.GSM7, 100, 1))
    one.add(MessageShape(Encoding.UCS2, 100, 2))
    two.add(MessageShape(Encoding.GSM7, 400, 3))
    assert (one.messages, one.min_parts, one.max_parts, one.credits) == (2, 1, 2, 3)
    one.merge(two)
    one.merge(PartsStats())
    assert (one.messages, one.min_parts, one.max_parts, one.total_parts) == (3, 1, 3, 6)
    assert one.by_encoding == {"gsm7": 2, "ucs2": 1}
    empty = PartsStats()
    empty.merge(two)
    assert (empty.min_parts, empty.max_parts) == (3, 3)
    assert pickle.loads(pickle.dumps(one)) == one


def test_parts_stats_add_all_is_add_each() -> None:
    shapes = [MessageShape(Encoding.GSM7, 1, p) for p in (2, 1, 3)] + [
        MessageShape(Encoding.UCS2, 1, 5)
    ]
    each, many = PartsStats(), PartsStats()
    for shape in shapes:
        each.add(shape)
    many.add_all(shapes[:2])
    many.add_all([])
    many.add_all(shapes[2:])
    assert many == each
