"""Global reasons: importance with direction, partial dependence, and the report section.

* **Importance** (:func:`global_importance`): per model, output and driver,
  the mean |contribution| over the customers (on the attribution's scale:
  ln spend, log-odds of churn, or elasticity) and the *direction*, the sign
  of the Pearson correlation between the driver's value and its
  contribution (+1: a higher value raises the output; −1: lowers it; 0: no
  variation). For tree SHAP this is the mean |SHAP| importance of Lundberg
  et al. (2020, Nature Machine Intelligence 2:56).
* **Partial dependence** (:func:`partial_dependence`; Friedman 2001, Annals
  of Statistics 29(5), eq. 40): the mean prediction over a sample of
  customers with one input set to each value of a grid (quantiles 5 %–95 %
  of the input), everything else as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.evaluate.report import ReportSection, svg_figure
from ltvcast.explain.attribution import Attribution
from ltvcast.explain.btyd import btyd_outputs
from ltvcast.explain.core import attribute
from ltvcast.models.btyd import BTYDForecaster

__all__ = ["IMPORTANCE_COLUMNS", "global_importance", "importance_section", "partial_dependence"]

#: Columns of :func:`global_importance`.
IMPORTANCE_COLUMNS = ("model", "target", "rank", "feature", "method", "scale", "mean_abs_contribution", "direction",
                      "correlation", "customers")


def _sample(inputs: pd.DataFrame, max_customers: int | None, seed: int) -> pd.DataFrame:
    if max_customers is None or len(inputs) <= max_customers:
        return inputs.reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(inputs), size=max_customers, replace=False))
    return inputs.iloc[rows].reset_index(drop=True)


def importance_from(attributions: list[Attribution], model: str | None = None) -> pd.DataFrame:
    """:func:`global_importance`'s frame from attributions already computed (rows = customers)."""
    rows = []
    for att in attributions:
        c, v = att.contributions, att.values
        for j, feature in enumerate(att.features):
            cj, vj = c[:, j], v[:, j]
            ok = np.isfinite(cj) & np.isfinite(vj)
            mean_abs = float(np.nanmean(np.abs(cj))) if np.isfinite(cj).any() else float("nan")
            corr = float("nan")
            if ok.sum() > 2 and np.std(cj[ok]) > 0 and np.std(vj[ok]) > 0:
                corr = float(np.corrcoef(vj[ok], cj[ok])[0, 1])
            rows.append({
                "model": model or att.source, "target": att.target, "feature": feature, "method": att.methods[j],
                "scale": att.scale, "mean_abs_contribution": mean_abs,
                "direction": 0 if not np.isfinite(corr) else int(np.sign(corr)), "correlation": corr,
                "customers": int(np.isfinite(cj).sum()),
            })
    frame = pd.DataFrame(rows, columns=[c for c in IMPORTANCE_COLUMNS if c != "rank"])
    frame = frame.sort_values(["target", "mean_abs_contribution"], ascending=[True, False], kind="stable",
                              na_position="last")
    frame.insert(2, "rank", frame.groupby("target").cumcount() + 1)
    return frame.reset_index(drop=True)[list(IMPORTANCE_COLUMNS)]


def global_importance(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float, *,
                      max_customers: int | None = 5000, seed: int = 0) -> pd.DataFrame:
    """Importance with direction of every driver of ``pred_spend`` and ``p_churn``.

    Args:
        forecaster: a fitted forecaster (any family :func:`~ltvcast.explain.core.attribute` explains).
        inputs: its ``inputs(history, cutoff, horizon_days)`` rows.
        cutoff, horizon_days: the prediction cutoff and horizon (days).
        max_customers: explain a seeded random sample of at most this many
            customers (``None``: all).
        seed: the sample's seed.

    Returns:
        Frame of :data:`IMPORTANCE_COLUMNS`, one row per target and driver,
        ranked within each target by ``mean_abs_contribution`` (1 = most
        important); ``direction`` ∈ {−1, 0, +1}; ``model`` is the source
        model (``auto/<component>`` for auto).

    Raises:
        LtvcastError: as :func:`~ltvcast.explain.core.attribute`.
    """
    sample = _sample(inputs, max_customers, seed)
    return importance_from(attribute(forecaster, sample, cutoff, horizon_days))


def _predict_means(forecaster, frame: pd.DataFrame, cutoff, h: float) -> tuple[float, float]:
    if isinstance(forecaster, BTYDForecaster):
        out = btyd_outputs(forecaster, frame, h)
        return float(np.mean(out["pred_spend"])), float(np.mean(out["p_churn"]))
    pred = forecaster.predict_inputs(frame, cutoff, h)
    return float(pred["pred_spend"].mean()), float(pred["p_churn"].mean())


def partial_dependence(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float, feature: str, *,
                       grid: int = 12, max_customers: int | None = 500, seed: int = 0) -> pd.DataFrame:
    """Partial dependence of mean ``pred_spend`` and ``p_churn`` on one input (Friedman 2001, eq. 40).

    BTYD summaries stay valid: ``frequency`` takes whole values and is
    varied only for repeat buyers (with ``recency`` kept), ``recency`` only
    for repeat buyers and clipped to ``(0, T]``, ``T`` kept ``>= recency``.

    Args:
        forecaster, inputs, cutoff, horizon_days: as :func:`global_importance`.
        feature: an input column of ``inputs``.
        grid: grid points (distinct quantiles 5 %–95 % of the input).
        max_customers, seed: the customer sample averaged over.

    Returns:
        Frame ``feature``, ``value``, ``pred_spend`` (mean, currency),
        ``p_churn`` (mean), ``customers``; one row per grid value.

    Raises:
        DataError: ``feature`` is not an input column or has no finite value.
    """
    if feature not in inputs.columns or feature == "customer_id":
        raise DataError(f"{feature!r} is not an input of this model")
    sample = _sample(inputs, max_customers, seed)
    btyd = isinstance(forecaster, BTYDForecaster)
    if btyd and feature in ("frequency", "recency"):
        sample = sample[sample["frequency"] > 0].reset_index(drop=True)
    values = pd.to_numeric(sample[feature], errors="coerce").to_numpy(float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise DataError(f"{feature!r} has no finite value among the customers sampled")
    points = np.unique(np.quantile(finite, np.linspace(0.05, 0.95, grid)))
    if btyd and feature == "frequency":
        points = np.unique(np.maximum(np.round(points), 1.0))
    rows = []
    for v in points:
        frame = sample.copy()
        if btyd and feature == "recency":
            frame["recency"] = np.minimum(max(v, 1e-6), frame["T"].to_numpy(float))
        elif btyd and feature == "T":
            frame["T"] = np.maximum(v, frame["recency"].to_numpy(float))
        else:
            frame[feature] = np.asarray(v, dtype=frame[feature].dtype)
        spend, churn = _predict_means(forecaster, frame, cutoff, float(horizon_days))
        rows.append({"feature": feature, "value": float(v), "pred_spend": spend, "p_churn": churn,
                     "customers": len(frame)})
    return pd.DataFrame(rows, columns=["feature", "value", "pred_spend", "p_churn", "customers"])


def importance_section(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float, *, top: int = 10,
                       pd_features: int = 3, max_customers: int | None = 2000, seed: int = 0,
                       title: str | None = None) -> ReportSection:
    """The report's "global importance" section: the importance table per output and partial-dependence plots.

    Args:
        forecaster, inputs, cutoff, horizon_days: as :func:`global_importance`.
        top: drivers listed per output.
        pd_features: partial-dependence plots of the top drivers of
            ``pred_spend`` that are plain input columns (deep sequence groups
            are skipped).
        max_customers, seed: the customer sample (importance; partial
            dependence uses at most 500 of it).
        title: section title (default ``"Global importance — <model>"``).

    Returns:
        A :class:`~ltvcast.evaluate.report.ReportSection` (tables: one per
        output; figures: one SVG with a panel per plotted driver).

    Raises:
        LtvcastError: as :func:`global_importance`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = _sample(inputs, max_customers, seed)
    atts = attribute(forecaster, sample, cutoff, horizon_days)
    imp = importance_from(atts)
    name = getattr(forecaster, "name", "model")
    tables = []
    for target in ("pred_spend", "p_churn"):
        part = imp[(imp["target"] == target) & (imp["rank"] <= top)]
        if part.empty:
            continue
        shown = pd.DataFrame({
            "rank": part["rank"], "driver": part["feature"], "method": part["method"],
            "mean |contribution|": part["mean_abs_contribution"].round(4),
            "direction": part["direction"].map({1: "higher → up", -1: "higher → down", 0: "–"}),
        })
        tables.append((f"{target}: drivers by mean |contribution| ({part['scale'].iloc[0]} scale; "
                       f"{part['model'].iloc[0]})", shown))
    spend_top = imp[(imp["target"] == "pred_spend") & imp["feature"].isin(sample.columns)]
    plotted = [f for f in spend_top["feature"].tolist() if f != "customer_id"][:pd_features]
    figures = []
    curves = []
    for f in plotted:
        try:
            curves.append(partial_dependence(forecaster, sample, cutoff, horizon_days, f, max_customers=500, seed=seed))
        except DataError:
            continue
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
        for ax, curve in zip(axes[0], curves):
            ax.plot(curve["value"], curve["pred_spend"], marker="o", color="#1f77b4")
            ax.set_xlabel(curve["feature"].iloc[0])
            ax.set_ylabel("mean pred_spend", color="#1f77b4")
            twin = ax.twinx()
            twin.plot(curve["value"], curve["p_churn"], marker="s", color="#d62728")
            twin.set_ylabel("mean p_churn", color="#d62728")
        fig.tight_layout()
        figures.append(svg_figure(fig, f"pd-{name}"))
    notes = list(dict.fromkeys(n for a in atts for n in a.notes))
    return ReportSection(
        title or f"Global importance — {name}",
        intro=("Which inputs move the predictions most across customers (mean |contribution| on the model's own "
               "scale), in which direction, and how the mean prediction changes when one input is varied for "
               "everybody (partial dependence: blue spend, red churn)."),
        tables=tables, figures=figures, notes=notes + [f"{len(sample):,} customers explained"],
    )


