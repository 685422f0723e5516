"""Backtest metrics: hand-computed cases, invariants and input errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ltvcast import metrics as m
from ltvcast.errors import DataError
from ltvcast.evaluate import (
    EVALUATE_COLUMNS,
    churn_auc,
    churn_brier,
    churn_labels,
    churn_pr_auc,
    decile_calibration,
    decile_mape,
    evaluate,
    gain_curve,
    join_actuals,
    mae,
    normalized_gini,
    rmse,
    spearman,
    summarize_backtest,
    top_decile_capture,
    total_error_pct,
)

Y4 = np.array([0.0, 10.0, 30.0, 60.0])  # total 100; perfect raw Gini = 2*(.6+.9+1+1)/4 - 1 = 0.75


def _lv_gini(y_true, y_pred):
    """The lifetime_value package's normalized Gini, re-derived (valid without ties)."""
    df = pd.DataFrame({"y": y_true, "p": y_pred}).sort_values("p", ascending=False, kind="stable")
    g = (df["y"].cumsum() / df["y"].sum()).to_numpy()
    gt = np.cumsum(np.sort(y_true)[::-1]) / np.sum(y_true)
    return (2 * g.mean() - 1) / (2 * gt.mean() - 1)


# --------------------------------------------------------------------------
# normalized Gini
# --------------------------------------------------------------------------


def test_gini_perfect_ranking_is_one():
    assert normalized_gini(Y4, Y4) == pytest.approx(1.0)
    assert normalized_gini(Y4, [1, 2, 3, 4]) == pytest.approx(1.0)


def test_gini_four_customers_by_hand():
    # ranked by prediction: 30, 60, 10, 0 -> gains .3, .9, 1, 1 -> raw 2*3.2/4 - 1 = 0.6
    assert normalized_gini(Y4, [0.1, 0.2, 0.4, 0.3]) == pytest.approx(0.6 / 0.75)


def test_gini_reversed_is_negative_by_hand():
    # ranked 0, 10, 30, 60 -> gains 0, .1, .4, 1 -> raw 2*1.5/4 - 1 = -0.25
    assert normalized_gini(Y4, -Y4) == pytest.approx(-0.25 / 0.75)
    assert normalized_gini(Y4, -Y4) < 0


def test_gini_ties_are_averaged_over_orders():
    pred = np.array([1.0, 1.0, 0.0, 0.0])
    # every order within the tie groups, scored with the package's formula
    orders = []
    for first in itertools.permutations([0, 1]):
        for second in itertools.permutations([2, 3]):
            y = Y4[list(first) + list(second)]
            g = np.cumsum(y) / y.sum()
            orders.append(2 * g.mean() - 1)
    expected = np.mean(orders) / 0.75  # = (2*1.7/4 - 1) / 0.75 = -0.2
    assert expected == pytest.approx(-0.2)
    assert normalized_gini(Y4, pred) == pytest.approx(expected)
    # and input order does not matter
    assert normalized_gini(Y4[::-1], pred[::-1]) == pytest.approx(expected)
    assert normalized_gini(Y4[[2, 0, 3, 1]], pred[[2, 0, 3, 1]]) == pytest.approx(expected)


def test_gini_constant_prediction_scores_like_random():
    # lifetime_value's right-endpoint sum: random/constant = (1/n) / raw_perfect
    assert normalized_gini(Y4, np.zeros(4)) == pytest.approx((1 / 4) / 0.75)
    rng = np.random.default_rng(3)
    y = rng.gamma(0.5, 100, size=20_000)
    assert abs(normalized_gini(y, np.ones_like(y))) < 1e-3
    assert abs(normalized_gini(y, rng.random(y.size))) < 0.03


def test_gini_matches_lifetime_value_formula_without_ties():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.5, 100, size=500) * (rng.random(500) < 0.6)
    p = rng.lognormal(size=500) + y
    assert normalized_gini(y, p) == pytest.approx(_lv_gini(y, p), rel=1e-12)


@pytest.mark.parametrize("transform", [np.exp, np.log1p, lambda x: 3 * x + 7, lambda x: x**3, lambda x: pd.Series(x).rank().to_numpy()])
def test_gini_invariant_to_monotone_transforms(transform):
    rng = np.random.default_rng(1)
    y = rng.gamma(0.7, 50, size=300)
    p = np.round(rng.random(300) * 5 + y / 40, 1)  # rounding makes ties
    assert normalized_gini(y, transform(p)) == pytest.approx(normalized_gini(y, p), rel=1e-12)
    assert top_decile_capture(y, transform(p)) == pytest.approx(top_decile_capture(y, p), rel=1e-12)


def test_gini_independent_of_row_order_with_many_ties():
    rng = np.random.default_rng(2)
    y = rng.gamma(0.5, 100, size=1000)
    p = rng.integers(0, 4, size=1000).astype(float)
    perm = rng.permutation(1000)
    assert normalized_gini(y[perm], p[perm]) == pytest.approx(normalized_gini(y, p), rel=1e-12)


def test_gini_undefined_cases_are_nan():
    assert math.isnan(normalized_gini([], []))
    assert math.isnan(normalized_gini([1.0, np.nan], [1.0, 2.0]))
    assert math.isnan(normalized_gini([1.0, 2.0], [np.nan, 2.0]))
    assert math.isnan(normalized_gini([0.0, 0.0], [1.0, 2.0]))  # total 0
    assert math.isnan(normalized_gini([5.0, -10.0], [1.0, 2.0]))  # total < 0
    assert math.isnan(normalized_gini([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]))  # nothing to rank


def test_gini_allows_negative_values_with_positive_total():
    y = np.array([-5.0, 0.0, 20.0, 40.0])
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < 0


def test_length_mismatch_and_infinite_values_raise():
    with pytest.raises(DataError):
        normalized_gini([1, 2, 3], [1, 2])
    with pytest.raises(DataError):
        mae([1.0, np.inf], [1.0, 2.0])
    with pytest.raises(DataError):
        rmse([[1.0, 2.0]], [[1.0, 2.0]])


# --------------------------------------------------------------------------
# gain curve, top-decile capture
# --------------------------------------------------------------------------


def test_gain_curve_by_hand():
    x, g = gain_curve(Y4, [0.1, 0.2, 0.4, 0.3])
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(g, [0, 0.3, 0.9, 1.0, 1.0])
    with pytest.raises(DataError):
        gain_curve([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(DataError):
        gain_curve([1.0, 2.0], [1.0, np.nan])


def test_top_decile_capture_exact():
    y = np.arange(1.0, 11.0)  # total 55, n = 10 -> the top customer
    assert top_decile_capture(y, y) == pytest.approx(10 / 55)
    assert top_decile_capture(y, -y) == pytest.approx(1 / 55)
    y20 = np.arange(1.0, 21.0)  # total 210, top 2 customers: 20 + 19
    assert top_decile_capture(y20, y20) == pytest.approx(39 / 210)


def test_top_decile_capture_fractional_boundary_and_ties():
    y15 = np.arange(1.0, 16.0)  # total 120; 1.5 customers: 15 + 0.5 * 14
    assert top_decile_capture(y15, y15) == pytest.approx(22 / 120)
    # the top two predictions tie (actual 10 and 0): the top 1 customer holds 5 on average
    y = np.array([10.0, 0.0, 1, 1, 1, 1, 1, 1, 1, 1])
    p = np.array([9.0, 9.0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert top_decile_capture(y, p) == pytest.approx(5 / 18)
    assert top_decile_capture(y[::-1], p[::-1]) == pytest.approx(5 / 18)


def test_top_decile_capture_equals_top_decile_share():
    rng = np.random.default_rng(4)
    y = rng.gamma(0.5, 100, size=137)
    p = np.round(rng.random(137), 1)
    dec = decile_calibration(y, p)
    assert top_decile_capture(y, p) == pytest.approx(dec["sum_actual"].iloc[-1] / y.sum())


# --------------------------------------------------------------------------
# deciles
# --------------------------------------------------------------------------


def test_decile_calibration_ascending_equal_counts():
    y = np.arange(20.0)
    p = np.arange(20.0) * 2
    dec = decile_calibration(y, p)
    assert list(dec["decile"]) == list(range(1, 11))
    np.testing.assert_allclose(dec["count"], 2.0)
    # decile d holds customers 2d-2 and 2d-1
    np.testing.assert_allclose(dec["mean_actual"], [2 * d - 1.5 for d in range(1, 11)])
    np.testing.assert_allclose(dec["mean_pred"], [2 * (2 * d - 1.5) for d in range(1, 11)])
    # row order of the input does not matter
    perm = np.random.default_rng(0).permutation(20)
    pd.testing.assert_frame_equal(decile_calibration(y[perm], p[perm]), dec)


def test_decile_calibration_matches_qcut_without_ties():
    rng = np.random.default_rng(5)
    y = rng.gamma(1, 10, size=1000)
    p = y + rng.normal(size=1000)
    dec = decile_calibration(y, p)
    q = pd.DataFrame({"y": y, "p": p, "d": pd.qcut(p, 10, labels=False)}).groupby("d").mean()
    np.testing.assert_allclose(dec["mean_actual"], q["y"])
    np.testing.assert_allclose(dec["mean_pred"], q["p"])


def test_decile_calibration_fractional_split():
    # 5 customers: each spans two deciles with weight 0.5
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    dec = decile_calibration(y, y)
    np.testing.assert_allclose(dec["count"], 0.5)
    np.testing.assert_allclose(dec["mean_actual"], np.repeat(y, 2))
    # a tie group of 6 out of 10 spreads its mean over deciles 1..6
    y = np.array([6.0, 0, 0, 0, 0, 0, 7, 8, 9, 10])
    p = np.array([0.0, 0, 0, 0, 0, 0, 7, 8, 9, 10])
    dec = decile_calibration(y, p)
    np.testing.assert_allclose(dec["mean_actual"], [1, 1, 1, 1, 1, 1, 7, 8, 9, 10])
    np.testing.assert_allclose(dec["count"], 1.0)


def test_decile_mape_constructed():
    y = np.arange(1.0, 11.0)
    assert decile_mape(y, 2 * y) == pytest.approx(1.0)
    assert decile_mape(y, y) == pytest.approx(0.0)
    # decile 1 has mean actual 0 and is skipped; deciles 2..10 err by 1/k
    y0 = np.arange(10.0)
    assert decile_mape(y0, y0 + 1) == pytest.approx(sum(1 / k for k in range(1, 10)) / 9)
    assert math.isnan(decile_mape(np.zeros(10), np.ones(10)))
    assert math.isnan(decile_mape([1.0, 2.0], [np.nan, 1.0]))


def test_decile_mape_uses_absolute_mean_actual():
    y = -np.arange(1.0, 11.0)
    assert decile_mape(y, 2 * y) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# totals, errors, correlation
# --------------------------------------------------------------------------


def test_total_error_pct():
    assert total_error_pct([10, 20, 30, 40], [15, 20, 35, 40]) == pytest.approx(10.0)
    assert total_error_pct([10, 20, 30, 40], [5, 10, 15, 20]) == pytest.approx(-50.0)
    assert total_error_pct([-10.0, -10.0], [0.0, 0.0]) == pytest.approx(100.0)  # over-predicted
    assert math.isnan(total_error_pct([5.0, -5.0], [1.0, 1.0]))
    assert math.isnan(total_error_pct([], []))


def test_mae_rmse_by_hand():
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3))
    assert math.isnan(mae([1, 2], [np.nan, 1]))
    assert math.isnan(rmse([], []))


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4)
    r = np.array([1, 2.5, 2.5, 4])
    expected = np.corrcoef(r, [1, 2, 3, 4])[0, 1]
    assert spearman([1, 2, 3, 4], [0, 5, 5, 9]) == pytest.approx(expected)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(spearman([1], [1]))


# --------------------------------------------------------------------------
# churn
# --------------------------------------------------------------------------


def test_churn_labels():
    np.testing.assert_array_equal(churn_labels([0, 1, 0, 3]), [1, 0, 1, 0])
    with pytest.raises(DataError):
        churn_labels([0, -1])
    with pytest.raises(DataError):
        churn_labels([0, np.nan])


def test_churn_metrics_by_hand():
    y = [1, 1, 0, 0]
    p = [0.9, 0.4, 0.6, 0.1]
    # pairs (churned, bought): .9>.6, .9>.1, .4<.6, .4>.1 -> 3/4
    assert churn_auc(y, p) == pytest.approx(0.75)
    # ranked .9 (churned, P=1, R=.5), .6 (bought), .4 (churned, P=2/3, R=1)
    assert churn_pr_auc(y, p) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert churn_brier(y, p) == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert churn_auc(y, [0.5] * 4) == pytest.approx(0.5)


def test_churn_metrics_agree_with_sklearn():
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    rng = np.random.default_rng(6)
    y = (rng.random(500) < 0.3).astype(int)
    p = np.clip(0.3 + 0.4 * (y - 0.3) + rng.normal(0, 0.2, 500), 0, 1)
    assert churn_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert churn_pr_auc(y, p) == pytest.approx(average_precision_score(y, p))
    assert churn_brier(y, p) == pytest.approx(brier_score_loss(y, p))


def test_churn_metrics_nan_cases():
    nan4 = [np.nan] * 4
    for fn in (churn_auc, churn_pr_auc, churn_brier):
        assert math.isnan(fn([1, 0, 1, 0], nan4))
        assert math.isnan(fn([], []))
    # a single class: the AUCs are undefined, the Brier score is not
    assert math.isnan(churn_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(churn_pr_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert churn_brier([0, 0, 0], [0.1, 0.2, 0.3]) == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    assert churn_brier([1, 1], [1.0, 0.5]) == pytest.approx(0.125)


def test_churn_metrics_reject_bad_input():
    with pytest.raises(DataError):
        churn_auc([0, 1], [0.5, 1.5])
    with pytest.raises(DataError):
        churn_brier([0, 2], [0.5, 0.5])


# --------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------

CUTOFF = pd.Timestamp("2024-01-01", tz="UTC")


def _actuals():
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "actual_transactions": [0, 1, 2, 3],
            "actual_spend": Y4,
        }
    )


def _predictions():
    base = {"customer_id": ["a", "b", "c", "d"], "cutoff": CUTOFF, "horizon_days": 182.0}
    good = pd.DataFrame(
        {
            **base,
            "model": "good",
            "pred_transactions": [0.5, 1.0, 2.0, 2.5],
            "pred_spend": [5.0, 10.0, 30.0, 55.0],
            "p_churn": [0.8, 0.3, 0.1, 0.05],
            "p_alive": np.nan,
        }
    )
    flat = pd.DataFrame(
        {
            **base,
            "model": "flat",
            "pred_transactions": np.nan,
            "pred_spend": 25.0,
            "p_churn": np.nan,
            "p_alive": np.nan,
        }
    )
    out = pd.concat([good, flat], ignore_index=True)
    for col in ("pred_spend_p10", "pred_spend_p50", "pred_spend_p90", "pred_next_purchase_days"):
        out[col] = np.nan
    return out


def test_evaluate_two_models_by_hand():
    res = evaluate(_predictions(), _actuals())
    assert list(res.columns) == list(EVALUATE_COLUMNS)
    assert list(res["model"]) == ["flat", "good"]
    good = res.set_index("model").loc["good"]
    flat = res.set_index("model").loc["flat"]

    assert good["cutoff"] == CUTOFF
    assert good["horizon_days"] == 182.0
    assert good["n_customers"] == 4
    assert good["tx_mae"] == pytest.approx(0.25)
    assert good["tx_rmse"] == pytest.approx(math.sqrt(0.125))
    assert good["spend_mae"] == pytest.approx(2.5)
    assert good["spend_rmse"] == pytest.approx(math.sqrt(12.5))
    assert good["total_spend_pred"] == pytest.approx(100.0)
    assert good["total_spend_actual"] == pytest.approx(100.0)
    assert good["total_spend_error_pct"] == pytest.approx(0.0)
    assert good["total_tx_error_pct"] == pytest.approx(0.0)
    assert good["gini_norm"] == pytest.approx(1.0)
    assert good["spearman"] == pytest.approx(1.0)
    assert good["top_decile_capture"] == pytest.approx(0.4 * 60 / 100)  # 0.4 of the top customer
    # deciles hold 0.4 customer each; 1-2 have actual 0 (skipped); 3 and 8 straddle two customers
    errs = [2.5 / 5, 0, 0, 0, 0, 2.5 / 45, 5 / 60, 5 / 60]
    assert good["decile_mape"] == pytest.approx(sum(errs) / 8)
    assert good["churn_rate"] == pytest.approx(0.25)
    assert good["churn_auc"] == pytest.approx(1.0)
    assert good["churn_pr_auc"] == pytest.approx(1.0)
    assert good["churn_brier"] == pytest.approx((0.04 + 0.09 + 0.01 + 0.0025) / 4)

    assert flat["spend_mae"] == pytest.approx(20.0)
    assert flat["spend_rmse"] == pytest.approx(math.sqrt(525.0))
    assert flat["total_spend_error_pct"] == pytest.approx(0.0)
    assert flat["gini_norm"] == pytest.approx(0.25 / 0.75)
    assert flat["top_decile_capture"] == pytest.approx(0.1)
    assert flat["decile_mape"] == pytest.approx(0.0)  # every decile averages the tie group
    assert flat["churn_rate"] == pytest.approx(0.25)
    for col in ("tx_mae", "tx_rmse", "total_tx_error_pct", "spearman", "churn_auc", "churn_pr_auc", "churn_brier"):
        assert math.isnan(flat[col]), col


def test_evaluate_independent_of_row_order():
    pred = _predictions()
    act = _actuals()
    res = evaluate(pred, act)
    res2 = evaluate(pred.sample(frac=1, random_state=1), act.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(res, res2)


def test_evaluate_ids_compared_as_text():
    act = _actuals()
    pred = _predictions()
    act["customer_id"] = [1, 2, 3, 4]
    pred["customer_id"] = ["1", "2", "3", "4"] * 2
    assert len(evaluate(pred, act)) == 2


def test_evaluate_missing_actuals_is_an_error():
    act = _actuals().iloc[:3]
    with pytest.raises(DataError, match=r"1 customer\(s\) have predictions but no actuals \('d'\)"):
        evaluate(_predictions(), act)


def test_evaluate_missing_predictions_is_an_error():
    pred = _predictions()
    pred = pred[~((pred["model"] == "good") & pred["customer_id"].isin(["a", "c"]))]
    with pytest.raises(DataError, match=r"model good.*2 customer\(s\) have actuals but no prediction \('a', 'c'\)"):
        evaluate(pred, _actuals())


def test_evaluate_many_missing_ids_are_abbreviated():
    act = pd.DataFrame({"customer_id": [f"x{i}" for i in range(50)], "actual_transactions": 0, "actual_spend": 0.0})
    with pytest.raises(DataError, match=r"50 customer\(s\) have actuals but no prediction .*45 more"):
        evaluate(_predictions(), act)


def test_evaluate_duplicates_and_columns_are_errors():
    act = pd.concat([_actuals(), _actuals().iloc[:1]])
    with pytest.raises(DataError, match="duplicate"):
        evaluate(_predictions(), act)
    pred = pd.concat([_predictions(), _predictions().iloc[:1]])
    with pytest.raises(DataError, match="duplicate"):
        evaluate(pred, _actuals())
    with pytest.raises(DataError, match="actual_spend"):
        evaluate(_predictions(), _actuals().drop(columns="actual_spend"))
    with pytest.raises(DataError, match="pred_spend"):
        evaluate(_predictions().drop(columns="pred_spend"), _actuals())
    bad = _actuals()
    bad.loc[0, "actual_spend"] = np.nan
    with pytest.raises(DataError, match="missing"):
        evaluate(_predictions(), bad)


def test_evaluate_mixed_horizons_is_an_error():
    pred = _predictions()
    pred.loc[0, "horizon_days"] = 90.0
    with pytest.raises(DataError, match="horizons"):
        evaluate(pred, _actuals())


def _two_cutoffs():
    c2 = pd.Timestamp("2024-07-01", tz="UTC")
    p1 = _predictions()
    p2 = _predictions().assign(cutoff=c2)
    p2.loc[p2["model"] == "good", "pred_spend"] = [0.0, 10.0, 30.0, 60.0]  # exact at the second cutoff
    a1 = _actuals().assign(cutoff=CUTOFF)
    a2 = _actuals().assign(cutoff=c2)
    return pd.concat([p1, p2], ignore_index=True), pd.concat([a1, a2], ignore_index=True)


def test_evaluate_several_cutoffs_and_summary():
    pred, act = _two_cutoffs()
    with pytest.raises(DataError, match="cutoff column"):
        evaluate(pred, act.drop(columns="cutoff"))
    res = evaluate(pred, act)
    assert len(res) == 4
    assert list(res["cutoff"].dt.strftime("%Y-%m-%d")) == ["2024-01-01", "2024-01-01", "2024-07-01", "2024-07-01"]
    good = res[res["model"] == "good"]
    assert list(good["spend_mae"]) == pytest.approx([2.5, 0.0])

    summary = summarize_backtest(res)
    assert list(summary["model"]) == ["flat", "good"]
    row = summary.set_index("model").loc["good"]
    assert row["n_cutoffs"] == 2
    assert row["horizon_days"] == 182.0
    assert row["spend_mae_mean"] == pytest.approx(1.25)
    assert row["spend_mae_std"] == pytest.approx(np.std([2.5, 0.0], ddof=1))
    flat = summary.set_index("model").loc["flat"]
    assert math.isnan(flat["churn_auc_mean"]) and math.isnan(flat["churn_auc_std"])
    one = summarize_backtest(res[res["cutoff"] == CUTOFF])
    assert math.isnan(one.set_index("model").loc["good", "spend_mae_std"])


def test_evaluate_cutoff_given_as_text_in_actuals():
    pred, act = _two_cutoffs()
    act["cutoff"] = act["cutoff"].dt.strftime("%Y-%m-%d")
    assert len(evaluate(pred, act)) == 4


def test_join_actuals_keeps_prediction_rows():
    joined = join_actuals(_predictions(), _actuals())
    assert len(joined) == 8
    np.testing.assert_allclose(joined["actual_spend"], np.tile(Y4, 2))


def test_array_functions_accept_series_and_lists():
    s = pd.Series(Y4, index=[10, 11, 12, 13])
    assert normalized_gini(s, s) == pytest.approx(1.0)
    assert m.mae(list(Y4), tuple(Y4)) == 0.0
