"""Opt-out lists: formats, naming, counting, and lookups that agree with a plain set."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend import optout
from bulksend.errors import InputError
from bulksend.numbers import NumberPolicy
from bulksend.optout import OptOuts, append_opt_outs, load_opt_outs

ZA = NumberPolicy(default_country="ZA")


def test_plain_lists_in_every_international_shape_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text(
        "mobile number\n+27821234567\n27821234568\n0027821234569\n\n082 123 4570\nnope\n"
    )
    opt_outs = load_opt_outs([path], ZA)
    for n in (27821234567, 27821234568, 27821234569, 27821234570):
        assert opt_outs.list_of(n) == str(path)
    assert opt_outs.list_of(27821234571) is None
    assert len(opt_outs) == 4
    assert opt_outs.skipped == {str(path): 1}  # "nope"; the header is not counted


def test_csv_lists_go_through_the_recipient_reader(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text('name,phone\n"Smith, J",082 123 4567\nDoe,+27 83 765 4321\nX,12\n')
    opt_outs = load_opt_outs([path], ZA)
    assert opt_outs.list_of(27821234567) == str(path)
    assert opt_outs.list_of(27837654321) == str(path)
    assert opt_outs.skipped == {str(path): 1}


def test_the_first_list_names_a_number_on_several(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("+27821234567\n")
    b.write_text("+27821234567\n+27821234568\n")
    opt_outs = load_opt_outs([b, a], NumberPolicy())
    assert opt_outs.list_of(27821234567) == str(b)
    assert len(opt_outs) == 2


def test_empty_and_header_only_lists_exclude_nothing_missing_ones_are_errors(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "header.csv").write_text("name,phone\n")
    assert len(load_opt_outs([tmp_path / "empty.txt", tmp_path / "header.csv"], ZA)) == 0
    with pytest.raises(InputError, match="opt-out list: no such file"):
        load_opt_outs([tmp_path / "missing.txt"], ZA)


def test_recorded_opt_outs_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "122.txt"
    append_opt_outs(path, ["27821234567"])
    append_opt_outs(path, ["27821234568", "27821234569"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(load_opt_outs([path], NumberPolicy())) == 3


numbers = st.integers(10**9, 10**15 - 1)


@pytest.mark.parametrize("compact", [False, True], ids=["dict", "compact"])
@given(
    first=st.lists(numbers, max_size=200),
    second=st.lists(numbers, max_size=200),
    probes=st.lists(numbers, max_size=200),
)
def test_lookups_agree_with_sets_in_both_representations(
    compact: bool, first: list[int], second: list[int], probes: list[int]
) -> None:
    limit = optout.FAST_LIMIT
    optout.FAST_LIMIT = -1 if compact else limit
    try:
        opt_outs = OptOuts(["a", "b"], [first, second])
    finally:
        optout.FAST_LIMIT = limit
    assert opt_outs.compact is compact
    assert len(opt_outs) == len(set(first) | set(second))
    for n in [*probes, *first, *second]:
        expected = "a" if n in set(first) else "b" if n in set(second) else None
        assert opt_outs.list_of(n) == expected


def test_national_numbers_with_leading_space_take_the_careful_path(tmp_path: Path) -> None:
    path = tmp_path / "stop.txt"
    path.write_text("+27821234567\n  0821234568\n")
    opt_outs = load_opt_outs([path], ZA)
    assert opt_outs.list_of(27821234568) == str(path)
    assert opt_outs.list_of(821234568) is None
