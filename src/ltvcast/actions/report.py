"""The report's "decisions" section: segments grid, RFM groups, value at risk, global importance.

:func:`decisions_section` turns one model's predictions (and the RFM summary
at the same cutoff) into a :class:`~ltvcast.evaluate.report.ReportSection`;
:func:`backtest_decisions` gives a backtest's report that section and the
chosen model's global importance. The library prints nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from ltvcast.actions.segments import (
    DEFAULT_RISK_EDGES,
    DEFAULT_TIER_QUANTILES,
    RFM_GROUPS,
    assign_segments,
    retention_list,
    segment_summary,
)
from ltvcast.errors import DataError, LtvcastError
from ltvcast.evaluate.report import ReportSection, svg_figure

__all__ = ["backtest_decisions", "choose_model", "decisions_section", "grid_table"]

TITLE = "Decisions: segments and value at risk"


def choose_model(predictions: pd.DataFrame, metrics: pd.DataFrame | None = None) -> str:
    """The model whose predictions the decisions use.

    The only model; else, among the models with complete ``pred_spend`` and
    ``p_churn``, the one with the lowest ``spend_mae`` in ``metrics`` (the
    most accurate value per customer); without metrics the first such model
    that is not ``naive``.

    Raises:
        DataError: no model has complete ``pred_spend`` and ``p_churn``.
    """
    names = [str(m) for m in pd.unique(predictions["model"])]
    complete = [
        m for m in names
        if predictions.loc[predictions["model"].astype(str) == m, ["pred_spend", "p_churn"]].notna().all().all()
    ]
    if not complete:
        raise DataError("no model has complete pred_spend and p_churn; the decisions need both")
    if len(complete) == 1:
        return complete[0]
    if metrics is not None and "spend_mae" in metrics.columns and "model" in metrics.columns:
        m = metrics[metrics["model"].astype(str).isin(complete)].groupby("model")["spend_mae"].mean()
        if m.notna().any():
            return str(m.idxmin())
    rest = [m for m in complete if m != "naive"]
    return (rest or complete)[0]


def grid_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The value tier × churn-risk grid as text: highest tier first, one column per risk band.

    Each cell: ``customers · share of predicted value · mean p_churn``.

    Args:
        summary: the frame of :func:`~ltvcast.actions.segments.segment_summary`.
    """
    g = summary[summary["grid"] == "value x risk"]
    tiers = list(dict.fromkeys(g["value_tier"]))[::-1]
    risks = list(dict.fromkeys(g["churn_risk"]))
    rows = []
    for tier in tiers:
        row = {"value tier": tier}
        for risk in risks:
            c = g[(g["value_tier"] == tier) & (g["churn_risk"] == risk)].iloc[0]
            share = "–" if pd.isna(c["share_of_value"]) else f"{c['share_of_value']:.1%}"
            p = "–" if pd.isna(c["mean_p_churn"]) else f"{c['mean_p_churn']:.2f}"
            row[f"{risk} risk"] = f"{int(c['customers']):,} · {share} of value · p̄ {p}"
        rows.append(row)
    return pd.DataFrame(rows)


def _heatmap(summary: pd.DataFrame, key: str) -> str:
    from matplotlib.figure import Figure

    g = summary[summary["grid"] == "value x risk"]
    tiers = list(dict.fromkeys(g["value_tier"]))[::-1]
    risks = list(dict.fromkeys(g["churn_risk"]))
    share = np.array([[float(g[(g["value_tier"] == t) & (g["churn_risk"] == r)]["share_of_value"].fillna(0).iloc[0])
                       for r in risks] for t in tiers])
    fig = Figure(figsize=(1.6 + 1.3 * len(risks), 0.8 + 0.5 * len(tiers)))
    ax = fig.add_subplot(111)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=max(float(share.max()), 1e-9), aspect="auto")
    ax.set_xticks(range(len(risks)), [f"{r} risk" for r in risks])
    ax.set_yticks(range(len(tiers)), tiers)
    ax.grid(False)
    for i in range(len(tiers)):
        for j in range(len(risks)):
            ax.text(j, i, f"{share[i, j]:.1%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 * share.max() else "black", fontsize=8)
    ax.set_title("Share of predicted value by value tier and churn risk")
    fig.tight_layout()
    return svg_figure(fig, key)


def decisions_section(
    predictions: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    *,
    model: str | None = None,
    metrics: pd.DataFrame | None = None,
    top: int = 10,
    tier_quantiles: Sequence[float] = DEFAULT_TIER_QUANTILES,
    risk_edges: Sequence[float] = DEFAULT_RISK_EDGES,
    var_method: str = "expected_loss",
    importance: pd.DataFrame | None = None,
    reasons: pd.DataFrame | None = None,
) -> ReportSection:
    """The report's "decisions" section for one model's predictions.

    Args:
        predictions: canonical predictions frame (one or several models;
            with several cutoffs the latest is used).
        summary: RFM summary at that cutoff in days
            (:func:`~ltvcast.actions.segments.rfm_at`), or None (no RFM table).
        model: the model to use (default: :func:`choose_model`).
        metrics: backtest metrics (for :func:`choose_model`).
        top: rows of the value-at-risk list.
        tier_quantiles, risk_edges, var_method: as
            :func:`~ltvcast.actions.segments.assign_segments`.
        importance: optional global importance table (e.g. the explain
            room's), shown as given.
        reasons: optional ``customer_id``, ``reasons`` (text) for the list.

    Returns:
        A :class:`~ltvcast.evaluate.report.ReportSection` with the grid (table
        and heatmap), the RFM groups, the top value-at-risk customers and,
        when given, global importance.

    Raises:
        DataError: as :func:`~ltvcast.actions.segments.assign_segments`.
    """
    if "cutoff" in predictions.columns and predictions["cutoff"].nunique() > 1:
        predictions = predictions[predictions["cutoff"] == predictions["cutoff"].max()]
    name = model or choose_model(predictions, metrics)
    pred = predictions[predictions["model"].astype(str) == name].reset_index(drop=True)
    if pred.empty:
        raise DataError(f"model {name!r} is not in the predictions")
    segs = assign_segments(pred, summary, tier_quantiles=tier_quantiles, risk_edges=risk_edges, var_method=var_method)
    summ = segment_summary(segs)
    total_var = float(segs["value_at_risk"].sum())
    tables: list[tuple[str, pd.DataFrame]] = [
        (f"Value tier × churn risk ({name}): customers · share of predicted value · mean p_churn", grid_table(summ))
    ]
    rfm = summ[summ["grid"] == "rfm"]
    if not rfm.empty:
        t = pd.DataFrame(
            {
                "RFM group": rfm["rfm_group"],
                "customers": rfm["customers"].map(lambda v: f"{int(v):,}"),
                "share of customers": rfm["share_of_customers"].map(lambda v: f"{v:.1%}"),
                "share of predicted value": rfm["share_of_value"].map(lambda v: "–" if pd.isna(v) else f"{v:.1%}"),
                "mean p_churn": rfm["mean_p_churn"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}"),
                "value at risk": rfm["value_at_risk"].map(lambda v: f"{v:,.0f}"),
            }
        )
        t["RFM group"] = pd.Categorical(t["RFM group"], categories=list(RFM_GROUPS), ordered=True)
        tables.append(("RFM groups (R and FM quintile scores at the cutoff; rules in docs/decisions.md)",
                       t.sort_values("RFM group").astype(str)))
    lst = retention_list(segs, top=top, reasons=reasons)
    view = pd.DataFrame(
        {
            "rank": lst["rank"],
            "customer": lst["customer_id"],
            "pred_spend": lst["pred_spend"].map(lambda v: f"{v:,.2f}"),
            "p_churn": lst["p_churn"].map(lambda v: f"{v:.2f}"),
            "value at risk": lst["value_at_risk"].map(lambda v: f"{v:,.2f}"),
            "value tier": lst["value_tier"].astype(str),
        }
    )
    if "rfm_group" in lst.columns:
        view["RFM group"] = lst["rfm_group"].astype(str)
    if "reasons" in lst.columns:
        view["reasons"] = lst["reasons"].fillna("")
    tables.append((f"Top {len(view)} customers by value at risk ({var_method})", view))
    notes = [
        f"Value at risk totals {total_var:,.0f} over {len(segs):,} customers "
        f"({total_var / max(float(segs['pred_spend'].sum()), 1e-12):.1%} of the predicted value)."
    ]
    if importance is not None:
        tables.append(("Global importance", importance))
    if reasons is None:
        notes.append("Reasons per customer: `ltvcast explain` (not part of this report).")
    intro = (
        f"Whom to keep, from the predictions of {name}: every customer sits in a value tier (quantiles of "
        "predicted spend) and a churn-risk band (p_churn), and in an RFM group. Value at risk = "
        + ("predicted spend × p_churn" if var_method == "expected_loss" else "the drop from the customer's own rate")
        + "; the list shows where retention effort protects the most value."
    )
    return ReportSection(title=TITLE, intro=intro, tables=tables, figures=[_heatmap(summ, "dec")], notes=notes)


def backtest_decisions(result, history, *, importance: bool = True, **options) -> list[ReportSection]:
    """The report sections a backtest's decisions need: :func:`decisions_section` and global importance.

    The section is made for the model :func:`choose_model` picks; with
    ``importance`` its fitted forecaster (``result.models``) is explained on a
    sample of customers (:func:`ltvcast.explain.importance.importance_section`: its own section,
    with partial-dependence plots).

    Args:
        result: a :class:`~ltvcast.evaluate.backtest.BacktestResult`.
        history: the :class:`~ltvcast.data.datasets.History` (for the RFM summary at the cutoff).
        importance: explain the chosen model (False: decisions only).
        **options: keyword arguments of :func:`decisions_section`.

    Returns:
        The sections to pass to :func:`~ltvcast.evaluate.backtest.write_backtest`.
        When the decisions cannot be made (no model with complete ``pred_spend``
        and ``p_churn``) or the model cannot be explained, a note says why and
        the backtest's report is written either way.
    """
    from ltvcast.actions.segments import retention_reasons, rfm_at
    from ltvcast.explain.importance import importance_section

    sections: list[ReportSection] = []
    notes: list[str] = []
    try:
        chosen = choose_model(result.predictions, result.metrics)
    except DataError as exc:
        return [ReportSection(title=TITLE, notes=[f"No decisions section: {exc}"])]
    forecaster = result.models.get(chosen)
    if importance and forecaster is not None:
        try:
            inputs = forecaster.inputs(history, result.cutoff, result.horizon_days)
            sections.append(importance_section(forecaster, inputs, result.cutoff, result.horizon_days))
        except LtvcastError as exc:
            notes.append(f"Global importance of {chosen}: not shown ({exc}).")
    reasons = None
    if forecaster is not None:
        chosen_rows = result.predictions[result.predictions["model"].astype(str) == chosen]
        at_risk = (chosen_rows["pred_spend"] * chosen_rows["p_churn"]).to_numpy(float)
        top_ids = chosen_rows["customer_id"].to_numpy()[np.argsort(-at_risk, kind="stable")[: options.get("top", 10)]]
        reasons, note = retention_reasons(forecaster, history, result.cutoff, top_ids, result.horizon_days)
        notes += [note] if note else []
    try:
        decisions = decisions_section(
            result.predictions, rfm_at(history, result.cutoff), metrics=result.metrics, reasons=reasons, **options
        )
        decisions = replace(decisions, notes=[*decisions.notes, *notes])
    except DataError as exc:  # e.g. no model fills p_churn: the backtest still gets its report
        decisions = ReportSection(title=TITLE, notes=[f"No decisions section: {exc}", *notes])
    return [decisions, *sections]
