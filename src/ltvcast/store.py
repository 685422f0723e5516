"""The DuckDB store: one file holding the canonical tables of a shop.

>>> from ltvcast.data.ingest import ingest
>>> with Store.open("shop.duckdb") as store:            # doctest: +SKIP
...     store.write_ingest(ingest("orders.csv"))
...     tx = store.transactions()
...     end = store.observation_end()

Every ingest is written in one database transaction (all or nothing): a
single file by :meth:`Store.write_ingest`, a whole ``sources.yaml`` run by
:func:`ltvcast.data.multisource.ingest_sources` inside
:meth:`Store.transaction`. Timestamps are stored as UTC without a zone
(``TIMESTAMP``, microseconds), so SQL on them never depends on a session
time zone; :meth:`Store.transactions` returns them tz-aware
(``datetime64[us, UTC]``). Money is ``DECIMAL(18,4)``, so sums in SQL are
exact. The tables are documented in :data:`STORE_TABLES_DOC` (generated
from :mod:`ltvcast.data.tables`).

Observation end of a store: the latest of the declared ``data_end`` values
and the last transaction day. (A declared ``data_end`` is checked at write
time against every transaction in the store, so it is only exceeded by data
from a later ingest that declared nothing.)

Schema version 2 (this one) added ``transactions.kind``, DECIMAL amounts,
the multi-source tables and ``store_meta`` shop settings; a version-1 store
is upgraded in place when opened.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from ltvcast.data.cutoff import DateLike, declared_day
from ltvcast.data.ingest import IngestResult
from ltvcast.data.quarantine import reason_order
from ltvcast.data.schema import TRANSACTION_COLUMNS
from ltvcast.data.tables import (
    FOUNDATION_TABLES,
    SCHEMA_VERSION,
    SOURCE_TABLES,
    TABLES,
    columns,
    create_statement,
    tables_doc,
)
from ltvcast.data.validate import QUARANTINE_COLUMNS, empty_transactions
from ltvcast.errors import DataError

if TYPE_CHECKING:
    from ltvcast.data.resolve import ResolvedRun, StoreContext
    from ltvcast.data.staging import StagedTable

STORE_TABLES_DOC = (
    tables_doc(FOUNDATION_TABLES)
    + "\n`rows_read = rows_kept + rows_quarantined + duplicates_dropped` for every ingest.\n"
    "**`store_meta`** holds `key`, `value` text pairs: `schema_version` (2), `shop_currency`, "
    "`shop_timezone` (default `UTC`), `revenue_basis` (`net` or `gross`, default `net`).\n"
)
#: Columns of :meth:`Store.transactions`: the canonical ones plus ``kind``.
STORE_TRANSACTION_COLUMNS: tuple[str, ...] = TRANSACTION_COLUMNS + ("kind",)
SINGLE_FILE_KIND = "transactions"
DEFAULT_META = {"shop_timezone": "UTC", "revenue_basis": "net"}
_DEC4 = "CAST({} AS DECIMAL(38,4))"
_DEC8 = "CAST({} AS DECIMAL(38,8))"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _utc(series: pd.Series) -> pd.Series:
    """Naive-UTC datetime column from DuckDB -> tz-aware ``datetime64[us, UTC]``."""
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").dt.as_unit("us")


def _naive(series: pd.Series) -> pd.Series:
    """tz-aware -> naive UTC (what a TIMESTAMP column holds)."""
    series = pd.to_datetime(series)
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


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
        f"{_money(_DEC4.format('amount'))}, 0, 0, 0 FROM v"
    ),
    "order_items": (
        "INSERT INTO order_items SELECT ingest_id, order_id, line, product_id, quantity, "
        f"CAST({_DEC4.format('unit_price')} AS DECIMAL(18,4)), {_money(_DISCOUNT)}, "
        f"{_money(_line_total())}, category, brand FROM v"
    ),
    "returns": (
        "INSERT INTO returns SELECT ingest_id, return_id, order_id, line, customer_id, timestamp, abs(quantity), "
        f"{_money('abs(' + _line_total() + ')')}, linked, product_id FROM v"
    ),
    "events": "INSERT INTO events SELECT ingest_id, event_id, customer_id, session_id, timestamp, event_type, product_id FROM v",
}

# Derived tables, rebuilt after every ``ingest --config`` run (all in exact DECIMAL). The {placeholders}
# are empty for a full rebuild, or restrict it to the customers in _ltvcast_scope (see _scope_filters).
_RECOMPUTE_ORDERS = """
UPDATE orders SET gross_amount = g.gross, returned_amount = g.returned, net_amount = g.gross - g.returned
FROM (
    SELECT o.order_id,
           CAST(COALESCE(i.total, o.stated_amount, 0) AS DECIMAL(18,4)) AS gross,
           CAST(COALESCE(r.total, 0) AS DECIMAL(18,4)) AS returned
    FROM orders o
    LEFT JOIN (SELECT order_id, SUM(amount) AS total FROM order_items {items} GROUP BY order_id) i USING (order_id)
    LEFT JOIN (SELECT order_id, SUM(amount) AS total FROM returns WHERE linked {returns} GROUP BY order_id) r USING (order_id)
    {orders}
) g
WHERE orders.order_id = g.order_id
"""
_REBUILD_TRANSACTIONS = """
INSERT INTO transactions
SELECT * FROM (
    SELECT i.ingest_id, o.customer_id, o."timestamp", i.amount, i.order_id, i.line, i.quantity, i.product_id,
           COALESCE(i.category, p.category), COALESCE(i.brand, p.brand), o.channel, $currency, 'sale'
    FROM order_items i JOIN orders o USING (order_id) LEFT JOIN products p USING (product_id)
    {orders}
    UNION ALL
    SELECT o.ingest_id, o.customer_id, o."timestamp", o.gross_amount, o.order_id, NULL, NULL, NULL, NULL, NULL,
           o.channel, $currency, 'sale'
    FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.order_id) {and_orders}
    UNION ALL
    SELECT r.ingest_id, r.customer_id, r."timestamp", -r.amount, r.order_id, r.line, -r.quantity, r.product_id,
           p.category, p.brand, o.channel, $currency, 'return'
    FROM returns r LEFT JOIN orders o ON o.order_id = r.order_id LEFT JOIN products p ON p.product_id = r.product_id
    {customers}
) AS t
ORDER BY 2, 3, 5, 6
"""
# The customers whose derived rows the rows of ingest $ingest_id can change: the customers of the orders it
# adds or adds lines or returns to, of the returns it adds, and of earlier returns of the orders it adds.
_TOUCHED = """
CREATE OR REPLACE TEMP TABLE _ltvcast_scope AS
SELECT customer_id FROM orders WHERE order_id IN (
    SELECT order_id FROM orders WHERE ingest_id = $ingest_id
    UNION SELECT order_id FROM order_items WHERE ingest_id = $ingest_id
    UNION SELECT order_id FROM returns WHERE ingest_id = $ingest_id)
UNION SELECT customer_id FROM returns WHERE ingest_id = $ingest_id
UNION SELECT customer_id FROM returns WHERE order_id IN (SELECT order_id FROM orders WHERE ingest_id = $ingest_id)
"""


def _scope_filters(scoped: bool) -> dict[str, str]:
    """The {placeholders} of the derived-table SQL: nothing, or the customers of ``_ltvcast_scope``."""
    if not scoped:
        return dict.fromkeys(("items", "returns", "orders", "and_orders", "customers"), "")
    orders = "order_id IN (SELECT order_id FROM _ltvcast_scope_orders)"
    return {
        "items": f"WHERE {orders}",
        "returns": f"AND {orders}",
        "orders": f"WHERE o.{orders}",
        "and_orders": f"AND o.{orders}",
        "customers": "WHERE r.customer_id IN (SELECT customer_id FROM _ltvcast_scope)",
    }

class Store:
    """A DuckDB file with the tables in :mod:`ltvcast.data.tables`.

    Open it with :meth:`open` (a context manager); one process may write to
    a DuckDB file at a time.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self._in_transaction = False

    def _run(self, sql: str, params: list[object] | dict[str, object] | None = None) -> list[tuple]:
        """Execute one statement and fetch its result completely."""
        return self._con.execute(sql, params or []).fetchall()

    def _df(self, sql: str, params: list[object] | dict[str, object] | None = None) -> pd.DataFrame:
        return self._con.execute(sql, params or []).df()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, read_only: bool = False) -> Store:
        """Open (creating if needed) the store at ``path``.

        Args:
            path: the DuckDB file; parent folders are created.
            read_only: open without write access (the file must exist). A
                version-1 store is upgraded first (briefly opened for writing).

        Returns:
            The :class:`Store`; use it as ``with Store.open(p) as store:``.

        Raises:
            DataError: the file is not a DuckDB database, is locked by another
                process, cannot be created, is missing (``read_only``), or
                was written by an incompatible ltvcast version.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise DataError(f"store {path} does not exist; run `ltvcast ingest` first")
        if read_only and cls._version_of(path) == "1":
            cls.open(path).close()  # upgrade in place, then reopen read-only
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.Error, OSError) as exc:
            raise DataError(f"cannot open store {path}: {exc}") from None
        store = cls(con, path, read_only)
        try:
            con.execute("SET enable_progress_bar = false")  # the library never prints
            if not read_only:
                store._create_or_upgrade()
            store._check_version()
        except BaseException:
            con.close()
            raise
        return store

    @staticmethod
    def _version_of(path: Path) -> str | None:
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error:
            return None
        try:
            rows = con.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchall()
            return rows[0][0] if rows else None
        except duckdb.Error:
            return None
        finally:
            con.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The open DuckDB connection, for SQL reads of the documented tables (features).

        Write only through the store's methods: they keep the derived tables
        and the ingest log consistent.
        """
        return self._con

    def close(self) -> None:
        """Close the database connection (idempotent)."""
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _create_or_upgrade(self) -> None:
        """Create the tables of an empty file, upgrade a version-1 store; leave anything else alone."""
        run = self._run
        existing = {r[0] for r in run("SELECT table_name FROM information_schema.tables")}
        if existing:
            if "store_meta" not in existing:
                return  # not ours: _check_version names it
            version = run("SELECT value FROM store_meta WHERE key = 'schema_version'")
            if version and version[0][0] == "1":
                self._upgrade_from_1()
            elif not version or version[0][0] != str(SCHEMA_VERSION):
                return
        run("CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        for table in TABLES:
            run(create_statement(table))
        run(
            "INSERT INTO store_meta SELECT 'schema_version', ? "
            "WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'schema_version')",
            [str(SCHEMA_VERSION)],
        )
        for key, value in DEFAULT_META.items():
            run(
                "INSERT INTO store_meta SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = ?)",
                [key, value, key],
            )

    def _upgrade_from_1(self) -> None:
        """Schema 1 -> 2: kind columns, DECIMAL amounts, new ingest_log columns (one transaction)."""
        con = self._con
        con.begin()
        try:
            run = self._run
            # DuckDB: every ALTER before the first UPDATE (no index changes with outstanding updates)
            run("ALTER TABLE transactions ADD COLUMN kind VARCHAR DEFAULT 'sale'")
            run("ALTER TABLE transactions ALTER COLUMN kind SET NOT NULL")
            run("ALTER TABLE transactions ALTER COLUMN kind DROP DEFAULT")
            run("ALTER TABLE transactions ALTER COLUMN amount TYPE DECIMAL(18,4)")
            run(f"ALTER TABLE quarantine ADD COLUMN kind VARCHAR DEFAULT '{SINGLE_FILE_KIND}'")
            run("ALTER TABLE quarantine ALTER COLUMN kind SET NOT NULL")
            run("ALTER TABLE quarantine ALTER COLUMN kind DROP DEFAULT")
            for name, type_, _ in TABLES["ingest_log"][15:]:
                default = f" DEFAULT '{SINGLE_FILE_KIND}'" if name == "kind" else ""
                run(f"ALTER TABLE ingest_log ADD COLUMN {_q(name)} {type_}{default}")
            run("ALTER TABLE ingest_log ALTER COLUMN kind DROP DEFAULT")
            run("UPDATE transactions SET kind = 'return' WHERE amount < 0")
            run("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _check_version(self) -> None:
        try:
            rows = self._run("SELECT value FROM store_meta WHERE key = 'schema_version'")
            row = rows[0] if rows else None
        except duckdb.CatalogException:
            row = None
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = "none" if row is None else row[0]
            raise DataError(
                f"{self.path} is not an ltvcast store of schema version {SCHEMA_VERSION} "
                f"(found {found})"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """One database transaction: committed when the block ends, rolled back on any exception.

        Raises:
            DataError: the store is read-only, or a transaction is already open.
        """
        if self.read_only:
            raise DataError(f"store {self.path} is open read-only")
        if self._in_transaction:
            raise DataError("a store transaction is already open")
        self._con.begin()
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._con.rollback()
            raise
        else:
            self._con.commit()
        finally:
            self._in_transaction = False

    # -- settings ----------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """``store_meta`` as a dict: schema_version, shop_timezone (default UTC),
        revenue_basis (default net), shop_currency (absent until a ``--config`` ingest)."""
        out = dict(DEFAULT_META)
        out.update({k: v for k, v in self._run("SELECT key, value FROM store_meta")})
        return out

    def set_shop(self, currency: str, timezone: str, revenue_basis: str) -> None:
        """Record the shop settings of a ``--config`` ingest in ``store_meta``.

        Raises:
            DataError: the store already holds amounts in another shop currency.
        """
        held = self.meta().get("shop_currency")
        if held is not None and held != currency:
            raise DataError(
                f"{self.path} holds amounts in {held}; sources.yaml says shop currency {currency}. "
                "Use one currency per store"
            )
        for key, value in (("shop_currency", currency), ("shop_timezone", timezone), ("revenue_basis", revenue_basis)):
            self._run("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, value])

    # -- single-file writing -----------------------------------------------
    def write_ingest(
        self,
        result: IngestResult,
        data_end: DateLike | None = None,
        replace: bool = False,
        content_hash: str | None = None,
    ) -> int:
        """Write a single-file ingest's transactions, quarantine and log row in one transaction.

        Rows with amount < 0 get ``kind = 'return'``, the others ``'sale'``.

        Args:
            result: from :func:`ltvcast.data.ingest.ingest`.
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
        if self.read_only:
            raise DataError(f"store {self.path} is open read-only")
        declared = declared_day(data_end) if data_end is not None else result.data_end
        stats = result.stats
        if content_hash is None and Path(stats.source).is_file():
            from ltvcast.data.multisource import file_sha256

            content_hash = file_sha256(Path(stats.source))
        con = self._con
        con.begin()
        try:
            previous = [
                r[0]
                for r in self._run("SELECT ingest_id FROM ingest_log WHERE source = ?", [stats.source])
            ]
            if previous and not replace:
                raise DataError(
                    f"{stats.source} was already ingested into {self.path} "
                    f"(ingest {', '.join(map(str, previous))}); ingesting it again would "
                    "count every purchase twice. Use replace (--replace) to replace it"
                )
            same_bytes = (
                []
                if content_hash is None
                else self._run(
                    "SELECT ingest_id, source FROM ingest_log WHERE content_hash = ? AND source <> ?",
                    [content_hash, stats.source],
                )
            )
            if same_bytes:
                raise DataError(
                    f"{stats.source} has the same content as {same_bytes[0][1]}, already ingested into "
                    f"{self.path} (ingest {same_bytes[0][0]}); ingesting it again would count every "
                    "purchase twice"
                )
            ingest_id = self.next_ingest_id()
            self._delete_ingests(previous)
            self._insert_transactions(ingest_id, result.transactions)
            self._insert_quarantine(ingest_id, result.quarantine.assign(kind=SINGLE_FILE_KIND))
            self._insert_log(ingest_id, result, declared, content_hash)
            self._remember("last_ingest_id", ingest_id)
            if declared is not None:
                self._check_data_end(declared)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return int(ingest_id)

    def _counter(self, key: str, column: str) -> int:
        """1 + the largest id ever used (``store_meta`` remembers ids of deleted ingests too)."""
        used = self._run(
            f"SELECT greatest(coalesce((SELECT max({column}) FROM ingest_log), 0), "
            f"coalesce((SELECT CAST(value AS INTEGER) FROM store_meta WHERE key = ?), 0))",
            [key],
        )[0][0]
        return int(used) + 1

    def _remember(self, key: str, value: int) -> None:
        self._run("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, str(int(value))])

    def next_ingest_id(self) -> int:
        """The id the next ingest gets: 1 + the largest ever used (ids are never reused)."""
        return self._counter("last_ingest_id", "ingest_id")

    def _check_data_end(self, declared: pd.Timestamp) -> None:
        last = self._run('SELECT max("timestamp") FROM transactions')[0][0]
        if last is None:
            return
        last_day = pd.Timestamp(last).tz_localize("UTC").normalize()
        if declared < last_day:
            raise DataError(
                f"data_end {declared.date()} is before the last transaction day "
                f"{last_day.date()} in {self.path}; declare a data_end on or after it"
            )

    def _delete_ingests(self, ids: list[int]) -> None:
        if not ids:
            return
        for table in ("transactions", "quarantine", *SOURCE_TABLES, "ingest_log"):
            self._run(f"DELETE FROM {table} WHERE ingest_id IN (SELECT unnest(?::INTEGER[]))", [ids])

    def _insert_transactions(self, ingest_id: int, frame: pd.DataFrame) -> None:
        data = frame.loc[:, list(TRANSACTION_COLUMNS)].copy()
        data["timestamp"] = _naive(data["timestamp"])
        data["amount"] = data["amount"].round(4)
        data["kind"] = np.where(data["amount"] < 0, "return", "sale")
        self._insert_frame("transactions", ingest_id, data, STORE_TRANSACTION_COLUMNS)

    def _insert_quarantine(self, ingest_id: int, frame: pd.DataFrame) -> None:
        data = frame.loc[:, [*QUARANTINE_COLUMNS, "kind"]]
        self._insert_frame("quarantine", ingest_id, data, (*QUARANTINE_COLUMNS, "kind"))

    def _insert_frame(
        self, table: str, ingest_id: int | None, data: pd.DataFrame, cols: tuple[str, ...]
    ) -> None:
        """Insert ``data[cols]``; with ``ingest_id`` None the frame carries its own ``ingest_id``."""
        if len(data) == 0:
            return
        view = f"_ltvcast_{table}_in"
        names = ", ".join(_q(c) for c in cols)
        self._con.register(view, data)
        try:
            if ingest_id is None:
                self._run(f"INSERT INTO {table} (ingest_id, {names}) SELECT ingest_id, {names} FROM {view}")
            else:
                self._run(f"INSERT INTO {table} (ingest_id, {names}) SELECT ?, {names} FROM {view}", [ingest_id])
        finally:
            self._con.unregister(view)

    def _insert_log(
        self, ingest_id: int, result: IngestResult, declared: pd.Timestamp | None, content_hash: str | None
    ) -> None:
        stats = result.stats
        ts = result.transactions["timestamp"]
        self._insert_log_row(
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
                "mapping": json.dumps(result.mapping.to_dict(), ensure_ascii=False),
                "started_at": stats.started_at.tz_convert("UTC").tz_localize(None).to_pydatetime(),
                "seconds": float(stats.seconds),
                "kind": SINGLE_FILE_KIND,
                "content_hash": content_hash,
                "run_id": None,
                "personal_columns_dropped": json.dumps(list(stats.personal_columns_dropped), ensure_ascii=False),
            }
        )

    def _insert_log_row(self, row: dict[str, object]) -> None:
        names = columns("ingest_log")
        placeholders = ", ".join("?" * len(names))
        self._run(
            f"INSERT INTO ingest_log ({', '.join(_q(c) for c in names)}) VALUES ({placeholders})",
            [row.get(c) for c in names],
        )

    # -- multi-source writing (inside Store.transaction) -------------------
    def _need_transaction(self) -> None:
        if not self._in_transaction:
            raise RuntimeError("multi-source writes must run inside Store.transaction()")

    def ingested_sources(self) -> pd.DataFrame:
        """Every logged ingest: ``ingest_id``, ``source``, ``kind``, ``content_hash`` (for skipping and replacing)."""
        return self._df("SELECT ingest_id, source, kind, content_hash FROM ingest_log ORDER BY ingest_id")

    def delete_ingests(self, ids: list[int]) -> None:
        """Delete every row written by the ingests ``ids`` (all tables) and their log rows.

        Derived tables are rebuilt by :meth:`rebuild_derived`, which the
        caller runs before the transaction ends.
        """
        self._need_transaction()
        self._delete_ingests([int(i) for i in ids])

    def ingest_context(self, kinds: set[str]) -> StoreContext:
        """What a ``--config`` run needs to know of the store (see :class:`~ltvcast.data.resolve.StoreContext`).

        Args:
            kinds: the source kinds of the run (keys are read for these only).
        """
        from ltvcast.data.fx import combine_rates
        from ltvcast.data.resolve import StoreContext

        keys = {}
        if kinds:
            frame = self._df(
                "SELECT kind, key, row_hash FROM ingest_keys WHERE kind IN (SELECT unnest(?::VARCHAR[]))", [sorted(kinds)]
            )
            keys = {str(k): g[["key", "row_hash"]].reset_index(drop=True) for k, g in frame.groupby("kind")}
        orders = self._df('SELECT order_id, customer_id, "timestamp", currency FROM orders')
        orders["timestamp"] = _utc(orders["timestamp"])
        for c in ("order_id", "customer_id", "currency"):
            orders[c] = orders[c].astype(object)
        customers = self._run(
            "SELECT customer_id FROM customers UNION SELECT customer_id FROM orders "
            "UNION SELECT customer_id FROM transactions"
        )
        rates = self._df("SELECT day, currency, CAST(rate AS DOUBLE) AS rate FROM fx_rates")
        return StoreContext(
            keys=keys,
            orders=orders,
            customers=frozenset(r[0] for r in customers),
            rates=combine_rates(rates),
        )

    def write_run(
        self,
        run: ResolvedRun,
        tables: list[StagedTable],
        run_id: int,
        started_at: pd.Timestamp,
        data_end: pd.Timestamp | None = None,
    ) -> list[int]:
        """Insert a resolved ``--config`` run: canonical rows, keys, quarantine, one log row per source table.

        Args:
            run: from :func:`ltvcast.data.resolve.resolve`.
            tables: the staged tables the run was resolved from (same order).
            run_id: id of the run (:meth:`next_run_id`).
            started_at: when the run started (UTC).
            data_end: declared last observed day, logged with every table of the run.

        Returns:
            The ingest id of each staged table (same order).

        Raises:
            AssertionError: the rows written per table do not match the
                run's kept counts (a bug; the transaction is rolled back).
        """
        self._need_transaction()
        first = self.next_ingest_id()
        ids = [first + i for i in range(len(tables))]
        if ids:
            self._remember("last_ingest_id", ids[-1])
        id_of = np.asarray(ids, dtype=np.int64)
        for name in run.customer_attributes:
            self._run(f"ALTER TABLE customers ADD COLUMN IF NOT EXISTS {_q(name)} VARCHAR")
        for table, frame in run.tables.items():
            if frame.empty:
                continue
            data = frame.drop(columns=["_file"]).copy()
            data.insert(0, "ingest_id", id_of[frame["_file"].to_numpy(dtype=np.int64)])
            for c in data.columns:
                if pd.api.types.is_datetime64_any_dtype(data[c].dtype):
                    data[c] = _naive(data[c])
            sql = _INSERTS[table]
            if table == "customers":
                names = ", ".join(_q(c) for c in data.columns)
                sql = f"INSERT INTO customers ({names}) SELECT {names} FROM v"
            self._con.register("v", data)
            try:
                self._run(sql)
            finally:
                self._con.unregister("v")
        if len(run.keys):
            keys = run.keys.assign(ingest_id=id_of[run.keys["_file"].to_numpy(dtype=np.int64)])
            self._insert_frame("ingest_keys", None, keys, ("kind", "key", "row_hash"))
        for f, table in enumerate(tables):
            q = run.quarantine[f]
            if len(q):
                q = q.assign(source=table.source, kind=table.spec.kind)
                self._insert_quarantine(ids[f], q)
            counts = run.counts[f]
            first_day, last_day = run.days[f]
            self._insert_log_row(
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
                    "mapping": json.dumps(dict(table.columns), ensure_ascii=False),
                    "started_at": started_at.tz_convert("UTC").tz_localize(None).to_pydatetime(),
                    "seconds": float(table.seconds),
                    "kind": table.spec.kind,
                    "content_hash": table.content_hash,
                    "run_id": run_id,
                    "personal_columns_dropped": json.dumps(table.personal_dropped, ensure_ascii=False),
                }
            )
        self._check_written(run, ids)
        return ids

    def _check_written(self, run: ResolvedRun, ids: list[int]) -> None:
        written: dict[int, int] = {}
        kept_tables = ("fx_rates", "customers", "products", "order_items", "returns", "events")
        for table in kept_tables:
            for ingest_id, n in self._run(
                f"SELECT ingest_id, count(*) FROM {table} WHERE ingest_id >= ? GROUP BY 1", [ids[0] if ids else 0]
            ):
                written[ingest_id] = written.get(ingest_id, 0) + n
        # orders rows of orders sources are kept rows; derived orders (of order_items sources) are not
        for ingest_id, n in self._run(
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

    def next_run_id(self) -> int:
        """The id the next ``--config`` run gets: 1 + the largest ever used; it is reserved at once."""
        run_id = self._counter("last_run_id", "run_id")
        self._remember("last_run_id", run_id)
        return run_id

    def rebuild_derived(self, touched_by: int | None = None) -> None:
        """Recompute orders' gross / returned / net amounts and rebuild the derived ``transactions`` rows.

        ``transactions`` rows of ``--config`` ingests are deleted and rebuilt
        from orders, order_items, returns and products (rows of single-file
        ingests are left alone): one ``sale`` row per order line (an order
        without lines: one row of its gross amount), one ``return`` row per
        return on the return's own timestamp, amount = −money given back.

        Args:
            touched_by: an ingest that only added rows (``ltvcast sync``):
                rebuild only the customers whose derived rows its rows can
                change (see ``_TOUCHED``); the result equals a full rebuild.
                None: rebuild everything.
        """
        self._need_transaction()
        currency = self.meta().get("shop_currency")
        scoped = touched_by is not None
        if scoped:
            self._run(_TOUCHED, {"ingest_id": touched_by})
            self._run(
                "CREATE OR REPLACE TEMP TABLE _ltvcast_scope_orders AS SELECT order_id FROM orders "
                "WHERE customer_id IN (SELECT customer_id FROM _ltvcast_scope)"
            )
        filters = _scope_filters(scoped)
        self._run(_RECOMPUTE_ORDERS.format(**filters))
        self._run(
            "DELETE FROM transactions WHERE ingest_id IN "
            f"(SELECT ingest_id FROM ingest_log WHERE kind <> '{SINGLE_FILE_KIND}')"
            + (" AND customer_id IN (SELECT customer_id FROM _ltvcast_scope)" if scoped else "")
        )
        self._run(_REBUILD_TRANSACTIONS.format(**filters), {"currency": currency})
        if scoped:
            self._run("DROP TABLE _ltvcast_scope_orders")
            self._run("DROP TABLE _ltvcast_scope")

    def write_online(
        self,
        keys: pd.DataFrame,
        tables: dict[str, pd.DataFrame],
        log: dict[str, object],
        meta: dict[str, str] | None = None,
    ) -> tuple[int | None, int]:
        """Write events the online service acknowledged (``ltvcast sync``): each event exactly once.

        One transaction: the events whose id is not yet in ``ingest_keys``
        (kind ``online``) are written as one new ingest (``ingest_log.kind``
        and ``format`` ``online``), their ids are recorded, ``returns.linked``
        is set, the derived tables are rebuilt for the customers the events
        touch (:meth:`rebuild_derived`), and ``meta`` is stored.

        Args:
            keys: one row per event: ``key`` (event id), ``row_hash``.
            tables: rows per canonical table (``orders``, ``order_items``,
                ``returns``, ``events``): the table's columns except
                ``ingest_id``, plus ``key`` (the event the row came from);
                money as exact decimal text, timestamps UTC.
            log: ``ingest_log`` values of the new ingest (``source``,
                ``first_day``, ``last_day``, ``started_at``, ``seconds``,
                ``content_hash``); counts, kind and format are filled in.
            meta: ``store_meta`` pairs to set in the same transaction.

        Returns:
            (the new ingest id, or None when every event was written before;
            the number of events written).

        Raises:
            DataError: the store is read-only, or a row conflicts with one
                already in the store (e.g. an order id of a batch ingest);
                nothing is written.
        """
        with self.transaction():
            ids = keys["key"].astype(str).tolist()
            known = {
                r[0]
                for r in self._run(
                    "SELECT key FROM ingest_keys WHERE kind = 'online' AND key IN (SELECT unnest(?::VARCHAR[]))", [ids]
                )
            } if ids else set()
            new = keys[~keys["key"].isin(known)]
            ingest_id = None
            if len(new):
                ingest_id = self.next_ingest_id()
                self._remember("last_ingest_id", ingest_id)
                wanted = set(new["key"])
                try:
                    for table, frame in tables.items():
                        rows = frame[frame["key"].isin(wanted)].drop(columns="key")
                        for c in rows.columns:
                            if pd.api.types.is_datetime64_any_dtype(rows[c].dtype):
                                rows[c] = _naive(rows[c])
                        self._insert_frame(table, ingest_id, rows, tuple(rows.columns))
                except (duckdb.ConstraintException, duckdb.TransactionException) as exc:
                    # a failed insert aborts the transaction, so the view's cleanup raises next: report the cause
                    cause = exc if isinstance(exc, duckdb.ConstraintException) else exc.__context__
                    if not isinstance(cause, duckdb.ConstraintException):
                        raise
                    raise DataError(f"online events conflict with rows already in {self.path}: {cause}") from None
                self._run(
                    "UPDATE returns SET linked = order_id IS NOT NULL AND order_id IN (SELECT order_id FROM orders) "
                    "WHERE ingest_id = ?",
                    [ingest_id],
                )
                self._insert_frame("ingest_keys", ingest_id, new.assign(kind="online"), ("kind", "key", "row_hash"))
                counts = {"rows_read": len(new), "rows_kept": len(new), "rows_quarantined": 0, "duplicates_dropped": 0,
                          "identical_rows_kept": 0, "ids_normalised": 0}
                row = {"mapping": "{}", "personal_columns_dropped": "[]", **log, **counts}
                self._insert_log_row({**row, "ingest_id": ingest_id, "kind": "online", "format": "online"})
                self.rebuild_derived(touched_by=ingest_id)
            for key, value in (meta or {}).items():
                self._run("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, value])
        return ingest_id, len(new)

    def check_data_end(self, declared: pd.Timestamp | None) -> None:
        """Refuse a declared ``data_end`` before the last transaction day in the store.

        Raises:
            DataError: the message names both dates.
        """
        if declared is not None:
            self._check_data_end(declared)

    # -- reading -----------------------------------------------------------
    def transactions(self, before: DateLike | None = None, customers: Sequence[str] | None = None) -> pd.DataFrame:
        """All transactions as the canonical frame plus ``kind``, sorted by customer_id, timestamp.

        Args:
            before: optional cutoff; only rows with ``timestamp`` strictly
                before it (a date means 00:00 UTC of that day).
            customers: optional customer ids; only their rows.

        Returns:
            Frame with columns :data:`STORE_TRANSACTION_COLUMNS` and the
            canonical dtypes (``str`` ids, ``datetime64[us, UTC]``, float64
            amount/quantity, Int64 line, ``kind`` ``sale``/``return``), index
            0..n-1; ties keep write order. Sum amounts in SQL for exact totals.
        """
        cols = ", ".join(_q(c) for c in STORE_TRANSACTION_COLUMNS)
        sql = f"SELECT {cols} FROM transactions"
        where, params = [], []
        if before is not None:
            where.append('"timestamp" < ?')
            params.append(declared_day(before, "before").tz_localize(None).to_pydatetime())
        if customers is not None:
            where.append("customer_id IN (SELECT unnest(?::VARCHAR[]))")
            params.append([str(c) for c in customers])
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += ' ORDER BY customer_id, "timestamp", ingest_id, rowid'
        frame = self._con.execute(sql, params).df()
        template = empty_transactions()
        out = {}
        for name in TRANSACTION_COLUMNS:
            if name == "timestamp":
                out[name] = _utc(frame[name])
            else:
                out[name] = frame[name].astype(template[name].dtype)
        out["kind"] = frame["kind"].astype(str)
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    def table(self, name: str) -> pd.DataFrame:
        """A whole canonical table (``orders``, ``order_items``, ``returns``, ``events``,
        ``customers``, ``products``, ``fx_rates``) in stored order.

        Timestamps come back ``datetime64[us, UTC]``, money as float64 (sum
        in SQL for exact totals), ids as text.

        Raises:
            DataError: not a table of the store.
        """
        if name not in TABLES:
            raise DataError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        frame = self._df(f"SELECT * FROM {name} ORDER BY rowid")
        types = dict(self._run(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{name}'"))
        for col, type_ in types.items():
            if type_.startswith("TIMESTAMP"):
                frame[col] = _utc(frame[col])
        return frame

    def quarantine(self) -> pd.DataFrame:
        """All quarantined rows: ``ingest_id``, :data:`QUARANTINE_COLUMNS`, ``kind``; by ingest and row."""
        cols = ", ".join(_q(c) for c in ("ingest_id", *QUARANTINE_COLUMNS, "kind"))
        frame = self._con.execute(
            f"SELECT {cols} FROM quarantine ORDER BY ingest_id, source_row"
        ).df()
        return frame.astype({"ingest_id": np.int64, "source_row": np.int64})

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code over the whole store (reasons with rows only)."""
        counts = dict(self._run("SELECT reason, count(*) FROM quarantine GROUP BY reason"))
        return {r: int(counts[r]) for r in reason_order(counts)}

    def quarantine_summary(self) -> pd.DataFrame:
        """Quarantined rows per source, kind and reason: columns ``source``, ``kind``, ``reason``, ``rows``.

        Sorted by source, kind, then reason in display order.
        """
        frame = self._df(
            "SELECT source, kind, reason, count(*) AS rows FROM quarantine GROUP BY ALL"
        )
        order = {r: i for i, r in enumerate(reason_order(frame["reason"].unique()))}
        frame["_o"] = frame["reason"].map(order)
        frame = frame.sort_values(["source", "kind", "_o"]).drop(columns="_o").reset_index(drop=True)
        return frame.astype({"rows": np.int64})

    def quarantine_examples(self, n: int, reason: str | None = None, kind: str | None = None) -> pd.DataFrame:
        """Up to ``n`` quarantined rows per (kind, reason), first rows first.

        Args:
            n: rows per group (≥ 1).
            reason, kind: optional filters.

        Returns:
            Columns ``kind``, ``reason``, ``source``, ``source_row``,
            ``source_column``, ``raw_value``, ``raw_row``.
        """
        where, params = [], []
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        params.append(int(n))
        return self._df(
            "SELECT kind, reason, source, source_row, source_column, raw_value, raw_row FROM ("
            "  SELECT *, row_number() OVER (PARTITION BY kind, reason ORDER BY ingest_id, source_row) AS k"
            f"  FROM quarantine {clause}) WHERE k <= ? ORDER BY kind, reason, ingest_id, source_row",
            params,
        )

    def ingest_log(self) -> pd.DataFrame:
        """The ``ingest_log`` table ordered by ingest_id.

        Dates (first_day, last_day, data_end) and started_at come back as
        ``datetime64[us, UTC]`` (days at 00:00); counts as int64.
        """
        cols = ", ".join(_q(c) for c in columns("ingest_log"))
        frame = self._con.execute(f"SELECT {cols} FROM ingest_log ORDER BY ingest_id").df()
        for name in ("first_day", "last_day", "data_end", "started_at"):
            frame[name] = _utc(frame[name])
        return frame

    def observation_end(self) -> pd.Timestamp:
        """Last observed day of the store, tz-aware UTC at 00:00.

        The latest of the declared ``data_end`` values and the last
        transaction day (see the module doc).

        Raises:
            DataError: the store holds no transactions and no declared end.
        """
        declared, last = self._run(
            'SELECT (SELECT max(data_end) FROM ingest_log), (SELECT max("timestamp") FROM transactions)'
        )[0]
        days = [pd.Timestamp(v).tz_localize("UTC").normalize() for v in (declared, last) if v is not None]
        if not days:
            raise DataError(f"store {self.path} holds no transactions yet; run `ltvcast ingest` first")
        return max(days)
