"""Writing ingests into the store: a single file's result, or a resolved ``--config`` run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.ingest.fx import combine_rates
from ltvcast.ingest.readers import file_sha256
from ltvcast.ingest.resolve import ResolvedRun, StoreContext
from ltvcast.ingest.single import IngestResult
from ltvcast.ingest.staging import StagedTable
from ltvcast.ingest.stream import EventStage
from ltvcast.schema import QUARANTINE_COLUMNS, TRANSACTION_COLUMNS
from ltvcast.store import Store
from ltvcast.store.connection import SINGLE_FILE_KIND, as_naive, as_utc, quote
from ltvcast.store.reads import STORE_TRANSACTION_COLUMNS
from ltvcast.timeutil import DateLike, declared_day

#: The store's memory limit during an ``ingest --config`` run (DuckDB ``memory_limit``): staged
#: events and the joins spill to disk beyond it. :func:`write_run` raises it by :data:`WRITE_ROOM`
#: and by :data:`INDEX_BYTES` per primary-key entry of the tables written, since indexes of
#: uncommitted rows cannot spill.
MEMORY_LIMIT = "128MB"
#: Working memory added while a run is written (joins, sorts and pinned pages beside the indexes).
WRITE_ROOM_MIB = 256
#: Bytes per primary-key index entry: DuckDB 1.x ART measured ~48 (``events.event_id``) and ~73
#: (``ingest_keys``) for 10M short event ids; with a margin for longer keys.
INDEX_BYTES = 80
#: Tables with a primary key, whose index grows with the rows written.
_KEYED = ("customers", "products", "orders", "order_items", "events", "fx_rates", "ingest_keys")

_DEC4 = "CAST({} AS DECIMAL(38,4))"
_DEC8 = "CAST({} AS DECIMAL(38,8))"


def _money(amount: str, rate: str = "rate") -> str:
    """SQL: ``amount`` (source currency) x ``rate`` rounded to 4 decimals, exact."""
    return f"CAST(ROUND({amount} * {_DEC8.format(rate)}, 4) AS DECIMAL(18,4))"


def _line_total(amount: str = "amount", quantity: str = "quantity", price: str = "unit_price", discount: str = "discount") -> str:
    """SQL: the stated line amount, else quantity x unit price − discount (source currency, exact)."""
    qp = f"ROUND({_DEC4.format(quantity)} * {_DEC4.format(price)}, 4)"
    return f"COALESCE({_DEC4.format(amount)}, {qp} - COALESCE({_DEC4.format(discount)}, 0))"



_DISCOUNT = f"COALESCE({_DEC4.format('discount')}, 0)"

# Insert statements of a resolved run: view `v` holds the frame, `ingest_id` resolved.
_INSERTS = {
    "fx_rates": "INSERT INTO fx_rates SELECT ingest_id, CAST(day AS DATE), currency, CAST(rate AS DECIMAL(18,8)) FROM v",
    "customers": None,  # built per run (extra attributes)
    "products": (
        "INSERT INTO products SELECT ingest_id, product_id, category, brand, "
        f"{_money(_DEC4.format('list_price'))} FROM v"
    ),
    "orders": (
        "INSERT INTO orders SELECT ingest_id, order_id, customer_id, timestamp, channel, currency, "
        f"{_money(_DEC4.format('amount'))}, 0, 0, 0, attributes FROM v"
    ),
    "order_items": (
        "INSERT INTO order_items SELECT ingest_id, order_id, line, product_id, quantity, "
        f"CAST({_DEC4.format('unit_price')} AS DECIMAL(18,4)), {_money(_DISCOUNT)}, "
        f"{_money(_line_total())}, category, brand, attributes FROM v"
    ),
    "returns": (
        "INSERT INTO returns (ingest_id, return_id, order_id, line, customer_id, timestamp, quantity, amount, linked, "
        "product_id, attributes) SELECT ingest_id, return_id, order_id, line, customer_id, timestamp, abs(quantity), "
        f"{_money('abs(' + _line_total() + ')')}, linked, product_id, attributes FROM v"
    ),
}


# -- single-file writing -----------------------------------------------
def write_ingest(
    store: Store,
    result: IngestResult,
    data_end: DateLike | None = None,
    replace: bool = False,
    content_hash: str | None = None,
) -> int:
    """Write a single-file ingest's transactions, quarantine and log row in one transaction.

    Rows with amount < 0 get ``kind = 'return'``, the others ``'sale'``.

    Args:
        result: from :func:`ltvcast.ingest.single.ingest`.
        data_end: declared last observed day (``YYYY-MM-DD``); overrides
            ``result.data_end``.
        replace: if this source was ingested before, delete the earlier
            ingest's rows (and log) first; without it a repeated source
            is refused (it would count every purchase twice).
        content_hash: SHA-256 of the file, for the log (computed from
            ``result.stats.source`` when None and the file exists).

    Returns:
        The new ``ingest_id``.

    Raises:
        DataError: the store is read-only; the source was already
            ingested and ``replace`` is False; the declared ``data_end``
            is before the last transaction day in the store (message names
            both dates); or the database refused the write. Nothing is
            written when any error is raised.
    """
    if store.read_only:
        raise DataError(f"store {store.path} is open read-only")
    declared = declared_day(data_end) if data_end is not None else result.data_end
    stats = result.stats
    if content_hash is None and Path(stats.source).is_file():
        content_hash = file_sha256(Path(stats.source))
    with store.transaction():
        previous = [
            r[0]
            for r in store.fetch("SELECT ingest_id FROM ingest_log WHERE source = ?", [stats.source])
        ]
        if previous and not replace:
            raise DataError(
                f"{stats.source} was already ingested into {store.path} "
                f"(ingest {', '.join(map(str, previous))}); ingesting it again would "
                "count every purchase twice. Use replace (--replace) to replace it"
            )
        same_bytes = (
            []
            if content_hash is None
            else store.fetch(
                "SELECT ingest_id, source FROM ingest_log WHERE content_hash = ? AND source <> ?",
                [content_hash, stats.source],
            )
        )
        if same_bytes:
            raise DataError(
                f"{stats.source} has the same content as {same_bytes[0][1]}, already ingested into "
                f"{store.path} (ingest {same_bytes[0][0]}); ingesting it again would count every "
                "purchase twice"
            )
        ingest_id = store.next_ingest_id()
        store.delete_ingests(previous)
        _insert_transactions(store, ingest_id, result.transactions)
        _insert_quarantine(store, ingest_id, result.quarantine.assign(kind=SINGLE_FILE_KIND))
        _insert_log(store, ingest_id, result, declared, content_hash)
        store.remember_id("last_ingest_id", ingest_id)
        store.check_data_end(declared)
    return int(ingest_id)

def _insert_transactions(store: Store, ingest_id: int, frame: pd.DataFrame) -> None:
    data = frame.loc[:, list(TRANSACTION_COLUMNS)].copy()
    data["timestamp"] = as_naive(data["timestamp"])
    data["amount"] = data["amount"].round(4)
    data["kind"] = np.where(data["amount"] < 0, "return", "sale")
    store.insert_frame("transactions", ingest_id, data, STORE_TRANSACTION_COLUMNS)

def _insert_quarantine(store: Store, ingest_id: int, frame: pd.DataFrame) -> None:
    data = frame.loc[:, [*QUARANTINE_COLUMNS, "kind"]]
    store.insert_frame("quarantine", ingest_id, data, (*QUARANTINE_COLUMNS, "kind"))


def _insert_log(store: Store, ingest_id: int, result: IngestResult, declared: pd.Timestamp | None, content_hash: str | None
) -> None:
    stats = result.stats
    ts = result.transactions["timestamp"]
    store.insert_log_row(
        {
            "ingest_id": ingest_id,
            "source": stats.source,
            "format": stats.format,
            "rows_read": stats.rows_read,
            "rows_kept": stats.rows_kept,
            "rows_quarantined": stats.rows_quarantined,
            "duplicates_dropped": stats.duplicates_dropped,
            "identical_rows_kept": stats.identical_rows_kept,
            "ids_normalised": stats.ids_normalised,
            "first_day": ts.min().date() if len(ts) else None,
            "last_day": ts.max().date() if len(ts) else None,
            "data_end": None if declared is None else declared.date(),
            # the exclusion rule is in the mapping; the rows it left out are counted beside it
            "mapping": json.dumps(
                {**result.mapping.to_dict(), **({"_excluded": stats.excluded} if stats.excluded else {})},
                ensure_ascii=False,
            ),
            "started_at": stats.started_at.tz_convert("UTC").tz_localize(None).to_pydatetime(),
            "seconds": float(stats.seconds),
            "kind": SINGLE_FILE_KIND,
            "content_hash": content_hash,
            "run_id": None,
            "personal_columns_dropped": json.dumps(list(stats.personal_columns_dropped), ensure_ascii=False),
        }
    )


def ingest_context(store: Store, kinds: set[str]) -> StoreContext:
    """What a ``--config`` run needs to know of the store (see :class:`~ltvcast.ingest.resolve.StoreContext`).

    Args:
        kinds: the source kinds of the run (keys are read for these only).
    """
    from ltvcast.ingest.resolve import StoreContext

    keys = {}
    if kinds:
        frame = store.fetch_df(
            "SELECT kind, key, row_hash FROM ingest_keys WHERE kind IN (SELECT unnest(?::VARCHAR[]))", [sorted(kinds)]
        )
        keys = {str(k): g[["key", "row_hash"]].reset_index(drop=True) for k, g in frame.groupby("kind")}
    orders = store.fetch_df('SELECT order_id, customer_id, "timestamp", currency FROM orders')
    orders["timestamp"] = as_utc(orders["timestamp"])
    for c in ("order_id", "customer_id", "currency"):
        orders[c] = orders[c].astype(object)
    customers = store.fetch(
        "SELECT customer_id FROM customers UNION SELECT customer_id FROM orders "
        "UNION SELECT customer_id FROM transactions"
    )
    rates = store.fetch_df("SELECT day, currency, CAST(rate AS DOUBLE) AS rate FROM fx_rates")
    return StoreContext(
        keys=keys,
        orders=orders,
        customers=frozenset(r[0] for r in customers),
        rates=combine_rates(rates),
    )

def write_run(store: Store,
    run: ResolvedRun,
    tables: list[StagedTable],
    run_id: int,
    started_at: pd.Timestamp,
    data_end: pd.Timestamp | None = None,
    events: EventStage | None = None,
) -> list[int]:
    """Insert a resolved ``--config`` run: canonical rows, keys, quarantine, one log row per source table.

    Args:
        run: from :func:`ltvcast.ingest.resolve.resolve`; its rows and keys are
            dropped once written, the counts and days of streamed tables filled in.
        tables: the staged tables the run was resolved from (same order).
        run_id: id of the run (:meth:`next_run_id`).
        started_at: when the run started (UTC).
        data_end: declared last observed day, logged with every table of the run.
        events: where the run's streamed events tables are staged; resolved
            and written after the other kinds (their customers and orders
            make customers known).

    Returns:
        The ingest id of each staged table (same order).

    Raises:
        AssertionError: the rows written per table do not match the
            run's kept counts (a bug; the transaction is rolled back).
    """
    store.need_transaction()
    _room_for_indexes(store, sum(len(f) for f in run.tables.values()) + len(run.keys) + 2 * (events.rows if events else 0))
    first = store.next_ingest_id()
    ids = [first + i for i in range(len(tables))]
    if ids:
        store.remember_id("last_ingest_id", ids[-1])
    id_of = np.asarray(ids, dtype=np.int64)
    for name in run.customer_attributes:
        store.fetch(f"ALTER TABLE customers ADD COLUMN IF NOT EXISTS {quote(name)} VARCHAR")
    for table, frame in run.tables.items():
        if frame.empty:
            continue
        data = frame.drop(columns=["_file"]).copy()
        data.insert(0, "ingest_id", id_of[frame["_file"].to_numpy(dtype=np.int64)])
        for c in data.columns:
            if pd.api.types.is_datetime64_any_dtype(data[c].dtype):
                data[c] = as_naive(data[c])
        sql = _INSERTS[table]
        if table == "customers":
            names = ", ".join(quote(c) for c in data.columns)
            sql = f"INSERT INTO customers ({names}) SELECT {names} FROM v"
        store.connection.register("v", data)
        try:
            store.fetch(sql)
        finally:
            store.connection.unregister("v")
    if len(run.keys):
        keys = run.keys.assign(ingest_id=id_of[run.keys["_file"].to_numpy(dtype=np.int64)])
        store.insert_frame("ingest_keys", None, keys, ("kind", "key", "row_hash"))
    run.tables.clear()  # written: free the rows before the events are resolved
    run.keys = run.keys.iloc[:0]
    if events is not None:
        events.write(run.counts, run.days, ids, tables)
    for f, table in enumerate(tables):
        q = run.quarantine[f]
        if len(q):
            q = q.assign(source=table.source, kind=table.spec.kind)
            _insert_quarantine(store, ids[f], q)
        counts = run.counts[f]
        first_day, last_day = run.days[f]
        store.insert_log_row(
            {
                "ingest_id": ids[f],
                "source": table.source,
                "format": table.format,
                "rows_read": counts.rows_read,
                "rows_kept": counts.rows_kept,
                "rows_quarantined": counts.rows_quarantined,
                "duplicates_dropped": counts.duplicates_dropped,
                "identical_rows_kept": 0,
                "ids_normalised": table.ids_normalised,
                "first_day": None if first_day is None else first_day.date(),
                "last_day": None if last_day is None else last_day.date(),
                "data_end": None if data_end is None else data_end.date(),
                "mapping": json.dumps(
                    {**table.columns, "_ignored": list(table.ignored),
                     **({"_attributes": list(table.attributes)} if table.attributes else {}),
                     **({"_excluded": counts.excluded} if counts.excluded else {})},
                    ensure_ascii=False,
                ),
                "started_at": started_at.tz_convert("UTC").tz_localize(None).to_pydatetime(),
                "seconds": float(table.seconds),
                "kind": table.spec.kind,
                "content_hash": table.content_hash,
                "run_id": run_id,
                "personal_columns_dropped": json.dumps(table.personal_dropped, ensure_ascii=False),
            }
        )
    _check_written(store, run, ids)
    return ids

def _room_for_indexes(store: Store, new_entries: int) -> None:
    """Raise the store's memory limit by :data:`WRITE_ROOM_MIB` and by :data:`INDEX_BYTES` per
    primary-key entry the keyed tables will hold (those stored and ``new_entries``), so that
    writing them does not run out of memory."""
    stored = store.fetch("SELECT " + " + ".join(f"(SELECT count(*) FROM {t})" for t in _KEYED))[0][0]
    limit = store.fetch("SELECT current_setting('memory_limit')")[0][0]
    store.fetch(f"SET memory_limit = '{_mib(limit) + WRITE_ROOM_MIB + INDEX_BYTES * (stored + new_entries) // 2**20}MiB'")


def _mib(setting: str) -> int:
    """A DuckDB memory setting (``488.2 MiB``, ``1.5 GiB``) in MiB."""
    number, unit = setting.split()
    return int(float(number) * {"bytes": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 2**10, "TiB": 2**20}[unit])


def _check_written(store: Store, run: ResolvedRun, ids: list[int]) -> None:
    written: dict[int, int] = {}
    kept_tables = ("fx_rates", "customers", "products", "order_items", "returns", "events")
    for table in kept_tables:
        for ingest_id, n in store.fetch(
            f"SELECT ingest_id, count(*) FROM {table} WHERE ingest_id >= ? GROUP BY 1", [ids[0] if ids else 0]
        ):
            written[ingest_id] = written.get(ingest_id, 0) + n
    # orders rows of orders sources are kept rows; derived orders (of order_items sources) are not
    for ingest_id, n in store.fetch(
        "SELECT o.ingest_id, count(*) FROM orders o JOIN ingest_log l USING (ingest_id) "
        "WHERE o.ingest_id >= ? AND l.kind = 'orders' GROUP BY 1",
        [ids[0] if ids else 0],
    ):
        written[ingest_id] = written.get(ingest_id, 0) + n
    for f, ingest_id in enumerate(ids):
        if written.get(ingest_id, 0) != run.counts[f].rows_kept:
            raise AssertionError(
                f"ingest {ingest_id}: {written.get(ingest_id, 0)} rows written but {run.counts[f].rows_kept} kept"
            )

