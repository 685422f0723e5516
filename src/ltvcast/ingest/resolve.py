"""Decide the fate of every staged row of a run, given what the store already holds.

Pure pandas, no database: :func:`resolve` takes the staged tables of one
``ltvcast ingest --config`` run and a :class:`StoreContext` (keys, orders,
customers and fx rates already in the store) and returns a
:class:`ResolvedRun` — the rows to insert per canonical table, the keys to
remember, and the quarantine — in this order:

1. ``fx_rates`` (later steps convert with them), 2. ``customers``,
3. ``products``, 4. ``orders``, 5. ``order_items`` (an order is derived
from lines whose order is unknown but which name customer and timestamp),
6. returns from all three paths (:mod:`ltvcast.ingest.returns`). Events
come last and are resolved in the database, where they were staged in
batches (:mod:`ltvcast.ingest.stream`): their tables are streamed, and the
ledger leaves them to it.

Duplicate keys (:data:`ltvcast.ingest.kinds.KIND_KEYS`) are checked first in
each step, against earlier rows of the run and against the store
(:func:`ltvcast.ingest.ledger.classify_keys`). Reasons decided here:
``duplicate_id``, ``unknown_currency``, ``unknown_order``,
``unknown_customer``, ``order_customer_mismatch``.

Money stays in the source currency here (float64 parsed from text, at most
4 decimals); the store multiplies by the rate in DECIMAL arithmetic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.ingest.config import ShopConfig
from ltvcast.ingest.fx import (
    combine_rates,
    empty_rates,
    latest_rates,
    local_day,
    lookup_rates,
)
from ltvcast.ingest.kinds import KIND_KEYS, extra_fields
from ltvcast.ingest.ledger import (
    DUPLICATE,
    KEPT,
    FileCounts,
    Ledger,
    classify_keys,
    key_strings,
)
from ltvcast.ingest.returns import is_cancellation, link_returns, reference_targets
from ltvcast.ingest.staging import StagedTable

#: Stands for "an order in the store without a key of its own" (derived from lines).
DERIVED_HASH = "derived"
_ORDER_COLUMNS = ["order_id", "customer_id", "timestamp", "currency"]
_RETURN_COLUMNS = [
    "return_id", "order_id", "line", "customer_id", "timestamp", "quantity", "unit_price", "discount",
    "amount", "rate", "linked", "product_id", "attributes", "_file",
]


def empty_orders() -> pd.DataFrame:
    """Zero-row known-orders frame: order_id, customer_id, timestamp (UTC), currency."""
    return pd.DataFrame(
        {
            "order_id": pd.Series(dtype=object),
            "customer_id": pd.Series(dtype=object),
            "timestamp": pd.Series(dtype="datetime64[us, UTC]"),
            "currency": pd.Series(dtype=object),
        }
    )


@dataclass
class StoreContext:
    """What the store holds before the run (read inside the run's transaction).

    Attributes:
        keys: kind -> frame of ``key``, ``row_hash`` of every kept row so far.
        orders: ``order_id``, ``customer_id``, ``timestamp`` (UTC), ``currency``.
        customers: every known customer id (customers, orders, transactions).
        rates: fx rates (:func:`ltvcast.ingest.fx.combine_rates` layout).
    """

    keys: dict[str, pd.DataFrame] = field(default_factory=dict)
    orders: pd.DataFrame = field(default_factory=empty_orders)
    customers: frozenset[str] = frozenset()
    rates: pd.DataFrame = field(default_factory=empty_rates)

    def known_keys(self, kind: str) -> pd.DataFrame:
        """``key``, ``row_hash`` of ``kind`` in the store (empty frame if none)."""
        frame = self.keys.get(kind)
        if frame is None:
            return pd.DataFrame({"key": pd.Series(dtype=object), "row_hash": pd.Series(dtype=object)})
        return frame


@dataclass
class ResolvedRun:
    """Outcome of :func:`resolve`.

    Attributes:
        tables: canonical table -> rows to insert, each with ``_file`` (the
            staged table the row came from) and the columns the store
            expects (money in source currency plus ``rate``).
        keys: ``kind``, ``key``, ``row_hash``, ``_file`` of every kept keyed row.
        counts: per staged table, the fate counts (checked:
            read = kept + quarantined + duplicates + excluded); None for a
            streamed table until :func:`ltvcast.ingest.write.write_run` has
            resolved and written it.
        quarantine: per staged table, its quarantine rows
            (:meth:`ltvcast.ingest.ledger.Ledger.quarantine`).
        days: per staged table, (first, last) UTC day of its kept rows, or (None, None).
        customer_attributes: extra customer attribute columns mapped in the run.
    """

    tables: dict[str, pd.DataFrame]
    keys: pd.DataFrame
    counts: list[FileCounts | None]
    quarantine: list[pd.DataFrame]
    days: list[tuple[pd.Timestamp | None, pd.Timestamp | None]]
    customer_attributes: tuple[str, ...] = ()


def _combined(tables: list[StagedTable], kind: str) -> pd.DataFrame:
    parts = []
    for f, t in enumerate(tables):
        if t.spec.kind != kind or t.rows.empty:
            continue
        part = t.rows.copy()
        part["_file"] = f
        part["_prefix"] = t.spec.cancellation_prefix or ""
        part["_declared_currency"] = t.spec.currency
        parts.append(part)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def content_hashes(hashes: pd.Series, attributes: pd.Series | None) -> pd.Series:
    """Row hashes that count a row's ``attributes`` (its extra columns, JSON text) as content.

    Args:
        hashes: :func:`ltvcast.ingest.staging.row_hashes` of the parsed values (32 hex each).
        attributes: JSON text per row, None where the row has none (or no column at all).

    Returns:
        object series on ``hashes``' index: the hash unchanged where a row has no
        attributes (a source without extra columns hashes as before), else
        BLAKE2b-128 of hash + ``\x1f`` + JSON, so a repeat that differs only in
        an extra column is another payload (``duplicate_id``), not a duplicate.
    """
    if attributes is None:
        return hashes.astype(object)
    return pd.Series(
        [hashlib.blake2b(f"{h}\x1f{a}".encode("utf-8"), digest_size=16).hexdigest()
         if isinstance(a, str) else h for h, a in zip(hashes.tolist(), attributes.tolist())],
        index=hashes.index, dtype=object,
    )


def _id_or_hash(ids: pd.Series, hashes: pd.Series) -> pd.Series:
    """``ids``, with ``h:`` + 16 hex of the row hash where the id is missing."""
    missing = ids.isna()
    if not missing.any():
        return ids
    out = ids.astype(object).copy()
    out[missing] = "h:" + hashes[missing].str.slice(0, 16)
    return out


def _coalesce(*series: pd.Series) -> pd.Series:
    out = series[0].astype(object)
    for s in series[1:]:
        out = out.where(out.notna(), s.astype(object))
    return out.where(out.notna(), None)


def _return_candidates(rows: pd.DataFrame, kind: str, ref: pd.Series, alt: pd.Series, line, discount) -> pd.DataFrame:
    """Returns from any path in one layout (see :func:`ltvcast.ingest.returns.link_returns`)."""
    return pd.DataFrame(
        {
            "_file": rows["_file"], "_row": rows["_row"], "_key": rows["_key"], "_hash": rows["_hash"], "_kind": kind,
            "return_id": rows["return_id"] if "return_id" in rows and kind == "returns" else rows["order_id"],
            "line": pd.Series(line, index=rows.index).astype("Int64"),
            "ref": ref, "alt_ref": alt, "customer_id": rows["customer_id"], "timestamp": rows["timestamp"],
            "quantity": rows.get("quantity", np.nan),
            "unit_price": rows.get("unit_price", np.nan),
            "discount": discount, "amount": rows["amount"],
            "currency": _coalesce(rows["currency"], rows["_declared_currency"]),
            "product_id": rows.get("product_id"),
            "attributes": rows.get("attributes"),
        }
    )


class _Run:
    """The state of one resolution (see :func:`resolve`)."""

    def __init__(self, tables: list[StagedTable], ctx: StoreContext, shop: ShopConfig) -> None:
        self.tables = tables
        self.ctx = ctx
        self.shop = shop
        self.ledger = Ledger(tables)
        self.keys: list[pd.DataFrame] = []
        self.out: dict[str, pd.DataFrame] = {}
        self.rates = ctx.rates
        self.run_orders = pd.DataFrame()
        self.derived_orders = pd.DataFrame()
        self.candidates: list[pd.DataFrame] = []

    # -- helpers -------------------------------------------------------------
    @property
    def attributes(self) -> tuple[str, ...]:
        """Extra customer attribute columns mapped by the run's customers sources."""
        names: dict[str, None] = {}
        for t in self.tables:
            names.update(dict.fromkeys(extra_fields(t.spec.kind, t.spec.mapping)))
        return tuple(names)

    def dedupe(self, frame: pd.DataFrame, kind: str, known: pd.DataFrame | None = None) -> pd.DataFrame:
        """Drop duplicate keys (counted), quarantine conflicting ones; return the rest with ``_key``."""
        if frame.empty:
            return frame
        frame["_key"] = key_strings(frame, KIND_KEYS[kind]).to_numpy()  # frames here are the run's own copies
        known = self.ctx.known_keys(kind) if known is None else known
        dup, conflict = classify_keys(frame["_key"], frame["_hash"], known)
        self.ledger.mark(frame[dup], DUPLICATE)
        self.ledger.mark(frame[conflict], "duplicate_id", KIND_KEYS[kind][0])
        return frame[~dup & ~conflict]

    def keep(self, frame: pd.DataFrame, kind: str) -> None:
        """Mark rows kept and remember their keys under ``kind``."""
        self.ledger.mark(frame, KEPT)
        if not frame.empty:
            self.keys.append(
                pd.DataFrame(
                    {
                        "kind": kind,
                        "key": frame["_key"].to_numpy(),
                        "row_hash": frame["_hash"].to_numpy(),
                        "_file": frame["_file"].to_numpy(),
                    }
                )
            )

    def reject(self, frame: pd.DataFrame, mask, reason: str, field: str, values: pd.Series | None = None) -> pd.DataFrame:
        """Quarantine ``frame[mask]`` with ``reason``; return the other rows."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.ledger.mark(frame[mask], reason, field, None if values is None else values[mask])
        return frame[~mask]

    def cancellations(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows are cancellation invoices (each source has its own prefix)."""
        out = np.zeros(len(frame), dtype=bool)
        for prefix, idx in frame.groupby("_prefix", sort=False).indices.items():
            out[idx] = is_cancellation(frame["order_id"].iloc[idx], prefix or None)
        return out

    def references(self, rows: pd.DataFrame, cancel: np.ndarray, own_order_counts: bool) -> tuple[pd.Series, pd.Series]:
        """:func:`~ltvcast.ingest.returns.reference_targets` per source prefix."""
        ref = pd.Series(None, index=rows.index, dtype=object)
        alt = pd.Series(None, index=rows.index, dtype=object)
        for prefix, idx in rows.groupby("_prefix", sort=False).indices.items():
            sub = rows.iloc[idx]
            r, a = reference_targets(sub["order_id"], sub["original_order_id"], cancel[idx], prefix or None, own_order_counts)
            ref.iloc[idx] = r.to_numpy()
            alt.iloc[idx] = a.to_numpy()
        return ref, alt

    def known_orders(self) -> pd.DataFrame:
        """Orders of the store, of the run's orders sources and derived from lines (so far)."""
        parts = [self.ctx.orders] + [f[_ORDER_COLUMNS] for f in (self.run_orders, self.derived_orders) if not f.empty]
        return pd.concat(parts, ignore_index=True)

    def known_customers(self) -> set[str]:
        """Customer ids of the store, the run's customers and the run's orders (so far)."""
        known = set(self.ctx.customers)
        for frame in (self.out.get("customers"), self.run_orders, self.derived_orders):
            if frame is not None and not frame.empty:
                known.update(frame["customer_id"].dropna().tolist())
        return known

    def shop_currency(self, frame: pd.DataFrame) -> pd.Series:
        """The shop currency on ``frame``'s index (the last fallback of a row's currency)."""
        return pd.Series(self.shop.currency, index=frame.index, dtype=object)

    # -- steps ---------------------------------------------------------------
    def fx_rates(self) -> None:
        """Step 1: keep new rates; later steps convert with the store's and the run's rates."""
        fx = self.dedupe(_combined(self.tables, "fx_rates"), "fx_rates")
        if fx.empty:
            return
        self.keep(fx, "fx_rates")
        self.out["fx_rates"] = fx[["day", "currency", "rate", "_file"]].assign(_ts=fx["day"])
        self.rates = combine_rates(self.ctx.rates, fx)

    def customers(self) -> None:
        """Step 2: keep customers (known customers for returns and events)."""
        cust = self.dedupe(_combined(self.tables, "customers"), "customers")
        if cust.empty:
            return
        self.keep(cust, "customers")
        cols = ["customer_id", "signup_at", "acquisition_channel", "region", "country", "attributes", *self.attributes]
        self.out["customers"] = cust[[c for c in cols if c in cust] + ["_file"]]

    def products(self) -> None:
        """Step 3: keep products; list prices at the latest rate of their currency."""
        prod = self.dedupe(_combined(self.tables, "products"), "products")
        if prod.empty:
            return
        currency = _coalesce(prod["currency"], prod["_declared_currency"], self.shop_currency(prod))
        rate = currency.map(latest_rates(self.rates, self.shop.currency)).astype(np.float64)
        priced = prod["list_price"].notna().to_numpy()
        prod = prod.assign(rate=rate.where(priced, 1.0))
        prod = self.reject(prod, priced & rate.isna().to_numpy(), "unknown_currency", "currency", currency)
        self.keep(prod, "products")
        self.out["products"] = prod[["product_id", "category", "brand", "list_price", "rate", "_file"]]

    def orders(self) -> None:
        """Step 4: orders; negative / cancelled ones become return candidates, the rest need a rate."""
        frame = _combined(self.tables, "orders")
        if frame.empty:
            return
        known = self.ctx.known_keys("orders")
        stored = self.ctx.orders["order_id"]
        unkeyed = pd.DataFrame({"key": stored[~stored.isin(known["key"])].to_numpy(), "row_hash": DERIVED_HASH})
        frame = self.dedupe(frame, "orders", pd.concat([known, unkeyed], ignore_index=True))
        cancel = self.cancellations(frame)
        is_return = cancel | (frame["amount"] < 0).fillna(False).to_numpy()
        returns = frame[is_return]
        if not returns.empty:
            ref, alt = self.references(returns, cancel[is_return], own_order_counts=False)
            self.candidates.append(_return_candidates(returns, "orders", ref, alt, pd.NA, np.nan))
        sales = frame[~is_return]
        currency = _coalesce(sales["currency"], sales["_declared_currency"], self.shop_currency(sales))
        rate = lookup_rates(local_day(sales["timestamp"], self.shop.timezone), currency, self.rates, self.shop.currency)
        sales = sales.assign(currency=currency, rate=rate)
        sales = self.reject(sales, rate.isna().to_numpy(), "unknown_currency", "currency", currency)
        self.keep(sales, "orders")
        self.run_orders = sales[
            ["order_id", "customer_id", "timestamp", "channel", "currency", "amount", "rate", "attributes", "_file"]
        ]

    def _number_lines(self, items: pd.DataFrame) -> pd.DataFrame:
        """Lines without a number: identical repeats of one order in one file are export
        duplicates (foundation rule); the rest are numbered after the order's highest line."""
        no_line = items["line"].isna().to_numpy()
        if not no_line.any():
            return items
        sub = items[no_line]
        repeat = sub.duplicated(["_file", "order_id", "_hash"], keep="first").to_numpy()
        self.ledger.mark(sub[repeat], DUPLICATE)
        items = items.drop(index=sub.index[repeat])
        sub = sub[~repeat]
        top = items[items["line"].notna()].groupby(["_file", "order_id"])["line"].max()
        offset = [int(top.get((f, o), 0)) for f, o in zip(sub["_file"], sub["order_id"])]
        numbered = sub.groupby(["_file", "order_id"], sort=False).cumcount().to_numpy() + 1
        items = items.copy()
        items.loc[sub.index, "line"] = (np.asarray(offset, dtype=np.int64) + numbered).astype(np.int64)
        return items

    def order_items(self) -> None:
        """Step 5: lines; negative / cancelled ones become return candidates, the rest link to (or derive) orders."""
        items = _combined(self.tables, "order_items")
        if items.empty:
            return
        items = self.dedupe(self._number_lines(items), "order_items")
        if items.empty:
            return
        total = items["amount"].where(
            items["amount"].notna(), items["quantity"] * items["unit_price"] - items["discount"].fillna(0.0)
        )
        cancel = self.cancellations(items)
        is_return = cancel | (total < 0).fillna(False).to_numpy()
        returns = items[is_return]
        if not returns.empty:
            ref, alt = self.references(returns, cancel[is_return], own_order_counts=True)
            self.candidates.append(
                _return_candidates(returns, "order_items", ref, alt, returns["line"], returns["discount"])
            )
        sales = items[~is_return]
        known = self.known_orders()
        unknown = ~sales["order_id"].isin(known["order_id"]).to_numpy()
        can_derive = unknown & sales["customer_id"].notna().to_numpy() & sales["timestamp"].notna().to_numpy()
        first = sales[can_derive].drop_duplicates("order_id", keep="first")
        derived = pd.DataFrame(
            {
                "order_id": first["order_id"], "customer_id": first["customer_id"], "timestamp": first["timestamp"],
                "channel": first["channel"],
                "currency": _coalesce(first["currency"], first["_declared_currency"], self.shop_currency(first)),
                "amount": np.nan, "rate": np.nan, "attributes": None, "_file": first["_file"],
            }
        )
        orphan = unknown & ~sales["order_id"].isin(derived["order_id"]).to_numpy()
        sales = self.reject(sales, orphan, "unknown_order", "order_id")
        orders = pd.concat([known, derived[_ORDER_COLUMNS]], ignore_index=True).drop_duplicates("order_id")
        order = orders.set_index("order_id").reindex(sales["order_id"].to_numpy())
        order.index = sales.index
        mismatch = (sales["customer_id"].notna() & (sales["customer_id"] != order["customer_id"])).to_numpy()
        sales = self.reject(sales, mismatch, "order_customer_mismatch", "customer_id")
        order = order[~mismatch]
        currency = _coalesce(sales["currency"], sales["_declared_currency"], order["currency"])
        rate = lookup_rates(local_day(order["timestamp"], self.shop.timezone), currency, self.rates, self.shop.currency)
        sales = sales.assign(rate=rate, _ts=order["timestamp"])
        sales = self.reject(sales, rate.isna().to_numpy(), "unknown_currency", "currency", currency)
        self.keep(sales, "order_items")
        self.derived_orders = derived[derived["order_id"].isin(sales["order_id"])]
        self.out["order_items"] = sales[
            ["order_id", "line", "product_id", "quantity", "unit_price", "discount", "amount", "rate",
             "category", "brand", "attributes", "_file", "_ts"]
        ]

    def returns(self) -> None:
        """Step 6: returns of all three paths: link, check the customer, find the rate."""
        source = _combined(self.tables, "returns")
        if not source.empty:
            source["_hash"] = content_hashes(source["_hash"], source.get("attributes"))
            source["return_id"] = _id_or_hash(source["return_id"], source["_hash"])
            # repeats of the store's keys now; repeats within the run once the rejected rows are out (below),
            # so that a quarantined row never claims a key
            source["_key"] = key_strings(source, KIND_KEYS["returns"]).to_numpy()
            known = self.ctx.known_keys("returns")
            in_store = source["_key"].isin(known["key"]).to_numpy()
            self.dedupe(source[in_store].copy(), "returns", known)
            source = source[~in_store]
            if not source.empty:
                none = pd.Series(None, index=source.index, dtype=object)
                ref = source["order_id"].astype(object).where(source["order_id"].notna(), None)
                self.candidates.append(_return_candidates(source, "returns", ref, none, source["line"], np.nan))
        parts = [c for c in self.candidates if not c.empty]
        if not parts:
            return
        cands = link_returns(pd.concat(parts, ignore_index=True), self.known_orders())
        linked = cands["linked"].to_numpy()
        cands = self.reject(cands, ~linked & cands["timestamp"].isna().to_numpy(), "unknown_order", "order_id", cands["return_id"])
        stranger = ~cands["linked"].to_numpy() & ~cands["customer_id"].isin(self.known_customers()).to_numpy()
        cands = self.reject(cands, stranger, "unknown_customer", "customer_id")
        linked = pd.Series(cands["linked"].to_numpy(), index=cands.index)
        currency = _coalesce(cands["currency"], cands["order_currency"].where(linked, None), self.shop_currency(cands))
        timestamp = cands["timestamp"].where(cands["timestamp"].notna(), cands["order_timestamp"])
        rate_day = local_day(cands["order_timestamp"].where(linked, timestamp), self.shop.timezone)
        rate = lookup_rates(rate_day, currency, self.rates, self.shop.currency)
        cands = cands.assign(timestamp=timestamp, currency=currency, rate=rate)
        cands = self.reject(cands, rate.isna().to_numpy(), "unknown_currency", "currency", currency)
        mine = (cands["_kind"] == "returns").to_numpy()
        if mine.any():  # repeats within the run, among the rows not rejected
            kept = self.dedupe(cands[mine].copy(), "returns", self.ctx.known_keys("returns").iloc[:0])
            cands = cands[~mine | cands.index.isin(kept.index)]
        for kind, group in cands.groupby("_kind", sort=False):
            self.keep(group, str(kind))
        self.out["returns"] = cands[_RETURN_COLUMNS].assign(_ts=cands["timestamp"])

    def finish(self) -> ResolvedRun:
        """Check that every row has exactly one fate and assemble the :class:`ResolvedRun`."""
        orders = [f for f in (self.run_orders, self.derived_orders) if not f.empty]
        if orders:
            frame = pd.concat(orders, ignore_index=True)
            self.out["orders"] = frame.assign(_ts=frame["timestamp"])
        counts = self.ledger.check()
        days: list[tuple[pd.Timestamp | None, pd.Timestamp | None]] = [(None, None)] * len(self.tables)
        stamps = []
        for name, frame in self.out.items():
            if "_ts" not in frame or frame.empty:
                continue
            if name == "orders":  # derived orders are counted with their lines
                frame = frame[[self.tables[i].spec.kind == "orders" for i in frame["_file"]]]
            ts = pd.to_datetime(frame["_ts"])
            ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
            stamps.append(ts.dt.as_unit("us").groupby(frame["_file"].to_numpy()).agg(["min", "max"]))
        for part in stamps:
            for f, row in part.iterrows():
                old_first, old_last = days[int(f)]
                first, last = row["min"].normalize(), row["max"].normalize()
                days[int(f)] = (first if old_first is None else min(first, old_first),
                                last if old_last is None else max(last, old_last))
        keys = (
            pd.concat(self.keys, ignore_index=True)
            if self.keys
            else pd.DataFrame({"kind": [], "key": [], "row_hash": [], "_file": []})
        )
        return ResolvedRun(
            tables={k: v.drop(columns=["_ts"], errors="ignore") for k, v in self.out.items()},
            keys=keys,
            counts=counts,
            quarantine=[self.ledger.quarantine(f) for f in range(len(self.tables))],
            days=days,
            customer_attributes=self.attributes,
        )


def resolve(tables: list[StagedTable], ctx: StoreContext, shop: ShopConfig) -> ResolvedRun:
    """Decide, for every row of every staged table, whether it is kept, a duplicate or quarantined.

    Args:
        tables: staged tables of the run, in ``sources.yaml`` order (glob
            files sorted by name within a source); streamed ones (events) are
            left to :class:`ltvcast.ingest.stream.EventStage`.
        ctx: the store's state before the run.
        shop: shop settings (currency, time zone).

    Returns:
        :class:`ResolvedRun`.

    Raises:
        AssertionError: a row got no fate or two (a bug; the caller rolls back).
    """
    run = _Run(tables, ctx, shop)
    run.fx_rates()
    run.customers()
    run.products()
    run.orders()
    run.order_items()
    run.returns()
    return run.finish()
