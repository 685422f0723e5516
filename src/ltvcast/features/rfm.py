"""BTYD summary (frequency, recency, T, monetary_value) at a cutoff, in DuckDB SQL.

Definitions (Fader, Hardie & Lee 2005, "Counting your customers the easy way",
Marketing Science 24(2), section 2; monetary value as in their JMR 2005
paper "RFM and CLV: using iso-value curves"):

* history is every transaction with ``timestamp < cutoff``;
* a *purchase occasion* is one customer's transactions on one UTC calendar
  day, with their amounts summed (so zero-value rows still make an occasion);
* ``frequency`` x = occasions − 1 (repeat occasions);
* ``recency`` t_x = days from the first to the last occasion, in ``unit``;
* ``T`` = days from the first occasion to the last day *before* the cutoff,
  in ``unit`` — the papers' convention: with calibration data before
  1997-10-01, a customer first seen 1997-01-01 has T = 272 d / 7 = 38.86 w;
* ``monetary_value`` = mean value of the repeat occasions (the first occasion
  excluded); 0.0 when frequency is 0.

Also returned: ``n_transactions`` (rows), ``total_spend`` (all occasions,
currency), ``first_purchase`` and ``last_purchase`` (UTC dates).
"""

from __future__ import annotations

import pandas as pd

from ltvcast.errors import DataError
from ltvcast.features._duck import query
from ltvcast.timeutil import to_day

UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375}

RFM_SQL = """
WITH occasions AS (
    SELECT customer_id,
           CAST(timestamp AS DATE) AS day,
           SUM(amount) AS value,
           COUNT(*) AS n_rows
    FROM tx
    WHERE timestamp < $cutoff
    GROUP BY customer_id, CAST(timestamp AS DATE)
),
ranked AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day) AS k
    FROM occasions
)
SELECT customer_id,
       CAST(COUNT(*) - 1 AS DOUBLE) AS frequency,
       DATE_DIFF('day', MIN(day), MAX(day)) / $unit_days AS recency,
       (DATE_DIFF('day', MIN(day), CAST($cutoff AS DATE)) - 1) / $unit_days AS T,
       CASE WHEN COUNT(*) > 1
            THEN SUM(value) FILTER (WHERE k > 1) / (COUNT(*) - 1)
            ELSE 0.0 END AS monetary_value,
       CAST(SUM(n_rows) AS BIGINT) AS n_transactions,
       SUM(value) AS total_spend,
       MIN(day) AS first_purchase,
       MAX(day) AS last_purchase
FROM ranked
GROUP BY customer_id
ORDER BY customer_id
"""


def rfm_summary(tx: pd.DataFrame, cutoff, unit: str = "W") -> pd.DataFrame:
    """BTYD summary of every customer first seen before ``cutoff``.

    Args:
        tx: canonical transactions (``customer_id``, ``timestamp`` UTC,
            ``amount``); other columns are ignored.
        cutoff: date (``"YYYY-MM-DD"``, date or timestamp); history is
            strictly before its 00:00 UTC.
        unit: time unit of recency and T: ``"D"`` days, ``"W"`` weeks,
            ``"M"`` months of 30.4375 days.

    Returns:
        One row per customer, sorted by ``customer_id``: ``customer_id``,
        ``frequency``, ``recency``, ``T`` (floats, ``unit``),
        ``monetary_value`` (currency), ``n_transactions``, ``total_spend``,
        ``first_purchase``, ``last_purchase`` (dates). Customers whose first
        transaction is at or after the cutoff are absent.

    Raises:
        DataError: a required column is missing or the unit is unknown.
        CutoffError: ``cutoff`` is not a date.
    """
    missing = [c for c in ("customer_id", "timestamp", "amount") if c not in tx.columns]
    if missing:
        raise DataError(f"transactions lack column(s) {missing}; found {list(tx.columns)}")
    unit_key = unit.upper()
    if unit_key not in UNIT_DAYS:
        raise DataError(f"unit {unit!r} is not one of {sorted(UNIT_DAYS)}")
    cut = to_day(cutoff)
    frame = tx[["customer_id", "timestamp", "amount"]]
    out = query(RFM_SQL, {"cutoff": cut.to_pydatetime(), "unit_days": UNIT_DAYS[unit_key]}, tx=frame)
    for col in ("first_purchase", "last_purchase"):
        out[col] = pd.to_datetime(out[col]).dt.date
    return out.reset_index(drop=True)
