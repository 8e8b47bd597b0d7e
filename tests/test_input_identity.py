"""The journal knows its input: identity, the changed-input checks and the re-keying of results
(no network; the e2e proofs with a real gateway are in tests/e2e/test_never_twice.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.journal import (
    InputIdentity,
    Journal,
    ResultLine,
    input_identity,
    read_results,
)
from tests.e2e.support import distinct_numbers

READING = {"column": None, "default_country": None, "strict": False, "dedupe": True}


def _numbers(count: int, seed: int = 1) -> list[str]:
    return distinct_numbers(count, seed=seed)


def _write(path: Path, numbers: list[str]) -> None:
    path.write_text("phone\n" + "".join(f"+{n}\n" for n in numbers))


def _campaign(tmp_path: Path, numbers: list[str], handled: int) -> tuple[Path, Path]:
    """A journal whose first ``handled`` rows are recorded (rows 2.. as with a header)."""
    source = tmp_path / "in.csv"
    _write(source, numbers)
    results = tmp_path / "in.results.csv"
    journal = Journal(results)
    journal.open("fp", describe={}, input_identity=input_identity(source, READING))
    rows = list(range(2, 2 + handled))
    seq = journal.intend(rows, numbers[:handled])
    statuses = ["accepted", "rejected", "unknown"]
    journal.complete(
        seq,
        [
            ResultLine(row, n, statuses[i % 3], f"id{i}" if i % 3 == 0 else "")
            for i, (row, n) in enumerate(zip(rows, numbers[:handled], strict=True))
        ],
    )
    journal.close()
    return source, results


def _rekey(source: Path, results: Path, numbers: list[str]) -> tuple[Journal, int, int]:
    """Reopen after the input became ``numbers``; re-key as the campaign does (dedupe on)."""
    _write(source, numbers)
    identity = input_identity(source, READING)
    journal = Journal(results)
    state = journal.open("fp", describe={}, input_identity=identity)
    assert state.input_changes, "the change was not noticed"
    remap = journal.number_remap()
    first: dict[str, int] = {}
    for row, n in enumerate(numbers, start=2):
        if n not in first:
            first[n] = row
    remap.see(list(first.values()), list(first))
    result = journal.apply_remap(remap, identity)
    return journal, result.moved, result.removed


EDITS = {
    "append": lambda ns, new: ns + new,
    "prepend": lambda ns, new: new + ns,
    "delete-handled": lambda ns, new: ns[:3] + ns[10:],
    "delete-pending": lambda ns, new: ns[:50] + ns[60:],
    "reorder": lambda ns, new: list(reversed(ns)),
    "insert-middle-and-delete": lambda ns, new: ns[:5] + new + ns[8:],
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_results_are_rekeyed_to_the_rows_their_numbers_stand_on_now(
    tmp_path: Path, edit: str
) -> None:
    numbers = _numbers(100)
    source, results = _campaign(tmp_path, numbers, handled=30)
    fresh = _numbers(20, seed=99)
    edited = EDITS[edit](numbers, fresh)
    journal, _, removed = _rekey(source, results, edited)

    lines = list(read_results(results))
    position = {n: row for row, n in enumerate(edited, start=2)}
    # Every kept line names the row its number is on now.
    assert all(position[line["to"]] == int(line["row"]) for line in lines)
    # Handled numbers still in the file are all kept, with their status and id; the rest moved
    # to the removed file.
    handled = set(numbers[:30])
    assert {line["to"] for line in lines} == handled & set(edited)
    removed_lines = list(read_results(journal.removed_path)) if removed else []
    assert {line["to"] for line in removed_lines} == handled - set(edited)
    # Resume state: exactly the rows of handled numbers are done.
    assert {r for r in range(2, 2 + len(edited)) if r in journal.state.done} == {
        position[n] for n in handled & set(edited)
    }
    journal.close()


def test_an_unchanged_input_needs_no_check(tmp_path: Path) -> None:
    numbers = _numbers(40)
    source, results = _campaign(tmp_path, numbers, handled=10)
    journal = Journal(results)
    state = journal.open("fp", describe={}, input_identity=input_identity(source, READING))
    assert state.input_changes == []
    journal.close()


def test_changes_are_named() -> None:
    before = InputIdentity("/x.csv", 10, 1, "aa", dict(READING))
    same = InputIdentity("/moved.csv", 10, 99, "aa", dict(READING))
    assert same.changes_since(before) == []  # a copy elsewhere, touched: the same input
    content = InputIdentity("/x.csv", 12, 2, "bb", dict(READING))
    assert "content of /x.csv changed (10 -> 12 bytes" in content.changes_since(before)[0]
    column = InputIdentity("/x.csv", 10, 1, "aa", {**READING, "column": "alt"})
    assert column.changes_since(before) == ["--column changed from None to 'alt'"]
    assert "does not say which input" in same.changes_since(None)[0]


def test_row_check_finds_the_first_changed_handled_row(tmp_path: Path) -> None:
    numbers = _numbers(50)
    _, results = _campaign(tmp_path, numbers, handled=20)
    journal = Journal(results)
    journal.open("fp", describe={})

    def check(rows: list[tuple[int, str]], rejected: tuple[tuple[int, str], ...] = ()) -> object:
        c = journal.row_check()
        c.see([r for r, _ in rows], [n for _, n in rows], rejected)
        return c.finish(max([r for r, _ in rows] + [r for r, _ in rejected]))

    same = list(enumerate(numbers, start=2))
    assert check(same) is None
    assert check([*same, (52, "27830000000")]) is None  # appended
    assert check([*same[:25], (27, "27830000000"), *same[26:]]) is None  # pending row changed
    changed = [*same]
    changed[7] = (9, "27830000000")
    assert check(changed) == (9, numbers[7], "27830000000")
    assert check(same[:5]) == (7, numbers[5], "no such row now")  # handled rows deleted at the end
    rejected = check(same[:3] + same[4:], ((5, "empty"),))
    assert rejected == (5, numbers[3], "refused now: empty")
    journal.close()


def test_an_interrupted_rekey_is_finished_or_discarded_by_the_next_open(tmp_path: Path) -> None:
    numbers = _numbers(60)
    source, results = _campaign(tmp_path, numbers, handled=20)
    edited = list(reversed(numbers))
    _write(source, edited)
    identity = input_identity(source, READING)

    # Crash before the commit marker: the pieces are thrown away, the old files stand.
    journal = Journal(results)
    journal.open("fp", describe={}, input_identity=identity)
    before = results.read_bytes()
    (results.with_name(results.name + ".remap")).write_text("half written")
    journal.close()
    journal = Journal(results)
    state = journal.open("fp", describe={}, input_identity=identity)
    assert results.read_bytes() == before and state.input_changes
    assert not results.with_name(results.name + ".remap").exists()
    journal.close()

    # Crash after the marker: the next open finishes the renames.
    journal = Journal(results)
    journal.open("fp", describe={}, input_identity=identity)
    remap = journal.number_remap()
    remap.see(list(range(2, 62)), edited)
    real_recover = journal._recover_remap
    journal._recover_remap = lambda: None  # type: ignore[method-assign]  # "crash" before renames
    journal.apply_remap(remap, identity)
    journal._recover_remap = real_recover  # type: ignore[method-assign]
    journal.close()
    assert results.with_name(results.name + ".remap-commit").exists()
    journal = Journal(results)
    state = journal.open("fp", describe={}, input_identity=identity)
    assert state.input_changes == []  # the new identity was committed with the results
    position = {n: row for row, n in enumerate(edited, start=2)}
    assert all(position[line["to"]] == int(line["row"]) for line in read_results(results))
    journal.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    count=st.integers(5, 60),
)
def test_rekeying_property(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, count: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("prop")
    numbers = _numbers(count, seed=count)
    handled = data.draw(st.integers(0, count))
    source, results = _campaign(tmp_path, numbers, handled=max(1, handled))
    pool = numbers + _numbers(10, seed=1000 + count)
    edited = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=80))
    journal, _, _ = _rekey(source, results, edited)
    first: dict[str, int] = {}
    for row, n in enumerate(edited, start=2):
        first.setdefault(n, row)
    lines = list(read_results(results))
    # Never two lines for one number, every line on its number's first row now, and every
    # handled number either kept or in the removed file.
    assert len({line["to"] for line in lines}) == len(lines)
    assert all(first[line["to"]] == int(line["row"]) for line in lines)
    removed = (
        {line["to"] for line in read_results(journal.removed_path)}
        if journal.removed_path.exists()
        else set()
    )
    assert {line["to"] for line in lines} | removed == set(numbers[: max(1, handled)])
    journal.close()
