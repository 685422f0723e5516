"""Sequences: periods ending at the cutoff, hand-computed tensors, agreement with the windows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from test_features_store import random_shop, tiny_shop, write_store

from ltvcast.features import SEQUENCE_CHANNELS, build
from ltvcast.features.sequences import calendar, period_starts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    con = write_store(tmp_path_factory.mktemp("seq") / "tiny.duckdb", tiny_shop())
    yield con
    con.close()


def test_period_starts_weeks_and_clipped_months():
    weeks = period_starts(date(2024, 3, 1), "W", 3)
    assert weeks.dtype == np.dtype("datetime64[D]")
    assert [str(d) for d in weeks] == ["2024-02-09", "2024-02-16", "2024-02-23"]
    months = period_starts(date(2024, 3, 31), "M", 4)
    # cutoff-aligned calendar months, clipped to the month end
    assert [str(d) for d in months] == ["2023-11-30", "2023-12-31", "2024-01-31", "2024-02-29"]
    cal = calendar(months, date(2024, 3, 31)).to_pandas()
    assert len(cal) == (date(2024, 3, 31) - date(2023, 11, 30)).days
    assert cal["period"].tolist()[:31] == [0] * 31 and cal["period"].iloc[-1] == 3
    assert (cal.groupby("period").size().tolist()) == [31, 31, 29, 31]


def test_weekly_tensor_by_hand(tiny):
    fs = build(tiny, "2024-03-01", period="W", lookback=4, population="all")
    # periods [02-02, 02-09), [02-09, 02-16), [02-16, 02-23), [02-23, 03-01)
    assert [str(d) for d in fs.period_starts] == ["2024-02-02", "2024-02-09", "2024-02-16", "2024-02-23"]
    assert fs.channels == ("orders", "spend", "items", "returns", "sessions", "views", "add_to_carts")
    assert fs.sequences.dtype == np.float32 and fs.sequences.shape == (5, 4, 7)
    ids = fs.customers["customer_id"].tolist()
    assert ids == ["A", "B", "C", "D", "F"]
    want = np.zeros((5, 4, 7), dtype=np.float32)
    # A, period 1: o3 + o4 on 02-15 (2 orders, 16.00, 4 items); sessions s1 (02-10) and
    #   s2 (02-15): 2 sessions, 3 views, 2 carts. Return r1 (02-20) of o2 counts on o2's day
    #   2023-12-20, before the first period (refunds netted by order; before: period 2 read
    #   [0, -36, 0, 1, 0, 0, 0]).
    want[0, 1] = [2, 16, 4, 0, 2, 3, 2]
    # B, period 3: o6 on 02-28 (2 items) fully returned 02-29 (2 returns, counted on 02-28): the
    #   day is given back, so 0 orders (before: 1); spend 0.30 - 0.30 = 0.
    want[1, 3] = [0, 0, 2, 2, 0, 0, 0]
    # C, F: nothing in the last 4 weeks; D's session on 02-01 is before the first period.
    np.testing.assert_array_equal(fs.sequences, want)
    assert fs.sequences[1, 3, 1] == 0.0  # exact, not 2.8e-17


def test_monthly_tensor_by_hand(tiny):
    fs = build(tiny, "2024-03-01", period="M", lookback=3, population="all", channels=SEQUENCE_CHANNELS)
    assert [str(d) for d in fs.period_starts] == ["2023-12-01", "2024-01-01", "2024-02-01"]
    ch = {c: j for j, c in enumerate(fs.channels)}
    seq = fs.sequences
    # A: December o2 (36.00) refunded in full by r1 (02-20), which counts on o2's day: spend
    # 36 - 36 = 0, no order, returned 36 in December (before netting by order: December 36 and
    # 1 order; February 16 - 36 = -20, returned 36). February: o3 + o4 on 02-15, one occasion, 16.
    assert seq[0, 0, ch["spend"]] == 0 and seq[0, 0, ch["orders"]] == 0 and seq[0, 0, ch["occasions"]] == 0
    assert seq[0, 0, ch["returned_value"]] == 36 and seq[0, 0, ch["returns"]] == 1
    assert seq[0, 2, ch["spend"]] == 16 and seq[0, 2, ch["occasions"]] == 1
    assert seq[0, 2, ch["returned_value"]] == 0 and seq[0, 2, ch["purchase_events"]] == 1
    # D: February session with one view; F: January order 8.00.
    assert seq[3, 2, ch["sessions"]] == 1 and seq[3, 2, ch["views"]] == 1
    assert seq[4, 1, ch["spend"]] == 8 and seq[4, 1, ch["items"]] == 1
    assert seq[2].sum() == 0  # C bought last in 2023-09
    assert set(fs.channel_docs) == set(SEQUENCE_CHANNELS)


def test_sequence_sums_agree_with_window_features(tmp_path):
    shop = random_shop(7, n_customers=120)
    shop.meta["shop_timezone"] = "America/New_York"
    con = write_store(tmp_path / "r.duckdb", shop)
    # 8 weeks = 56 days; 12 weeks = 84 days
    fs = build(con, "2023-06-15", period="W", lookback=12, windows=(56, 84),
               channels=("occasions", "spend", "returns", "views", "add_to_carts", "sessions"))
    con.close()
    c = fs.customers
    seq = fs.sequences.astype(np.float64)
    ch = {name: j for j, name in enumerate(fs.channels)}
    assert seq[:, :, ch["occasions"]].sum() > 0
    np.testing.assert_array_equal(seq[:, -8:, ch["occasions"]].sum(axis=1), c["occasions_56d"])
    np.testing.assert_array_equal(seq[:, :, ch["occasions"]].sum(axis=1), c["occasions_84d"])
    np.testing.assert_allclose(seq[:, :, ch["spend"]].sum(axis=1), c["spend_84d"], atol=1e-3)
    np.testing.assert_array_equal(seq[:, :, ch["views"]].sum(axis=1), c["views_84d"])
    np.testing.assert_array_equal(seq[:, -8:, ch["sessions"]].sum(axis=1), c["sessions_56d"])
    np.testing.assert_array_equal(seq[:, :, ch["add_to_carts"]].sum(axis=1), c["add_to_carts_84d"])


def test_no_buyers_gives_empty_arrays(tiny):
    fs = build(tiny, "2020-01-01")
    assert len(fs.customers) == 0 and fs.sequences.shape == (0, 52, 7)
    assert list(fs.customers.columns)[:3] == ["customer_id", "occasions", "frequency"]
