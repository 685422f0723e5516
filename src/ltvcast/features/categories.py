"""Point-in-time category history and category labels: customer × category rows from the order lines.

The category split (:mod:`ltvcast.models.categories`) and its baselines
(:mod:`ltvcast.evaluate.categories`) read a shop's order lines by category.
Categories are the shop's top categories by gross sales before the cutoff;
every other line (another category, or none) counts as :data:`OTHER`.

Time: a row is history when its timestamp is strictly before local 00:00 of
the cutoff day in the shop's time zone (:func:`ltvcast.timeutil.local_midnight`),
as in :func:`ltvcast.features.build`; a label window is ``[cutoff, cutoff +
round(horizon_days))`` in local days, as :func:`ltvcast.features.horizon_labels`.
Money is gross sales (``kind = 'sale'``, or ``amount > 0`` without a kind):
the category *mix* of what a customer buys; the net total is the total
model's business.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.timeutil import local_midnight, to_day

OTHER = "other"

#: columns of :func:`category_history`, after ``customer_id`` and ``category``
HISTORY_COLUMNS: tuple[str, ...] = (
    "cat_spend", "cat_share", "cat_line_share", "cat_occasions", "cat_days_since", "cat_ever",
    "occasions", "spend", "days_since_last", "tenure_days", "n_categories",
)


def sales_lines(tx: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """The sale lines of ``tx`` with ``start <= timestamp < end`` (UTC instants; None = open).

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp``, ``amount``;
            ``kind``, ``category``, ``brand``, ``order_id`` optional).

    Returns:
        Frame with ``customer_id``, ``timestamp`` (UTC), ``amount`` (currency),
        ``category`` and ``brand`` (string, NA where absent), ``occasion``
        (the UTC calendar day, the purchase-occasion key).

    Raises:
        DataError: a required column is missing.
    """
    missing = [c for c in ("customer_id", "timestamp", "amount") if c not in tx.columns]
    if missing:
        raise DataError(f"transactions lack the column(s) {', '.join(missing)}")
    stamps = tx["timestamp"]
    if getattr(stamps.dt, "tz", None) is None:  # naive timestamps are UTC (canonical rule)
        stamps = stamps.dt.tz_localize("UTC")
    keep = np.array((tx["kind"] == "sale") if "kind" in tx.columns else (tx["amount"] > 0), dtype=bool)
    if start is not None:
        keep &= (stamps >= start).to_numpy(bool)
    if end is not None:
        keep &= (stamps < end).to_numpy(bool)
    out = pd.DataFrame(
        {
            "customer_id": tx["customer_id"].astype("string")[keep].to_numpy(),
            "timestamp": stamps[keep].to_numpy(),
            "amount": tx["amount"].to_numpy(float)[keep],
        }
    )
    for col in ("category", "brand"):
        out[col] = (tx[col].astype("string")[keep].to_numpy() if col in tx.columns
                    else pd.array([pd.NA] * len(out), dtype="string"))
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out["occasion"] = out["timestamp"].dt.floor("D")
    return out


def history_lines(tx: pd.DataFrame, cutoff, timezone: str = "UTC") -> pd.DataFrame:
    """Sale lines strictly before local 00:00 of ``cutoff`` (:func:`sales_lines`)."""
    return sales_lines(tx, end=local_midnight(cutoff, timezone))


def window_lines(tx: pd.DataFrame, cutoff, horizon_days: float, timezone: str = "UTC") -> pd.DataFrame:
    """Sale lines in the local-day window ``[cutoff, cutoff + round(horizon_days))`` (:func:`sales_lines`)."""
    day = to_day(cutoff)
    start = local_midnight(day, timezone)
    end = local_midnight(day + pd.Timedelta(days=round(horizon_days)), timezone)
    return sales_lines(tx, start=start, end=end)


def top_categories(lines: pd.DataFrame, top: int = 8) -> tuple[str, ...]:
    """The ``top`` categories by gross sales in ``lines``, largest first, then :data:`OTHER`.

    Ties are broken by name. A shop without categories gets ``("other",)``.

    Raises:
        DataError: ``top`` < 1.
    """
    if top < 1:
        raise DataError(f"the number of top categories must be >= 1, got {top}")
    named = lines.dropna(subset=["category"])
    named = named[named["category"] != OTHER]
    sales = named.groupby("category")["amount"].sum().reset_index()
    sales = sales.sort_values(["amount", "category"], ascending=[False, True], kind="mergesort")
    return (*[str(c) for c in sales["category"].head(top)], OTHER)


def label_categories(lines: pd.DataFrame, categories: tuple[str, ...]) -> pd.Series:
    """Each line's category among ``categories``: its own if listed, else :data:`OTHER`."""
    known = lines["category"].isin([c for c in categories if c != OTHER]).fillna(False).to_numpy(bool)
    return pd.Series(np.where(known, lines["category"].fillna(OTHER).to_numpy(object), OTHER),
                     index=lines.index, dtype="string")


def _grid(customers: pd.Series, categories: tuple[str, ...]) -> pd.DataFrame:
    ids = pd.Series(customers, dtype="string").drop_duplicates().sort_values(kind="mergesort").to_numpy()
    return pd.DataFrame(
        {
            "customer_id": pd.array(np.repeat(ids, len(categories)), dtype="string"),
            "category": pd.array(np.tile(np.array(categories, dtype=object), len(ids)), dtype="string"),
        }
    )


def category_history(
    lines: pd.DataFrame, cutoff, categories: tuple[str, ...], timezone: str = "UTC", customers: pd.Series | None = None
) -> pd.DataFrame:
    """Customer × category history at ``cutoff`` from the sale lines before it.

    Args:
        lines: sale lines strictly before the cutoff (:func:`history_lines`).
        cutoff: the cutoff day; ages are days from the occasion day to it.
        categories: the category list (:func:`top_categories`).
        timezone: the shop's zone (the cutoff's local midnight).
        customers: the customers to return (default: those with a sale
            line); one without a line gets zeros and NaN ages.

    Returns:
        One row per customer and per category, sorted by
        customer then category order: ``customer_id``, ``category`` and
        :data:`HISTORY_COLUMNS` — ``cat_spend`` (gross sales in the category,
        currency), ``cat_share`` (of the customer's gross sales; 0 when
        those are 0), ``cat_line_share`` (of the customer's sale lines),
        ``cat_occasions`` (days with a line in it),
        ``cat_days_since`` (days from its last line to the cutoff, NaN if
        never), ``cat_ever`` (0/1), ``occasions`` (days with a sale),
        ``spend``, ``days_since_last``, ``tenure_days`` (from the first
        sale), ``n_categories`` (categories bought).
    """
    at = local_midnight(cutoff, timezone)
    cat = label_categories(lines, categories)
    g = lines.assign(category=cat)
    grid = _grid(g["customer_id"] if customers is None else customers, categories)
    if g.empty:
        for c in HISTORY_COLUMNS:
            grid[c] = np.nan if c in ("cat_days_since", "days_since_last", "tenure_days") else 0.0
        return grid
    days = (at - g["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    g = g.assign(age=days)
    per = g.groupby(["customer_id", "category"], observed=True).agg(
        cat_spend=("amount", "sum"), cat_lines=("amount", "size"), cat_occasions=("occasion", "nunique"),
        cat_days_since=("age", "min"),
    ).reset_index()
    cust = g.groupby("customer_id").agg(
        occasions=("occasion", "nunique"), spend=("amount", "sum"), days_since_last=("age", "min"),
        tenure_days=("age", "max"),
    ).reset_index()
    out = grid.merge(per, on=["customer_id", "category"], how="left").merge(cust, on="customer_id", how="left")
    out["cat_spend"] = out["cat_spend"].fillna(0.0)
    n_lines = out.groupby("customer_id")["cat_lines"].transform("sum").to_numpy(float)
    out["cat_line_share"] = np.where(n_lines > 0, out["cat_lines"].fillna(0).to_numpy(float) / np.maximum(n_lines, 1), 0.0)
    out["spend"] = out["spend"].fillna(0.0)
    out["occasions"] = out["occasions"].fillna(0.0)
    out["cat_occasions"] = out["cat_occasions"].fillna(0).astype(float)
    out["cat_ever"] = (out["cat_occasions"] > 0).astype(float)
    spend = out["spend"].to_numpy(float)
    out["cat_share"] = np.where(spend > 0, out["cat_spend"].to_numpy(float) / np.where(spend > 0, spend, 1.0), 0.0)
    out["n_categories"] = out.groupby("customer_id")["cat_ever"].transform("sum")
    out["occasions"] = out["occasions"].astype(float)
    return out[["customer_id", "category", *HISTORY_COLUMNS]].reset_index(drop=True)


def category_labels(lines: pd.DataFrame, customers: pd.Series, categories: tuple[str, ...]) -> pd.DataFrame:
    """What each customer bought per category in a window (the sale lines of :func:`window_lines`).

    Returns:
        One row per customer of ``customers`` and per category, sorted as
        :func:`category_history`: ``customer_id``, ``category``,
        ``actual_spend`` (gross sales in the window, currency),
        ``actual_bought`` (1.0 with a sale line in it, else 0.0),
        ``actual_share`` (of the customer's gross sales in the window; 0
        without any).
    """
    g = lines.assign(category=label_categories(lines, categories))
    per = g.groupby(["customer_id", "category"], observed=True)["amount"].sum().rename("actual_spend").reset_index()
    out = _grid(customers, categories).merge(per, on=["customer_id", "category"], how="left")
    out["actual_bought"] = out["actual_spend"].notna().astype(float)
    out["actual_spend"] = out["actual_spend"].fillna(0.0)
    total = out.groupby("customer_id")["actual_spend"].transform("sum").to_numpy(float)
    out["actual_share"] = np.where(total > 0, out["actual_spend"].to_numpy(float) / np.where(total > 0, total, 1.0), 0.0)
    return out


def weekly_sales(lines: pd.DataFrame, start, weeks: int, categories: tuple[str, ...], timezone: str = "UTC") -> pd.DataFrame:
    """Gross sales per category and week of the ``weeks`` 7-day weeks from local 00:00 of ``start``.

    Args:
        lines: sale lines (:func:`sales_lines`; lines outside the weeks are ignored).
        start: first day of week 0.
        weeks: number of weeks (>= 1).
        categories: the category list (other lines count as :data:`OTHER`).
        timezone: the shop's zone (week boundaries are local midnights).

    Returns:
        ``weeks × len(categories)`` rows sorted by week then category order:
        ``week`` (0-based), ``week_start`` (the local day, UTC 00:00 label),
        ``category``, ``sales`` (currency, 0 where nothing sold).

    Raises:
        DataError: ``weeks`` < 1.
    """
    if weeks < 1:
        raise DataError(f"weeks must be >= 1, got {weeks}")
    day = to_day(start)
    edges = [local_midnight(day + pd.Timedelta(days=7 * w), timezone) for w in range(weeks + 1)]
    week = np.asarray(pd.DatetimeIndex(edges).searchsorted(pd.DatetimeIndex(lines["timestamp"]), side="right")) - 1
    inside = (week >= 0) & (week < weeks)
    cat = label_categories(lines, categories).to_numpy(object)[inside]
    got = pd.DataFrame({"week": week[inside], "category": cat, "sales": lines["amount"].to_numpy(float)[inside]})
    got = got.groupby(["week", "category"])["sales"].sum()
    idx = pd.MultiIndex.from_product([range(weeks), list(categories)], names=["week", "category"])
    out = got.reindex(idx, fill_value=0.0).reset_index()
    out.insert(1, "week_start", [day + pd.Timedelta(days=7 * int(w)) for w in out["week"]])
    out["category"] = out["category"].astype("string")
    return out
