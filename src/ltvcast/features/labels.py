"""Labels: what each customer actually did in the horizon window after a cutoff."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.features._duck import query
from ltvcast.features._sql import check_timezone, cutoff_day, local_midnight_utc

# Purchase occasions and spend follow the rfm family's rules, refunds netted by
# order included (features/sql/README.md, "Refunds"), inside the window: an
# occasion is a local day with a sale row, unless (net basis) refunds in the
# window of that day's orders bring its sales to <= 0; spend is exact (DECIMAL)
# in the revenue basis; without a `kind` column a negative amount is a return.
# A refund in the window of an order before the window (or of no known order)
# lowers window spend but no occasion; a refund after the window is not seen.
_WINDOW_DAYS_SQL = """
WITH lines AS (
    SELECT customer_id,
           timestamp,
           CAST(timezone($tz, timestamp) AS DATE) AS day,
           {kind} AS kind,
           {order_id} AS order_id,
           CAST(amount AS DECIMAL(18, 4)) AS amount
    FROM tx
    WHERE timestamp >= $start AND timestamp < $end
),
orders AS (
    SELECT customer_id, order_id, MIN(day) AS day
    FROM lines
    WHERE kind = 'sale' AND order_id IS NOT NULL
    GROUP BY customer_id, order_id
),
per_day AS (
    SELECT l.customer_id,
           COALESCE(o.day, l.day) AS day,
           SUM(CASE WHEN l.kind = 'sale' THEN 1 ELSE 0 END) AS sale_rows,
           SUM(CASE WHEN l.kind = 'sale' THEN l.amount ELSE 0 END) AS sales,
           SUM(CASE WHEN l.kind <> 'sale' AND o.day IS NOT NULL THEN 0 - l.amount ELSE 0 END) AS netted,
           SUM(CASE WHEN $net OR l.kind = 'sale' THEN l.amount ELSE 0 END) AS spend
    FROM lines l
    LEFT JOIN orders o
           ON l.kind <> 'sale' AND o.customer_id = l.customer_id AND o.order_id = l.order_id
    GROUP BY l.customer_id, COALESCE(o.day, l.day)
),
occasion_days AS (
    SELECT *, sale_rows > 0 AND NOT ($net AND netted > 0 AND sales - netted <= 0) AS occasion FROM per_day
)
"""
LABELS_SQL = _WINDOW_DAYS_SQL + """
SELECT c.customer_id,
       CAST(COUNT(CASE WHEN d.occasion THEN 1 END) AS DOUBLE) AS actual_transactions,
       CAST(COALESCE(SUM(d.spend), 0) AS DOUBLE) AS actual_spend
FROM customers c
LEFT JOIN occasion_days d ON d.customer_id = c.customer_id
GROUP BY c.customer_id
ORDER BY c.customer_id
"""
# LABELS_SQL's columns plus the days from the cutoff day to the first occasion of the window, in one pass.
# DATE_DIFF rather than `d.day - $start_day`: the same whole days on DuckDB, and it transpiles to Spark's
# DATEDIFF (date minus date is an interval there, refused by ltvcast.engines.transpile.lint).
WINDOW_LABELS_SQL = _WINDOW_DAYS_SQL + """
SELECT c.customer_id,
       CAST(COUNT(CASE WHEN d.occasion THEN 1 END) AS DOUBLE) AS actual_transactions,
       CAST(COALESCE(SUM(d.spend), 0) AS DOUBLE) AS actual_spend,
       CAST(MIN(CASE WHEN d.occasion THEN DATE_DIFF('day', $start_day, d.day) END) AS DOUBLE) AS next_purchase_days
FROM customers c
LEFT JOIN occasion_days d ON d.customer_id = c.customer_id
GROUP BY c.customer_id
ORDER BY c.customer_id
"""


def horizon_labels(
    tx: pd.DataFrame,
    customers: pd.Series,
    cutoff,
    horizon_days: float,
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> pd.DataFrame:
    """Actual purchase occasions and spend of ``customers`` in the horizon window.

    The window is ``round(horizon_days)`` local calendar days from the cutoff
    day (see :func:`ltvcast.timeutil.horizon_window`); occasions are local
    days with a sale row; spend is the exact sum of ``amount`` in the revenue
    basis (``net``: returns in the window subtract, so it may be ≤ 0;
    ``gross``: sales only), in currency.

    Args:
        tx: canonical transactions (``kind`` optional).
        customers: the customer ids to label, shape (n,); customers with no
            purchase in the window get 0 and 0.0.
        cutoff: first day of the window.
        horizon_days: window length in days.
        timezone: the shop's IANA time zone.
        revenue_basis: ``"net"`` or ``"gross"``.

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id``,
        ``actual_transactions`` (float), ``actual_spend`` (float).

    Raises:
        DataError: unknown time zone or revenue basis.
        CutoffError: ``cutoff`` is not a calendar day.
    """
    return _window_query(LABELS_SQL, tx, customers, cutoff, horizon_days, timezone, revenue_basis)


def window_labels(
    tx: pd.DataFrame,
    customers: pd.Series,
    cutoff,
    horizon_days: float,
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> pd.DataFrame:
    """:func:`horizon_labels` and :func:`next_purchase_labels` of one window, from one query.

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id`` (string),
        ``actual_transactions``, ``actual_spend``, ``next_purchase_days``
        (floats, as those two functions define them).

    Raises:
        DataError: unknown time zone or revenue basis.
        CutoffError: ``cutoff`` is not a calendar day.
    """
    out = _window_query(WINDOW_LABELS_SQL, tx, customers, cutoff, horizon_days, timezone, revenue_basis)
    out["customer_id"] = out["customer_id"].astype("string")
    return out


def _window_query(
    sql: str, tx: pd.DataFrame, customers: pd.Series, cutoff, horizon_days: float, timezone: str, revenue_basis: str
) -> pd.DataFrame:
    """Run one of the window SQLs over ``tx`` for ``customers`` (checks as :func:`horizon_labels`)."""
    if revenue_basis not in ("net", "gross"):
        raise DataError(f"revenue basis {revenue_basis!r} is not 'net' or 'gross'")
    tz = check_timezone(timezone)
    day = cutoff_day(cutoff)
    start = local_midnight_utc(day, tz).tz_localize("UTC")
    end = local_midnight_utc(day + timedelta(days=round(horizon_days)), tz).tz_localize("UTC")
    kind = "kind" if "kind" in tx.columns else "CASE WHEN amount < 0 THEN 'return' ELSE 'sale' END"
    order_id = "CAST(order_id AS VARCHAR)" if "order_id" in tx.columns else "CAST(NULL AS VARCHAR)"
    frame = tx[[c for c in ("customer_id", "timestamp", "amount", "kind", "order_id") if c in tx.columns]]
    stamps = frame["timestamp"]
    if getattr(stamps.dt, "tz", None) is None:  # naive timestamps are UTC (canonical rule)
        frame = frame.assign(timestamp=stamps.dt.tz_localize("UTC"))
    ids = pd.DataFrame({"customer_id": pd.Series(customers, dtype="string").unique()})
    params = {"start": start.to_pydatetime(), "end": end.to_pydatetime(), "tz": tz, "net": revenue_basis == "net"}
    if "$start_day" in sql:
        params["start_day"] = day
    return query(sql.format(kind=kind, order_id=order_id), params, tx=frame, customers=ids)


def next_purchase_labels(
    tx: pd.DataFrame,
    customers: pd.Series,
    cutoff,
    horizon_days: float,
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> pd.DataFrame:
    """Days from ``cutoff`` to each customer's first purchase occasion in the horizon.

    The occasions are those :func:`horizon_labels` counts (a local calendar
    day with a sale row, unless, in the net basis, refunds in the window of
    that day's orders bring it to ≤ 0), so a customer has a next purchase
    exactly when ``actual_transactions > 0``.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC,
            ``amount``, optional ``kind``).
        customers: ids to label, shape (n,).
        cutoff: first day of the window (calendar day).
        horizon_days: window length in days (``round(H)`` local days).
        timezone: the shop's IANA time zone.
        revenue_basis: ``"net"`` or ``"gross"`` (decides whether a refund cancels an occasion).

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id`` (string),
        ``next_purchase_days`` (float: whole local days from the cutoff day to
        the day of the first sale in the window, 0 = on the cutoff day; NaN
        when the customer has none in the window).
    """
    out = window_labels(tx, customers, cutoff, horizon_days, timezone=timezone, revenue_basis=revenue_basis)
    return out[["customer_id", "next_purchase_days"]]
