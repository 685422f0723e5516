"""Quarantine reason codes of every ingest path, in display order.

A quarantined row is never lost: it sits in the store's ``quarantine``
table with its source, 1-based data row, kind, reason, the offending column
and value, and the whole raw row as JSON (personal columns removed).
"""

from __future__ import annotations

#: reason -> meaning. The foundation's reasons first, then those of ``ingest --config``.
REASON_MEANINGS: dict[str, str] = {
    "bad_row": "a malformed CSV row: more fields than the header, or broken quoting (the rest of the file is read)",
    "missing_customer_id": "customer id empty (on a return: neither its order nor a customer given)",
    "missing_timestamp": "timestamp empty",
    "bad_timestamp": "timestamp (or signup_at) not readable as a date/time",
    "missing_amount": "amount empty (or quantity / unit price when the amount is derived)",
    "bad_amount": "amount, unit price or list price not a plain number",
    "bad_quantity": "quantity present but not a number",
    "bad_line": "line present but not a whole number",
    "missing_order_id": "order id empty",
    "missing_product_id": "product id empty",
    "missing_event_type": "event type empty",
    "missing_day": "fx day empty",
    "missing_rate": "fx rate empty",
    "missing_currency": "a mapped currency column is empty in the row",
    "bad_currency": "currency not a 3-letter code",
    "bad_day": "fx day not a date",
    "bad_rate": "fx rate not a number > 0, or a shop-currency rate other than 1",
    "bad_discount": "discount not a number, or negative",
    "bad_event_type": "event type not session_start, view, add_to_cart or purchase",
    "duplicate_id": "key seen before (in the run or the store) with different content",
    "unknown_currency": "no fx rate for the currency on or before that day",
    "unknown_order": "a line or return names an order that is not known and cannot be derived",
    "unknown_customer": "a return or event whose customer is not known",
    "order_customer_mismatch": "a line names another customer than its order",
}
REASONS: tuple[str, ...] = tuple(REASON_MEANINGS)


def reason_order(reasons) -> list[str]:
    """Sort reason codes: known ones in :data:`REASONS` order, then unknown ones alphabetically."""
    known = [r for r in REASONS if r in set(reasons)]
    return known + sorted(set(reasons) - set(REASONS))
