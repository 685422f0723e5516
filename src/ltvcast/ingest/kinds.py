"""The source kinds of ``sources.yaml`` and the canonical fields each one maps.

Every field has a *type* that decides how its text is parsed
(:mod:`ltvcast.ingest.staging`):

=============  ==============================================================
type           parsed as
=============  ==============================================================
``id``         text id (``17850.0`` -> ``17850``, leading zeros kept)
``text``       stripped text
``currency``   3-letter ISO code, upper-cased
``timestamp``  UTC instant; naive values are local times of the source zone
``day``        calendar date as written (fx rates)
``money``      decimal number, 4 decimals (original currency)
``number``     decimal number (quantity)
``rate``       decimal number > 0, 8 decimals
``fraction``   decimal number in [0, 1] (``discount_rate``)
``line``       line id: a whole number, or any text (mapped to a stable number,
               :func:`ltvcast.ingest.staging.line_numbers`)
``event``      event type: any text (lower-cased, ``-``/space -> ``_``); the
               :data:`EVENT_TYPES` get their own features, others generic ones
=============  ==============================================================

A field not mapped in ``mapping:`` is looked up under its canonical name,
except the fields of :data:`MAP_ONLY` (their unit is ambiguous: a
``discount`` column may hold money or a fraction), which are read only when
mapped explicitly (``mapping: {discount_rate: discount}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ltvcast.errors import DataError

KINDS: tuple[str, ...] = ("orders", "order_items", "returns", "events", "customers", "products", "fx_rates")
EVENT_TYPES: tuple[str, ...] = ("session_start", "view", "add_to_cart", "purchase")
#: Runs of spaces and dashes in an event type, written as one ``_``.
EVENT_TYPE_SEPARATORS = r"[\s\-]+"


def event_type_name(text: str) -> str:
    """The stored spelling of an event type (ingest and the online API alike): stripped,
    lower-case, runs of spaces / dashes as ``_`` (``" Email-Open "`` -> ``email_open``).

    Raises:
        ValueError: the type is empty.
    """
    name = re.sub(EVENT_TYPE_SEPARATORS, "_", text.strip().lower())
    if not name:
        raise ValueError("event_type is empty")
    return name


FIELD_TYPES: dict[str, str] = {
    "order_id": "id",
    "customer_id": "id",
    "product_id": "id",
    "event_id": "id",
    "session_id": "id",
    "return_id": "id",
    "original_order_id": "id",
    "timestamp": "timestamp",
    "signup_at": "timestamp",
    "day": "day",
    "amount": "money",
    "unit_price": "money",
    "discount": "money",
    "discount_rate": "fraction",
    "list_price": "money",
    "quantity": "number",
    "rate": "rate",
    "line": "line",
    "currency": "currency",
    "event_type": "event",
    "channel": "text",
    "category": "text",
    "brand": "text",
    "acquisition_channel": "text",
    "region": "text",
    "country": "text",
}

#: Canonical fields each kind may map, in the order they are checked.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "orders": ("order_id", "customer_id", "timestamp", "amount", "currency", "channel", "original_order_id"),
    "order_items": (
        "order_id",
        "line",
        "product_id",
        "quantity",
        "unit_price",
        "discount",
        "discount_rate",
        "amount",
        "currency",
        "customer_id",
        "timestamp",
        "channel",
        "category",
        "brand",
        "original_order_id",
    ),
    "returns": ("return_id", "order_id", "line", "customer_id", "timestamp", "quantity", "unit_price", "amount", "currency", "product_id"),
    "events": ("event_id", "customer_id", "session_id", "timestamp", "event_type", "product_id"),
    "customers": ("customer_id", "signup_at", "acquisition_channel", "region", "country"),
    "products": ("product_id", "category", "brand", "list_price", "currency"),
    "fx_rates": ("day", "currency", "rate"),
}

#: Fields that must be present (mapped or found under their name) in every source of a kind.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "orders": ("order_id", "customer_id", "timestamp"),
    "order_items": ("order_id",),
    "returns": ("timestamp",),
    "events": ("customer_id", "timestamp", "event_type"),
    "customers": ("customer_id",),
    "products": ("product_id",),
    "fx_rates": ("day", "currency", "rate"),
}

#: Fields whose value may not be empty in a row (empty -> quarantine ``missing_<field>``).
NOT_EMPTY: dict[str, tuple[str, ...]] = {
    "orders": ("order_id", "customer_id", "timestamp"),
    "order_items": ("order_id",),
    "returns": ("timestamp",),
    "events": ("customer_id", "timestamp", "event_type"),
    "customers": ("customer_id",),
    "products": ("product_id",),
    "fx_rates": ("day", "currency", "rate"),
}

#: Primary key of each kind (within the kind's sources and against the store).
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "orders": ("order_id",),
    "order_items": ("order_id", "line"),
    "returns": ("return_id", "line"),
    "events": ("event_id",),
    "customers": ("customer_id",),
    "products": ("product_id",),
    "fx_rates": ("day", "currency"),
}

#: Fields never matched by their own name: they are read only when mapped explicitly.
MAP_ONLY: frozenset[str] = frozenset({"discount", "discount_rate"})

#: Kinds whose extra source columns (mapped to no field) are kept, as JSON, in the ``attributes``
#: column; those of other kinds are named as ignored (:func:`ignored_columns`).
ATTRIBUTE_KINDS: tuple[str, ...] = ("customers", "orders", "order_items", "returns", "events")

_RESERVED = {"ingest_id", "kind", "row_hash", "attributes"}


def extra_fields(kind: str, mapping: Mapping[str, str]) -> tuple[str, ...]:
    """Mapped names that are not canonical fields: extra customer attributes (customers only)."""
    if kind != "customers":
        return ()
    return tuple(k for k in mapping if k not in KIND_FIELDS[kind])


def check_mapping(kind: str, mapping: Mapping[str, str], where: str) -> None:
    """Check the mapping keys of a source of ``kind``.

    Customers may map extra attributes (lower-case names such as
    ``segment``); they are stored as text columns of ``customers``.

    Raises:
        DataError: an unknown canonical name (customers: a name that is not a
            plain lower-case identifier or is reserved), or both ``amount``
            and ``unit_price`` mapped.
    """
    allowed = KIND_FIELDS[kind]
    for key in mapping:
        if key in allowed:
            continue
        if (kind == "customers" and key.isidentifier() and key == key.lower() and key not in _RESERVED
                and not key.startswith("_")):
            continue
        extra = " (or extra attributes as lower-case names)" if kind == "customers" else ""
        raise DataError(f"{where}: unknown field {key!r} in mapping for {kind}; fields are: {', '.join(allowed)}{extra}")
    if "amount" in mapping and "unit_price" in mapping and kind == "returns":
        raise DataError(f"{where}: map either amount or unit_price (amount = quantity x unit_price), not both")


def resolve_fields(kind: str, columns: Sequence[str], mapping: Mapping[str, str], where: str) -> dict[str, str]:
    """Find the source column of every field of ``kind`` present in the source.

    Args:
        kind: the source kind.
        columns: column names found in the source.
        mapping: canonical -> source column (explicit); other fields are
            looked up under their canonical name, except :data:`MAP_ONLY`.
        where: source label for messages.

    Returns:
        canonical field (or extra attribute) -> source column.

    Raises:
        DataError: a mapped column is missing, a required field is missing,
            or the kind's amount rules fail (order_items / returns need
            ``amount`` or ``unit_price`` with ``quantity``; returns need
            ``order_id`` or ``customer_id``); the message lists the columns found.
    """
    found = list(columns)
    listing = ", ".join(found) if found else "(none)"

    def missing(what: str) -> DataError:
        return DataError(f"{where}: {what} not found; columns found: {listing}. Map it under mapping: in sources.yaml")

    out: dict[str, str] = {}
    for canonical, source in mapping.items():
        if source not in found:
            lowered = {c.lower(): c for c in found}
            hint = f" (did you mean {lowered[source.lower()]!r}?)" if source.lower() in lowered else ""
            raise missing(f"column {source!r} (mapped to {canonical}){hint}")
        out[canonical] = source
    for canonical in KIND_FIELDS[kind]:
        if canonical not in out and canonical in found and canonical not in MAP_ONLY:
            out[canonical] = canonical
    for canonical in REQUIRED_FIELDS[kind]:
        if canonical not in out:
            raise missing(f"required column {canonical}")
    if "discount" in out and "discount_rate" in out:
        raise DataError(f"{where}: map either discount (money) or discount_rate (a fraction 0-1), not both")
    if kind in ("order_items", "returns") and "amount" not in out:
        if "unit_price" not in out:
            raise missing("required column amount (or unit_price and quantity)")
        if "quantity" not in out:
            raise missing("required column quantity (amount = quantity x unit_price)")
    if kind == "returns" and "order_id" not in out and "customer_id" not in out:
        raise missing("column order_id or customer_id (a return must name its order or its customer)")
    return out


def ignored_columns(columns: Sequence[str], used: Mapping[str, str], dropped: Sequence[str] = ()) -> list[str]:
    """Source columns that reach no canonical field: not mapped, not matched by name, not dropped as personal.

    Sources of :data:`ATTRIBUTE_KINDS` keep them in the JSON ``attributes``
    column (``ingest_log.mapping`` key ``_attributes``); other kinds do not
    store them, and the ingest names them in its summary and in
    ``ingest_log.mapping`` (key ``_ignored``), so nothing is dropped without a word.
    """
    taken = set(used.values()) | set(dropped)
    return [c for c in columns if c not in taken]
