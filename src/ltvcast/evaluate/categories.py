"""Category metrics, baselines and backtests: next categories (recall@k, NDCG@k) and demand (WAPE, bias).

Next categories: for each customer with history before the cutoff who buys
in a named category in the horizon, the categories ranked by a score; the
relevant set is the named categories bought in the horizon (``"other"`` is
never ranked). ``mode="new"``: only categories the customer had not bought
before the cutoff are ranked and relevant (the cross-sell question), over
customers who bought a new one. Ties are broken by the shop's category
order (largest sales first), the same for every method.

* recall@k = |top-k ∩ relevant| / |relevant|, averaged over customers;
* NDCG@k with binary gains: ``DCG = Σ_{i ≤ k} rel_i / log2(i + 1)`` over the
  ideal DCG (Järvelin & Kekäläinen 2002), averaged over customers.

The split is scored in two orders: ``model`` ranks by ``p_buy`` (the buy
head: a probability per category, trained across customers), ``model_spend``
by the expected spend (the share head, trained within each customer: the
order in which ``ltvcast next-categories`` recommends).

Baselines on the same customers and window: ``popularity`` (share of
customers who bought the category before the cutoff), ``own_history`` (the
customer's own occasions in the category, then their spend share),
``co_purchase_lift`` (``Σ_b share_b · lift(b, c)``, item-to-item association
over categories, :func:`ltvcast.models.categories.shop_stats`).

Demand: WAPE = Σ|actual − forecast| / Σ actual and bias = Σ(forecast −
actual) / Σ actual over category × week cells (Kolassa & Schütz 2007 for
WAPE as the MAD/mean ratio). Baselines: ``seasonal_naive`` (the same
category's gross sales 52 weeks earlier) and ``top_down`` (the shop's total
weekly sales 52 weeks earlier times the growth of the last 13 weeks over
the same weeks a year before, split by the categories' shares of the last 13
weeks: a top-down per-category time-series forecast, Gross & Sohl 1990).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import DataError
from ltvcast.evaluate.backtest import evaluation_window
from ltvcast.evaluate.report import ReportSection, svg_figure
from ltvcast.features.categories import (
    OTHER,
    category_labels,
    history_lines,
    sales_lines,
    weekly_sales,
    window_lines,
)
from ltvcast.models.categories import CategorySplit
from ltvcast.models.demand import YEAR_DAYS, customer_demand
from ltvcast.timeutil import to_day

BASELINES = ("popularity", "own_history", "co_purchase_lift")
#: the split's two orders: ``model`` by ``p_buy`` (the buy head), ``model_spend`` by the expected spend
#: (the share head: the order ``ltvcast next-categories`` recommends in)
MODEL_SCORES = ("model", "model_spend")


def rank_metrics(frame: pd.DataFrame, score: str, k: int, mode: str = "all") -> dict[str, float]:
    """Recall@k and NDCG@k of one score over customer × category rows (module doc).

    Args:
        frame: rows ``customer_id``, ``category``, ``order`` (tie-break rank,
            0 = first), ``cat_ever`` (bought before the cutoff, 0/1),
            ``actual_bought`` (0/1 in the horizon) and the ``score`` column.
        score: the column to rank by (higher first).
        k: list length (>= 1).
        mode: ``"all"`` or ``"new"``.

    Returns:
        ``{"recall": …, "ndcg": …, "customers": n}`` (NaN metrics with no customer).

    Raises:
        DataError: ``k`` < 1 or an unknown mode.
    """
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    if mode not in ("all", "new"):
        raise DataError(f"mode must be 'all' or 'new', got {mode!r}")
    f = frame[frame["category"] != OTHER]
    if mode == "new":
        f = f[f["cat_ever"] == 0]
    f = f.sort_values(["customer_id", score, "order"], ascending=[True, False, True], kind="mergesort")
    f = f.assign(rank=f.groupby("customer_id").cumcount())
    rel = f.groupby("customer_id")["actual_bought"].sum()
    keep = rel[rel > 0].index
    f = f[f["customer_id"].isin(keep)]
    if f.empty:
        return {"recall": float("nan"), "ndcg": float("nan"), "customers": 0}
    n_rel = rel.loc[keep]
    top = f[f["rank"] < k]
    hits = top.groupby("customer_id")["actual_bought"].sum().reindex(keep, fill_value=0.0)
    dcg = (top["actual_bought"] / np.log2(top["rank"] + 2.0)).groupby(top["customer_id"]).sum().reindex(keep, fill_value=0.0)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    idcg = np.array([discounts[: int(min(r, k))].sum() for r in n_rel.to_numpy()])
    return {"recall": float((hits / n_rel).mean()), "ndcg": float((dcg.to_numpy() / idcg).mean()),
            "customers": int(len(keep))}


def baseline_scores(x: pd.DataFrame) -> pd.DataFrame:
    """The three baseline scores of the module doc from category inputs (:meth:`CategorySplit.inputs`)."""
    return pd.DataFrame(
        {
            "popularity": x["cat_pop"].to_numpy(float),
            "own_history": x["cat_occasions"].to_numpy(float) + 0.5 * x["cat_share"].to_numpy(float),
            "co_purchase_lift": x["lift_score"].to_numpy(float),
        },
        index=x.index,
    )


def next_category_frame(
    data: History, cutoff, horizon_days: float, split: CategorySplit, predictions: pd.DataFrame
) -> pd.DataFrame:
    """The scored customer × category rows of one window: the model's ``p_buy`` and the baselines' scores.

    Args:
        data: the shop's history (its rows after the cutoff are the truth).
        cutoff: the backtest cutoff (``split`` fitted there).
        horizon_days: the window length in days.
        split: a fitted :class:`CategorySplit`.
        predictions: the total model's canonical frame at ``cutoff``.

    Returns:
        Rows ``customer_id``, ``category``, ``cat_ever``, one score column
        per method (:data:`MODEL_SCORES` and :data:`BASELINES`), ``actual_spend``,
        ``actual_bought``, ``actual_share``, ``order`` (the tie-break rank):
        the input of :func:`rank_metrics`.
    """
    pred = split.split(predictions, data, cutoff)
    ids = pred["customer_id"].drop_duplicates()
    x = split.inputs(data, cutoff, customers=ids)
    truth = category_labels(window_lines(data.transactions, cutoff, horizon_days, data.timezone), ids, split.categories_)
    frame = pd.concat([x[["customer_id", "category", "cat_ever"]], baseline_scores(x)], axis=1)
    frame = frame.merge(truth, on=["customer_id", "category"]).merge(
        pred[["customer_id", "category", "p_buy", "share"]].rename(columns={"p_buy": "model", "share": "model_spend"}),
        on=["customer_id", "category"],
    )
    frame["order"] = frame["category"].astype(str).map({c: i for i, c in enumerate(split.categories_)})
    return frame


def next_category_backtest(
    data: History, cutoff, horizon_days: float, split: CategorySplit, predictions: pd.DataFrame,
    ks: tuple[int, ...] = (1, 3),
) -> pd.DataFrame:
    """Recall@k and NDCG@k of the split model and the baselines on one window (module doc).

    Args: as :func:`next_category_frame`, and ``ks`` the list lengths.

    Returns:
        One row per method (:data:`MODEL_SCORES`, then :data:`BASELINES`), mode and k:
        ``method``, ``mode``, ``k``, ``recall``, ``ndcg``, ``customers``; ``attrs["notes"]``
        says when the window was clipped to the observed data.

    Raises:
        CutoffError: the window reaches past the end of the data, as in ``ltvcast backtest``
            (:func:`ltvcast.evaluate.backtest.evaluation_window`, which also clips a short overhang).
    """
    horizon_days, notes = evaluation_window(cutoff, horizon_days, data.observation_end)
    frame = next_category_frame(data, cutoff, horizon_days, split, predictions)
    rows = []
    for method in (*MODEL_SCORES, *BASELINES):
        for mode in ("all", "new"):
            for k in ks:
                rows.append({"method": method, "mode": mode, "k": k, **rank_metrics(frame, method, k, mode)})
    table = pd.DataFrame(rows)
    table.attrs["notes"] = notes
    return table


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Σ|actual − forecast| / Σ actual (NaN when Σ actual is 0)."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    total = a.sum()
    return float(np.abs(a - f).sum() / total) if total > 0 else float("nan")


def bias(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Σ(forecast − actual) / Σ actual (NaN when Σ actual is 0); > 0 over-forecasts."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    total = a.sum()
    return float((f - a).sum() / total) if total > 0 else float("nan")


def seasonal_naive(data: History, cutoff, weeks: int, categories: tuple[str, ...]) -> pd.DataFrame:
    """Each category's gross sales of the same week 52 weeks earlier (module doc).

    Returns:
        The layout of :func:`ltvcast.features.categories.weekly_sales` with
        ``pred_sales`` for the weeks from ``cutoff``.

    Raises:
        DataError: the 52-week-earlier weeks reach into the horizon (``weeks`` > 52).
    """
    if weeks > 52:
        raise DataError(f"the seasonal-naive forecast covers at most 52 weeks, got {weeks}")
    day = to_day(cutoff)
    lines = history_lines(data.transactions, day, data.timezone)
    ly = weekly_sales(lines, day - pd.Timedelta(days=YEAR_DAYS), weeks, categories, data.timezone)
    out = weekly_sales(lines.iloc[:0], day, weeks, categories, data.timezone).drop(columns="sales")
    out["pred_sales"] = ly["sales"].to_numpy(float)
    return out


def top_down(data: History, cutoff, weeks: int, categories: tuple[str, ...], recent_weeks: int = 13) -> pd.DataFrame:
    """The shop's total a year earlier × recent growth, split by the recent category shares (module doc)."""
    day = to_day(cutoff)
    lines = history_lines(data.transactions, day, data.timezone)
    ly = weekly_sales(lines, day - pd.Timedelta(days=YEAR_DAYS), weeks, categories, data.timezone)
    total_ly = ly.groupby("week")["sales"].sum().to_numpy(float)
    recent = weekly_sales(lines, day - pd.Timedelta(days=7 * recent_weeks), recent_weeks, categories, data.timezone)
    before = weekly_sales(lines, day - pd.Timedelta(days=YEAR_DAYS + 7 * recent_weeks), recent_weeks, categories,
                          data.timezone)
    growth = recent["sales"].sum() / before["sales"].sum() if before["sales"].sum() > 0 else 1.0
    shares = recent.groupby("category", sort=False)["sales"].sum().reindex(list(categories)).to_numpy(float)
    shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(categories), 1.0 / len(categories))
    out = weekly_sales(lines.iloc[:0], day, weeks, categories, data.timezone).drop(columns="sales")
    out["pred_sales"] = np.outer(total_ly * growth, shares).ravel()
    return out


def demand_backtest(data: History, cutoff, weeks: int, split: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """WAPE and bias of the customer-based demand and the two baselines over the same category × week cells.

    Args:
        data: the shop's history (the weeks after the cutoff are the truth).
        cutoff: the backtest cutoff.
        weeks: horizon in weeks (the split's horizon is ``7 · weeks`` days).
        split: :meth:`CategorySplit.split` at ``cutoff``.

    Returns:
        (summary: one row per method with ``method``, ``wape``, ``bias``,
        ``coverage`` (share of cells inside the 80 % interval; NaN for the
        baselines), ``attrs["notes"]`` saying when the last week is only partly
        observed; cells: the weekly cells with ``actual`` and one column per method).

    Raises:
        CutoffError: the weeks reach past the end of the data, as in ``ltvcast backtest``
            (:func:`ltvcast.evaluate.backtest.evaluation_window`).
    """
    _, notes = evaluation_window(cutoff, 7.0 * weeks, data.observation_end)
    cust = customer_demand(split, data, cutoff, weeks)
    categories = tuple(pd.unique(cust["category"].astype(str)))
    actual = weekly_sales(sales_lines(data.transactions), cutoff, weeks, categories, data.timezone)
    cells = actual.rename(columns={"sales": "actual"})
    cells["customers"] = cust["pred_sales"].to_numpy(float)
    cells["seasonal_naive"] = seasonal_naive(data, cutoff, weeks, categories)["pred_sales"].to_numpy(float)
    cells["top_down"] = top_down(data, cutoff, weeks, categories)["pred_sales"].to_numpy(float)
    a = cells["actual"].to_numpy(float)
    inside = (a >= cust["lower"].to_numpy(float)) & (a <= cust["upper"].to_numpy(float))
    rows = [
        {"method": m, "wape": wape(a, cells[m]), "bias": bias(a, cells[m]),
         "coverage": float(inside.mean()) if m == "customers" else float("nan")}
        for m in ("customers", "seasonal_naive", "top_down")
    ]
    summary = pd.DataFrame(rows)
    summary.attrs["notes"] = notes
    return summary, cells


def categories_per_segment(split: pd.DataFrame, segments: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """The categories each value tier × churn-risk cell is predicted to buy: its ``top`` categories by spend.

    Args:
        split: :meth:`CategorySplit.split` output (``customer_id``, ``category``, ``pred_spend``, ``p_buy``).
        segments: one row per customer with ``customer_id``, ``value_tier``, ``churn_risk``
            (:func:`ltvcast.actions.segments.assign_segments`; ordered categoricals keep their order).
        top: categories listed per cell (>= 1); ``other`` is never listed.

    Returns:
        One row per non-empty cell, highest tier first, then lowest risk: ``value_tier``,
        ``churn_risk``, ``customers``, ``pred_spend`` (the cell's predicted spend, currency),
        ``top_categories`` (``"shoes 41% (p 0.35), ..."``: the category's share of the cell's
        predicted spend and its mean ``p_buy``).

    Raises:
        DataError: ``top`` < 1 or a missing column.
    """
    if top < 1:
        raise DataError(f"top must be >= 1, got {top}")
    missing = [c for c in ("customer_id", "value_tier", "churn_risk") if c not in segments.columns]
    if missing:
        raise DataError(f"segments lack the column(s) {', '.join(missing)}")
    seg = segments[["customer_id", "value_tier", "churn_risk"]].assign(
        customer_id=segments["customer_id"].astype("string"))
    f = split.assign(customer_id=split["customer_id"].astype("string")).merge(seg, on="customer_id")
    keys = ["value_tier", "churn_risk"]
    cells = f.groupby(keys, observed=True, sort=True).agg(customers=("customer_id", "nunique"),
                                                          pred_spend=("pred_spend", "sum"))
    named = f[f["category"] != OTHER]
    per_cat = named.groupby([*keys, "category"], observed=True, sort=True).agg(
        spend=("pred_spend", "sum"), p_buy=("p_buy", "mean")).reset_index()
    rows = []
    for (tier, risk), cell in cells.iterrows():
        c = per_cat[(per_cat["value_tier"] == tier) & (per_cat["churn_risk"] == risk)]
        c = c.sort_values(["spend", "category"], ascending=[False, True], kind="mergesort").head(top)
        total = cell["pred_spend"]
        text = ", ".join(f"{r.category} {r.spend / total:.0%} (p {r.p_buy:.2f})" if total > 0
                         else f"{r.category} (p {r.p_buy:.2f})" for r in c.itertuples(index=False))
        rows.append({"value_tier": tier, "churn_risk": risk, "customers": int(cell["customers"]),
                     "pred_spend": float(total), "top_categories": text})
    out = pd.DataFrame(rows, columns=["value_tier", "churn_risk", "customers", "pred_spend", "top_categories"])
    # cells come lowest tier first (ordered categoricals): list the highest tier first, risks kept in order
    tiers = list(cells.index.get_level_values(0).unique())
    rank = -pd.Categorical(out["value_tier"], categories=tiers).codes
    return out.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)


SECTION_TITLE = "Categories: next categories and demand"


def _demand_chart(cells: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    weekly = cells.groupby("week_start", sort=True)[["actual", "customers", "seasonal_naive", "top_down"]].sum()
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    styles = {"actual": ("#222222", "-"), "customers": ("#1f77b4", "-"), "seasonal_naive": ("#9aa6b2", "--"),
              "top_down": ("#ff7f0e", ":")}
    for col, (color, line) in styles.items():
        ax.plot(weekly.index.tz_localize(None), weekly[col].to_numpy(float), color=color, linestyle=line,
                linewidth=1.6, label=col.replace("_", " "))
    ax.set_ylabel("gross sales per week, all categories")
    ax.legend(loc="upper left")
    return svg_figure(fig, "category-demand")


def category_section(data: History, cutoff, horizon_days: float, predictions: pd.DataFrame, model: str,
                     top: int = 8, segments: pd.DataFrame | None = None) -> ReportSection:
    """The backtest report's category section: next categories and demand beside their baselines.

    Fits a :class:`CategorySplit` at ``cutoff`` on ``model``'s predictions,
    then :func:`next_category_backtest` (k = 1, 3) and, over the whole weeks
    of the horizon, :func:`demand_backtest` with a weekly demand chart.

    Args:
        data: the shop's history.
        cutoff: the backtest cutoff.
        horizon_days: the window (days).
        predictions: canonical predictions, possibly of several models.
        model: the model whose predictions are split.
        top: named categories.
        segments: the model's value tier × churn-risk cells per customer
            (:func:`ltvcast.actions.segments.assign_segments`), or None:
            with them, a table of :func:`categories_per_segment`.

    Returns:
        A :class:`ReportSection`; a section with a note only when the shop
        has no category or the window is shorter than a week.
    """
    pred = predictions[predictions["model"] == model]
    lines = history_lines(data.transactions, cutoff, data.timezone)
    if lines["category"].isna().all():
        return ReportSection(title=SECTION_TITLE, notes=["No category section: the order lines carry no category."])
    weeks = int(horizon_days // 7)
    if weeks < 1:
        return ReportSection(title=SECTION_TITLE, notes=["No category section: the window is shorter than a week."])
    split = CategorySplit(top=top).fit(data, cutoff, horizon_days)
    ranks = next_category_backtest(data, cutoff, horizon_days, split, pred, ks=(1, 3))
    notes = [f"Model split: {model}; categories: {', '.join(split.categories_)}."]
    if abs(horizon_days - 7 * weeks) > 0.5:
        pred_weeks = pred.assign(pred_spend=pred["pred_spend"] * (7.0 * weeks / horizon_days))
        notes.append(f"Demand over the {weeks} whole weeks: the {horizon_days:g}-day spend scaled to them.")
    else:
        pred_weeks = pred
    summary, cells = demand_backtest(data, cutoff, weeks, split.split(pred_weeks, data, cutoff))
    tables = [("Next categories: recall@k and NDCG@k", ranks.round(3)),
              ("Demand per category and week", summary.round(3))]
    if segments is not None:
        per_seg = categories_per_segment(split.split(pred, data, cutoff), segments)
        tables.append(("Categories per segment (value tier × churn risk)", per_seg.round({"pred_spend": 2})))
    return ReportSection(
        title=SECTION_TITLE,
        intro=("Recall@k: the share of the categories a customer bought in the horizon found in their top k; "
               "mode 'new' ranks only categories not bought before. WAPE and bias: over category × week cells "
               "of gross sales. Every baseline is scored on the same customers and weeks."),
        tables=tables,
        figures=[_demand_chart(cells)],
        notes=notes,
    )


__all__ = [
    "BASELINES", "MODEL_SCORES", "SECTION_TITLE", "categories_per_segment", "category_section", "baseline_scores", "bias", "demand_backtest", "next_category_backtest", "next_category_frame",
    "rank_metrics",
    "seasonal_naive", "top_down", "wape",
]
