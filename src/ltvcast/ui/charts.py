"""The pages' charts as Vega-Lite specs (dicts), built with Altair from small, pre-aggregated frames.

Only aggregates reach the browser (bins, curve points, deciles), never the
per-customer rows, so a chart's spec stays a few kilobytes at any shop size.
Each spec carries a ``description`` (the chart's text alternative).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

WIDTH = 520
HEIGHT = 240
BINS = 30


def _spec(chart: alt.TopLevelMixin, description: str, validate: bool = True) -> dict:
    return chart.properties(description=description).to_dict(validate=validate)


def clv_histogram(pred_spend: np.ndarray, horizon_days: float) -> dict:
    """Customers per bin of predicted spend, the top 1 % gathered in the last bin.

    Args:
        pred_spend: predicted spend per customer (currency), shape ``(n,)``; NaN ignored.
        horizon_days: the predicted window, for the axis title.
    """
    v = pred_spend[np.isfinite(pred_spend)]
    top = float(np.quantile(v, 0.99)) if len(v) else 1.0
    edges = np.linspace(0.0, max(top, 1e-9), BINS + 1)
    counts, _ = np.histogram(np.clip(v, 0.0, top), bins=edges)
    frame = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "customers": counts})
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("start:Q", bin="binned", title=f"predicted spend, next {horizon_days:g} days (last bin: top 1 %)"),
        x2="end:Q",
        y=alt.Y("customers:Q", title="customers"),
        tooltip=[alt.Tooltip("start:Q", format=",.2f"), alt.Tooltip("end:Q", format=",.2f"), "customers:Q"],
    ).properties(width=WIDTH, height=HEIGHT)
    return _spec(chart, "Histogram of the customers' predicted spend")


def lorenz(curve: pd.DataFrame) -> dict:
    """The gain (Lorenz) curve: share of actual spend held by the top share of customers by prediction.

    Args:
        curve: ``share_customers``, ``share_actual`` in [0, 1] (:class:`~ltvcast.ui.snapshot.Matured`).
    """
    base = pd.DataFrame({"share_customers": [0.0, 1.0], "share_actual": [0.0, 1.0]})
    model = alt.Chart(curve.assign(line="model")).mark_line().encode(
        x=alt.X("share_customers:Q", title="share of customers, highest predicted first", axis=alt.Axis(format="%")),
        y=alt.Y("share_actual:Q", title="share of actual spend", axis=alt.Axis(format="%")),
        color=alt.Color("line:N", title=None),
    )
    random = alt.Chart(base.assign(line="random order")).mark_line(strokeDash=[4, 4]).encode(
        x="share_customers:Q", y="share_actual:Q", color=alt.Color("line:N", title=None))
    return _spec((model + random).properties(width=WIDTH, height=HEIGHT),
                 "Lorenz (gain) curve of the served model on its matured window")


def deciles(table: pd.DataFrame) -> dict:
    """Mean predicted and mean actual spend per decile of the prediction (1 = lowest).

    Args:
        table: :func:`ltvcast.metrics.decile_calibration`'s frame.
    """
    long = table.melt(id_vars="decile", value_vars=["mean_pred", "mean_actual"], var_name="what", value_name="spend")
    long["what"] = long["what"].map({"mean_pred": "predicted", "mean_actual": "actual"})
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("decile:O", title="decile of predicted spend"),
        xOffset="what:N",
        y=alt.Y("spend:Q", title="mean spend per customer"),
        color=alt.Color("what:N", title=None),
        tooltip=["decile:O", "what:N", alt.Tooltip("spend:Q", format=",.2f")],
    ).properties(width=WIDTH, height=HEIGHT)
    return _spec(chart, "Mean predicted and actual spend per decile of the prediction")


def timeline(tx: pd.DataFrame, cutoff: pd.Timestamp) -> dict:
    """One customer's purchases per day (net amount), with the prediction day as a rule.

    Args:
        tx: the customer's transaction rows (``timestamp`` UTC, ``amount``).
        cutoff: the prediction day.
    """
    days = (tx.assign(day=tx["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize())
            .groupby("day", as_index=False)["amount"].sum())
    points = alt.Chart(days).mark_bar(width=4).encode(
        x=alt.X("day:T", title="day"),
        y=alt.Y("amount:Q", title="amount"),
        tooltip=[alt.Tooltip("day:T"), alt.Tooltip("amount:Q", format=",.2f")],
    )
    rule = alt.Chart(pd.DataFrame({"day": [cutoff.tz_localize(None)]})).mark_rule(strokeDash=[4, 4]).encode(x="day:T")
    # drawn on every customer page: the schema check (tens of ms) is left to the tests
    return _spec((points + rule).properties(width=WIDTH, height=160),
                 f"Purchases per day; dashed line: the prediction day {cutoff.date()}", validate=False)


def effects(table: pd.DataFrame) -> dict:
    """Effects (treatment − control) with their 95 % intervals, one row per metric and method.

    Args:
        table: :class:`~ltvcast.actions.experiments.ExperimentResult`'s ``effects``.
    """
    frame = table.assign(effect=table["metric"] + " (" + table["method"] + ")")[["effect", "diff", "ci_low", "ci_high"]]
    bars = alt.Chart(frame).mark_rule().encode(
        y=alt.Y("effect:N", title=None), x=alt.X("ci_low:Q", title="treatment − control (95 % interval)"), x2="ci_high:Q")
    dots = alt.Chart(frame).mark_point(filled=True).encode(
        y="effect:N", x="diff:Q",
        tooltip=["effect:N", alt.Tooltip("diff:Q", format=",.3f"), alt.Tooltip("ci_low:Q", format=",.3f"),
                 alt.Tooltip("ci_high:Q", format=",.3f")])
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[3, 3]).encode(x="x:Q")
    return _spec((bars + dots + zero).properties(width=WIDTH, height=40 * max(len(frame), 1)),
                 "Experiment effects with 95 % intervals")


def demand(cells: pd.DataFrame) -> dict:
    """Predicted gross sales per week with the 80 % interval, one small chart per category (largest first).

    A category predicted to sell nothing in every week gets no chart.

    Args:
        cells: :func:`ltvcast.models.demand.customer_demand`'s frame (``week_start``, ``category``,
            ``pred_sales``, ``lower``, ``upper``; currency).
    """
    frame = pd.DataFrame({
        "week": cells["week_start"].dt.strftime("%Y-%m-%d"),
        "category": cells["category"].astype(str),
        **{c: cells[c].to_numpy(float).round(2) for c in ("pred_sales", "lower", "upper")},
    })
    totals = frame.groupby("category", sort=False)["pred_sales"].sum().sort_values(ascending=False)
    order = list(totals.index[totals.to_numpy() > 0])
    frame = frame[frame["category"].isin(order)]
    x = alt.X("week:T", title="week starting")
    band = alt.Chart().mark_area(opacity=0.3).encode(x=x, y=alt.Y("lower:Q", title="gross sales per week"),
                                                     y2="upper:Q")
    line = alt.Chart().mark_line().encode(
        x=x, y="pred_sales:Q",
        tooltip=["category:N", alt.Tooltip("week:T"), alt.Tooltip("pred_sales:Q", format=",.2f"),
                 alt.Tooltip("lower:Q", format=",.2f"), alt.Tooltip("upper:Q", format=",.2f")])
    chart = alt.layer(band, line, data=frame).properties(width=230, height=110).facet(
        facet=alt.Facet("category:N", sort=order, title=None), columns=3).resolve_scale(y="independent")
    return _spec(chart, "Predicted gross sales per category and week, shaded: the 80 % interval")
