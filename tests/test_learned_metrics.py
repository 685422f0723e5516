"""New backtest metrics: interval coverage, pinball loss, next-purchase MAE and concordance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ltvcast.errors import DataError
from ltvcast.metrics import (
    EVALUATE_COLUMNS,
    concordance_index,
    evaluate,
    interval_coverage,
    mean_pinball_loss,
    next_purchase_mae,
    pinball_loss,
)


def brute_cindex(t, e, p):
    num = den = 0.0
    for i, j in itertools.permutations(range(len(t)), 2):
        if e[i] == 1 and t[i] < t[j]:
            den += 1
            num += 1.0 if p[i] < p[j] else 0.5 if p[i] == p[j] else 0.0
    return num / den


def test_coverage_and_pinball_by_hand():
    y = [0.0, 5.0, 20.0, 3.0]
    assert interval_coverage(y, [0, 0, 1, 4], [0, 10, 10, 10]) == 0.5  # bounds inclusive: 0 in [0, 0]
    # q = 0.9: errors y - yhat = (0-1, 5-1, 20-1, 3-1) -> 0.1*1, 0.9*4, 0.9*19, 0.9*2
    assert pinball_loss(y, [1, 1, 1, 1], 0.9) == pytest.approx((0.1 + 3.6 + 17.1 + 1.8) / 4)
    assert pinball_loss(y, y, 0.5) == 0.0
    assert pinball_loss([1.0], [3.0], 0.1) == pytest.approx(0.9 * 2)
    # mean pinball of median predictions = half the MAE for the 0.5 part
    p = [1.0, 1.0, 1.0, 1.0]
    assert mean_pinball_loss(y, p, p, p) == pytest.approx(
        (pinball_loss(y, p, 0.1) + pinball_loss(y, p, 0.5) + pinball_loss(y, p, 0.9)) / 3
    )
    assert np.isnan(interval_coverage(y, [0, 0, np.nan, 0], [1, 1, 1, 1]))
    with pytest.raises(DataError):
        pinball_loss(y, p, 1.5)


def test_next_purchase_mae_only_over_buyers():
    assert next_purchase_mae([2.0, np.nan, 10.0], [4.0, 99.0, 7.0]) == pytest.approx(2.5)
    assert np.isnan(next_purchase_mae([np.nan, np.nan], [1.0, 2.0]))
    assert np.isnan(next_purchase_mae([1.0, np.nan], [np.nan, 2.0]))


def test_concordance_by_hand_with_censoring_and_ties():
    # times 1 (event), 2 (event), 5 (censored), 5 (censored)
    t = np.array([1.0, 2.0, 5.0, 5.0])
    e = np.array([1, 1, 0, 0])
    # comparable pairs: (0,1) (0,2) (0,3) (1,2) (1,3) = 5
    p = np.array([3.0, 3.0, 10.0, 1.0])
    # (0,1): tie 0.5; (0,2): 3<10 yes; (0,3): 3<1 no; (1,2) yes; (1,3) no -> 2.5 / 5
    assert concordance_index(t, e, p) == pytest.approx(0.5)
    assert concordance_index(t, e, t) == 1.0
    assert concordance_index(t, e, -t) == 0.0
    assert np.isnan(concordance_index([5.0, 5.0], [0, 0], [1.0, 2.0]))
    with pytest.raises(DataError):
        concordance_index(t, [1, 2, 0, 0], p)


def test_concordance_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 60
        t = rng.integers(0, 15, size=n).astype(float)
        e = (rng.random(n) < 0.6).astype(float)
        p = rng.integers(0, 8, size=n).astype(float)
        assert concordance_index(t, e, p) == pytest.approx(brute_cindex(t, e, p), abs=1e-12)


def test_evaluate_scores_quantiles_and_next_purchase():
    cutoff = pd.Timestamp("1998-01-01", tz="UTC")
    pred = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "model": "m",
            "cutoff": cutoff,
            "horizon_days": 10.0,
            "pred_transactions": [1.0, 0.1, 2.0, 0.5],
            "pred_spend": [10.0, 1.0, 30.0, 5.0],
            "p_churn": [0.3, 0.9, 0.1, 0.6],
            "p_alive": np.nan,
            "pred_spend_p10": [0.0, 0.0, 5.0, 0.0],
            "pred_spend_p50": [5.0, 0.0, 20.0, 0.0],
            "pred_spend_p90": [20.0, 2.0, 50.0, 10.0],
            "pred_next_purchase_days": [3.0, 8.0, 1.0, 5.0],
        }
    )
    act = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "actual_transactions": [1.0, 0.0, 2.0, 0.0],
            "actual_spend": [12.0, 0.0, 60.0, 0.0],
            "actual_next_purchase_days": [2.0, np.nan, 4.0, np.nan],
        }
    )
    row = evaluate(pred, act).iloc[0]
    assert list(evaluate(pred, act).columns) == list(EVALUATE_COLUMNS)
    assert row["spend_coverage_80"] == 0.75  # c (60 > 50) is outside
    assert row["next_purchase_mae"] == pytest.approx((1.0 + 3.0) / 2)
    # times: a 2 (event), b 10 (censored), c 4 (event), d 10 (censored); preds 3, 8, 1, 5
    assert row["next_purchase_cindex"] == pytest.approx(concordance_index([2, 10, 4, 10], [1, 0, 1, 0], [3, 8, 1, 5]))
    # without the actual next-purchase column the timing metrics are nan, the rest unchanged
    row2 = evaluate(pred, act.drop(columns="actual_next_purchase_days")).iloc[0]
    assert np.isnan(row2["next_purchase_mae"]) and np.isnan(row2["next_purchase_cindex"])
    assert row2["spend_coverage_80"] == 0.75
    bad = act.assign(actual_next_purchase_days=[2.0, 1.0, 4.0, np.nan])
    with pytest.raises(DataError, match="exactly for the customers who bought"):
        evaluate(pred, bad)


def test_report_shows_level_calibration_per_model(tmp_path):
    from ltvcast.evaluate.report import write_report

    cutoff = pd.Timestamp("1998-01-01", tz="UTC")
    n = 40
    rng = np.random.default_rng(0)
    spend = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(2.0, 20.0, n))
    pred = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "model": "m",
            "cutoff": cutoff,
            "horizon_days": 30.0,
            "pred_transactions": 1.0,
            "pred_spend": spend * 1.1 + 1.0,
            "p_churn": 0.5,
            "p_alive": np.nan,
            "pred_spend_p10": 0.0,
            "pred_spend_p50": 5.0,
            "pred_spend_p90": 50.0,
            "pred_next_purchase_days": 10.0,
        }
    )
    act = pd.DataFrame(
        {"customer_id": pred["customer_id"], "actual_transactions": (spend > 0).astype(float), "actual_spend": spend}
    )
    html = write_report(pred, act, None, tmp_path / "r.html", title="t").read_text()
    total_pred, total_act = pred["pred_spend"].sum(), spend.sum()
    assert f"Total spend predicted {total_pred:,.0f} vs actual {total_act:,.0f}" in html
    assert f"mean p_churn 0.500 vs churn rate {(spend == 0).mean():.3f}" in html
    assert f"for {np.mean(spend <= 50.0):.1%} of customers" in html
    assert "Next purchase C-index" in html and "p10–p90 coverage" in html
