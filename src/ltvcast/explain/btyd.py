"""Reasons of the BTYD models (``naive``, ``bgnbd``, ``paretonbd`` with Gamma-Gamma): elasticities.

A BTYD prediction is a closed-form function of four numbers per customer
(the RFM summary in weeks), so its drivers are those four inputs and their
*elasticities* ``ε = ∂ ln y / ∂ ln input`` (the % change of the output per
% change of the input) at the customer's own values:

* ``monetary_value`` — analytic: Gamma-Gamma's conditional mean
  ``E[M | x, z̄] = p(γ + x z̄)/(px + q − 1)`` (Fader, Hardie & Lee 2005,
  JMR, eq. 5) gives ``ε = x z̄ / (γ + x z̄)`` on spend (the weight of the
  customer's own mean), 0 on ``p_churn``; naive and a spend model that
  could not be fitted: central differences as below.
* ``recency``, ``T`` — the count models' closed forms (BG/NBD: FHL 2005
  eq. 10; Pareto/NBD: Schmittlein, Morrison & Colombo 1987) hold
  hypergeometric functions; their elasticities are the five-point central
  difference in ``ln input`` (step ``h = 1e-3``, error O(h⁴)), one-sided
  second order (O(h²)) where a step would leave ``recency <= T``.
* ``frequency`` — a whole number (the models reject fractions), so its
  driver is the **arc elasticity of one more repeat purchase** at the same
  dates, ``(ln y(x+1) − ln y(x)) / (ln(x+1) − ln x)``, with the factor
  ``y(x+1)/y(x)``; NaN for customers without a repeat purchase (x = 0
  needs recency 0).

An input equal to 0 has elasticity 0 (``ε = input · ∂ ln y/∂ input``).
``tests/test_explain.py`` checks the elasticities against plain finite
differences to 1e-4.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from ltvcast.explain.attribution import Attribution
from ltvcast.models.btyd import DAYS_PER_WEEK, RFM_INPUTS

__all__ = ["STEP", "btyd_outputs", "explain_btyd", "numeric_elasticity"]

#: Step in ln(input) of the numerical elasticities.
STEP = 1e-3
_SLACK = 1e-9


def btyd_outputs(model, summary: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
    """``pred_spend`` and ``p_churn`` (each (n,)) of a BTYD forecaster for an RFM summary (no simulation).

    Raises:
        NotFittedError, SchemaMismatchError, DataError: as ``predict_columns``.
    """
    quiet = copy.copy(model)
    quiet.n_draws = 0  # the quantile columns are not explained
    out = quiet.predict_columns(summary, horizon_days)
    return {"pred_spend": np.asarray(out["pred_spend"], float), "p_churn": np.asarray(out["p_churn"], float)}


def _logs(model, summary, h, column, scale) -> dict[str, np.ndarray]:
    s = summary.copy()
    s[column] = summary[column].to_numpy(float) * scale
    out = btyd_outputs(model, s, h)
    with np.errstate(divide="ignore"):
        return {k: np.log(v) for k, v in out.items()}


def numeric_elasticity(model, summary: pd.DataFrame, h: float, column: str, step: float = STEP) -> dict[str, np.ndarray]:
    """Elasticities of ``pred_spend`` and ``p_churn`` in ``column`` (recency, T or monetary_value) by differences.

    Five-point central difference in ``ln input``
    ``(−f(2h) + 8f(h) − 8f(−h) + f(−2h)) / 12h``; rows where a step up
    (recency) or down (T) would break ``recency <= T`` use the one-sided
    second-order ``±(3f(0) − 4f(∓h) + f(∓2h)) / 2h``. 0 where the input is 0.

    Returns:
        ``{"pred_spend": (n,), "p_churn": (n,)}``.
    """
    x = summary[column].to_numpy(float)
    rec, T = summary["recency"].to_numpy(float), summary["T"].to_numpy(float)
    if column == "recency":
        ok = rec * np.exp(2 * step) <= T * (1 + _SLACK)
    elif column == "T":
        ok = T * np.exp(-2 * step) >= rec * (1 + _SLACK)
    else:
        ok = np.ones(len(x), bool)
    out = {k: np.zeros(len(x)) for k in ("pred_spend", "p_churn")}
    if ok.any():
        rows = np.flatnonzero(ok)
        sub = summary.iloc[rows].reset_index(drop=True)
        f = {d: _logs(model, sub, h, column, np.exp(d * step)) for d in (-2, -1, 1, 2)}
        with np.errstate(invalid="ignore"):  # ln 0 = -inf on both sides (an output of 0): set to 0 below
            for k in out:
                out[k][rows] = (-f[2][k] + 8 * f[1][k] - 8 * f[-1][k] + f[-2][k]) / (12 * step)
    if (~ok).any():
        rows = np.flatnonzero(~ok)
        sub = summary.iloc[rows].reset_index(drop=True)
        sign = -1.0 if column == "recency" else 1.0
        base = _logs(model, sub, h, column, 1.0)
        f1 = _logs(model, sub, h, column, np.exp(sign * step))
        f2 = _logs(model, sub, h, column, np.exp(2 * sign * step))
        with np.errstate(invalid="ignore"):
            for k in out:
                out[k][rows] = sign * (-3 * base[k] + 4 * f1[k] - f2[k]) / (2 * step)
    for k in out:
        out[k] = np.where(x == 0, 0.0, np.nan_to_num(out[k], nan=0.0, posinf=0.0, neginf=0.0))
    return out


def _monetary(model, summary, h) -> dict[str, np.ndarray]:
    n = len(summary)
    gg = getattr(model, "spend_model_", None)
    if model.name != "naive" and gg is not None:
        pr = gg.params_
        x = summary["frequency"].to_numpy(float)
        z = summary["monetary_value"].to_numpy(float)
        usable = (x > 0) & np.isfinite(z) & (z > 0)
        eps = np.where(usable, x * np.where(usable, z, 0.0) / (pr["gamma"] + x * np.where(usable, z, 0.0)), 0.0)
        return {"pred_spend": eps, "p_churn": np.zeros(n)}
    if model.name != "naive":  # one value per occasion for everybody
        return {"pred_spend": np.zeros(n), "p_churn": np.zeros(n)}
    return numeric_elasticity(model, summary, h, "monetary_value", STEP)


def _frequency(model, summary, h, logs) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = summary["frequency"].to_numpy(float)
    rows = np.flatnonzero(x >= 1)
    eps = {k: np.full(len(x), np.nan) for k in logs}
    factor = {k: np.full(len(x), np.nan) for k in logs}
    if rows.size:
        sub = summary.iloc[rows].reset_index(drop=True)
        up = sub.assign(frequency=sub["frequency"] + 1.0)
        with np.errstate(divide="ignore"):
            after = {k: np.log(v) for k, v in btyd_outputs(model, up, h).items()}
        dx = np.log(x[rows] + 1.0) - np.log(x[rows])
        for k in logs:
            d = after[k] - logs[k][rows]
            eps[k][rows] = d / dx
            factor[k][rows] = np.exp(d)
    return eps, factor


def explain_btyd(model, summary: pd.DataFrame, horizon_days: float, *, source: str | None = None) -> list[Attribution]:
    """Elasticity attributions of ``pred_spend`` and ``p_churn`` for every row of an RFM summary (weeks).

    Args:
        model: a fitted :class:`~ltvcast.models.btyd.BTYDForecaster`.
        summary: its inputs (``customer_id``, ``frequency``, ``recency``,
            ``T`` in weeks, ``monetary_value`` in currency).
        horizon_days: horizon in days.
        source: the name shown as the source (default: the model's name).

    Returns:
        ``[spend, churn]`` :class:`Attribution` objects on the
        ``elasticity`` scale, drivers :data:`~ltvcast.models.btyd.RFM_INPUTS`.

    Raises:
        NotFittedError, SchemaMismatchError, DataError: as ``predict_columns``.
    """
    summary = summary.reset_index(drop=True)
    outs = btyd_outputs(model, summary, horizon_days)
    with np.errstate(divide="ignore"):
        logs = {k: np.log(v) for k, v in outs.items()}
    per = {c: numeric_elasticity(model, summary, horizon_days, c, STEP) for c in ("recency", "T")}
    per["monetary_value"] = _monetary(model, summary, horizon_days)
    freq, factor = _frequency(model, summary, horizon_days, logs)
    per["frequency"] = freq
    features = list(RFM_INPUTS)
    methods = ["arc_elasticity", "elasticity", "elasticity",
               "elasticity" if model.name == "naive" or getattr(model, "spend_model_", None) is None
               else "elasticity (analytic)"]
    values = summary[features].to_numpy(float)
    ids = summary["customer_id"].to_numpy(dtype=object)
    t_weeks = horizon_days / DAYS_PER_WEEK
    note = (f"{model.name}: elasticities d ln y / d ln input of the RFM summary (weeks; horizon {t_weeks:.1f} weeks); "
            "frequency: arc elasticity of one more repeat purchase")
    out = []
    for target in ("pred_spend", "p_churn"):
        contrib = np.column_stack([per[f][target] for f in features])
        out.append(Attribution(
            target, "elasticity", ids, features, methods, values, contrib, np.full(len(ids), np.nan),
            outs[target], source or model.name, [note], summary,
            {"arc_factor": {"frequency": factor[target]}},
        ))
    return out
