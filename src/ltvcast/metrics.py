"""Backtest metrics: how well predictions match what customers then did.

Two layers:

* **Array metrics** — plain functions, 1-D arrays in, a float (or a small
  frame) out: :func:`normalized_gini`, :func:`top_decile_capture`,
  :func:`decile_calibration`, :func:`decile_mape`, :func:`total_error_pct`,
  :func:`mae`, :func:`rmse`, :func:`spearman`, :func:`churn_auc`,
  :func:`churn_pr_auc`, :func:`churn_brier`, and the curve
  :func:`gain_curve` behind the Lorenz chart.
* **Frame metrics** — :func:`evaluate` scores a canonical predictions frame
  (DESIGN.md) against an actuals frame, one row per model and cutoff, and
  :func:`summarize_backtest` condenses a rolling-origin backtest to
  mean ± standard deviation per model.

Conventions shared by the array metrics
---------------------------------------
* Inputs are array-likes of equal length ``n``; they are read as float64.
  Unequal lengths, non-1-D input or infinite values raise
  :class:`~ltvcast.errors.DataError`.
* A scalar metric is ``nan`` when any of its inputs is ``nan`` (NaN
  propagates, as in ``numpy.sum``; nothing is dropped silently), when the
  input is empty, or when the metric is undefined for the data (each
  function says when).
* **Ties in the prediction are averaged**: customers with equal predictions
  are treated as if they were ranked in every possible order with equal
  probability, and the metric takes the expected value. For the cumulative
  gain (Lorenz) curve this is the same as replacing each customer's actual
  value by the mean actual of their tie group; the curve is then linear
  across a tie group. Results therefore never depend on the order of the
  input rows, and a constant prediction scores like a random ranking.
* **Deciles are fractional when needed**: decile *d* covers the rank
  interval ``[(d-1)·n/10, d·n/10)`` of the customers sorted by prediction
  (ascending: decile 1 = lowest predictions, decile 10 = highest). A customer
  (or tie group) straddling a boundary contributes to both deciles in
  proportion to the overlap, so every decile holds exactly ``n/10``
  customers' worth of weight and no arbitrary tie-break is needed. When
  ``n`` is a multiple of 10 and predictions are distinct this is the plain
  equal-count split (``pandas.qcut`` on the prediction).

Uncertainty and timing: :func:`interval_coverage`, :func:`pinball_loss`,
:func:`mean_pinball_loss` score ``pred_spend_p10/p50/p90``;
:func:`next_purchase_mae` and :func:`concordance_index` score
``pred_next_purchase_days``.

Churn means *no purchase occasion in the horizon* (``actual_transactions ==
0``), the event ``p_churn`` predicts (DESIGN.md).

Sources: Wang, Liu & Miao (2019), "A Deep Probabilistic Model for Customer
Lifetime Value Prediction", arXiv:1912.07753, section 4 (normalized Gini,
decile charts, decile MAPE), as implemented in the ``lifetime_value``
package (``lifetime_value/metrics.py``: ``cumulative_true``,
``gini_from_gain``, ``decile_stats``); scikit-learn for ROC AUC, average
precision and the Brier score; SciPy for Spearman's rank correlation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ltvcast.errors import DataError

__all__ = [
    "EVALUATE_COLUMNS",
    "METRIC_COLUMNS",
    "churn_auc",
    "churn_brier",
    "churn_labels",
    "churn_pr_auc",
    "concordance_index",
    "decile_calibration",
    "decile_mape",
    "evaluate",
    "gain_curve",
    "interval_coverage",
    "join_actuals",
    "mae",
    "mean_pinball_loss",
    "next_purchase_mae",
    "normalized_gini",
    "pinball_loss",
    "rmse",
    "spearman",
    "summarize_backtest",
    "top_decile_capture",
    "total_error_pct",
]

ArrayLike = Sequence[float] | np.ndarray | pd.Series

#: Metric columns of :func:`evaluate`, in order (after the key columns).
METRIC_COLUMNS: tuple[str, ...] = (
    "n_customers",
    "tx_mae",
    "tx_rmse",
    "spend_mae",
    "spend_rmse",
    "total_spend_pred",
    "total_spend_actual",
    "total_spend_error_pct",
    "total_tx_error_pct",
    "gini_norm",
    "spearman",
    "top_decile_capture",
    "decile_mape",
    "churn_rate",
    "churn_auc",
    "churn_pr_auc",
    "churn_brier",
    "spend_coverage_80",
    "spend_pinball",
    "spend_mae_p50",
    "next_purchase_mae",
    "next_purchase_cindex",
)

#: All columns of the frame :func:`evaluate` returns, in order.
EVALUATE_COLUMNS: tuple[str, ...] = ("model", "cutoff", "horizon_days") + METRIC_COLUMNS

_N_DECILES = 10


# --------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------


def _as_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise DataError(f"{name} contains infinite values")
    return arr


def _pair(y_true: Any, y_pred: Any, true_name: str = "y_true", pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    a = _as_array(y_true, true_name)
    b = _as_array(y_pred, pred_name)
    if a.shape != b.shape:
        raise DataError(f"{true_name} and {pred_name} differ in length: {a.size} vs {b.size}")
    return a, b


def _undefined(*arrays: np.ndarray) -> bool:
    """True when a scalar metric must be nan: empty input or any nan."""
    return arrays[0].size == 0 or any(np.isnan(a).any() for a in arrays)


def _require_complete(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.size == 0:
        raise DataError("no customers: the arrays are empty")
    for arr, name in ((y_true, "y_true"), (y_pred, "y_pred")):
        n_nan = int(np.isnan(arr).sum())
        if n_nan:
            raise DataError(f"{name} has {n_nan} missing value(s); rank-based curves need every value")


def _tie_groups(y_pred: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct predictions (ascending), their group sizes and sums of actuals."""
    values, inverse, counts = np.unique(y_pred, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.ravel(), weights=y_true, minlength=values.size)
    return values, counts, sums


def _tie_averaged_desc(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Actuals in descending order of prediction, each tie group at its mean."""
    _, counts, sums = _tie_groups(y_pred, y_true)
    means = sums / counts
    return np.repeat(means[::-1], counts[::-1])


def _raw_gini(sorted_actual: np.ndarray, total: float) -> float:
    """``lifetime_value.metrics.gini_from_gain`` for one gain chart."""
    gain = np.cumsum(sorted_actual) / total
    return float(2.0 * gain.mean() - 1.0)


# --------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------


def gain_curve(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative gain (Lorenz) curve of actual values ranked by prediction.

    Customers are sorted by ``y_pred`` from highest to lowest (ties averaged,
    see the module notes); point *i* is the share of customers targeted,
    ``i / n``, and the share of the total actual value they hold.

    Args:
        y_true: actual values, shape ``(n,)`` (e.g. spend in the horizon).
        y_pred: predictions, shape ``(n,)``.

    Returns:
        ``(share_customers, share_actual)``, each of shape ``(n + 1,)`` and
        starting at ``(0, 0)``; ``share_actual[-1] == 1``. The perfect curve
        is ``gain_curve(y_true, y_true)``; a random ranking is the diagonal.

    Raises:
        DataError: empty input, missing values, or a total actual value
            ``<= 0`` (shares of a non-positive total are meaningless).

    Source: ``cumulative_true`` of the ``lifetime_value`` package
    (Wang, Liu & Miao 2019), with ties averaged instead of left to the sort.
    """
    a, p = _pair(y_true, y_pred)
    _require_complete(a, p)
    total = float(a.sum())
    if not total > 0:
        raise DataError(f"the total actual value is {total:g}; a gain curve needs a positive total")
    share_actual = np.concatenate(([0.0], np.cumsum(_tie_averaged_desc(a, p)) / total))
    share_customers = np.arange(a.size + 1, dtype=np.float64) / a.size
    return share_customers, share_actual


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalized Gini coefficient of a ranking (Wang, Liu & Miao 2019).

    Definition (as in ``lifetime_value.metrics.gini_from_gain``): sort the
    customers by prediction, highest first, and let
    ``g_i = (sum of the first i actual values) / (total actual)``,
    ``i = 1..n``. The raw Gini is ``G = 2 · mean(g) − 1``. The normalized Gini
    is ``G(ranked by y_pred) / G(ranked by y_true itself)``: 1 for a ranking as
    good as the actual values' own order, about 0 for a random ranking, below
    0 for a ranking worse than random.

    Ties in ``y_pred`` are averaged (module notes): the result is the
    expected value over all orders within each tie group, so it does not
    depend on the input order, and a constant prediction scores like a random
    ranking. Ties in ``y_true`` do not matter for the denominator.

    The discrete formula is the package's right-endpoint sum, not the
    trapezoid: a random ranking scores about ``(1/n) / G_perfect`` rather than
    exactly 0, and the reversed perfect ranking scores slightly above −1. The
    difference vanishes as ``n`` grows; it is kept so that numbers match the
    paper and package.

    Args:
        y_true: actual values, shape ``(n,)``; may contain zeros and negative
            values as long as the total is positive.
        y_pred: predictions, shape ``(n,)``; only their order matters, so the
            result is invariant to strictly increasing transformations.

    Returns:
        The normalized Gini, or ``nan`` when the input is empty or has a
        missing value, when the total of ``y_true`` is ``<= 0``, or when all
        ``y_true`` are equal (nothing to rank).
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p):
        return float("nan")
    total = float(a.sum())
    if not total > 0 or np.all(a == a[0]):
        return float("nan")
    perfect = _raw_gini(np.sort(a)[::-1], total)
    model = _raw_gini(_tie_averaged_desc(a, p), total)
    return model / perfect


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of the total actual value held by the top 10% by prediction.

    Definition: the gain curve (:func:`gain_curve`) read at 10% of the
    customers. When ``n/10`` is not a whole number the boundary customer
    counts pro rata (linear interpolation between the curve's points); ties
    at the boundary are averaged. Equals the actual sum of decile 10 of
    :func:`decile_calibration` divided by the total actual. A random ranking
    scores about 0.1, a perfect one the largest share possible.

    Args:
        y_true: actual values, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.

    Returns:
        A share (0.25 = 25%), or ``nan`` when the input is empty or has a
        missing value or when the total actual is ``<= 0``.

    Source: the top-decile lift of decile charts, Wang, Liu & Miao (2019).
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p) or not float(a.sum()) > 0:
        return float("nan")
    x, g = gain_curve(a, p)
    return float(np.interp(0.1, x, g))


# --------------------------------------------------------------------------
# calibration metrics
# --------------------------------------------------------------------------


def decile_calibration(y_true: ArrayLike, y_pred: ArrayLike) -> pd.DataFrame:
    """Mean prediction and mean actual per decile of the prediction.

    Deciles are in **ascending** order of prediction: decile 1 holds the
    lowest 10% of predictions, decile 10 the highest. Boundaries fall at rank
    ``d·n/10``; customers or tie groups straddling a boundary are split
    between the two deciles by weight (module notes), so each decile holds
    ``n/10`` customers' worth of weight and the result never depends on the
    input order.

    Args:
        y_true: actual values, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.

    Returns:
        Frame of 10 rows with columns ``decile`` (1..10), ``count``
        (customers' weight in the decile, ``n/10``, fractional when ``n`` is
        not a multiple of 10), ``mean_pred``, ``mean_actual``, ``sum_pred``
        and ``sum_actual``.

    Raises:
        DataError: empty input or missing values.

    Source: ``decile_stats`` of the ``lifetime_value`` package (Wang, Liu &
    Miao 2019), which uses ``pandas.qcut`` and fails on repeated predictions.
    """
    a, p = _pair(y_true, y_pred)
    _require_complete(a, p)
    n = a.size
    values, counts, sums = _tie_groups(p, a)
    # cumulative actual and prediction along the ascending rank axis are
    # piecewise linear (linear inside a tie group), so a decile's sum is the
    # difference of the curves at its two boundaries
    ends = np.concatenate(([0.0], np.cumsum(counts, dtype=np.float64)))
    cum_actual = np.concatenate(([0.0], np.cumsum(sums)))
    cum_pred = np.concatenate(([0.0], np.cumsum(values * counts)))
    d = np.arange(1, _N_DECILES + 1)
    bounds = np.arange(_N_DECILES + 1) * n / _N_DECILES
    weight = np.diff(bounds)
    sum_actual = np.diff(np.interp(bounds, ends, cum_actual))
    sum_pred = np.diff(np.interp(bounds, ends, cum_pred))
    return pd.DataFrame(
        {
            "decile": d,
            "count": weight,
            "mean_pred": sum_pred / weight,
            "mean_actual": sum_actual / weight,
            "sum_pred": sum_pred,
            "sum_actual": sum_actual,
        }
    )


def decile_mape(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Decile-level mean absolute percentage error (Wang, Liu & Miao 2019).

    Definition: with the deciles of :func:`decile_calibration`,
    ``mean over deciles of |mean_pred − mean_actual| / |mean_actual|``.
    Deciles whose mean actual is zero (within ``1e-12`` times the largest
    absolute actual) are **skipped**, since their percentage error is
    undefined; the mean is over the remaining deciles.

    Args:
        y_true: actual values, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.

    Returns:
        A fraction (0.2 = 20%), or ``nan`` when the input is empty or has a
        missing value, or every decile has a zero mean actual.

    Source: ``decile_stats(...)['decile_mape']`` of the ``lifetime_value``
    package, averaged over deciles as in the paper's Table 3 (the package
    divides by the signed mean; the absolute value here keeps the error
    positive when actual spend is negative under net revenue).
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p):
        return float("nan")
    dec = decile_calibration(a, p)
    scale = max(float(np.abs(a).max()), 1.0)
    actual = dec["mean_actual"].to_numpy()
    keep = np.abs(actual) > 1e-12 * scale
    if not keep.any():
        return float("nan")
    err = np.abs(dec["mean_pred"].to_numpy()[keep] - actual[keep]) / np.abs(actual[keep])
    return float(err.mean())


def total_error_pct(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Error of the predicted total, in percent of the actual total.

    Definition: ``(sum(y_pred) − sum(y_true)) / |sum(y_true)| × 100``.
    Positive means the model over-predicts the total. The absolute value in
    the denominator only matters when the actual total is negative (net
    revenue); it keeps the sign meaning "over-predicted".

    Args:
        y_true: actual values, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.

    Returns:
        Percent (12.5 = 12.5%), or ``nan`` when the input is empty, has a
        missing value, or the actual total is 0.
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p):
        return float("nan")
    total = float(a.sum())
    if total == 0:
        return float("nan")
    return (float(p.sum()) - total) / abs(total) * 100.0


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error ``mean(|y_pred − y_true|)``.

    Args:
        y_true, y_pred: shape ``(n,)``.

    Returns:
        The error in the unit of the inputs; ``nan`` for empty input or a
        missing value.
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p):
        return float("nan")
    return float(np.mean(np.abs(p - a)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((y_pred − y_true)²))``.

    Args:
        y_true, y_pred: shape ``(n,)``.

    Returns:
        The error in the unit of the inputs; ``nan`` for empty input or a
        missing value.
    """
    a, p = _pair(y_true, y_pred)
    if _undefined(a, p):
        return float("nan")
    return float(np.sqrt(np.mean((p - a) ** 2)))


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman's rank correlation between actuals and predictions.

    Pearson correlation of the ranks, ties given their average rank
    (``scipy.stats.spearmanr``).

    Args:
        y_true, y_pred: shape ``(n,)``.

    Returns:
        The correlation in [−1, 1]; ``nan`` for fewer than 2 customers, a
        missing value, or a constant input (no ranking to correlate).
    """
    from scipy.stats import spearmanr

    a, p = _pair(y_true, y_pred)
    if _undefined(a, p) or a.size < 2 or np.all(a == a[0]) or np.all(p == p[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, p).statistic
    return float(rho)


# --------------------------------------------------------------------------
# churn metrics
# --------------------------------------------------------------------------


def churn_labels(actual_transactions: ArrayLike) -> np.ndarray:
    """Churn labels: 1 where a customer made no purchase occasion in the horizon.

    Args:
        actual_transactions: purchase occasions in the horizon, shape ``(n,)``.

    Returns:
        ``int8`` array of shape ``(n,)``, 1 = churned (``== 0``), 0 = bought.

    Raises:
        DataError: missing or negative counts.
    """
    tx = _as_array(actual_transactions, "actual_transactions")
    if np.isnan(tx).any():
        raise DataError("actual_transactions has missing values")
    if (tx < 0).any():
        raise DataError("actual_transactions has negative counts")
    return (tx == 0).astype(np.int8)


def _churn_inputs(churned: ArrayLike, p_churn: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """Validated ``(labels, probabilities)``, or None when the metric is nan."""
    y, p = _pair(churned, p_churn, "churned", "p_churn")
    if np.isnan(y).any():
        raise DataError("churn labels have missing values")
    if y.size == 0:
        return None
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("churn labels must be 0 (bought) or 1 (churned)")
    if np.isnan(p).any():
        return None
    if ((p < 0) | (p > 1)).any():
        raise DataError(f"p_churn must lie in [0, 1]; found values from {p.min():g} to {p.max():g}")
    return y.astype(np.int8), p


def churn_auc(churned: ArrayLike, p_churn: ArrayLike) -> float:
    """ROC AUC of ``p_churn`` for the churn label (``sklearn.metrics.roc_auc_score``).

    Args:
        churned: 1 = no purchase in the horizon, 0 = bought; shape ``(n,)``
            (see :func:`churn_labels`).
        p_churn: predicted probability of churn, shape ``(n,)``.

    Returns:
        The area under the ROC curve (0.5 = random, ties count half), or
        ``nan`` when ``p_churn`` has a missing value (e.g. a model that does
        not predict churn) or only one class is present.

    Raises:
        DataError: labels other than 0/1, or probabilities outside [0, 1].
    """
    from sklearn.metrics import roc_auc_score

    checked = _churn_inputs(churned, p_churn)
    if checked is None or np.unique(checked[0]).size < 2:
        return float("nan")
    return float(roc_auc_score(checked[0], checked[1]))


def churn_pr_auc(churned: ArrayLike, p_churn: ArrayLike) -> float:
    """Area under the precision-recall curve for churn, as average precision.

    Positive class = churned (no purchase in the horizon);
    ``sklearn.metrics.average_precision_score``, i.e.
    ``sum_k (R_k − R_{k−1}) · P_k`` over thresholds. A random score is about
    the churn rate.

    Args:
        churned: 1 = churned, 0 = bought; shape ``(n,)``.
        p_churn: predicted probability of churn, shape ``(n,)``.

    Returns:
        Average precision, or ``nan`` when ``p_churn`` has a missing value or
        only one class is present.

    Raises:
        DataError: labels other than 0/1, or probabilities outside [0, 1].
    """
    from sklearn.metrics import average_precision_score

    checked = _churn_inputs(churned, p_churn)
    if checked is None or np.unique(checked[0]).size < 2:
        return float("nan")
    return float(average_precision_score(checked[0], checked[1], pos_label=1))


def churn_brier(churned: ArrayLike, p_churn: ArrayLike) -> float:
    """Brier score of ``p_churn``: ``mean((p_churn − churned)²)``.

    ``sklearn.metrics.brier_score_loss`` with positive class = churned. Lower
    is better; 0 is perfect, and always predicting the churn rate ``r``
    scores ``r·(1−r)``. Defined even when only one class is present.

    Args:
        churned: 1 = churned, 0 = bought; shape ``(n,)``.
        p_churn: predicted probability of churn, shape ``(n,)``.

    Returns:
        The Brier score, or ``nan`` for empty input or when ``p_churn`` has a
        missing value.

    Raises:
        DataError: labels other than 0/1, or probabilities outside [0, 1].
    """
    from sklearn.metrics import brier_score_loss

    checked = _churn_inputs(churned, p_churn)
    if checked is None:
        return float("nan")
    return float(brier_score_loss(checked[0], checked[1], labels=[0, 1]))


# --------------------------------------------------------------------------
# uncertainty and next-purchase metrics
# --------------------------------------------------------------------------


def interval_coverage(y_true: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of customers whose actual value lies in ``[lower, upper]`` (bounds included).

    For ``[pred_spend_p10, pred_spend_p90]`` a calibrated model covers 80%.
    Bounds are inclusive because spend has a point mass at 0: a customer
    with ``p10 = p90 = 0`` who spends nothing is covered.

    Args:
        y_true: actual values, shape ``(n,)``.
        lower, upper: interval bounds, shape ``(n,)``.

    Returns:
        Share in [0, 1]; ``nan`` for empty input or a missing value.

    Raises:
        DataError: unequal lengths or infinite values.
    """
    a, lo = _pair(y_true, lower, "y_true", "lower")
    _, hi = _pair(y_true, upper, "y_true", "upper")
    if _undefined(a, lo, hi):
        return float("nan")
    return float(np.mean((a >= lo) & (a <= hi)))


def pinball_loss(y_true: ArrayLike, y_quantile: ArrayLike, q: float) -> float:
    """Mean pinball (quantile) loss of a predicted ``q``-quantile.

    ``mean(max(q·(y − ŷ), (q − 1)·(y − ŷ)))``: the loss a ``q``-quantile
    minimises (Koenker & Bassett 1978). In the unit of ``y``; lower is better.

    Args:
        y_true: actual values, shape ``(n,)``.
        y_quantile: predicted quantiles, shape ``(n,)``.
        q: the quantile level in (0, 1).

    Returns:
        The loss; ``nan`` for empty input or a missing value.

    Raises:
        DataError: unequal lengths, infinite values, or ``q`` outside (0, 1).
    """
    if not 0.0 < q < 1.0:
        raise DataError(f"quantile level q must lie in (0, 1), got {q!r}")
    a, p = _pair(y_true, y_quantile, "y_true", "y_quantile")
    if _undefined(a, p):
        return float("nan")
    d = a - p
    return float(np.mean(np.maximum(q * d, (q - 1.0) * d)))


def mean_pinball_loss(y_true: ArrayLike, p10: ArrayLike, p50: ArrayLike, p90: ArrayLike) -> float:
    """Mean of the pinball losses of the 10%, 50% and 90% quantiles (currency).

    Args:
        y_true: actual values, shape ``(n,)``.
        p10, p50, p90: predicted quantiles, shape ``(n,)``.

    Returns:
        ``(pinball(p10, .1) + pinball(p50, .5) + pinball(p90, .9)) / 3``;
        ``nan`` when any input has a missing value.
    """
    return (pinball_loss(y_true, p10, 0.1) + pinball_loss(y_true, p50, 0.5) + pinball_loss(y_true, p90, 0.9)) / 3.0


def next_purchase_mae(actual_days: ArrayLike, pred_days: ArrayLike) -> float:
    """MAE in days of the predicted time to the next purchase, over customers who bought.

    Args:
        actual_days: days from the cutoff to the first purchase occasion in
            the horizon, ``nan`` for a customer who did not buy (those rows
            are left out), shape ``(n,)``.
        pred_days: predicted days (``pred_next_purchase_days``), shape ``(n,)``.

    Returns:
        ``mean(|pred − actual|)`` over the buyers; ``nan`` when nobody bought
        or a buyer's prediction is missing.

    Raises:
        DataError: unequal lengths or infinite values.
    """
    a, p = _pair(actual_days, pred_days, "actual_days", "pred_days")
    bought = ~np.isnan(a)
    if not bought.any() or np.isnan(p[bought]).any():
        return float("nan")
    return float(np.mean(np.abs(p[bought] - a[bought])))


def concordance_index(time: ArrayLike, event: ArrayLike, pred_time: ArrayLike) -> float:
    """Harrell's concordance index of predicted times to an event, with right-censoring.

    A pair ``(i, j)`` is comparable when ``time_i < time_j`` and ``i`` had the
    event (``event_i = 1``); it is concordant when ``pred_i < pred_j``, and
    counts ½ when ``pred_i == pred_j``. Pairs with equal times are not
    comparable. C = concordant / comparable: 1 = perfect order, 0.5 = random.
    (Harrell, Califf, Pryor, Lee & Rosati 1982, JAMA 247(18); the convention
    of ``lifelines.utils.concordance_index``.) For the next purchase: ``time``
    = days to the first purchase in the horizon, or the horizon length for a
    customer who did not buy (censored, ``event = 0``). O(n log n).

    Args:
        time: observed times, shape ``(n,)``.
        event: 1 = event observed at ``time``, 0 = censored at ``time``.
        pred_time: predicted times (shorter = sooner), shape ``(n,)``.

    Returns:
        The index in [0, 1]; ``nan`` for empty input, a missing value, or no
        comparable pair.

    Raises:
        DataError: unequal lengths, infinite values, or events not 0/1.
    """
    t, p = _pair(time, pred_time, "time", "pred_time")
    _, e = _pair(time, event, "time", "event")
    if _undefined(t, p, e):
        return float("nan")
    if not np.isin(e, (0.0, 1.0)).all():
        raise DataError("event must be 0 (censored) or 1 (observed)")
    # ranks of predictions (dense) for a Fenwick tree of counts
    uniq_p, rank = np.unique(p, return_inverse=True)
    rank = rank.ravel()
    size = uniq_p.size
    tree = np.zeros(size + 1, dtype=np.int64)

    def add(i: int) -> None:
        i += 1
        while i <= size:
            tree[i] += 1
            i += i & -i

    def count_le(i: int) -> int:  # how many inserted ranks <= i
        i += 1
        s = 0
        while i > 0:
            s += tree[i]
            i -= i & -i
        return int(s)

    order = np.argsort(-t, kind="stable")
    t_sorted = t[order]
    concordant = 0.0
    comparable = 0
    inserted = 0
    start = 0
    n = t.size
    while start < n:
        stop = start
        while stop < n and t_sorted[stop] == t_sorted[start]:
            stop += 1
        group = order[start:stop]
        # every inserted row has a strictly later time than this group
        for i in group:
            if e[i] == 1.0 and inserted:
                r = rank[i]
                le = count_le(r)
                lt = count_le(r - 1) if r > 0 else 0
                greater = inserted - le
                concordant += greater + 0.5 * (le - lt)
                comparable += inserted
        for i in group:
            add(rank[i])
        inserted += stop - start
        start = stop
    if comparable == 0:
        return float("nan")
    return float(concordant / comparable)


# --------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------

_PRED_REQUIRED = ("customer_id", "model", "cutoff", "pred_spend")
_PRED_OPTIONAL = (
    "horizon_days",
    "pred_transactions",
    "p_churn",
    "pred_spend_p10",
    "pred_spend_p50",
    "pred_spend_p90",
    "pred_next_purchase_days",
)
_ACTUAL_REQUIRED = ("customer_id", "actual_transactions", "actual_spend")


def _some_ids(ids: Any, k: int = 5) -> str:
    ids = sorted(map(str, ids))
    more = f", … ({len(ids) - k} more)" if len(ids) > k else ""
    return ", ".join(repr(i) for i in ids[:k]) + more


def _check_columns(frame: pd.DataFrame, required: Sequence[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{name} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}")


def _as_cutoff(series: pd.Series, name: str) -> pd.Series:
    """Cutoffs as ``datetime64[us, UTC]`` (naive values are read as UTC)."""
    try:
        return pd.to_datetime(series, utc=True).dt.as_unit("us")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}.cutoff is not a date: {exc}") from exc


def _numeric(frame: pd.DataFrame, column: str, name: str) -> pd.Series:
    try:
        return pd.to_numeric(frame[column], errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}.{column} must be numeric: {exc}") from exc


def join_actuals(predictions: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """Validate and join a predictions frame with actuals, customer by customer.

    Args:
        predictions: canonical predictions frame (DESIGN.md), one row per
            customer × model (× cutoff). Required columns: ``customer_id``,
            ``model``, ``cutoff``, ``pred_spend``; ``horizon_days``,
            ``pred_transactions``, ``p_churn``, ``pred_spend_p10``,
            ``pred_spend_p50``, ``pred_spend_p90`` and
            ``pred_next_purchase_days`` are read when present and treated as
            null when absent.
        actuals: one row per customer with ``customer_id``,
            ``actual_transactions`` (purchase occasions in the horizon) and
            ``actual_spend``; optionally ``actual_next_purchase_days`` (days
            from the cutoff to the first purchase occasion in the horizon,
            null for customers who did not buy; null for everyone when
            absent). With several cutoffs in ``predictions`` the
            actuals differ per cutoff, so ``actuals`` must then carry a
            ``cutoff`` column too (one row per customer × cutoff); extra
            columns are ignored.

    Returns:
        The predictions with ``actual_transactions``, ``actual_spend`` and
        ``actual_next_purchase_days`` added (float64), ``customer_id`` as
        text, in the predictions' row order.

    Raises:
        DataError: missing columns; duplicate rows; missing or negative
            actual transactions or missing actual spend; or any
            (model, cutoff) whose customers differ from the actuals' — the
            message gives how many customers are on each side only and a few
            of their ids. Customers are compared as text (``"7"`` matches
            ``7``). Nothing is dropped silently.
    """
    _check_columns(predictions, _PRED_REQUIRED, "predictions")
    _check_columns(actuals, _ACTUAL_REQUIRED, "actuals")
    if predictions.empty:
        raise DataError("predictions is empty")
    if actuals.empty:
        raise DataError("actuals is empty")

    pred = predictions.copy()
    pred["customer_id"] = pred["customer_id"].astype(str)
    pred["cutoff"] = _as_cutoff(pred["cutoff"], "predictions")
    for col in _PRED_OPTIONAL:
        pred[col] = _numeric(pred, col, "predictions") if col in pred.columns else np.nan
    pred["pred_spend"] = _numeric(pred, "pred_spend", "predictions")
    if pred["model"].isna().any():
        raise DataError("predictions.model has missing values")
    if pred["cutoff"].isna().any():
        raise DataError("predictions.cutoff has missing values")

    dup = pred.duplicated(["model", "cutoff", "customer_id"])
    if dup.any():
        raise DataError(
            f"predictions has {int(dup.sum())} duplicate row(s) for the same model, cutoff and customer, "
            f"e.g. customer {_some_ids(pred.loc[dup, 'customer_id'].unique())}"
        )

    act_cols = ["customer_id", "actual_transactions", "actual_spend"]
    by_cutoff = "cutoff" in actuals.columns
    act = actuals[act_cols + (["cutoff"] if by_cutoff else [])].copy()
    act["customer_id"] = act["customer_id"].astype(str)
    act["actual_transactions"] = _numeric(act, "actual_transactions", "actuals")
    act["actual_spend"] = _numeric(act, "actual_spend", "actuals")
    if "actual_next_purchase_days" in actuals.columns:
        act["actual_next_purchase_days"] = _numeric(actuals, "actual_next_purchase_days", "actuals").to_numpy()
        if ((act["actual_next_purchase_days"].notna()) != (act["actual_transactions"] > 0)).any():
            raise DataError(
                "actuals.actual_next_purchase_days must be given exactly for the customers who bought "
                "(actual_transactions > 0)"
            )
    else:
        act["actual_next_purchase_days"] = np.nan
    for col in ("actual_transactions", "actual_spend"):
        n_nan = int(act[col].isna().sum())
        if n_nan:
            raise DataError(f"actuals.{col} has {n_nan} missing value(s)")
    if (act["actual_transactions"] < 0).any():
        raise DataError("actuals.actual_transactions has negative counts")
    if np.isinf(act[["actual_transactions", "actual_spend"]].to_numpy()).any():
        raise DataError("actuals has infinite values")

    keys = ["customer_id"]
    if by_cutoff:
        act["cutoff"] = _as_cutoff(act["cutoff"], "actuals")
        keys = ["cutoff", "customer_id"]
    elif pred["cutoff"].nunique() > 1:
        raise DataError(
            f"predictions hold {pred['cutoff'].nunique()} cutoffs but actuals has no cutoff column; "
            "actuals differ per cutoff, so give one row per customer and cutoff with a cutoff column"
        )
    dup = act.duplicated(keys)
    if dup.any():
        raise DataError(
            f"actuals has {int(dup.sum())} duplicate row(s) for the same customer"
            + (" and cutoff" if by_cutoff else "")
            + f", e.g. {_some_ids(act.loc[dup, 'customer_id'].unique())}"
        )
    # every (model, cutoff) must cover exactly the actuals' customers
    for (model, cutoff), group in pred.groupby(["model", "cutoff"], sort=True):
        ids_pred = set(group["customer_id"])
        ids_act = set(act.loc[act["cutoff"] == cutoff, "customer_id"]) if by_cutoff else set(act["customer_id"])
        only_pred = ids_pred - ids_act
        only_act = ids_act - ids_pred
        if only_pred or only_act:
            parts = []
            if only_pred:
                parts.append(f"{len(only_pred)} customer(s) have predictions but no actuals ({_some_ids(only_pred)})")
            if only_act:
                parts.append(f"{len(only_act)} customer(s) have actuals but no prediction ({_some_ids(only_act)})")
            raise DataError(f"model {model!s}, cutoff {cutoff!s}: " + "; ".join(parts))

    act_names = ("actual_transactions", "actual_spend", "actual_next_purchase_days")
    merged = pred.drop(columns=[c for c in act_names if c in pred.columns]).merge(
        act, on=keys, how="left", validate="many_to_one", sort=False
    )
    return merged


def _group_metrics(g: pd.DataFrame) -> dict[str, float]:
    tx_a = g["actual_transactions"].to_numpy(np.float64)
    tx_p = g["pred_transactions"].to_numpy(np.float64)
    sp_a = g["actual_spend"].to_numpy(np.float64)
    sp_p = g["pred_spend"].to_numpy(np.float64)
    pc = g["p_churn"].to_numpy(np.float64)
    churned = churn_labels(tx_a)
    nxt_a = g["actual_next_purchase_days"].to_numpy(np.float64)
    nxt_p = g["pred_next_purchase_days"].to_numpy(np.float64)
    horizon = float(g["horizon_days"].iloc[0]) if g["horizon_days"].notna().any() else float("nan")
    # non-buyers are censored at the end of the window
    nxt_time = np.where(churned == 1, horizon, nxt_a)
    if np.isnan(nxt_a[churned == 0]).any():
        nxt_time = np.full(len(g), np.nan)
    return {
        "n_customers": float(len(g)),
        "tx_mae": mae(tx_a, tx_p),
        "tx_rmse": rmse(tx_a, tx_p),
        "spend_mae": mae(sp_a, sp_p),
        "spend_rmse": rmse(sp_a, sp_p),
        "total_spend_pred": float(sp_p.sum()) if not np.isnan(sp_p).any() else float("nan"),
        "total_spend_actual": float(sp_a.sum()),
        "total_spend_error_pct": total_error_pct(sp_a, sp_p),
        "total_tx_error_pct": total_error_pct(tx_a, tx_p),
        "gini_norm": normalized_gini(sp_a, sp_p),
        "spearman": spearman(sp_a, sp_p),
        "top_decile_capture": top_decile_capture(sp_a, sp_p),
        "decile_mape": decile_mape(sp_a, sp_p),
        "churn_rate": float(churned.mean()),
        "churn_auc": churn_auc(churned, pc),
        "churn_pr_auc": churn_pr_auc(churned, pc),
        "churn_brier": churn_brier(churned, pc),
        "spend_coverage_80": interval_coverage(sp_a, g["pred_spend_p10"], g["pred_spend_p90"]),
        "spend_pinball": mean_pinball_loss(sp_a, g["pred_spend_p10"], g["pred_spend_p50"], g["pred_spend_p90"]),
        "spend_mae_p50": mae(sp_a, g["pred_spend_p50"]),
        "next_purchase_mae": next_purchase_mae(nxt_a, nxt_p),
        "next_purchase_cindex": concordance_index(nxt_time, 1.0 - churned, nxt_p),
    }


def evaluate(predictions: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """Score predictions against actuals: one row per model and cutoff.

    Transactions metrics compare ``pred_transactions`` with
    ``actual_transactions``; spend metrics (errors, totals, ranking,
    calibration) compare ``pred_spend`` with ``actual_spend``; churn metrics
    compare ``p_churn`` with ``actual_transactions == 0``. A metric whose
    prediction column is null for the model (e.g. ``p_churn`` of a model that
    does not predict churn) is ``nan``; so is a metric undefined for the data
    (see each function in this module).

    Args:
        predictions: canonical predictions frame (see :func:`join_actuals`).
        actuals: actuals frame (see :func:`join_actuals`).

    Returns:
        Frame with columns :data:`EVALUATE_COLUMNS` — ``model``, ``cutoff``,
        ``horizon_days``, ``n_customers`` (int), then ``tx_mae``, ``tx_rmse``,
        ``spend_mae``, ``spend_rmse``, ``total_spend_pred``,
        ``total_spend_actual``, ``total_spend_error_pct`` (percent),
        ``total_tx_error_pct`` (percent), ``gini_norm``, ``spearman``,
        ``top_decile_capture`` (share), ``decile_mape`` (fraction),
        ``churn_rate`` (share), ``churn_auc``, ``churn_pr_auc``,
        ``churn_brier``, ``spend_coverage_80`` (share of customers with
        ``pred_spend_p10 <= actual_spend <= pred_spend_p90``; 0.8 is
        calibrated), ``spend_pinball`` (mean pinball loss of the three
        quantiles, currency), ``spend_mae_p50`` (MAE of the median forecast
        ``pred_spend_p50``: the point forecast MAE rewards, while
        ``spend_mae`` scores the mean ``pred_spend``), ``next_purchase_mae``
        (days, over the customers
        who bought; needs ``actual_next_purchase_days`` in the actuals) and
        ``next_purchase_cindex`` (Harrell's C of ``pred_next_purchase_days``
        for the time to the first purchase, non-buyers censored at the
        horizon) — sorted by cutoff, then model.

    Raises:
        DataError: as :func:`join_actuals`; or one (model, cutoff) with
            several ``horizon_days``.
    """
    joined = join_actuals(predictions, actuals)
    rows = []
    for (model, cutoff), g in joined.groupby(["model", "cutoff"], sort=True):
        horizons = g["horizon_days"].dropna().unique()
        if horizons.size > 1:
            raise DataError(
                f"model {model!s}, cutoff {cutoff!s} mixes horizons {sorted(horizons.tolist())} (days); "
                "evaluate one horizon at a time"
            )
        row: dict[str, Any] = {
            "model": model,
            "cutoff": cutoff,
            "horizon_days": float(horizons[0]) if horizons.size else float("nan"),
        }
        row.update(_group_metrics(g))
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(EVALUATE_COLUMNS))
    out["n_customers"] = out["n_customers"].astype("int64")
    out = out.sort_values(["cutoff", "model"], kind="stable").reset_index(drop=True)
    return out


def summarize_backtest(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of each metric across cutoffs, per model.

    For rolling-origin backtests: :func:`evaluate` gives one row per model and
    cutoff; this condenses them to one row per model.

    Args:
        metrics: the frame of :func:`evaluate` (at least ``model``, ``cutoff``
            and some of :data:`METRIC_COLUMNS`).

    Returns:
        Frame with ``model``, ``n_cutoffs``, ``first_cutoff``,
        ``last_cutoff``, ``horizon_days`` (``nan`` if it differs between
        cutoffs), then ``<metric>_mean`` and ``<metric>_std`` for each metric
        column present, in :data:`METRIC_COLUMNS` order. The standard
        deviation is the sample one (``ddof=1``), ``nan`` with one cutoff;
        both skip ``nan`` values of single cutoffs. Rows sorted by model.

    Raises:
        DataError: ``model`` or ``cutoff`` missing.
    """
    _check_columns(metrics, ("model", "cutoff"), "metrics")
    present = [c for c in METRIC_COLUMNS if c in metrics.columns]
    rows = []
    for model, g in metrics.groupby("model", sort=True):
        row: dict[str, Any] = {
            "model": model,
            "n_cutoffs": int(g["cutoff"].nunique()),
            "first_cutoff": g["cutoff"].min(),
            "last_cutoff": g["cutoff"].max(),
        }
        if "horizon_days" in g.columns:
            h = g["horizon_days"].dropna().unique()
            row["horizon_days"] = float(h[0]) if h.size == 1 else float("nan")
        else:
            row["horizon_days"] = float("nan")
        for col in present:
            values = pd.to_numeric(g[col], errors="coerce").astype("float64")
            row[f"{col}_mean"] = float(values.mean()) if values.notna().any() else float("nan")
            row[f"{col}_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)
