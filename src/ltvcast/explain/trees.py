"""Reasons of the LightGBM models (``gbm``, ``hybrid``): exact tree SHAP in the model's link space.

LightGBM's own ``pred_contrib=True`` (TreeSHAP; Lundberg, Erion & Lee 2018,
arXiv:1802.03888) on exactly the matrix the boosters predict on
(:meth:`ltvcast.models.learned.gbm.GBMForecaster.raw_contributions`):

* **p_churn** — the churn booster's raw score is ``logit P(no occasion)``;
  Platt recalibration is affine in it, ``logit p' = a·raw + b`` (Platt 1999),
  so each SHAP value is scaled by ``a`` and the base becomes ``a·bias + b``:
  base + Σ contributions = ``logit p_churn`` exactly (up to the clip of p
  to ``[1e-6, 1 − 1e-6]`` in :class:`~ltvcast.models.learned.calibration.PlattCalibration`).
  Shown as factors ``e^c`` on the odds of churn.
* **pred_spend, Tweedie** — the raw score is ``ln E[spend]``; the level
  calibration adds ``ln factor`` to the base: base + Σ c = ``ln pred_spend``.
* **pred_spend, ZILN** — ``ln E[spend] = ln σ(f_p) + μ + σ²/2`` with
  ``σ = exp(clip(f_s))`` (Wang, Liu & Miao 2019) is additive in μ only. The
  μ SHAP values are kept; the changes of the nonlinear parts from their
  base, ``g(f) − g(f₀)``, are split over the features in proportion to
  their SHAP values in ``f`` (the secant slope ``(g(f) − g(f₀))/(f − f₀)``
  times each value; the derivative when ``|f − f₀| < 1e-9``). The sum is
  exact: base + Σ c = ``ln pred_spend``; each term is exact SHAP of μ plus a
  linearised share of the other two outputs (stated in the notes).

Shown as factors ``e^c`` on expected spend ("×1.8").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_expit

from ltvcast.explain.attribution import Attribution
from ltvcast.models.learned.ziln import SIGMA_MAX, SIGMA_MIN

__all__ = ["explain_gbm"]

_LO, _HI = np.log(SIGMA_MIN), np.log(SIGMA_MAX)


def _secant(g, dg, f0: np.ndarray, f: np.ndarray) -> np.ndarray:
    """``(g(f) − g(f0)) / (f − f0)``, the derivative ``dg(f)`` where ``|f − f0| < 1e-9``."""
    d = f - f0
    close = np.abs(d) < 1e-9
    return np.where(close, dg(f), (g(f) - g(f0)) / np.where(close, 1.0, d))


def _g_sigma(s):
    return 0.5 * np.exp(2.0 * np.clip(s, _LO, _HI))


def _dg_sigma(s):
    return np.where((s > _LO) & (s < _HI), np.exp(2.0 * np.clip(s, _LO, _HI)), 0.0)


def explain_gbm(model, inputs: pd.DataFrame, horizon_days: float) -> list[Attribution]:
    """Tree-SHAP attributions of ``pred_spend`` (log scale) and ``p_churn`` (log-odds) for every row of ``inputs``.

    Args:
        model: a fitted :class:`~ltvcast.models.learned.gbm.GBMForecaster`
            (``gbm`` or ``hybrid``).
        inputs: the model's :meth:`inputs` rows (``customer_id`` plus features).
        horizon_days: the horizon H in days.

    Returns:
        ``[spend, churn]`` :class:`Attribution` objects; p = the model's
        features except ``label_days`` (constant at prediction time, its
        SHAP value is 0).

    Raises:
        NotFittedError, SchemaMismatchError: as ``raw_contributions``.
    """
    raw = model.raw_contributions(inputs, horizon_days)
    names = list(model.feature_names_)
    keep = [j for j, f in enumerate(names) if f != "label_days"]
    X = raw["matrix"].astype(float)
    ids = inputs["customer_id"].to_numpy(dtype=object)
    ctx = inputs.reset_index(drop=True)
    notes = []

    # spend
    factor = float(model.level_.factor_) if model.calibrate_level else 1.0
    sp = raw["spend"]
    if sp.ndim == 2:  # tweedie: ln E[spend]
        contrib, base = sp[:, :-1], sp[:, -1] + np.log(factor)
        notes.append(f"{model.name}: pred_spend by exact tree SHAP of the Tweedie log mean")
    else:
        fp, mu, fs = (sp[:, o, :] for o in range(3))
        lp, lp0 = fp.sum(axis=1), fp[:, -1]
        ls, ls0 = fs.sum(axis=1), fs[:, -1]
        slope_p = _secant(log_expit, lambda f: np.exp(log_expit(-f)), lp0, lp)
        slope_s = _secant(_g_sigma, _dg_sigma, ls0, ls)
        contrib = mu[:, :-1] + slope_p[:, None] * fp[:, :-1] + slope_s[:, None] * fs[:, :-1]
        base = log_expit(lp0) + mu[:, -1] + _g_sigma(ls0) + np.log(factor)
        notes.append(
            f"{model.name}: pred_spend by exact tree SHAP of the ZILN μ plus the secant-linearised shares of "
            "ln P(spend > 0) and σ²/2 (sums exactly to ln pred_spend)"
        )
    drop = [j for j in range(len(names)) if j not in keep]
    base = base + contrib[:, drop].sum(axis=1)
    out_spend = base + contrib.sum(axis=1) - contrib[:, drop].sum(axis=1)
    spend = Attribution(
        "pred_spend", "log", ids, [names[j] for j in keep], ["tree_shap"] * len(keep), X[:, keep],
        contrib[:, keep], base, out_spend, model.name, notes, ctx,
    )

    # churn
    ch = raw["churn"]
    a, b = (model.churn_calibration_.a_, model.churn_calibration_.b_) if model.calibrate_churn else (1.0, 0.0)
    ccontrib = a * ch[:, :-1]
    cbase = a * ch[:, -1] + b + ccontrib[:, drop].sum(axis=1)
    churn = Attribution(
        "p_churn", "log_odds", ids, [names[j] for j in keep], ["tree_shap"] * len(keep), X[:, keep],
        ccontrib[:, keep], cbase, cbase + ccontrib[:, keep].sum(axis=1), model.name,
        [f"{model.name}: p_churn by exact tree SHAP of the churn logit" + (
            f", Platt-scaled (a = {a:.3f}, b = {b:.3f})" if model.calibrate_churn else "")], ctx,
    )
    return [spend, churn]
