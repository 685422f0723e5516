"""rfm_summary hands DuckDB an Arrow table: every dtype a frame may carry gives the same, hand-computed summary."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ltvcast.features import rfm_summary

ROWS = [  # customer, timestamp (UTC), amount, kind, order id
    ("a", "2024-01-10 08:00", 100.0, "sale", "o1"),
    ("a", "2024-01-20 23:30", 50.0, "sale", "o2"),
    ("a", "2024-02-05 10:00", -100.0, "return", "o1"),  # o1 given back: 01-10 is no occasion
    ("b", "2024-01-05 12:00", 70.0, "sale", None),  # no order id: counts on its own day
    ("b", "2024-01-25 00:00", 30.0, "sale", "o9"),
    ("b", "2024-02-01 09:00", -10.0, "return", "o9"),  # partial: o9 worth 20
    ("c", "2024-02-28 23:59", 5.0, "sale", "o5"),
]


def _frame(text_dtype, ts_dtype) -> pd.DataFrame:
    ts = pd.to_datetime([r[1] for r in ROWS], utc=True)
    if ts_dtype == "naive":
        ts = ts.tz_localize(None)
    elif ts_dtype == "berlin":
        ts = ts.tz_convert("Europe/Berlin")  # the same instants in another zone
    return pd.DataFrame({
        "customer_id": pd.Series([r[0] for r in ROWS], dtype=text_dtype),
        "timestamp": ts,
        "amount": [r[2] for r in ROWS],
        "kind": pd.Series([r[3] for r in ROWS], dtype=text_dtype),
        "order_id": pd.Series([r[4] for r in ROWS], dtype=text_dtype),
    })


@pytest.mark.parametrize("text_dtype", ["string", "object", "category", "str"])
@pytest.mark.parametrize("ts_dtype", ["utc", "naive", "berlin"])
def test_same_summary_for_every_text_and_timestamp_dtype(text_dtype, ts_dtype):
    out = rfm_summary(_frame(text_dtype, ts_dtype), "2024-03-01", unit="D", data_end="2024-02-29")
    assert list(out["customer_id"]) == ["a", "b", "c"] and out["customer_id"].dtype == "string"
    s = out.set_index("customer_id")
    # a: one occasion left (01-20, 50); T = 01-20 .. 02-29 = 40 d; spend 100 + 50 - 100.
    assert tuple(s.loc["a", ["frequency", "recency", "T", "monetary_value", "total_spend"]]) == (0, 0, 40, 0, 50)
    # b: occasions 01-05 (70) and 01-25 (30 - 10): recency 20 d, T 55 d, m = 20, spend 90.
    assert tuple(s.loc["b", ["frequency", "recency", "T", "monetary_value", "total_spend"]]) == (1, 20, 55, 20, 90)
    assert tuple(s.loc["c", ["frequency", "T", "n_transactions"]]) == (0, 1, 1)
    # dates are datetime.date objects (UTC days: the shop's zone is UTC)
    assert s["first_purchase"].to_dict() == {"a": date(2024, 1, 20), "b": date(2024, 1, 5), "c": date(2024, 2, 28)}
    assert s["last_purchase"].to_dict() == {"a": date(2024, 1, 20), "b": date(2024, 1, 25), "c": date(2024, 2, 28)}
    assert all(type(d) is date for d in s["first_purchase"])


def test_shop_zone_moves_late_purchases_to_the_next_local_day():
    """Berlin is UTC+1 in winter: 23:30 and 23:59 UTC fall on the next local day."""
    out = rfm_summary(_frame("string", "utc"), "2024-03-01", unit="D", timezone="Europe/Berlin",
                      data_end="2024-02-29").set_index("customer_id")
    assert out.loc["a", "first_purchase"] == date(2024, 1, 21) and out.loc["a", "T"] == 39
    assert out.loc["c", "last_purchase"] == date(2024, 2, 29) and out.loc["c", "T"] == 0
