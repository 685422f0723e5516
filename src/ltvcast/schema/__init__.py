"""Canonical table layouts shared by every room.

Canonical transactions (one row per order line or transaction):

============  ======================  ==========================================
column        dtype                   meaning
============  ======================  ==========================================
customer_id   string (required)       shop's customer id, always text
timestamp     datetime64[us, UTC]     when the purchase happened (required)
amount        float64 (required)      value in the shop currency (returns < 0)
order_id      string (optional)       order / invoice number
line          Int64 (optional)        line number within the order
quantity      float64 (optional)      units
product_id    string (optional)
category      string (optional)
brand         string (optional)
channel       string (optional)       e.g. web, app, store
currency      string (optional)       ISO code of ``amount``
============  ======================  ==========================================

Canonical predictions frame (DESIGN.md): one row per customer and model with
the columns of :data:`PREDICTION_COLUMNS`; columns a model cannot fill are null.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: dtype of every timestamp column of the canonical frames.
UTC_US = "datetime64[us, UTC]"
REQUIRED_COLUMNS: tuple[str, ...] = ("customer_id", "timestamp", "amount")
OPTIONAL_STRING_COLUMNS: tuple[str, ...] = (
    "order_id",
    "product_id",
    "category",
    "brand",
    "channel",
    "currency",
)
OPTIONAL_NUMERIC_COLUMNS: tuple[str, ...] = ("line", "quantity")
TRANSACTION_COLUMNS: tuple[str, ...] = (
    REQUIRED_COLUMNS + ("order_id", "line", "quantity", "product_id", "category", "brand", "channel", "currency")
)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "model",
    "cutoff",
    "horizon_days",
    "pred_transactions",
    "pred_spend",
    "p_churn",
    "p_alive",
    "pred_spend_p10",
    "pred_spend_p50",
    "pred_spend_p90",
    "pred_next_purchase_days",
)

#: Columns of the quarantine frame: source (file path), source_row (1-based
#: data row, int64), reason (code), source_column (column name in the file),
#: raw_value (the offending text), raw_row (the whole row as a JSON object of text).
QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source",
    "source_row",
    "reason",
    "source_column",
    "raw_value",
    "raw_row",
)


def canonical_dtype(name: str):
    """The dtype of canonical transactions column ``name`` (see the table above)."""
    if name == "timestamp":
        return UTC_US
    if name in ("amount", "quantity"):
        return np.float64
    if name == "line":
        return "Int64"
    return str


def empty_transactions() -> pd.DataFrame:
    """A zero-row canonical transactions frame with the canonical dtypes.

    customer_id, order_id, product_id, category, brand, channel, currency:
    ``str``; timestamp: ``datetime64[us, UTC]``; amount, quantity: float64;
    line: Int64.
    """
    return pd.DataFrame({name: pd.Series(dtype=canonical_dtype(name)) for name in TRANSACTION_COLUMNS})


def empty_quarantine() -> pd.DataFrame:
    """A zero-row quarantine frame (columns :data:`QUARANTINE_COLUMNS`)."""
    return pd.DataFrame(
        {c: pd.Series(dtype=np.int64 if c == "source_row" else str) for c in QUARANTINE_COLUMNS}
    )
