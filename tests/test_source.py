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
from bulksend.errors import InputError
from bulksend.numbers import NumberPolicy, Reason
from bulksend.source import Block, RecipientSource

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
        covered = sorted(block.rows + [r.row for r in block.rejects])
        assert 0 < len(covered) <= src.block_rows
        assert covered == list(range(previous + 1, block.last_row + 1))
        assert [r.row for r in block.rejects] == sorted(r.row for r in block.rejects)
        previous = block.last_row
    assert previous == stats.rows + (1 if stats.header else 0)
    assert sum(len(b.rows) for b in blocks) == stats.valid


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
)
def test_any_bytes_give_input_error_or_every_row_accounted(
    tmp_path: Path, content: bytes, chunk: int, dedupe: bool
) -> None:
    path = write(tmp_path, content, name=f"fuzz{next(_fuzz_files)}.csv")
    with mock.patch.object(source, "CHUNK_BYTES", chunk), contextlib.suppress(InputError):
        read(path, dedupe=dedupe, block_rows=4)
    path.unlink()
