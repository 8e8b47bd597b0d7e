"""The compact dedupe table behaves exactly like ``dict.setdefault`` for what dedupe asks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.dedupe import FirstRowTable

numbers = st.integers(min_value=1, max_value=10**15 - 1)


@given(st.lists(numbers, max_size=3000), st.integers(min_value=0, max_value=5000))
def test_setdefault_matches_a_dict(keys: list[int], expected: int) -> None:
    table = FirstRowTable(expected)
    reference: dict[int, int] = {}
    for row, key in enumerate(keys, start=2):
        got = table.setdefault(key, row)
        want = reference.setdefault(key, row)
        assert got == want
        assert (got is row) == (want is row)  # "new" is signalled by identity, as with a dict
    assert len(table) == len(reference)


def test_grows_and_keeps_every_entry() -> None:
    table = FirstRowTable()
    keys = [27820000000 + i * 7919 for i in range(50_000)]
    for row, key in enumerate(keys, start=2):
        assert table.setdefault(key, row) == row
    for row, key in enumerate(keys, start=2):
        assert table.setdefault(key, 10**9) == row
    assert table.nbytes / len(table) <= 48  # the point of it: vs ~105 B in a dict


@pytest.mark.parametrize("key", [1, 10**15 - 1, 2**62])
def test_extreme_keys(key: int) -> None:
    table = FirstRowTable()
    assert table.setdefault(key, 5) == 5
    assert table.setdefault(key, 9) == 5


def test_source_gives_the_same_blocks_with_either_table(tmp_path: Path) -> None:
    import random

    from bulksend.source import RecipientSource

    rng = random.Random(4)
    pool = [f"+2782{rng.randrange(10**7):07d}" for _ in range(3000)]
    lines = ["phone", *(rng.choice(pool) for _ in range(10_000))]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")

    def read(compact: bool) -> list[tuple[list[int], list[str], list[tuple[int, str, str]]]]:
        source = RecipientSource(path, compact_dedupe=compact, block_rows=500)
        return [
            (b.rows, b.msisdns, [(r.row, r.raw, r.reason) for r in b.rejects])
            for b in source.blocks()
        ]

    assert read(True) == read(False)
