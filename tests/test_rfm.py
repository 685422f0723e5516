"""RFM summary: the papers' own CDNOW calibration summary, and hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.features import horizon_labels, rfm_summary

SAMPLE = Path(__file__).resolve().parents[1] / "src/ltvcast/data/files/CDNOW_sample.txt.gz"
REFERENCE = Path(__file__).parent / "data/cdnow_sample_summary_39w.csv"


def _tx(rows):
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="string"),
            "timestamp": pd.to_datetime([r[1] for r in rows], utc=True, format="ISO8601"),
            "amount": [float(r[2]) for r in rows],
        }
    )


def _round_half_up(x: pd.Series) -> pd.Series:
    # The papers round 22.345 to 22.35; float rounding gives 22.34.
    return np.floor(x * 100 + 0.5 + 1e-7) / 100


def test_reproduces_papers_calibration_summary_for_all_sample_customers():
    raw = pd.read_csv(SAMPLE, sep=r"\s+", header=None, dtype=str, names=["master", "sid", "date", "cds", "usd"])
    tx = pd.DataFrame(
        {
            "customer_id": raw["sid"].astype("string"),
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d", utc=True),
            "amount": raw["usd"].astype(float),
        }
    )
    ours = rfm_summary(tx, "1997-10-01", unit="W")
    ref = pd.read_csv(REFERENCE, dtype={"ID": str})
    ref["customer_id"] = ref["ID"].str.zfill(4)
    merged = ours.merge(ref, on="customer_id", how="outer", indicator=True, suffixes=("", "_ref"))
    assert len(ours) == 2357
    assert (merged["_merge"] == "both").all()
    assert (merged["frequency"] == merged["x"]).all()
    np.testing.assert_array_equal(_round_half_up(merged["recency"]), merged["t_x"])
    np.testing.assert_array_equal(_round_half_up(merged["T"]), merged["T_ref"])
    repeat = merged["x"] > 0
    np.testing.assert_array_equal(_round_half_up(merged.loc[repeat, "monetary_value"]), merged.loc[repeat, "zbar"])
    first = merged.set_index("customer_id").loc["0001"]
    assert first["T"] == pytest.approx(272 / 7)


def test_hand_computed_customer_with_same_day_merge_and_cutoff_exclusion():
    tx = _tx(
        [
            ("a", "2020-01-01 09:00", 10),
            ("a", "2020-01-01 17:00", 5),  # same day: one occasion worth 15
            ("a", "2020-01-08", 20),
            ("a", "2020-01-15", 40),
            ("a", "2020-01-29", 99),  # on the cutoff: not history
            ("b", "2020-01-28 23:59", 7),
            ("c", "2020-02-01", 3),  # first seen after the cutoff: absent
        ]
    )
    s = rfm_summary(tx, "2020-01-29", unit="D").set_index("customer_id")
    assert list(s.index) == ["a", "b"]
    a = s.loc["a"]
    assert a["frequency"] == 2
    assert a["recency"] == 14
    assert a["T"] == 27  # 2020-01-01 .. 2020-01-28
    assert a["monetary_value"] == 30  # (20 + 40) / 2
    assert a["total_spend"] == 75
    assert a["n_transactions"] == 4
    b = s.loc["b"]
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0, 0, 0)
    weeks = rfm_summary(tx, "2020-01-29", unit="W").set_index("customer_id").loc["a"]
    assert weeks["recency"] == pytest.approx(2.0)


def test_rows_at_or_after_cutoff_never_change_the_summary():
    tx = _tx([("a", "2020-01-01", 10), ("a", "2020-01-05", 20), ("b", "2020-01-03", 5)])
    later = _tx([("a", "2020-01-10", 1000), ("z", "2020-01-10", 1)])
    # data_end: both frames describe a shop observed through 2020-01-10; without it the first frame's
    # end would be its last row (2020-01-05) and the cutoff would be refused as after the data.
    base = rfm_summary(tx, "2020-01-10", data_end="2020-01-10")
    with_future = rfm_summary(pd.concat([tx, later]), "2020-01-10", data_end="2020-01-10")
    pd.testing.assert_frame_equal(base, with_future)


def test_missing_column_names_it_and_lists_found():
    tx = _tx([("a", "2020-01-01", 10)]).drop(columns="amount")
    with pytest.raises(DataError, match=r"amount.*found.*customer_id"):
        rfm_summary(tx, "2020-02-01")


def test_horizon_labels_count_days_sum_spend_and_fill_zero():
    tx = _tx(
        [
            ("a", "2020-01-31", 1),  # before the window
            ("a", "2020-02-01 10:00", 10),
            ("a", "2020-02-01 11:00", 5),
            ("a", "2020-02-07 23:00", -3),  # a return inside the window
            ("a", "2020-02-08", 100),  # first day after a 7-day window
        ]
    )
    labels = horizon_labels(tx, pd.Series(["a", "b"]), "2020-02-01", 7).set_index("customer_id")
    assert labels.loc["a", "actual_transactions"] == 1  # the return day is no purchase occasion
    assert labels.loc["a", "actual_spend"] == 12
    gross = horizon_labels(tx, pd.Series(["a"]), "2020-02-01", 7, revenue_basis="gross")
    assert gross["actual_spend"].iloc[0] == 15
    assert labels.loc["b", "actual_transactions"] == 0
    assert labels.loc["b", "actual_spend"] == 0


def test_returns_reduce_net_value_but_make_no_occasion_and_sum_exactly():
    tx = _tx(
        [
            ("a", "2020-01-01", 0.1),
            ("a", "2020-01-01", 0.2),
            ("a", "2020-01-05", 0.7),
            ("a", "2020-01-09", -0.1),  # return-only day: not an occasion
            ("a", "2020-01-05 12:00", -0.7),  # the 01-05 order fully returned that day
        ]
    )
    tx["kind"] = ["sale", "sale", "sale", "return", "return"]
    # data_end: the shop is observed through 2020-01-19 (the cutoff is after the last row).
    net = rfm_summary(tx, "2020-01-20", unit="D", data_end="2020-01-19").iloc[0]
    assert (net["frequency"], net["recency"], net["T"]) == (1, 4, 18)
    assert net["monetary_value"] == 0.0  # exactly, not 1e-17
    assert net["total_spend"] == 0.2  # 0.1 + 0.2 + 0.7 - 0.1 - 0.7, exact
    assert net["n_transactions"] == 2  # orders: the two 01-01 rows (no order id, one timestamp) are one
    gross = rfm_summary(tx, "2020-01-20", unit="D", revenue_basis="gross", data_end="2020-01-19").iloc[0]
    assert gross["monetary_value"] == 0.7 and gross["total_spend"] == 1.0


def test_customer_with_only_returns_is_not_a_buyer():
    tx = _tx([("a", "2020-01-01", 5), ("r", "2020-01-02", -5)])
    # data_end: observed through 2020-01-31 (the cutoff is after the last row).
    assert list(rfm_summary(tx, "2020-02-01", data_end="2020-01-31")["customer_id"]) == ["a"]


def test_shop_time_zone_decides_the_day():
    # 23:30 UTC on 1 Jan is 00:30 on 2 Jan in Berlin: two occasions there, one in UTC.
    tx = _tx([("a", "2020-01-01 10:00", 5), ("a", "2020-01-01 23:30", 5)])
    # data_end: observed through 2020-01-09 (the cutoff is after the last row).
    utc = rfm_summary(tx, "2020-01-10", unit="D", data_end="2020-01-09").iloc[0]
    berlin = rfm_summary(tx, "2020-01-10", unit="D", timezone="Europe/Berlin", data_end="2020-01-09").iloc[0]
    assert utc["frequency"] == 0
    assert (berlin["frequency"], berlin["recency"]) == (1, 1)
    # The cutoff is local midnight too: a purchase at 23:30 UTC on 9 Jan is on the 10th in Berlin.
    late = _tx([("a", "2020-01-01 10:00", 5), ("a", "2020-01-09 23:30", 5)])
    assert rfm_summary(late, "2020-01-10", timezone="Europe/Berlin").iloc[0]["frequency"] == 0
    labels = horizon_labels(late, pd.Series(["a"]), "2020-01-10", 1, timezone="Europe/Berlin")
    assert labels["actual_transactions"].iloc[0] == 1
