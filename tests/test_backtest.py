"""Temporal backtest and forward forecast on the built-in CDNOW data and small cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError
from ltvcast.evaluate.backtest import evaluation_window, run_backtest
from ltvcast.models.forecast import forecast


@pytest.fixture(scope="module")
def cdnow():
    return open_history(dataset="cdnow")


@pytest.fixture(scope="module")
def cdnow_backtest(cdnow):
    return run_backtest(cdnow, "1998-01-01", 182.0)


def test_window_clipped_to_observed_days_with_a_note():
    days, notes = evaluation_window("1998-01-01", 182.0, "1998-06-30")
    assert days == 181.0
    assert "181 days" in notes[0] and "1998-06-30" in notes[0]
    assert evaluation_window("1997-10-01", 182.0, "1998-06-30") == (182.0, [])


def test_window_far_past_the_data_is_refused_naming_dates():
    with pytest.raises(CutoffError, match=r"1998-03-01.*1998-06-30"):
        evaluation_window("1998-03-01", 182.0, "1998-06-30")
    with pytest.raises(CutoffError, match="1998-07-01"):
        evaluation_window("1998-07-01", 7.0, "1998-06-30")


def test_cdnow_backtest_matches_reference_protocol(cdnow_backtest):
    """Same-day merge, all 23,570 customers, actuals in [1998-01-01, 1998-07-01)."""
    bt = cdnow_backtest
    assert bt.horizon_days == 181.0
    assert list(bt.metrics["model"]) == ["naive", "bgnbd", "paretonbd"]
    assert (bt.metrics["n_customers"] == 23570).all()
    assert bt.actuals["actual_spend"].sum() == pytest.approx(476154.37, abs=0.01)
    m = bt.metrics.set_index("model")
    # lifetimes 0.11.3 on the same protocol: Pareto/NBD + Gamma-Gamma spend MAE 20.97,
    # total spend error +0.8 %, Brier 0.1305; BG/NBD decile MAPE 0.22.
    assert m.loc["paretonbd", "spend_mae"] == pytest.approx(20.97, abs=0.01)
    assert m.loc["paretonbd", "total_spend_error_pct"] == pytest.approx(0.8, abs=0.05)
    assert m.loc["paretonbd", "churn_brier"] == pytest.approx(0.1305, abs=0.0001)
    assert m.loc["bgnbd", "decile_mape"] == pytest.approx(0.22, abs=0.005)
    for model in ("bgnbd", "paretonbd"):
        assert m.loc[model, "spend_mae"] < m.loc["naive", "spend_mae"]
        assert abs(m.loc[model, "total_spend_error_pct"]) < abs(m.loc["naive", "total_spend_error_pct"])


def test_cdnow_predictions_are_the_canonical_frame(cdnow_backtest):
    p = cdnow_backtest.predictions
    assert len(p) == 3 * 23570
    assert not p.duplicated(["customer_id", "model"]).any()
    btyd = p[p["model"] != "naive"]
    assert btyd["p_alive"].between(0, 1).all()
    assert p["p_churn"].between(0, 1).all()
    assert (p["pred_spend"] >= 0).all()
    assert p.loc[p["model"] == "naive", "p_alive"].isna().all()
    assert (p["cutoff"] == pd.Timestamp("1998-01-01", tz="UTC")).all()


def test_forecast_from_day_after_data_end_and_refusal_later(cdnow):
    preds, _ = forecast(cdnow, "1998-07-01", 364.0, ["bgnbd"])
    assert len(preds) == 23570 and (preds["horizon_days"] == 364.0).all()
    one_year = preds["pred_transactions"].sum()
    assert 15000 < one_year < 30000  # about 0.9 repeat occasions per customer-year
    with pytest.raises(CutoffError, match=r"1998-07-02.*1998-06-30"):
        forecast(cdnow, "1998-07-02", 364.0, ["bgnbd"])
    later, _ = forecast(
        cdnow, "1998-07-02", 364.0, ["bgnbd"], allow_future_cutoff=True
    )
    assert len(later) == 23570


def test_future_transactions_never_reach_the_fit(cdnow):
    base = run_backtest(cdnow, "1998-01-01", 90.0, ["bgnbd"])
    shifted = cdnow.transactions.copy()
    after = shifted["timestamp"] >= pd.Timestamp("1998-01-01", tz="UTC")
    shifted.loc[after, "amount"] = shifted.loc[after, "amount"] * 10
    changed = run_backtest(replace(cdnow, transactions=shifted), "1998-01-01", 90.0, ["bgnbd"])
    cols = ["pred_transactions", "pred_spend", "p_churn", "p_alive"]
    np.testing.assert_allclose(base.predictions[cols], changed.predictions[cols], rtol=1e-12)
    assert changed.actuals["actual_spend"].sum() == pytest.approx(10 * base.actuals["actual_spend"].sum())


def test_actuals_are_the_two_label_queries_in_one(cdnow, cdnow_backtest):
    """horizon_actuals runs one query (window_labels); its columns equal horizon_labels and next_purchase_labels."""
    from ltvcast.features import horizon_labels, next_purchase_labels
    from ltvcast.features.labels import window_labels

    tx, ids = cdnow.transactions, cdnow_backtest.actuals["customer_id"]
    both = window_labels(tx, ids, "1998-01-01", 181.0)
    counts = horizon_labels(tx, ids, "1998-01-01", 181.0)
    nxt = next_purchase_labels(tx, ids, "1998-01-01", 181.0)
    assert list(both["customer_id"]) == list(counts["customer_id"]) == list(nxt["customer_id"])
    for col in ("actual_transactions", "actual_spend"):
        assert np.array_equal(both[col].to_numpy(), counts[col].to_numpy())
    assert np.array_equal(both["next_purchase_days"].to_numpy(), nxt["next_purchase_days"].to_numpy(), equal_nan=True)
    assert (both["next_purchase_days"].notna() == (both["actual_transactions"] > 0)).all()
    actuals = cdnow_backtest.actuals
    assert np.array_equal(actuals["actual_next_purchase_days"].to_numpy(), both["next_purchase_days"].to_numpy(),
                          equal_nan=True)
