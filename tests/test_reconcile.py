"""Row keys (``clientMessageId``) and how receipts reconcile unknown rows, without a network."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bulksend.reconcile import BY_KEY, BY_NUMBER, Receipt, Reconciled, match_receipts
from bulksend.rowkey import MAX_LENGTH, campaign_tag, client_message_id, key_prefix, row_of

HEADER = {"fingerprint": "f" * 64, "created": "2026-12-05T07:00:00Z"}
TAG = campaign_tag(HEADER) or ""
OTHER = campaign_tag({**HEADER, "created": "2026-12-12T07:00:00Z"}) or ""
A, B = "27820000001", "27820000002"


def test_the_tag_is_stable_for_one_results_file_and_differs_between_campaigns() -> None:
    assert TAG and campaign_tag(dict(HEADER)) == TAG
    assert OTHER and OTHER != TAG
    assert campaign_tag({**HEADER, "fingerprint": "e" * 64}) != TAG
    assert campaign_tag({"fingerprint": "f" * 64}) is None
    assert campaign_tag({}) is None


@given(st.integers(0, 10**17 - 1))
def test_a_key_is_short_alphanumeric_and_names_its_row(row: int) -> None:
    key = client_message_id(TAG, row)
    assert len(key) <= MAX_LENGTH and re.fullmatch(r"[a-z0-9]+", key)
    assert key == key_prefix(TAG) + str(row)
    assert row_of(key, TAG) == row
    assert row_of(key, OTHER) is None


def test_what_is_not_a_key_of_this_campaign_names_no_row() -> None:
    for key in ("", "42", "bs", f"bs{TAG}r", f"bs{TAG}rx", f"BS{TAG}r1", f"bs{TAG}r1 ", "x" * 40):
        assert row_of(key, TAG) is None


def test_receipts_join_rows_by_key_even_when_a_number_stands_on_several_rows() -> None:
    unknown = {2: A, 5: A, 9: B}
    receipts = [
        Receipt("id-5", client_message_id(TAG, 5), A),
        Receipt("id-5", client_message_id(TAG, 5), A),  # 003 then 004: one message
        Receipt("id-9", client_message_id(TAG, 9), ""),  # no number: the key alone
    ]
    assert match_receipts(unknown, receipts, tag=TAG) == [
        Reconciled(5, A, "id-5", BY_KEY),
        Reconciled(9, B, "id-9", BY_KEY),
    ]


def test_another_campaigns_receipts_never_reconcile_a_row() -> None:
    receipts = [Receipt("old", client_message_id(OTHER, 2), A)]
    assert match_receipts({2: A}, receipts, tag=TAG) == []


def test_receipts_without_a_key_fall_back_to_the_number() -> None:
    receipts = [Receipt("x1", "", A), Receipt("x1", "", A), Receipt("x2", "theirs", A)]
    assert match_receipts({3: A, 4: A}, receipts, tag=TAG) == [
        Reconciled(3, A, "x1", BY_NUMBER),
        Reconciled(4, A, "x2", BY_NUMBER),
    ]


def test_a_key_whose_row_moved_to_another_number_joins_by_number_only() -> None:
    """After re-keying, row 7 holds B now; the receipt keyed row 7 was for A (now on row 3)."""
    receipts = [Receipt("k7", client_message_id(TAG, 7), A)]
    assert match_receipts({7: B, 3: A}, receipts, tag=TAG) == [Reconciled(3, A, "k7", BY_NUMBER)]


def test_an_id_is_never_given_twice() -> None:
    receipts = [
        Receipt("dup", client_message_id(TAG, 2), A),
        Receipt("dup", "", A),
        Receipt("held", client_message_id(TAG, 4), A),
    ]
    found = match_receipts({2: A, 4: A}, receipts, tag=TAG, taken={"held"})
    assert found == [Reconciled(2, A, "dup", BY_KEY)]
