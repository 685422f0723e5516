"""Returns and cancellations: recognise them, and link each to the order it reduces.

A return reaches ltvcast in one of three ways:

* a **negative line** (order_items) or a negative order total (orders);
* a **cancellation invoice**: an order id starting with the source's
  ``cancellation_prefix`` (e.g. ``C536379``); every line of it is a return
  whatever its sign (money given back = ``|amount|``);
* a row of a **returns** source.

Linking (:func:`link_returns`): a return is *linked* when the order it names
is known (in the store or in this run) — for a negative line its own order,
else the ``original_order_id`` column, and for a cancellation invoice the
``original_order_id`` or, failing that, the id without the prefix
(``C536379`` -> ``536379``). A linked return takes the order's customer,
its amount is converted at the order's day rate (so a fully returned order
nets to exactly 0) and it reduces that order. An unlinked return (no
reference, or an order from before the data starts) reduces its customer's
revenue on its own day; its customer must be known (from customers, orders
or earlier transactions), else the row is quarantined ``unknown_customer``.
Every return keeps its own timestamp (never back-dated), except a negative
line without a timestamp of its own, which can only take its order's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def is_cancellation(order_ids: pd.Series, prefix: str | None) -> np.ndarray:
    """True where the order id starts with ``prefix`` and has more after it; all False for no prefix."""
    if not prefix:
        return np.zeros(len(order_ids), dtype=bool)
    text = order_ids.astype(object).where(order_ids.notna(), "").astype(str)
    return (text.str.startswith(prefix) & (text.str.len() > len(prefix))).to_numpy()


def reference_targets(
    order_ids: pd.Series,
    original: pd.Series,
    cancellation: np.ndarray,
    prefix: str | None,
    own_order_counts: bool,
) -> tuple[pd.Series, pd.Series]:
    """The orders each return names, before checking that they exist.

    Args:
        order_ids: the return's own order / invoice id.
        original: the ``original_order_id`` column (missing values None/NaN).
        cancellation: :func:`is_cancellation` of ``order_ids``.
        prefix: the cancellation prefix.
        own_order_counts: True for negative lines, whose own order is the
            first candidate; False for order-level rows (their id is the
            return's own invoice number).

    Returns:
        (``ref``, ``alt_ref``): text Series, None where there is no
        candidate. Cancellations: the original id, else the id without the
        prefix. Negative lines: their own order, then the original id.
        Order-level returns: the original id.
    """
    index = order_ids.index
    cancel = pd.Series(cancellation, index=index)
    original = original.astype(object).where(original.notna(), None)
    none = pd.Series(None, index=index, dtype=object)
    if own_order_counts:
        ref = order_ids.astype(object).where(~cancel, original)
        alt = original.where(~cancel, None)
    else:
        ref, alt = original.copy(), none.copy()
    if prefix and cancellation.any():
        stripped = order_ids.astype(object).where(cancel, "").astype(str).str.slice(len(prefix))
        ref = ref.where(~(cancel & ref.isna()), stripped)
    return ref.astype(object), alt.astype(object)


def link_returns(candidates: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    """Attach the named order to each return candidate.

    Args:
        candidates: one row per return with ``ref`` (the order it names,
            :func:`reference_targets`), ``alt_ref`` (a second candidate,
            e.g. the original id when the own order is unknown) and
            ``customer_id``, ``timestamp`` (may be missing), ``currency``
            (None = not declared).
        orders: known orders: ``order_id``, ``customer_id``, ``timestamp``
            (UTC), ``currency``.

    Returns:
        ``candidates`` with ``linked`` (bool), ``order_id`` (linked order or
        None), ``customer_id`` (the order's when linked), ``order_timestamp``
        (NaT when unlinked), ``order_currency`` (None when unlinked).
    """
    out = candidates.copy()
    index = orders.drop_duplicates("order_id").set_index("order_id")
    ref = out["ref"].where(out["ref"].isin(index.index), None)
    if "alt_ref" in out:
        alt = out["alt_ref"].where(out["alt_ref"].isin(index.index), None)
        ref = ref.where(ref.notna(), alt)
    linked = ref.notna()
    out["linked"] = linked.to_numpy()
    out["order_id"] = ref.astype(object).where(linked, None)
    found = index.reindex(ref.where(linked, "\x00"))
    found.index = out.index
    out["customer_id"] = found["customer_id"].where(linked, out["customer_id"])
    out["order_timestamp"] = found["timestamp"].where(linked)
    out["order_currency"] = found["currency"].where(linked, None)
    return out
