"""Category demand per week from the customers: the category split summed, plus the customers not yet acquired.

Demand is gross sales (currency) per category and 7-day week from the
cutoff (:func:`ltvcast.features.categories.weekly_sales`), the quantity a
shop plans stock with. Two parts:

* **Existing customers.** Each customer's category spend
  (:meth:`ltvcast.models.categories.CategorySplit.split`: net horizon spend
  times the learned category shares), summed per category, turned from net
  to gross with the shop's return ratio of the last 365 days
  (``gross = net / (1 − returns / gross sales)``), and spread over the weeks
  with the weekly shape of the previous year's existing customers (the gross
  sales, per week, of the customers who had bought before ``cutoff − 364``
  days, in the weeks ``364`` days before the horizon's): the calendar and the
  base's decay in one profile. With less history than that, the weeks are
  flat.
* **New customers.** Expected first purchases per week ``A_j`` (the first
  buyers of the same week a year earlier, times the growth of first buyers
  over the last 26 weeks against the 26 weeks a year before; with less
  history, the mean of the last 13 weeks) convolved with the new-customer
  basket ``b_c(a)``: mean gross sales in category ``c`` in the ``a``-th week
  after the first purchase, over customers whose first purchase lies in the
  year before the cutoff and whose week ``a`` is observed:
  ``new[c, w] = Σ_{j ≤ w} A_j · b_c(w − j)``.

Interval (80 %): each cell treated as compound Poisson, ``Var = mean · E[X²]/E[X]``
with ``X`` the gross sales of one customer's purchase occasion in the category
over the last 365 days (Feller 1968, XII.2: the variance of a compound
Poisson sum is ``λ E[X²]``; a category without an occasion there takes
``X`` over every category's occasions); ``mean ± 1.2816 √Var``, floored at 0. The
uncertainty of the model's parameters is not in it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import DataError
from ltvcast.features.categories import history_lines, label_categories, weekly_sales
from ltvcast.timeutil import local_midnight, to_day

Z80 = 1.2816  # standard normal 90 % quantile: an 80 % central interval
YEAR_DAYS = 364  # 52 weeks: the same weekdays a year earlier


def return_ratio(tx: pd.DataFrame, cutoff, timezone: str = "UTC", days: int = 365) -> float:
    """Refunds over gross sales in the ``days`` days before the cutoff (0 .. 0.95; 0 without sales or ``kind``)."""
    if "kind" not in tx.columns:
        return 0.0
    end = local_midnight(cutoff, timezone)
    start = local_midnight(to_day(cutoff) - pd.Timedelta(days=days), timezone)
    stamps = tx["timestamp"]
    inside = ((stamps >= start) & (stamps < end)).to_numpy(bool)
    kind = tx["kind"].to_numpy(object)[inside]
    amount = tx["amount"].to_numpy(float)[inside]
    gross = amount[kind == "sale"].sum()
    refunds = -amount[kind == "return"].sum()
    return float(np.clip(refunds / gross, 0.0, 0.95)) if gross > 0 else 0.0


def _weekly_counts(first_day: pd.Series, start: pd.Timestamp, weeks: int) -> np.ndarray:
    offs = ((first_day - start).dt.days // 7).to_numpy()
    offs = offs[(offs >= 0) & (offs < weeks)]
    return np.bincount(offs.astype(np.int64), minlength=weeks).astype(float)


def customer_demand(split: pd.DataFrame, data: History, cutoff, weeks: int) -> pd.DataFrame:
    """Gross sales per category and week from the customers (module doc).

    Args:
        split: the category split of the customers at ``cutoff``
            (:meth:`CategorySplit.split`): ``customer_id``, ``category``,
            ``pred_spend`` (net currency over the horizon).
        data: the shop's history (only lines before ``cutoff`` are read).
        cutoff: first day of week 0.
        weeks: number of weeks (>= 1; the split's horizon must be ``7 · weeks`` days).

    Returns:
        ``weeks × categories`` rows, sorted by week then category order:
        ``week``, ``week_start``, ``category``, ``existing`` and ``new``
        (gross sales, currency), ``pred_sales`` (their sum), ``lower`` and
        ``upper`` (80 % interval).

    Raises:
        DataError: ``weeks`` < 1 or no sale line before the cutoff.
    """
    if weeks < 1:
        raise DataError(f"weeks must be >= 1, got {weeks}")
    day = to_day(cutoff)
    lines = history_lines(data.transactions, day, data.timezone)
    if lines.empty:
        raise DataError(f"no sale line before {day.date()}: nothing to forecast demand from")
    categories = tuple(pd.unique(split["category"].astype(str)))
    lines = lines.assign(category=label_categories(lines, categories))
    local_day = lines["timestamp"].dt.tz_convert(data.timezone).dt.tz_localize(None).dt.normalize()
    lines = lines.assign(day=local_day.dt.tz_localize("UTC"))
    first_day = lines.groupby("customer_id")["day"].min()
    data_start = first_day.min()

    # existing customers: split totals, net -> gross, spread by last year's existing-base profile
    rr = return_ratio(data.transactions, day, data.timezone)
    totals = split.groupby("category", sort=False)["pred_spend"].sum().reindex(list(categories)).to_numpy(float)
    totals = np.maximum(totals, 0.0) / (1.0 - rr)
    ly = day - pd.Timedelta(days=YEAR_DAYS)
    shape = np.full(weeks, 1.0 / weeks)
    if ly > data_start:
        base = set(first_day[first_day < ly].index)
        ly_sales = weekly_sales(lines[lines["customer_id"].isin(base)], ly, weeks, categories, data.timezone)
        per_week = ly_sales.groupby("week")["sales"].sum().to_numpy(float)
        if per_week.sum() > 0 and ly + pd.Timedelta(days=7 * weeks) <= day:
            shape = per_week / per_week.sum()
    existing = np.outer(shape, totals)

    # new customers: acquisitions per week x the new-customer basket by week of age
    year_ago = day - pd.Timedelta(days=YEAR_DAYS + 182)
    if year_ago >= data_start and ly + pd.Timedelta(days=7 * weeks) <= day:
        recent = float(((first_day >= day - pd.Timedelta(days=182)) & (first_day < day)).sum())
        before = float(((first_day >= year_ago) & (first_day < ly)).sum())
        acquisitions = _weekly_counts(first_day, ly, weeks) * (recent / before if before > 0 else 1.0)
    else:
        acquisitions = np.full(weeks, float(((first_day >= day - pd.Timedelta(days=91))).sum()) / 13.0)
    cohort_start = day - pd.Timedelta(days=365)
    cohort = first_day[first_day >= cohort_start]
    basket = np.zeros((weeks, len(categories)))
    if not cohort.empty:
        c_lines = lines[lines["customer_id"].isin(set(cohort.index))]
        age = ((c_lines["day"] - c_lines["customer_id"].map(cohort)).dt.days // 7).to_numpy()
        cat_idx = pd.Categorical(c_lines["category"].astype(str), categories=list(categories)).codes
        amount = c_lines["amount"].to_numpy(float)
        for a in range(weeks):
            eligible = int((cohort <= day - pd.Timedelta(days=7 * (a + 1))).sum())
            if eligible == 0:
                basket[a] = basket[a - 1] if a > 0 else 0.0
                continue
            sel = age == a
            basket[a] = np.bincount(cat_idx[sel], weights=amount[sel], minlength=len(categories)) / eligible
    new = np.zeros((weeks, len(categories)))
    for w in range(weeks):
        new[w] = (acquisitions[: w + 1, None] * basket[w::-1]).sum(axis=0)

    # interval: compound Poisson per cell
    last = lines[lines["day"] >= cohort_start]
    occ = last.groupby(["customer_id", "day", "category"])["amount"].sum()
    x = occ.groupby(level="category").agg(lambda v: float((v**2).sum() / v.sum()) if v.sum() > 0 else 0.0)
    m2 = x.reindex(list(categories), fill_value=0.0).to_numpy(float)
    # a category without an occasion in the last year had E[X²]/E[X] = 0: a zero-width interval around a
    # positive forecast; it takes the occasions of every category instead
    pooled = float((occ**2).sum() / occ.sum()) if occ.sum() > 0 else 0.0
    m2 = np.where(m2 > 0, m2, pooled)
    mean = existing + new
    sd = np.sqrt(np.maximum(mean, 0.0) * m2[None, :])
    out = pd.DataFrame(
        {
            "week": np.repeat(np.arange(weeks), len(categories)),
            "week_start": np.repeat([day + pd.Timedelta(days=7 * w) for w in range(weeks)], len(categories)),
            "category": pd.array(np.tile(np.array(categories, dtype=object), weeks), dtype="string"),
            "existing": existing.ravel(),
            "new": new.ravel(),
            "pred_sales": mean.ravel(),
            "lower": np.maximum(mean - Z80 * sd, 0.0).ravel(),
            "upper": (mean + Z80 * sd).ravel(),
        }
    )
    return out


BY = ("category", "week")


def aggregate_demand(cells: pd.DataFrame, by: tuple[str, ...]) -> pd.DataFrame:
    """Sum :func:`customer_demand` cells to ``by`` (``("category", "week")``, ``("category",)`` or ``("week",)``).

    The interval of a sum adds the cells' variances (independent compound
    Poisson cells): ``sd = √Σ ((upper − pred_sales) / Z80)²``.

    Returns:
        One row per group: the ``by`` keys (``week`` with ``week_start``),
        ``existing``, ``new``, ``pred_sales``, ``lower``, ``upper``; by week
        first when ``week`` is a key, then by ``pred_sales``, largest first
        (ties in category order).

    Raises:
        DataError: ``by`` is empty or names another column.
    """
    if not by or any(b not in BY for b in by):
        raise DataError(f"--by takes category, week or category,week; got {','.join(by) or 'nothing'}")
    keys = ["week", "week_start"] * ("week" in by) + ["category"] * ("category" in by)
    keys = [k for k in ("week", "week_start", "category") if k in keys]
    var = ((cells["upper"] - cells["pred_sales"]) / Z80) ** 2
    g = cells.assign(var=var).groupby(keys, sort=False)[["existing", "new", "pred_sales", "var"]].sum().reset_index()
    sd = np.sqrt(g.pop("var").to_numpy(float))
    g["lower"] = np.maximum(g["pred_sales"] - Z80 * sd, 0.0)
    g["upper"] = g["pred_sales"] + Z80 * sd
    order = ["week"] * ("week" in by) + ["pred_sales"]
    return g.sort_values(order, ascending=[True] * ("week" in by) + [False], kind="mergesort").reset_index(drop=True)


__all__ = ["BY", "Z80", "aggregate_demand", "customer_demand", "return_ratio"]
