"""Reading the store: transactions, tables, quarantine, the ingest log, the observation end."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ltvcast.errors import DataError
from ltvcast.schema import QUARANTINE_COLUMNS, TRANSACTION_COLUMNS, empty_transactions
from ltvcast.schema.quarantine import reason_order
from ltvcast.schema.tables import TABLES, columns
from ltvcast.store.connection import StoreConnection, as_utc, quote
from ltvcast.timeutil import DateLike, declared_day

#: Columns of :meth:`Store.transactions`: the canonical ones plus ``kind``.
STORE_TRANSACTION_COLUMNS: tuple[str, ...] = TRANSACTION_COLUMNS + ("kind",)


class StoreReads(StoreConnection):
    """Reads of the documented tables."""

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
        cols = ", ".join(quote(c) for c in STORE_TRANSACTION_COLUMNS)
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
                out[name] = as_utc(frame[name])
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
        frame = self.fetch_df(f"SELECT * FROM {name} ORDER BY rowid")
        types = dict(self.fetch(f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{name}'"))
        for col, type_ in types.items():
            if type_.startswith("TIMESTAMP"):
                frame[col] = as_utc(frame[col])
        return frame

    def quarantine(self) -> pd.DataFrame:
        """All quarantined rows: ``ingest_id``, :data:`QUARANTINE_COLUMNS`, ``kind``; by ingest and row."""
        cols = ", ".join(quote(c) for c in ("ingest_id", *QUARANTINE_COLUMNS, "kind"))
        frame = self._con.execute(
            f"SELECT {cols} FROM quarantine ORDER BY ingest_id, source_row"
        ).df()
        return frame.astype({"ingest_id": np.int64, "source_row": np.int64})

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code over the whole store (reasons with rows only)."""
        counts = dict(self.fetch("SELECT reason, count(*) FROM quarantine GROUP BY reason"))
        return {r: int(counts[r]) for r in reason_order(counts)}

    def quarantine_summary(self) -> pd.DataFrame:
        """Quarantined rows per source, kind and reason: columns ``source``, ``kind``, ``reason``, ``rows``.

        Sorted by source, kind, then reason in display order.
        """
        frame = self.fetch_df(
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
        return self.fetch_df(
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
        cols = ", ".join(quote(c) for c in columns("ingest_log"))
        frame = self._con.execute(f"SELECT {cols} FROM ingest_log ORDER BY ingest_id").df()
        for name in ("first_day", "last_day", "data_end", "started_at"):
            frame[name] = as_utc(frame[name])
        return frame

    # -- the monitoring loop (ltvcast.monitor) ---------------------------------------------------
    def has_table(self, name: str) -> bool:
        """Whether the store has table ``name`` (the monitoring tables exist only after a first log)."""
        return bool(self.fetch("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])[0][0])

    def score_runs(self, model_name: str | None = None) -> pd.DataFrame:
        """The ``score_log`` rows (of registry name ``model_name``, else all) by ``run_id``; empty if none.

        ``cutoff`` comes back as ``datetime64[us, UTC]`` (00:00), ``logged_at`` UTC.
        """
        cols = columns("score_log")
        if not self.has_table("score_log"):
            return pd.DataFrame(columns=list(cols))
        where, params = ("WHERE model_name = ?", [model_name]) if model_name is not None else ("", [])
        frame = self.fetch_df(f"SELECT {', '.join(quote(c) for c in cols)} FROM score_log {where} ORDER BY run_id",
                              params)
        for name in ("cutoff", "logged_at"):
            frame[name] = as_utc(frame[name])
        return frame

    def score_run_predictions(self, run_id: int) -> pd.DataFrame:
        """The logged predictions of one run: ``customer_id, pred_transactions, pred_spend, p_churn`` by customer."""
        if not self.has_table("score_log_predictions"):
            return pd.DataFrame(columns=list(columns("score_log_predictions"))[1:])
        return self.fetch_df(
            "SELECT customer_id, pred_transactions, pred_spend, p_churn FROM score_log_predictions "
            "WHERE run_id = ? ORDER BY customer_id",
            [int(run_id)],
        )

    def monitor_log(self, model: str | None = None) -> pd.DataFrame:
        """The ``monitor_log`` rows (of ``NAME:VERSION`` or registry name ``model``, else all), oldest first."""
        cols = columns("monitor_log")
        if not self.has_table("monitor_log"):
            return pd.DataFrame(columns=list(cols))
        where, params = ("", [])
        if model is not None:
            where, params = "WHERE model = ? OR split_part(model, ':', 1) = ?", [model, model]
        frame = self.fetch_df(f"SELECT {', '.join(quote(c) for c in cols)} FROM monitor_log {where} "
                              'ORDER BY checked_at, "at"', params)
        frame["at"] = as_utc(frame["at"])
        frame["checked_at"] = as_utc(frame["checked_at"])
        return frame

    def observation_end(self) -> pd.Timestamp:
        """Last observed day of the store, tz-aware UTC at 00:00.

        The latest of the declared ``data_end`` values and the last
        transaction day (see the module doc).

        Raises:
            DataError: the store holds no transactions and no declared end.
        """
        declared, last = self.fetch(
            'SELECT (SELECT max(data_end) FROM ingest_log), (SELECT max("timestamp") FROM transactions)'
        )[0]
        days = [pd.Timestamp(v).tz_localize("UTC").normalize() for v in (declared, last) if v is not None]
        if not days:
            raise DataError(f"store {self.path} holds no transactions yet; run `ltvcast ingest` first")
        return max(days)
