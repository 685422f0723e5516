"""Between the online store and the DuckDB store: the base (DuckDB -> online) and the sync (online -> DuckDB).

* :func:`refresh_base`: the aggregates per customer, local day and order id
  of the store's own history — every ingest except the ones ``ltvcast
  sync`` wrote — computed by the feature SQL's ``history_orders`` step (the
  same code as :func:`ltvcast.features.rfm_summary`) and loaded into the
  online store, when the store's ingests or time zone changed since the
  last load. The refund rule is applied when a summary is taken
  (:func:`ltvcast.serve.state.summarize`), since it depends on the cutoff.
* :func:`sync`: the log replayed into the store (``ltvcast sync``): every
  acknowledged event exactly once, keyed by its id
  (:meth:`ltvcast.store.Store.write_online`), as rows of ``orders``,
  ``order_items``, ``returns`` and ``events`` (:func:`store_rows`, the
  mapping the service's in-memory mirror uses too); ``transactions`` is
  rebuilt for the customers they touch, so training and backtests see what
  the service acknowledged.
  Progress is kept per log in ``store_meta`` (``online_sync:<log id>``), and
  the ids make a repeated or interrupted sync harmless.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd

from ltvcast.features._sql import Context, check_timezone, render, source_views, store_columns
from ltvcast.serve.events import (
    BrowseEvent,
    Event,
    OrderEvent,
    OrderLineEvent,
    ReturnEvent,
    from_e4,
    parse_event,
    to_e4,
)
from ltvcast.serve.online_store import BaseRow, OnlineStore
from ltvcast.store import Store

_FAR = date(2199, 12, 31)
_STEPS = ("history_lines", "history_orders")


@dataclass(frozen=True)
class ShopSettings:
    """What the service needs of the store: time zone (local days), revenue basis, currency (None if unset)."""

    timezone: str
    revenue_basis: str
    currency: str | None


def shop_settings(store: Store) -> ShopSettings:
    """The store's shop settings (``store_meta``).

    Raises:
        DataError: the recorded time zone is not an IANA zone.
    """
    meta = store.meta()
    return ShopSettings(check_timezone(meta["shop_timezone"]), meta["revenue_basis"], meta.get("shop_currency"))


def _batch_ingests(store: Store) -> list[int]:
    rows = store.connection.execute(
        "SELECT ingest_id FROM ingest_log WHERE kind IS DISTINCT FROM 'online' ORDER BY ingest_id"
    ).fetchall()
    return [int(r[0]) for r in rows]


def base_fingerprint(store: Store) -> str:
    """Identity of the store's batch history: its non-online ingest ids and the shop's time zone."""
    ids = ",".join(map(str, _batch_ingests(store)))
    return hashlib.sha256(f"{shop_settings(store).timezone}|{ids}".encode()).hexdigest()[:32]


def base_rows(store: Store) -> Iterator[BaseRow]:
    """Per customer, local day and order id of the batch history: :data:`~ltvcast.serve.online_store.BaseRow`.

    ``(customer_id, day, order_id, sales, returned, sale_rows, orders,
    return_rows)``: sale orders on their day under their own id, refunds on
    their own day under the order id they name (``""``: none; sales without
    an order id are summed per day under ``""``). Money in 1/10,000 units;
    ``day`` in days since 1970-01-01 (shop time zone). Computed on a cursor
    of its own (temporary views), so the store's connection is left as it was.
    """
    settings = shop_settings(store)
    con = store.connection.cursor()
    try:
        catalog = con.execute("SELECT current_database()").fetchone()[0].replace('"', '""')
        columns = store_columns(con)
        con.execute(
            f'CREATE TEMP VIEW transactions AS SELECT * FROM "{catalog}".main.transactions '
            "WHERE ingest_id NOT IN (SELECT ingest_id FROM ingest_log WHERE kind = 'online')"
        )
        con.execute(source_views(columns)["transactions"])
        ctx = Context(_FAR, settings.timezone, (), settings.revenue_basis, "buyers", (), _FAR)
        for step in _STEPS:
            con.execute(render(step, ctx))
        day = ctx.variables()["local_day"]("ts")
        result = con.execute(
            f"SELECT customer_id, CAST({day} - DATE '1970-01-01' AS BIGINT) AS day, COALESCE(order_id, '') AS oid, "
            "CAST(SUM(CASE WHEN kind = 'sale' THEN amount ELSE 0 END) * 10000 AS BIGINT), "
            "CAST(0 - SUM(CASE WHEN kind = 'return' THEN amount ELSE 0 END) * 10000 AS BIGINT), "
            "CAST(SUM(CASE WHEN kind = 'sale' THEN n_lines ELSE 0 END) AS BIGINT), "
            "CAST(SUM(CASE WHEN kind = 'sale' THEN 1 ELSE 0 END) AS BIGINT), "
            "CAST(SUM(CASE WHEN kind = 'return' THEN n_lines ELSE 0 END) AS BIGINT) "
            "FROM h_orders GROUP BY customer_id, day, oid"
        )
        while rows := result.fetchmany(50_000):
            yield from rows
    finally:
        con.close()


def refresh_base(store: Store, online: OnlineStore, force: bool = False) -> bool:
    """Load the store's batch history into the online store if it changed (or ``force``).

    Also records the shop settings in the online store and, when the shop's
    time zone differs from the one the online state was built in, rebuilds
    that state from the log.

    Returns:
        True when the base was (re)loaded.
    """
    settings = shop_settings(store)
    meta = online.meta()
    online.ensure_log_id()
    if meta.get("state_timezone", settings.timezone) != settings.timezone:
        online.rebuild_state(settings.timezone)
    online.set_meta(
        {
            "timezone": settings.timezone,
            "state_timezone": settings.timezone,
            "revenue_basis": settings.revenue_basis,
            "currency": settings.currency or "",
        }
    )
    fingerprint = base_fingerprint(store)
    if not force and meta.get("base_fingerprint") == fingerprint:
        return False
    online.replace_base(base_rows(store), fingerprint)
    return True


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync` did: events read from the log, written to the store, the new ingest id (or None)."""

    read: int
    written: int
    ingest_id: int | None


def _utc_naive(ts: datetime) -> pd.Timestamp:
    return pd.Timestamp(ts.astimezone(timezone.utc).replace(tzinfo=None))


@dataclass(frozen=True)
class StoreRows:
    """Acknowledged events as the store's rows: what :meth:`ltvcast.store.Store.write_online` takes.

    Attributes:
        keys: one row per event: ``key`` (event id), ``row_hash`` (SHA-256 of its canonical JSON).
        tables: rows per canonical table (``orders``, ``order_items``,
            ``returns``, ``events``; only tables with rows), each with the
            ``key`` of its event; money as exact decimal text, times naive UTC.
        first_day, last_day: UTC days of the first and last timed event (None without one).
        content_hash: SHA-256 over the sorted keys and row hashes.
    """

    keys: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    first_day: date | None
    last_day: date | None
    content_hash: str


def store_rows(events: Iterable[tuple[Event, str]], currency: str) -> StoreRows:
    """Map events to the store's canonical rows: the one mapping ``ltvcast sync`` and the service's mirror use.

    Args:
        events: ``(event, its canonical JSON)`` pairs (:func:`~ltvcast.serve.events.event_json`).
        currency: ``orders.currency`` of orders that state none.

    Returns:
        :class:`StoreRows`: an order is an ``orders`` row (amounts derived
        by the store), an order line an ``order_items`` row, a return a
        ``returns`` row (``return_id`` defaults to the event id), a browse
        event an ``events`` row.
    """
    rows: dict[str, list[dict]] = {"orders": [], "order_items": [], "returns": [], "events": []}
    keys, times = [], []
    for ev, body in events:
        keys.append({"key": ev.id, "row_hash": hashlib.sha256(body.encode()).hexdigest()})
        if isinstance(ev, OrderEvent):
            times.append(ev.timestamp)
            rows["orders"].append({
                "key": ev.id, "order_id": ev.order_id, "customer_id": ev.customer_id,
                "timestamp": _utc_naive(ev.timestamp), "channel": ev.channel,
                "currency": (ev.currency or currency).upper(),
                "stated_amount": None if ev.stated_e4 is None else from_e4(ev.stated_e4),
                "gross_amount": "0", "returned_amount": "0", "net_amount": "0",
            })
        elif isinstance(ev, OrderLineEvent):
            rows["order_items"].append({
                "key": ev.id, "order_id": ev.order_id, "line": ev.line, "product_id": ev.product_id,
                "quantity": ev.quantity, "unit_price": None if ev.unit_price is None else from_e4(to_e4(ev.unit_price)),
                "discount": None if ev.discount is None else from_e4(to_e4(ev.discount)),
                "amount": from_e4(ev.amount_e4), "category": ev.category, "brand": ev.brand,
            })
        elif isinstance(ev, ReturnEvent):
            times.append(ev.timestamp)
            rows["returns"].append({
                "key": ev.id, "return_id": ev.return_id or ev.id, "order_id": ev.order_id, "line": ev.line,
                "customer_id": ev.customer_id, "timestamp": _utc_naive(ev.timestamp), "quantity": ev.quantity,
                "amount": from_e4(to_e4(ev.amount)), "linked": False, "product_id": ev.product_id,
            })
        else:
            assert isinstance(ev, BrowseEvent)
            times.append(ev.timestamp)
            rows["events"].append({
                "key": ev.id, "event_id": ev.id, "customer_id": ev.customer_id, "session_id": ev.session_id,
                "timestamp": _utc_naive(ev.timestamp), "event_type": ev.event_type, "product_id": ev.product_id,
            })
    digest = hashlib.sha256("\n".join(sorted(f"{k['key']}\t{k['row_hash']}" for k in keys)).encode()).hexdigest()
    return StoreRows(
        keys=pd.DataFrame(keys, columns=["key", "row_hash"]),
        tables={t: pd.DataFrame(r) for t, r in rows.items() if r},
        first_day=min(times).astimezone(timezone.utc).date() if times else None,
        last_day=max(times).astimezone(timezone.utc).date() if times else None,
        content_hash=digest,
    )


def sync(store: Store, online: OnlineStore, currency: str | None = None) -> SyncResult:
    """Replay the online log into ``store`` (see the module doc); idempotent.

    Args:
        store: the DuckDB store, open for writing.
        online: the online store whose log is replayed.
        currency: the shop currency for ``orders.currency`` of orders that
            state none (default: the store's, else ``XXX``).

    Raises:
        DataError: a row conflicts with the store (nothing is written).
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    log_id = online.ensure_log_id()
    progress_key = f"online_sync:{log_id}"
    after = int(store.meta().get(progress_key, "0"))
    currency = currency or shop_settings(store).currency or "XXX"
    entries, last = [], after
    for entry in online.iter_log(after):
        entries.append((parse_event(entry.body), entry.body))
        last = entry.seq
    rows = store_rows(entries, currency)
    log = {
        "source": f"online:{online.description}#seq={after + 1}-{last}",
        "first_day": rows.first_day,
        "last_day": rows.last_day,
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "content_hash": rows.content_hash,
    }
    ingest_id, written = store.write_online(rows.keys, rows.tables, log, {progress_key: str(last)})
    return SyncResult(len(rows.keys), written, ingest_id)
