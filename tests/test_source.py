"""RecipientSource: every row of the recipient file accounted for, whatever the file looks like."""

from __future__ import annotations

import contextlib
import itertools
import os
import tracemalloc
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend import source
from bulksend.errors import ConfigError, InputError
from bulksend.numbers import NumberPolicy, Reason
from bulksend.optout import OptOuts
from bulksend.reader import make_reader
from bulksend.source import Block, RecipientSource
from bulksend.template import Template

A, B, C = "27821234567", "27831234567", "27841234567"


def refusal(path: Path, **kwargs: Any) -> InputError:
    """The InputError reading ``path`` raises.

    Tests look at ``reason`` and ``path``: the message itself goes through ``redact``, which masks
    any secret registered in this process (another test's password may be a common word).
    """
    with pytest.raises(InputError) as caught:
        list(RecipientSource(path, **kwargs).blocks())
    return caught.value


def write(tmp_path: Path, content: str | bytes, name: str = "recipients.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def read(path: Path, **kwargs: Any) -> tuple[RecipientSource, list[Block]]:
    """Read the whole file and check the accounting promises on the way."""
    src = RecipientSource(path, **kwargs)
    blocks = list(src.blocks())
    assert_accounted(src, blocks)
    return src, blocks


def assert_accounted(src: RecipientSource, blocks: list[Block]) -> None:
    stats = src.stats
    assert stats.rows == stats.valid + stats.duplicates + sum(stats.rejected.values())
    previous = 1 if stats.header else 0
    for block in blocks:
        assert len(block.rows) == len(block.msisdns)
        if src.template is None:
            assert block.contents is None and block.fields is None
        else:
            assert block.contents is not None and block.fields is not None
            assert len(block.contents) == len(block.fields) == len(block.rows)
        covered = sorted(block.rows + [r.row for r in block.rejects])
        assert 0 < len(covered) <= src.block_rows
        assert covered == list(range(previous + 1, block.last_row + 1))
        assert [r.row for r in block.rejects] == sorted(r.row for r in block.rejects)
        previous = block.last_row
    assert previous == stats.rows + (1 if stats.header else 0)
    assert sum(len(b.rows) for b in blocks) == stats.valid
    assert stats.parts.messages == (stats.valid if src.template is not None else 0)


def sent(blocks: list[Block]) -> dict[int, str]:
    return {row: m for b in blocks for row, m in zip(b.rows, b.msisdns, strict=True)}


def refused(blocks: list[Block]) -> dict[int, str]:
    return {r.row: r.reason for b in blocks for r in b.rejects}


# -- layouts ---------------------------------------------------------------------------------------


def test_one_number_per_line_without_header(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, f"{A}\n+27 83 123 4567\n{C}"))
    assert sent(blocks) == {1: A, 2: B, 3: C}
    assert (src.stats.header, src.stats.delimiter, src.stats.column) == (False, "", 0)


def test_header_is_row_one_and_not_a_recipient(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, f"phone\n{A}\n{B}\n"))
    assert sent(blocks) == {2: A, 3: B}
    assert src.stats.header is True
    assert src.stats.column == "phone"
    assert src.stats.rows == 2


@pytest.mark.parametrize("word", ["msisdn", "Mobile", "to", "Number", "#", "Téléphone"])
def test_any_word_in_the_first_row_makes_it_a_header(tmp_path: Path, word: str) -> None:
    src, blocks = read(write(tmp_path, f"{word}\n{A}\n"))
    assert src.stats.header is True
    assert sent(blocks) == {2: A}


def test_utf8_bom_is_skipped(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, b"\xef\xbb\xbfphone,name\r\n" + A.encode() + b",Ann\r\n"))
    assert src.stats.column == "phone"
    assert src.stats.encoding == "utf-8-sig"
    assert sent(blocks) == {2: A}


def test_crlf_line_endings(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, f"name,phone\r\nAnn,{A}\r\nBob,{B}\r\n"))
    assert sent(blocks) == {2: A, 3: B}


def test_cr_only_line_endings_of_old_mac_exports(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, f"name,phone\rAnn,{A}\rBob,{B}\r"))
    assert sent(blocks) == {2: A, 3: B}


def test_quoted_fields_with_embedded_commas_and_quotes(tmp_path: Path) -> None:
    content = f'name,phone,note\n"Smith, Ann","+27 82 123 4567","said ""hi"", left"\nBob,{B},x\n'
    src, blocks = read(write(tmp_path, content))
    assert src.stats.delimiter == ","
    assert sent(blocks) == {2: A, 3: B}


def test_quoted_cell_spanning_lines_is_one_row(tmp_path: Path) -> None:
    content = f'name,address,phone\nAnn,"1 Long St\nCape Town\n8001",{A}\nBob,x,{B}\n'
    src, blocks = read(write(tmp_path, content))
    assert sent(blocks) == {2: A, 3: B}
    assert src.stats.rows == 2


@pytest.mark.parametrize(("chunk", "max_line"), [(1 << 20, 1 << 20), (16, 1 << 20), (64, 200)])
def test_unclosed_quote_costs_only_its_own_row(tmp_path: Path, chunk: int, max_line: int) -> None:
    lines = ["name,phone", f'"Smith, Ann,{A}'] + [f"P{i},{27830000000 + i}" for i in range(300)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with (
        mock.patch.object(source, "CHUNK_BYTES", chunk),
        mock.patch.object(source, "MAX_LINE_CHARS", max_line),
    ):
        _, blocks = read(path)
    ok = sent(blocks)
    assert 2 not in ok  # the broken row itself has no readable phone cell
    assert sorted(ok) == list(range(3, 303))


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters(tmp_path: Path, delimiter: str) -> None:
    content = delimiter.join(["name", "phone"]) + "\n"
    content += delimiter.join(["Smith, Ann", A]) + "\n" + delimiter.join(["Bob", B]) + "\n"
    src, blocks = read(write(tmp_path, content))
    assert src.stats.delimiter == delimiter
    assert sent(blocks) == {2: A, 3: B}


def test_semicolon_file_with_commas_in_names_is_not_read_as_comma_separated(
    tmp_path: Path,
) -> None:
    content = f"phone;name\n{A};Smith, Ann\n{B};Jones, Bob\n"
    src, blocks = read(write(tmp_path, content))
    assert src.stats.delimiter == ";"
    assert sent(blocks) == {2: A, 3: B}


def test_column_by_name_is_case_insensitive(tmp_path: Path) -> None:
    content = f"Mobile,Backup\n{A},{B}\n"
    src, blocks = read(write(tmp_path, content), column=" backup ")
    assert sent(blocks) == {2: B}
    assert (src.stats.column, src.stats.column_index) == ("Backup", 1)


@pytest.mark.parametrize("column", [1, "1"])
def test_column_by_index(tmp_path: Path, column: int | str) -> None:
    src, blocks = read(write(tmp_path, f"{A},{B}\n{C},{A}\n"), column=column)
    assert sent(blocks) == {1: B, 2: A}
    assert src.stats.header is False


def test_autodetect_skips_a_name_column(tmp_path: Path) -> None:
    content = f"name,phone\nAnn,{A}\nBob,{B}\n"
    src, _ = read(write(tmp_path, content))
    assert src.stats.column_index == 1


def test_autodetect_prefers_the_column_whose_header_says_phone(tmp_path: Path) -> None:
    # Customer ids of 11 digits pass the structural check too; the header settles it.
    content = "customer_id,Mobile Number\n" + "".join(
        f"{12025550100 + i},{27820000000 + i}\n" for i in range(20)
    )
    src, blocks = read(write(tmp_path, content))
    assert src.stats.column == "Mobile Number"
    assert sent(blocks)[2] == "27820000000"


def test_autodetect_finds_national_numbers_and_rejects_them_with_the_reason(
    tmp_path: Path,
) -> None:
    _, blocks = read(write(tmp_path, "name,phone\nAnn,082 123 4567\nBob,083 123 4567\n"))
    assert set(refused(blocks).values()) == {Reason.NATIONAL_WITHOUT_COUNTRY.value}


def test_default_country_converts_national_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "name,phone\nAnn,082 123 4567\nBob,+27 83 123 4567\n")
    _, blocks = read(path, policy=NumberPolicy("ZA"))
    assert sent(blocks) == {2: A, 3: B}


def test_excel_damage_is_rejected_with_its_reason(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, f"phone\n2.78212E+11\n={A}\n{B}\n"))
    assert sent(blocks) == {4: B}
    assert refused(blocks) == {
        2: Reason.EXCEL_SCIENTIFIC.value,
        3: Reason.EXCEL_FORMULA.value,
    }


# -- encodings and bad bytes -----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_unicode_with_bom(tmp_path: Path, encoding: str) -> None:
    text = f"name,phone\r\nZoë,{A}\r\nBob,{B}\r\n"
    bom = {"utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    src, blocks = read(write(tmp_path, bom + text.encode(encoding)))
    assert sent(blocks) == {2: A, 3: B}
    assert src.stats.encoding.startswith(encoding[:6])


def test_latin1_bytes_in_another_column_cost_nothing(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, b"name;tel\nJ\xe9r\xf4me;" + A.encode() + b"\n"))
    assert sent(blocks) == {2: A}


def test_latin1_bytes_in_the_number_reject_that_row_as_not_utf8(tmp_path: Path) -> None:
    content = b"name,phone\nAnn," + A.encode() + b"\nBob,27\xa083\xa01234567\n"  # Latin-1 NBSP
    _, blocks = read(write(tmp_path, content))
    assert sent(blocks) == {2: A}
    assert refused(blocks) == {3: "not valid UTF-8"}
    raw = blocks[0].rejects[0].raw
    assert raw == "27\ufffd83\ufffd1234567"
    raw.encode("utf-8")  # the rejects file can hold it


def test_nul_bytes_reject_the_row_and_reading_goes_on(tmp_path: Path) -> None:
    content = f"name,phone\nAnn,{A}\nBob,2783\x001234567\nC\x00arl,{C}\n"
    _, blocks = read(write(tmp_path, content))
    assert sent(blocks) == {2: A, 4: C}
    assert refused(blocks) == {3: Reason.BAD_CHARS.value}


def test_blank_lines_are_rejected_as_empty(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, f"name,phone\nAnn,{A}\n\n   \n,\nBob,{B}\n\n"))
    assert sent(blocks) == {2: A, 6: B}
    assert refused(blocks) == {3: "empty", 4: "empty", 5: "empty", 7: "empty"}
    assert src.stats.rejected["empty"] == 4


def test_row_without_the_chosen_column(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, f"name,phone\nAnn,{A}\nBob\n"))
    assert refused(blocks) == {3: "missing column 1 (phone)"}


def test_long_line_is_rejected_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    with path.open("w") as f:
        f.write(f"{A}\n" + "9" * 10_000_000 + f"\n{B}\n")
    tracemalloc.start()
    try:
        _, blocks = read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sent(blocks) == {1: A, 3: B}
    assert refused(blocks) == {2: f"line longer than {source.MAX_LINE_CHARS} characters"}
    assert len(blocks[0].rejects[0].raw) <= source.RAW_CHARS
    assert peak < 8_000_000


def test_long_quoted_line_in_a_csv(tmp_path: Path) -> None:
    with mock.patch.object(source, "MAX_LINE_CHARS", 100):
        content = f'name,phone\nAnn,{A}\n"{"x" * 500},{B}\nCarl,{C}\n'
        _, blocks = read(write(tmp_path, content))
    assert sent(blocks) == {2: A, 4: C}
    assert refused(blocks) == {3: "line longer than 100 characters"}


# -- dedupe and blocks -----------------------------------------------------------------------------


def test_duplicates_name_the_first_row(tmp_path: Path) -> None:
    content = f"phone\n{A}\n{B}\n+27 82 123 4567\n0027821234567\n"
    src, blocks = read(write(tmp_path, content), block_rows=2)
    assert sent(blocks) == {2: A, 3: B}
    assert refused(blocks) == {4: "duplicate of row 2", 5: "duplicate of row 2"}
    assert src.stats.duplicates == 2
    assert not src.stats.rejected  # duplicates are counted apart


def test_no_dedupe_keeps_every_copy(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, f"{A}\n{A}\n{A}\n"), dedupe=False)
    assert sent(blocks) == {1: A, 2: A, 3: A}
    assert src.stats.duplicates == 0


def test_blocks_never_exceed_block_rows(tmp_path: Path) -> None:
    rows = [str(27820000000 + i) if i % 5 else "junk" for i in range(1, 104)]
    src, blocks = read(write(tmp_path, "\n".join(rows)), block_rows=7)
    assert len(blocks) == 15
    assert all(len(b.rows) + len(b.rejects) <= 7 for b in blocks)
    assert src.stats.rows == 103


def test_reading_again_starts_over(tmp_path: Path) -> None:
    src = RecipientSource(write(tmp_path, f"{A}\n{A}\n"))
    first = list(src.blocks())
    again = list(src.blocks())
    assert first == again
    assert src.stats.rows == 2


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_chunk_boundaries_change_nothing(tmp_path: Path, chunk: int) -> None:
    content = (
        "\ufeffnamé,phone\r\n"
        f'"Zoë, A",{A}\r\n'
        f'"multi\r\nline ""cell""",{B}\r\n'
        "Ann,27\xa084\xa01234567\r\n"  # NBSP (valid UTF-8) as a separator
        "\r\n"
        f"Bob,{A}\r\n"
    ).encode()
    path = write(tmp_path, content)
    _, expected = read(path)
    with mock.patch.object(source, "CHUNK_BYTES", chunk):
        _, blocks = read(path)
    assert blocks == expected
    assert sent(blocks) == {2: A, 3: B, 4: C}


# -- whole-file problems ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file: no rows"),
        (b"\xef\xbb\xbf", "empty file: no rows"),
        (b"\n\n  \r\n", "empty file: no rows"),
        (b"phone\n", "no data rows"),
        (b"name,phone\r\n\r\n", "no data rows"),
        (b"name,city\nAnn,Paris\nBob,Rome\n", "no column looks like phone numbers; use --column"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "Excel .xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "Excel .xls"),
        (bytes(range(256)) * 20, "does not look like a text/CSV file"),
        ("phone\n27821234567\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    ],
)
def test_whole_file_problems_raise_input_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = write(tmp_path, content)
    error = refusal(path)
    assert message in error.reason
    assert error.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    error = refusal(tmp_path / "nope.csv")
    assert (error.reason, error.path) == ("no such file", str(tmp_path / "nope.csv"))


def test_directory(tmp_path: Path) -> None:
    assert refusal(tmp_path).reason == "is a directory, not a file"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"{A}\n")
    path.chmod(0)
    assert refusal(path).reason == "permission denied"


def test_permission_error_becomes_input_error(tmp_path: Path) -> None:
    def deny(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    with mock.patch.object(source, "open", deny, create=True):
        assert refusal(write(tmp_path, f"{A}\n")).reason == "permission denied"


def test_named_column_not_in_header_lists_what_is(tmp_path: Path) -> None:
    path = write(tmp_path, f"Name,Mobile\nAnn,{A}\n")
    error = refusal(path, column="phone")
    assert error.path == str(path)
    assert "'phone'" in error.reason
    assert "'Name', 'Mobile'" in error.reason


def test_index_beyond_the_row_width(tmp_path: Path) -> None:
    error = refusal(write(tmp_path, f"Ann,{A}\n"), column=3)
    assert error.reason.startswith("column 3 not found: rows have 2 column(s)")


def test_bad_arguments() -> None:
    with pytest.raises(InputError):
        RecipientSource("x.csv", column=-1)
    with pytest.raises(InputError):
        RecipientSource("x.csv", column="  ")
    with pytest.raises(ValueError):
        RecipientSource("x.csv", block_rows=0)


# -- anything at all -------------------------------------------------------------------------------

LINES = st.lists(
    st.one_of(
        st.sampled_from([A, B, "+27 82 123 4567", "0821234567", "2.78E+11", "", "phone", '"']),
        st.text(alphabet=',;\t|"\r\n 0123456789+abc\x00\xe9', max_size=20),
    ),
    max_size=30,
)


_fuzz_files = itertools.count()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        LINES.map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
        LINES.map(lambda lines: "\r\n".join(lines).encode("utf-16")),
    ),
    chunk=st.sampled_from([1, 3, 16, 1 << 20]),
    dedupe=st.booleans(),
    template=st.sampled_from([None, "Sale! {0}", "Hi #phone#"]),
)
def test_any_bytes_give_input_error_or_every_row_accounted(
    tmp_path: Path, content: bytes, chunk: int, dedupe: bool, template: str | None
) -> None:
    path = write(tmp_path, content, name=f"fuzz{next(_fuzz_files)}.csv")
    parsed = Template.parse(template) if template is not None else None
    with mock.patch.object(source, "CHUNK_BYTES", chunk), contextlib.suppress(InputError):
        read(path, dedupe=dedupe, block_rows=4, template=parsed)
    path.unlink()


# -- templates -------------------------------------------------------------------------------------

HI = Template.parse("Hi #first_name#, order #order# ships today")


def texts(blocks: list[Block]) -> dict[int, tuple[str, str, tuple[str, ...]]]:
    """Row -> (msisdn, text, values) of the rows to send."""
    out = {}
    for b in blocks:
        assert b.contents is not None and b.fields is not None
        for row, m, text, values in zip(b.rows, b.msisdns, b.contents, b.fields, strict=True):
            out[row] = (m, text, values)
    return out


def test_template_renders_each_row_from_its_columns(tmp_path: Path) -> None:
    content = f"phone,first_name,order\n{A},Anne,A1\n{B}, Bob ,B22\n"
    src, blocks = read(write(tmp_path, content), template=HI)
    assert texts(blocks) == {
        2: (A, "Hi Anne, order A1 ships today", ("Anne", "A1")),
        3: (B, "Hi Bob, order B22 ships today", ("Bob", "B22")),
    }
    parts = src.stats.parts
    assert (parts.messages, parts.min_parts, parts.max_parts, parts.credits) == (2, 1, 1, 2)
    assert parts.by_encoding == {"gsm7": 2}


def test_without_a_template_blocks_carry_no_texts(tmp_path: Path) -> None:
    src, blocks = read(write(tmp_path, f"phone,first_name\n{A},Anne\n"))
    assert blocks[0].contents is None and blocks[0].fields is None
    assert src.stats.parts.messages == 0


def test_template_rejects_rows_it_cannot_send_with_their_row_numbers(tmp_path: Path) -> None:
    long = "x" * 440
    content = (
        "phone,first_name,order\n"
        f"{A},Anne,A1\n"  # 2: sent
        f"{B},  ,B2\n"  # 3: empty name
        f"{C},Carl\n"  # 4: short row
        f"27851234567,{long},D4\n"  # 5: 4 parts
        f"27861234567,{long[:300]},E5\n"  # 6: 3 parts, sent
        "junk,Fay,F6\n"  # 7: the number is refused first
    )
    src, blocks = read(write(tmp_path, content), template=HI, max_parts=3, block_rows=2)
    assert sorted(texts(blocks)) == [2, 6]
    assert refused(blocks) == {
        3: "column 'first_name' is empty",
        4: "column 'order' missing",
        5: "message needs 4 parts, more than --max-parts 3",
        7: Reason.BAD_CHARS.value,
    }
    raws = {r.row: r.raw for b in blocks for r in b.rejects}
    assert raws[3] == B and raws[4] == C  # the number cell, as without a template
    st_ = src.stats
    assert st_.rows == 6 and st_.valid == 2
    assert st_.rejected["column 'first_name' is empty"] == 1
    assert (st_.parts.min_parts, st_.parts.max_parts, st_.parts.total_parts) == (1, 3, 4)


def test_each_row_gets_its_own_encoding(tmp_path: Path) -> None:
    content = f"phone,first_name,order\n{A},Anne,A1\n{B},李雷,B2\n{C},Jörg,C3\n"
    src, _ = read(write(tmp_path, content), template=HI)
    assert src.stats.parts.by_encoding == {"gsm7": 2, "ucs2": 1}


def test_unicode_off_refuses_the_rows_it_cannot_carry(tmp_path: Path) -> None:
    content = f"phone,first_name,order\n{A},Anne,A1\n{B},李雷,B2\n"
    _, blocks = read(write(tmp_path, content), template=HI, unicode="off")
    assert sorted(texts(blocks)) == [2]
    assert "GSM 03.38" in refused(blocks)[3]


def test_a_row_refused_for_its_values_does_not_claim_its_number(tmp_path: Path) -> None:
    content = f"phone,first_name,order\n{A},,A1\n{A},Anne,A2\n{A},Anne,A3\n"
    src, blocks = read(write(tmp_path, content), template=HI)
    assert sorted(texts(blocks)) == [3]
    assert refused(blocks) == {2: "column 'first_name' is empty", 4: "duplicate of row 3"}
    assert src.stats.duplicates == 1


def test_columns_on_either_side_of_the_number_and_quoted_cells(tmp_path: Path) -> None:
    content = (
        f'order;phone;note;first_name\nA1;{A};x;Anne\n"A;2";{B};"a ""quoted"" note";"Bob\nJr"\n'
    )
    _, blocks = read(write(tmp_path, content), template=HI)
    assert texts(blocks) == {
        2: (A, "Hi Anne, order A1 ships today", ("Anne", "A1")),
        3: (B, "Hi Bob\nJr, order A;2 ships today", ("Bob\nJr", "A;2")),
    }


def test_template_columns_match_the_header_loosely(tmp_path: Path) -> None:
    content = f'"Phone","First Name","ORDER"\n{A},Anne,A1\n'
    _, blocks = read(write(tmp_path, content), template=HI)
    assert texts(blocks)[2][1] == "Hi Anne, order A1 ships today"


def test_template_field_without_a_column_names_file_field_and_columns(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone,name\n{A},Anne\n")
    err = refusal(path, template=HI)
    assert err.path == str(path)
    assert "#first_name#, #order#" in err.reason
    assert "'phone', 'name'" in err.reason


def test_template_needs_a_header(tmp_path: Path) -> None:
    path = write(tmp_path, f"{A},Anne,A1\n{B},Bob,B2\n")
    err = refusal(path, template=HI)
    assert err.path == str(path)
    assert "no header row" in err.reason


def test_template_without_placeholders_needs_no_header(tmp_path: Path) -> None:
    _, blocks = read(write(tmp_path, f"{A}\n{B}\n"), template=Template.parse("Sale!"))
    assert [text for _, text, _ in texts(blocks).values()] == ["Sale!", "Sale!"]


LOOSE_ROWS = st.lists(
    st.text(alphabet=',"\n 0123456789+abc李\x00\xe9', max_size=30).map(lambda s: f"{A}," + s),
    max_size=20,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=LOOSE_ROWS, chunk=st.sampled_from([3, 16, 1 << 20]), max_parts=st.sampled_from([None, 1])
)
def test_templated_rows_are_all_accounted(
    tmp_path: Path, lines: list[str], chunk: int, max_parts: int | None
) -> None:
    path = write(
        tmp_path, "\n".join(["phone,first_name,order", *lines]), f"t{next(_fuzz_files)}.csv"
    )
    with mock.patch.object(source, "CHUNK_BYTES", chunk), contextlib.suppress(InputError):
        _, blocks = read(path, template=HI, max_parts=max_parts, dedupe=False, block_rows=3)
        for _, text, values in texts(blocks).values():
            assert text == HI.render(values)
    path.unlink()


async def _read_with(path: Path, mode: str, **kwargs: Any) -> tuple[list[Block], Any]:
    reader = make_reader(path, column=None, policy=NumberPolicy(), dedupe=True, mode=mode, **kwargs)
    try:
        return [b async for b in reader.blocks()], reader.stats
    finally:
        reader.close()


async def test_process_reader_gives_the_inline_blocks_and_stats(tmp_path: Path) -> None:
    content = (
        "phone,first_name,order\n"
        + "".join(f"2782{i:07d},{'李雷' if i % 7 == 0 else 'Anne'},A{i}\n" for i in range(1500))
        + f"{A},,X\n{B},Bob\n{A},Anne,A1\n"
    )
    path = write(tmp_path, content)
    inline, inline_stats = await _read_with(path, "inline", template=HI, max_parts=2)
    process, process_stats = await _read_with(path, "process", template=HI, max_parts=2)

    def flat(blocks: list[Block]) -> tuple[list[Any], ...]:
        # The child cuts smaller blocks with a template: compare what they carry, row by row.
        out: tuple[list[Any], ...] = ([], [], [], [], [])
        for b in blocks:
            out[0].extend(b.rows)
            out[1].extend(b.msisdns)
            out[2].extend(b.contents or [])
            out[3].extend(b.fields or [])
            out[4].extend(b.rejects)
        return out

    assert flat(process) == flat(inline)
    assert process[-1].last_row == inline[-1].last_row
    assert process_stats == inline_stats
    assert inline_stats.parts.by_encoding == {"gsm7": 1285 + 1, "ucs2": 215}
    assert inline_stats.rows == inline_stats.valid + inline_stats.duplicates + 2


async def test_process_reader_raises_the_template_error_in_the_parent(tmp_path: Path) -> None:
    path = write(tmp_path, f"phone,name\n{A},Anne\n")
    with pytest.raises(InputError) as caught:
        await _read_with(path, "process", template=HI)
    assert caught.value.path == str(path)
    assert "#first_name#" in caught.value.reason


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_templated_cells_keep_their_line_breaks_across_chunks(
    tmp_path: Path, chunk: int, newline: str
) -> None:
    lines = ["phone,first_name,order", f'{A},"Anne{newline}Marie",A1', f'{B},Bob,"B{newline}2"']
    path = write(tmp_path, newline.join(lines) + newline)
    with mock.patch.object(source, "CHUNK_BYTES", chunk):
        _, blocks = read(path, template=HI)
    assert [values for _, _, values in texts(blocks).values()] == [
        ("Anne\nMarie", "A1"),
        ("Bob", "B\n2"),
    ]


def test_opted_out_numbers_are_refused_before_the_template_looks(tmp_path: Path) -> None:
    content = f"phone,first_name,order\n{A},,A1\n{B},Bob,B2\n"
    opt_outs = OptOuts(["stop.csv"], [[int(A)]])
    _, blocks = read(write(tmp_path, content), template=HI, opt_outs=opt_outs)
    assert sorted(texts(blocks)) == [3]
    assert refused(blocks)[2] == opt_outs.reasons()[0]


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_bad_template_options_fail_at_once(tmp_path: Path, mode: str) -> None:
    path = write(tmp_path, f"phone,first_name,order\n{A},Anne,A1\n")
    for options in ({"unicode": "maybe"}, {"max_parts": 0}):
        with pytest.raises(ConfigError):
            make_reader(
                path,
                column=None,
                policy=NumberPolicy(),
                dedupe=True,
                mode=mode,
                template=HI,
                **options,  # type: ignore[arg-type]
            )
