"""Writing to the store: ids, generic inserts, deletes, derived tables, online events."""

from __future__ import annotations

import duckdb
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.schema.tables import MONITOR_TABLES, SOURCE_TABLES, columns, create_statement
from ltvcast.store.connection import SINGLE_FILE_KIND, StoreConnection, as_naive, quote

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


class StoreWrites(StoreConnection):
    """Writes every ingest path shares (the ingest room composes them: :mod:`ltvcast.ingest.write`)."""

    def _counter(self, key: str, column: str) -> int:
        """1 + the largest id ever used (``store_meta`` remembers ids of deleted ingests too)."""
        used = self.fetch(
            f"SELECT greatest(coalesce((SELECT max({column}) FROM ingest_log), 0), "
            f"coalesce((SELECT CAST(value AS INTEGER) FROM store_meta WHERE key = ?), 0))",
            [key],
        )[0][0]
        return int(used) + 1

    def remember_id(self, key: str, value: int) -> None:
        self.fetch("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, str(int(value))])

    def next_ingest_id(self) -> int:
        """The id the next ingest gets: 1 + the largest ever used (ids are never reused)."""
        return self._counter("last_ingest_id", "ingest_id")

    def _check_data_end(self, declared: pd.Timestamp) -> None:
        last = self.fetch('SELECT max("timestamp") FROM transactions')[0][0]
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
            self.fetch(f"DELETE FROM {table} WHERE ingest_id IN (SELECT unnest(?::INTEGER[]))", [ids])
    def insert_frame(
        self, table: str, ingest_id: int | None, data: pd.DataFrame, cols: tuple[str, ...]
    ) -> None:
        """Insert ``data[cols]``; with ``ingest_id`` None the frame carries its own ``ingest_id``."""
        if len(data) == 0:
            return
        view = f"_ltvcast_{table}_in"
        names = ", ".join(quote(c) for c in cols)
        self._con.register(view, data)
        try:
            if ingest_id is None:
                self.fetch(f"INSERT INTO {table} (ingest_id, {names}) SELECT ingest_id, {names} FROM {view}")
            else:
                self.fetch(f"INSERT INTO {table} (ingest_id, {names}) SELECT ?, {names} FROM {view}", [ingest_id])
        finally:
            self._con.unregister(view)

    # -- the monitoring loop (ltvcast.monitor; tables created on first write) ---------------------
    def ensure_monitor_tables(self) -> None:
        """Create ``score_log``, ``score_log_predictions`` and ``monitor_log`` if missing (idempotent)."""
        for table in MONITOR_TABLES:
            self.fetch(create_statement(table))

    def log_score_run(self, run: dict[str, object], predictions: pd.DataFrame) -> int:
        """Log one scoring run and its predictions (one database transaction); return its ``run_id``.

        Args:
            run: the ``score_log`` columns but ``run_id`` (missing keys are NULL).
            predictions: ``customer_id`` plus ``pred_transactions``, ``pred_spend``,
                ``p_churn`` (missing columns are NULL), one row per customer.

        Raises:
            DataError: duplicate customer ids in ``predictions``.
        """
        if predictions["customer_id"].duplicated().any():
            raise DataError("a scoring run lists a customer twice; cannot log it")
        self.ensure_monitor_tables()
        cols = columns("score_log")
        frame = predictions.reindex(columns=list(columns("score_log_predictions"))[1:])
        self._con.begin()
        try:
            run_id = int(self.fetch("SELECT coalesce(max(run_id), 0) + 1 FROM score_log")[0][0])
            self.fetch(
                f"INSERT INTO score_log ({', '.join(quote(c) for c in cols)}) VALUES ({', '.join('?' * len(cols))})",
                [run_id if c == "run_id" else run.get(c) for c in cols],
            )
            self._con.register("_ltvcast_score_in", frame)
            try:
                self.fetch(
                    "INSERT INTO score_log_predictions SELECT ?, CAST(customer_id AS VARCHAR), "
                    "CAST(pred_transactions AS DOUBLE), CAST(pred_spend AS DOUBLE), CAST(p_churn AS DOUBLE) "
                    "FROM _ltvcast_score_in",
                    [run_id],
                )
            finally:
                self._con.unregister("_ltvcast_score_in")
            self._con.commit()
        except BaseException:
            self._con.rollback()
            raise
        return run_id

    def log_monitor(self, rows: pd.DataFrame) -> None:
        """Append the checks of one monitoring run to ``monitor_log`` (its columns, in any order)."""
        if len(rows) == 0:
            return
        self.ensure_monitor_tables()
        cols = columns("monitor_log")
        self._con.register("_ltvcast_monitor_in", rows.reindex(columns=list(cols)))
        try:
            self.fetch(f"INSERT INTO monitor_log SELECT {', '.join(quote(c) for c in cols)} FROM _ltvcast_monitor_in")
        finally:
            self._con.unregister("_ltvcast_monitor_in")

    def insert_log_row(self, row: dict[str, object]) -> None:
        names = columns("ingest_log")
        placeholders = ", ".join("?" * len(names))
        self.fetch(
            f"INSERT INTO ingest_log ({', '.join(quote(c) for c in names)}) VALUES ({placeholders})",
            [row.get(c) for c in names],
        )

    # -- multi-source writing (inside Store.transaction) -------------------
    def need_transaction(self) -> None:
        if not self._in_transaction:
            raise RuntimeError("multi-source writes must run inside Store.transaction()")

    def ingested_sources(self) -> pd.DataFrame:
        """Every logged ingest: ``ingest_id``, ``source``, ``kind``, ``content_hash`` (for skipping and replacing)."""
        return self.fetch_df("SELECT ingest_id, source, kind, content_hash FROM ingest_log ORDER BY ingest_id")

    def delete_ingests(self, ids: list[int]) -> None:
        """Delete every row written by the ingests ``ids`` (all tables) and their log rows.

        Derived tables are rebuilt by :meth:`rebuild_derived`, which the
        caller runs before the transaction ends.
        """
        self.need_transaction()
        self._delete_ingests([int(i) for i in ids])

    def next_run_id(self) -> int:
        """The id the next ``--config`` run gets: 1 + the largest ever used; it is reserved at once."""
        run_id = self._counter("last_run_id", "run_id")
        self.remember_id("last_run_id", run_id)
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
        self.need_transaction()
        currency = self.meta().get("shop_currency")
        scoped = touched_by is not None
        if scoped:
            self.fetch(_TOUCHED, {"ingest_id": touched_by})
            self.fetch(
                "CREATE OR REPLACE TEMP TABLE _ltvcast_scope_orders AS SELECT order_id FROM orders "
                "WHERE customer_id IN (SELECT customer_id FROM _ltvcast_scope)"
            )
        filters = _scope_filters(scoped)
        self.fetch(_RECOMPUTE_ORDERS.format(**filters))
        self.fetch(
            "DELETE FROM transactions WHERE ingest_id IN "
            f"(SELECT ingest_id FROM ingest_log WHERE kind <> '{SINGLE_FILE_KIND}')"
            + (" AND customer_id IN (SELECT customer_id FROM _ltvcast_scope)" if scoped else "")
        )
        self.fetch(_REBUILD_TRANSACTIONS.format(**filters), {"currency": currency})
        if scoped:
            self.fetch("DROP TABLE _ltvcast_scope_orders")
            self.fetch("DROP TABLE _ltvcast_scope")

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
                for r in self.fetch(
                    "SELECT key FROM ingest_keys WHERE kind = 'online' AND key IN (SELECT unnest(?::VARCHAR[]))", [ids]
                )
            } if ids else set()
            new = keys[~keys["key"].isin(known)]
            ingest_id = None
            if len(new):
                ingest_id = self.next_ingest_id()
                self.remember_id("last_ingest_id", ingest_id)
                wanted = set(new["key"])
                try:
                    for table, frame in tables.items():
                        rows = frame[frame["key"].isin(wanted)].drop(columns="key")
                        for c in rows.columns:
                            if pd.api.types.is_datetime64_any_dtype(rows[c].dtype):
                                rows[c] = as_naive(rows[c])
                        self.insert_frame(table, ingest_id, rows, tuple(rows.columns))
                except (duckdb.ConstraintException, duckdb.TransactionException) as exc:
                    # a failed insert aborts the transaction, so the view's cleanup raises next: report the cause
                    cause = exc if isinstance(exc, duckdb.ConstraintException) else exc.__context__
                    if not isinstance(cause, duckdb.ConstraintException):
                        raise
                    raise DataError(f"online events conflict with rows already in {self.path}: {cause}") from None
                self.fetch(
                    "UPDATE returns SET linked = order_id IS NOT NULL AND order_id IN (SELECT order_id FROM orders) "
                    "WHERE ingest_id = ?",
                    [ingest_id],
                )
                self.insert_frame("ingest_keys", ingest_id, new.assign(kind="online"), ("kind", "key", "row_hash"))
                counts = {"rows_read": len(new), "rows_kept": len(new), "rows_quarantined": 0, "duplicates_dropped": 0,
                          "identical_rows_kept": 0, "ids_normalised": 0}
                row = {"mapping": "{}", "personal_columns_dropped": "[]", **log, **counts}
                self.insert_log_row({**row, "ingest_id": ingest_id, "kind": "online", "format": "online"})
                self.rebuild_derived(touched_by=ingest_id)
            for key, value in (meta or {}).items():
                self.fetch("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, value])
        return ingest_id, len(new)

    def check_data_end(self, declared: pd.Timestamp | None) -> None:
        """Refuse a declared ``data_end`` before the last transaction day in the store.

        Raises:
            DataError: the message names both dates.
        """
        if declared is not None:
            self._check_data_end(declared)

