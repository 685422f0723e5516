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
