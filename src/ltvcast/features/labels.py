"""Labels: what each customer actually did in the horizon window after a cutoff."""

from __future__ import annotations

import pandas as pd

from ltvcast.features._duck import query
from ltvcast.timeutil import horizon_window

LABELS_SQL = """
SELECT c.customer_id,
       CAST(COUNT(DISTINCT CAST(t.timestamp AS DATE)) AS DOUBLE) AS actual_transactions,
       COALESCE(SUM(t.amount), 0.0) AS actual_spend
FROM customers c
LEFT JOIN tx t
  ON t.customer_id = c.customer_id AND t.timestamp >= $start AND t.timestamp < $end
GROUP BY c.customer_id
ORDER BY c.customer_id
"""


def horizon_labels(tx: pd.DataFrame, customers: pd.Series, cutoff, horizon_days: float) -> pd.DataFrame:
    """Actual purchase occasions and spend of ``customers`` in the horizon window.

    The window is ``[cutoff, cutoff + round(horizon_days) days)`` (see
    :func:`ltvcast.timeutil.horizon_window`); occasions are distinct UTC days,
    spend is the sum of ``amount`` (currency; may be ≤ 0 with returns).

    Args:
        tx: canonical transactions.
        customers: the customer ids to label, shape (n,); customers with no
            purchase in the window get 0 and 0.0.
        cutoff: start of the window (date).
        horizon_days: window length in days.

    Returns:
        Frame of n rows sorted by ``customer_id``: ``customer_id``,
        ``actual_transactions`` (float), ``actual_spend`` (float).
    """
    start, end = horizon_window(cutoff, horizon_days)
    ids = pd.DataFrame({"customer_id": pd.Series(customers, dtype="string").unique()})
    return query(
        LABELS_SQL,
        {"start": start.to_pydatetime(), "end": end.to_pydatetime()},
        tx=tx[["customer_id", "timestamp", "amount"]],
        customers=ids,
    )
