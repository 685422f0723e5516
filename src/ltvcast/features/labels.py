"""Labels: what each customer actually did in the horizon window after a cutoff."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.features._duck import query
from ltvcast.features._sql import check_timezone, cutoff_day, local_midnight_utc
from ltvcast.timeutil import local_midnight, to_day

# Purchase occasions and spend follow the rfm family's rules (see rfm.py):
# an occasion is a local day with a sale row; spend is exact (DECIMAL) in the
# revenue basis; without a `kind` column a negative amount is a return.
LABELS_SQL = """
WITH lines AS (
    SELECT customer_id,
           CAST(timezone($tz, timestamp) AS DATE) AS day,
           {kind} AS kind,
           CAST(amount AS DECIMAL(18, 4)) AS amount
    FROM tx
    WHERE timestamp >= $start AND timestamp < $end
)
SELECT c.customer_id,
       CAST(COUNT(DISTINCT CASE WHEN l.kind = 'sale' THEN l.day END) AS DOUBLE) AS actual_transactions,
       CAST(COALESCE(SUM(CASE WHEN $net OR l.kind = 'sale' THEN l.amount END), 0) AS DOUBLE) AS actual_spend
FROM customers c
LEFT JOIN lines l ON l.customer_id = c.customer_id
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
    if revenue_basis not in ("net", "gross"):
        raise DataError(f"revenue basis {revenue_basis!r} is not 'net' or 'gross'")
    tz = check_timezone(timezone)
    day = cutoff_day(cutoff)
    start = local_midnight_utc(day, tz).tz_localize("UTC")
    end = local_midnight_utc(day + timedelta(days=round(horizon_days)), tz).tz_localize("UTC")
    kind = "kind" if "kind" in tx.columns else "CASE WHEN amount < 0 THEN 'return' ELSE 'sale' END"
    frame = tx[[c for c in ("customer_id", "timestamp", "amount", "kind") if c in tx.columns]]
    stamps = frame["timestamp"]
    if getattr(stamps.dt, "tz", None) is None:  # naive timestamps are UTC (canonical rule)
        frame = frame.assign(timestamp=stamps.dt.tz_localize("UTC"))
    ids = pd.DataFrame({"customer_id": pd.Series(customers, dtype="string").unique()})
    return query(
        LABELS_SQL.format(kind=kind),
        {
            "start": start.to_pydatetime(),
            "end": end.to_pydatetime(),
            "tz": tz,
            "net": revenue_basis == "net",
        },
        tx=frame,
        customers=ids,
    )


def _as_utc(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_localize("UTC") if getattr(stamps.dt, "tz", None) is None else stamps


def _is_sale(tx: pd.DataFrame) -> pd.Series:
    if "kind" in tx.columns:
        return tx["kind"].astype("string").fillna("sale") == "sale"
    return tx["amount"] >= 0


def next_purchase_labels(
    tx: pd.DataFrame,
    customers: pd.Series,
    cutoff,
    horizon_days: float,
    *,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Days from ``cutoff`` to each customer's first purchase occasion in the horizon.

    A purchase occasion is a local calendar day with a sale row (a row of
    ``kind = 'sale'``, or with ``amount >= 0`` when the frame has no
    ``kind``), as in :func:`horizon_labels`.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC,
            ``amount``, optional ``kind``).
        customers: ids to label, shape (n,).
        cutoff: first day of the window (calendar day).
        horizon_days: window length in days (``round(H)`` local days).
        timezone: the shop's IANA time zone.

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id`` (string),
        ``next_purchase_days`` (float: whole local days from the cutoff day to
        the day of the first sale in the window, 0 = on the cutoff day; NaN
        when the customer has none in the window).
    """
    start_day = to_day(cutoff).tz_localize(None)
    start = local_midnight(start_day, timezone)
    end = local_midnight(start_day + pd.Timedelta(days=round(horizon_days)), timezone)
    stamps = _as_utc(tx["timestamp"])
    keep = (stamps >= start) & (stamps < end) & _is_sale(tx)
    window = pd.DataFrame(
        {"customer_id": tx.loc[keep, "customer_id"].astype("string"), "timestamp": stamps[keep]}
    )
    first = window.groupby("customer_id")["timestamp"].min()
    local_day = first.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    days = (local_day - start_day).dt.days.astype(float)
    ids = pd.Series(pd.Series(customers, dtype="string").unique(), dtype="string")
    out = pd.DataFrame({"customer_id": ids})
    out["next_purchase_days"] = out["customer_id"].map(days).astype(float)
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)
