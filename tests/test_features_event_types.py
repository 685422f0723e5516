"""Event types a shop adds (issue 13 point 5, issue 11): count and recency per type, ranked at the cutoff.

The tiny shop of test_features_families (cutoff C = 2024-03-01; C-90 = 2023-12-02)
plus events of two types the contract does not name:
  email_open   A 2024-01-10, A 2024-02-20, D 2023-10-01            -> 3 before C: type 1
  wishlist_add D 2024-02-25; A 2024-03-05, A 2024-03-06, C 2024-03-07 -> 1 before C: type 2
(after C wishlist_add would lead 4 to 3: the ranking reads the history only.)
  A: type 1 2 events, both in 90 days, last 10 days before C; type 2 none.
  D: type 1 1 event (152 days before C, not in 90 days); type 2 1 event, 5 days before C.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from test_features_store import tiny_shop, write_store

from ltvcast.features import build

ADDED = [
    ("x1", "A", None, "2024-01-10 09:00:00", "email_open", None),
    ("x2", "A", None, "2024-02-20 09:00:00", "email_open", None),
    ("x3", "D", None, "2023-10-01 09:00:00", "email_open", None),
    ("x4", "D", None, "2024-02-25 09:00:00", "wishlist_add", "P1"),
    ("x5", "A", None, "2024-03-05 09:00:00", "wishlist_add", None),
    ("x6", "A", None, "2024-03-06 09:00:00", "wishlist_add", None),
    ("x7", "C", None, "2024-03-07 09:00:00", "wishlist_add", None),
]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    shop = tiny_shop()
    con = write_store(tmp_path_factory.mktemp("types") / "tiny.duckdb", replace(shop, events=shop.events + ADDED))
    fs = build(con, "2024-03-01", population="all", period="W", lookback=4)
    con.close()
    return fs.customers.set_index("customer_id")


def test_added_event_types_by_hand(rows):
    want = {
        "A": [2, 2, 10.0, 0, 0, None, 2],
        "D": [1, 0, 152.0, 1, 1, 5.0, 2],
        "C": [0, 0, None, 0, 0, None, 0],
    }
    cols = ["other_type_1_events", "other_type_1_events_90d", "days_since_other_type_1",
            "other_type_2_events", "other_type_2_events_90d", "days_since_other_type_2", "other_events"]
    for customer, values in want.items():
        for col, value in zip(cols, values):
            got = rows.loc[customer, col]
            assert (pd.isna(got) if value is None else got == value), (customer, col, got, value)
    assert (rows["other_type_3_events"] == 0).all() and rows["days_since_other_type_3"].isna().all()


def test_learned_models_read_the_added_types():
    from ltvcast.models.learned.features import AGE_COLUMNS

    for i in (1, 2, 3):
        assert {f"other_type_{i}_events", f"other_type_{i}_events_90d", f"days_since_other_type_{i}"}.isdisjoint(
            AGE_COLUMNS)
