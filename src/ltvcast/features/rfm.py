"""BTYD summary (frequency, recency, T, monetary_value) at a cutoff, in DuckDB SQL.

Definitions (Fader, Hardie & Lee 2005, "Counting your customers the easy way",
Marketing Science 24(2), section 2; monetary value as in their JMR 2005
paper "RFM and CLV: using iso-value curves"). The SQL is the ``rfm`` feature
family of :func:`ltvcast.features.build` (``features/sql/rfm.sql`` and the
history steps it reads), run here over a transactions frame, so the models
and the learned features share one definition:

* history is every transaction before 00:00 of the cutoff day in the shop's
  time zone; returns count at their own time, never back-dated;
* a *purchase occasion* is a local calendar day with at least one sale row
  (``kind = 'sale'``; without a ``kind`` column a negative amount is a
  return); zero-value sales still make an occasion, a day with only returns
  does not;
* an occasion's value is that day's spend in the revenue basis (``net``:
  sales minus returns that day; ``gross``: sales), summed exactly in
  DECIMAL(18,4);
* ``frequency`` x = occasions − 1 (repeat occasions);
* ``recency`` t_x = days from the first to the last occasion, in ``unit``;
* ``T`` = days from the first occasion to the last day *before* the cutoff,
  in ``unit`` — the papers' convention: with calibration data before
  1997-10-01, a customer first seen 1997-01-01 has T = 272 d / 7 = 38.86 w;
* ``monetary_value`` = mean value of the repeat occasions (the first occasion
  excluded); 0.0 when frequency is 0.

Also returned: ``n_transactions`` (sale rows), ``total_spend`` (all spend
before the cutoff in the revenue basis, returns on non-purchase days
included; currency), ``first_purchase`` and ``last_purchase`` (local dates).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.features._sql import Context, check_timezone, cutoff_day, render, source_views, store_columns

UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375}
_STEPS = ("history_lines", "history_orders", "history_daily")
_COLUMNS = ("customer_id", "timestamp", "amount", "kind")


def rfm_summary(
    tx: pd.DataFrame,
    cutoff,
    unit: str = "W",
    *,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> pd.DataFrame:
    """BTYD summary of every customer with a purchase before ``cutoff``.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC,
            ``amount``, optional ``kind``); other columns are ignored.
        cutoff: calendar day (``"YYYY-MM-DD"``, date or midnight timestamp).
        unit: time unit of recency and T: ``"D"`` days, ``"W"`` weeks,
            ``"M"`` months of 30.4375 days.
        timezone: the shop's IANA time zone; it decides calendar days.
        revenue_basis: ``"net"`` (sales minus returns) or ``"gross"``.

    Returns:
        One row per customer, sorted by ``customer_id``: ``customer_id``,
        ``frequency``, ``recency``, ``T`` (floats, ``unit``),
        ``monetary_value``, ``total_spend`` (currency), ``n_transactions``,
        ``first_purchase``, ``last_purchase`` (dates). Customers with no sale
        before the cutoff are absent.

    Raises:
        DataError: a required column is missing, or the unit, time zone or
            revenue basis is unknown.
        CutoffError: ``cutoff`` is not a calendar day.
    """
    missing = [c for c in _COLUMNS[:3] if c not in tx.columns]
    if missing:
        raise DataError(f"transactions lack column(s) {missing}; found {list(tx.columns)}")
    unit_key = unit.upper()
    if unit_key not in UNIT_DAYS:
        raise DataError(f"unit {unit!r} is not one of {sorted(UNIT_DAYS)}")
    if revenue_basis not in ("net", "gross"):
        raise DataError(f"revenue basis {revenue_basis!r} is not 'net' or 'gross'")
    day = cutoff_day(cutoff)
    ctx = Context(
        cutoff_day=day,
        timezone=check_timezone(timezone),
        windows=(),
        basis=revenue_basis,
        population="buyers",
        channels=(),
        first_day=day,
    )
    # The ids are encoded once (codes in sorted id order, so ORDER BY code is
    # ORDER BY customer_id) and the SQL groups integers; the ids come back at
    # the end by position. Only the needed columns are handed to DuckDB, as
    # views over the frame's own arrays (no copy into a table).
    codes, ids = pd.factorize(tx["customer_id"], sort=True)
    ids = pd.array(ids, dtype="string")
    if len(ids) and (codes < 0).any():  # a missing id stays one group, sorted last as before
        codes[codes < 0] = len(ids)
        ids = pd.array([*ids, pd.NA], dtype="string")
    ts = tx["timestamp"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    frame = {"customer_id": codes.astype("int32", copy=False), "timestamp": ts.to_numpy(), "amount": tx["amount"].to_numpy()}
    if "kind" in tx.columns:
        frame["kind"] = tx["kind"].to_numpy()
    frame = pd.DataFrame(frame, copy=False)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("tx_frame", frame)
        con.execute("CREATE VIEW transactions AS SELECT * FROM tx_frame")
        con.execute(source_views(store_columns(con), customer_key="INTEGER")["transactions"])
        for step in _STEPS:
            con.execute(render(step, ctx))
        res = con.execute(
            f"""
            WITH rfm AS ({render("rfm", ctx)}),
            sales AS (SELECT customer_id, SUM(sale_lines) AS n_transactions FROM h_daily
                      GROUP BY customer_id)
            SELECT rfm.customer_id,
                   rfm.frequency,
                   rfm.recency_days / $unit AS recency,
                   rfm."T_days" / $unit AS "T",
                   rfm.monetary_value,
                   rfm.spend_total AS total_spend,
                   sales.n_transactions,
                   DATE '{day.isoformat()}' - CAST(rfm."T_days" AS INTEGER) - 1 AS first_purchase,
                   DATE '{day.isoformat()}' - CAST(rfm.days_since_last_purchase AS INTEGER) AS last_purchase
            FROM rfm JOIN sales USING (customer_id)
            WHERE rfm.occasions > 0
            ORDER BY rfm.customer_id
            """,
            {"unit": UNIT_DAYS[unit_key]},
        )
        out = res.df()
    finally:
        con.close()
    for col in ("first_purchase", "last_purchase"):
        out[col] = pd.to_datetime(out[col]).dt.date
    out["customer_id"] = pd.Series(ids.take(out["customer_id"].to_numpy()), dtype="string")
    return out.reset_index(drop=True)
