"""Time-shifted training windows and their labels: dates and days computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import CutoffError, DataError
from ltvcast.features.labels import next_purchase_labels
from ltvcast.models.learned.examples import (
    Window,
    build_examples,
    history_before,
    recent_windows,
    training_cutoffs,
    window_labels,
    window_plan,
)
from ltvcast.timeutil import local_midnight


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_training_cutoffs_hand_computed():
    # C = 1998-01-01, H = 181 d: c_0 = C - 181 d = 1997-07-04; then every 28 days earlier
    cuts = training_cutoffs("1998-01-01", 181, n_windows=4, stride_days=28)
    assert cuts == [day("1997-07-04"), day("1997-06-06"), day("1997-05-09"), day("1997-04-11")]
    # every label window ends on or before C
    assert all(c + pd.Timedelta(days=181) <= day("1998-01-01") for c in cuts)
    # 26w = 182 days: c_0 = 1997-07-03
    assert training_cutoffs("1998-01-01", 182.0, n_windows=1)[0] == day("1997-07-03")


def test_training_cutoffs_drop_windows_without_enough_history():
    # data from 1997-01-01; 28 days of history needed: earliest cutoff 1997-01-29
    cuts = training_cutoffs("1998-01-01", 181, n_windows=10, stride_days=28, first_day="1997-01-01")
    assert cuts[-1] == day("1997-02-14")  # 1997-01-17 is dropped (only 16 days of history)
    assert len(cuts) == 6
    with pytest.raises(CutoffError, match="1997-07-04"):
        training_cutoffs("1998-01-01", 181, first_day="1997-07-01")
    with pytest.raises(CutoffError):
        training_cutoffs("1998-01-01", 181, n_windows=0)


def test_recent_windows_end_at_the_cutoff():
    rec = recent_windows("1998-01-01", 181, stride_days=28, min_label_days=28)
    assert rec == [
        (day("1997-12-04"), 28),
        (day("1997-11-06"), 56),
        (day("1997-10-09"), 84),
        (day("1997-09-11"), 112),
        (day("1997-08-14"), 140),
        (day("1997-07-17"), 168),
    ]
    assert all(c + pd.Timedelta(days=h) == day("1998-01-01") for c, h in rec)
    assert recent_windows("1998-01-01", 181, stride_days=28, min_label_days=100)[0] == (day("1997-09-11"), 112)


def test_window_plan_indices_and_roles():
    plan = window_plan("1998-01-01", 181, n_windows=2, stride_days=56, recent=True, min_label_days=28)
    assert plan == [
        Window(0, day("1997-07-04"), 181),
        Window(1, day("1997-05-09"), 181),
        Window(-1, day("1997-11-06"), 56),
        Window(-2, day("1997-09-11"), 112),
        Window(-3, day("1997-07-17"), 168),
    ]
    assert plan[0].is_validation and not plan[0].is_recent and plan[2].is_recent
    assert [w.index for w in window_plan("1998-01-01", 181, n_windows=2, recent=False)] == [0, 1]


def _tx(rows):
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows], utc=True),
            "amount": [float(r[2]) for r in rows],
        }
    )


def test_next_purchase_labels_by_hand():
    tx = _tx(
        [
            ("a", "1997-12-30 10:00", 5),   # before the window
            ("a", "1998-01-03 09:00", 10),  # day 2
            ("a", "1998-01-20 09:00", 10),
            ("b", "1998-01-01 00:00", 7),   # on the cutoff day: 0
            ("c", "1998-01-05 12:00", -20),  # a return only: not a purchase occasion
            ("d", "1998-01-11 00:00", 4),   # window is 10 days: day 10 is outside
        ]
    )
    out = next_purchase_labels(tx, pd.Series(["d", "c", "b", "a", "e"]), "1998-01-01", 10)
    assert list(out["customer_id"]) == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(out["next_purchase_days"].to_numpy(), [2.0, 0.0, np.nan, np.nan, np.nan])


def test_next_purchase_labels_use_the_shop_time_zone():
    # 1998-01-02 23:30 UTC is 1998-01-03 00:30 in Berlin: day 2 there, day 1 in UTC
    tx = _tx([("a", "1998-01-02 23:30", 10)])
    assert next_purchase_labels(tx, pd.Series(["a"]), "1998-01-01", 10)["next_purchase_days"].iloc[0] == 1.0
    berlin = next_purchase_labels(tx, pd.Series(["a"]), "1998-01-01", 10, timezone="Europe/Berlin")
    assert berlin["next_purchase_days"].iloc[0] == 2.0
    assert local_midnight("1998-01-01", "Europe/Berlin") == pd.Timestamp("1997-12-31 23:00", tz="UTC")


def test_history_before_cuts_at_local_midnight():
    tx = _tx([("a", "1997-12-31 22:59", 1), ("a", "1997-12-31 23:00", 2), ("a", "1998-01-01 00:00", 3)])
    assert list(history_before(tx, "1998-01-01")["amount"]) == [1.0, 2.0]
    assert list(history_before(tx, "1998-01-01", "Europe/Berlin")["amount"]) == [1.0]


def test_window_labels_spend_can_be_negative_under_net_revenue():
    tx = _tx([("a", "1997-06-01", 30), ("a", "1998-01-02", 10), ("a", "1998-01-03", -50), ("b", "1997-05-01", 5)])
    lab = window_labels(tx, pd.Series(["a", "b"]), "1998-01-01", 30)
    assert list(lab["actual_transactions"]) == [1.0, 0.0]
    assert list(lab["actual_spend"]) == [-40.0, 0.0]
    assert lab["next_purchase_days"].iloc[0] == 1.0 and np.isnan(lab["next_purchase_days"].iloc[1])


def test_build_examples_never_shows_data_at_or_after_the_cutoff():
    tx = _tx(
        [
            ("a", "1997-01-05", 10),
            ("a", "1997-03-01", 20),
            ("b", "1997-02-01", 5),
            ("a", "1997-06-01", 30),
            ("b", "1997-12-31", 40),
            ("a", "1998-01-01", 999),  # at the cutoff: never read
            ("c", "1998-02-01", 999),
        ]
    )
    seen = []

    def featurize(hist, c, label_days):
        seen.append((c, hist["timestamp"].max(), label_days))
        ids = hist["customer_id"].drop_duplicates().sort_values()
        return pd.DataFrame({"customer_id": ids, "n": hist.groupby("customer_id").size().loc[ids].to_numpy()})

    plan = [Window(0, day("1997-07-04"), 181), Window(1, day("1997-04-11"), 181), Window(-1, day("1997-12-04"), 28)]
    ex = build_examples(tx, "1998-01-01", plan, featurize)
    for c, latest, _ in seen:
        assert latest < c
    assert [s[2] for s in seen] == [181.0, 181.0, 28.0]
    assert ex.feature_names == ["label_days", "n"]
    assert "c" not in set(ex.frame["customer_id"])
    w0 = ex.frame[ex.frame["window"] == 0].set_index("customer_id")
    # window 0: [1997-07-04, 1998-01-01): b buys 40 on 1997-12-31; a's 999 on 1998-01-01 is outside
    assert w0.loc["a", "actual_spend"] == 0.0 and w0.loc["b", "actual_spend"] == 40.0
    assert w0.loc["b", "next_purchase_days"] == (day("1997-12-31") - day("1997-07-04")).days
    w1 = ex.frame[ex.frame["window"] == 1].set_index("customer_id")
    assert w1.loc["a", "actual_spend"] == 30.0 and w1.loc["a", "n"] == 2
    recent = ex.frame[ex.frame["window"] == -1].set_index("customer_id")
    assert recent.loc["b", "actual_spend"] == 40.0 and (recent["label_days"] == 28.0).all()
    with pytest.raises(CutoffError, match="reaches past"):
        build_examples(tx, "1998-01-01", [Window(0, day("1997-12-20"), 30)], featurize)
    with pytest.raises(DataError):
        build_examples(tx, "1998-01-01", [], featurize)
