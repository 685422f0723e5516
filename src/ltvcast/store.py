"""The DuckDB store: one file holding the canonical tables of a shop.

>>> from ltvcast.data.ingest import ingest
>>> with Store.open("shop.duckdb") as store:            # doctest: +SKIP
...     store.write_ingest(ingest("orders.csv"))
...     tx = store.transactions()
...     end = store.observation_end()

Every ingest is written in one database transaction (all or nothing).
Timestamps are stored as UTC without a zone (``TIMESTAMP``, microseconds), so
SQL on them never depends on a session time zone; :meth:`Store.transactions`
returns them tz-aware (``datetime64[us, UTC]``). The tables are documented in
:data:`STORE_TABLES_DOC` (markdown, copied into the README).

Observation end of a store: the latest of the declared ``data_end`` values
and the last transaction day. (A declared ``data_end`` is checked at write
time against every transaction in the store, so it is only exceeded by data
from a later ingest that declared nothing.)
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pandas as pd

from ltvcast.data.cutoff import DateLike, declared_day
from ltvcast.data.ingest import IngestResult
from ltvcast.data.schema import TRANSACTION_COLUMNS
from ltvcast.data.validate import QUARANTINE_COLUMNS, REASONS, empty_transactions
from ltvcast.errors import DataError

SCHEMA_VERSION = 1

STORE_TABLES_DOC = """\
**`transactions`** — one row per kept transaction (order line).

| column | type | meaning |
|---|---|---|
| ingest_id | INTEGER NOT NULL | the ingest that wrote the row (`ingest_log.ingest_id`) |
| customer_id | VARCHAR NOT NULL | customer id, always text (`00012` keeps its zeros) |
| timestamp | TIMESTAMP NOT NULL | purchase time, UTC, microseconds, stored without zone |
| amount | DOUBLE NOT NULL | value in the shop currency (returns < 0) |
| order_id | VARCHAR | order / invoice number |
| line | BIGINT | line number within the order |
| quantity | DOUBLE | units |
| product_id | VARCHAR | product id |
| category | VARCHAR | product category |
| brand | VARCHAR | brand |
| channel | VARCHAR | sales channel (web, app, store, ...) |
| currency | VARCHAR | ISO currency code of `amount` |

**`quarantine`** — one row per source row that could not be used.

| column | type | meaning |
|---|---|---|
| ingest_id | INTEGER NOT NULL | the ingest that read the row |
| source | VARCHAR NOT NULL | absolute path of the source file |
| source_row | BIGINT NOT NULL | 1-based data row in the file (header not counted, blank lines skipped) |
| reason | VARCHAR NOT NULL | `missing_customer_id`, `missing_timestamp`, `bad_timestamp`, `missing_amount`, `bad_amount`, `bad_quantity` or `bad_line` |
| source_column | VARCHAR | the offending column, as named in the file |
| raw_value | VARCHAR | the offending value, as text |
| raw_row | VARCHAR | the whole row as a JSON object of text values |

**`ingest_log`** — one row per ingest.

| column | type | meaning |
|---|---|---|
| ingest_id | INTEGER PRIMARY KEY | 1, 2, ... in write order, never reused (a replaced ingest gets a new id) |
| source | VARCHAR NOT NULL | absolute path of the source file |
| format | VARCHAR | `csv`, `whitespace` or `parquet` |
| rows_read | BIGINT | data rows in the file |
| rows_kept | BIGINT | rows written to `transactions` |
| rows_quarantined | BIGINT | rows written to `quarantine` |
| duplicates_dropped | BIGINT | export duplicates dropped (repeated order lines) |
| identical_rows_kept | BIGINT | identical rows without order id, kept |
| ids_normalised | BIGINT | float-spelled ids rewritten (`17850.0` → `17850`) |
| first_day | DATE | day of the first kept transaction (UTC) |
| last_day | DATE | day of the last kept transaction (UTC) |
| data_end | DATE | declared last observed day, NULL when not declared |
| mapping | VARCHAR | the column mapping used, as JSON |
| started_at | TIMESTAMP | when the ingest started, UTC |
| seconds | DOUBLE | duration of reading and validating the file |

`rows_read = rows_kept + rows_quarantined + duplicates_dropped` for every ingest.
**`store_meta`** holds `key`, `value` text pairs (`schema_version` = 1).
"""

_TX_TYPES = {
    "customer_id": "VARCHAR NOT NULL",
    "timestamp": "TIMESTAMP NOT NULL",
    "amount": "DOUBLE NOT NULL",
    "order_id": "VARCHAR",
    "line": "BIGINT",
    "quantity": "DOUBLE",
    "product_id": "VARCHAR",
    "category": "VARCHAR",
    "brand": "VARCHAR",
    "channel": "VARCHAR",
    "currency": "VARCHAR",
}
_Q_TYPES = {
    "source": "VARCHAR NOT NULL",
    "source_row": "BIGINT NOT NULL",
    "reason": "VARCHAR NOT NULL",
    "source_column": "VARCHAR",
    "raw_value": "VARCHAR",
    "raw_row": "VARCHAR",
}
_LOG_TYPES = {
    "ingest_id": "INTEGER PRIMARY KEY",
    "source": "VARCHAR NOT NULL",
    "format": "VARCHAR",
    "rows_read": "BIGINT",
    "rows_kept": "BIGINT",
    "rows_quarantined": "BIGINT",
    "duplicates_dropped": "BIGINT",
    "identical_rows_kept": "BIGINT",
    "ids_normalised": "BIGINT",
    "first_day": "DATE",
    "last_day": "DATE",
    "data_end": "DATE",
    "mapping": "VARCHAR",
    "started_at": "TIMESTAMP",
    "seconds": "DOUBLE",
}
assert tuple(_TX_TYPES) == TRANSACTION_COLUMNS
assert tuple(_Q_TYPES) == QUARANTINE_COLUMNS


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ddl(table: str, types: dict[str, str], ingest_col: bool) -> str:
    cols = (["ingest_id INTEGER NOT NULL"] if ingest_col else []) + [
        f"{_q(c)} {t}" for c, t in types.items()
    ]
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})"


def _utc(series: pd.Series) -> pd.Series:
    """Naive-UTC datetime column from DuckDB -> tz-aware ``datetime64[us, UTC]``."""
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").dt.as_unit("us")


class Store:
    """A DuckDB file with the tables in :data:`STORE_TABLES_DOC`.

    Open it with :meth:`open` (a context manager); one process may write to
    a DuckDB file at a time.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only

    def _run(self, sql: str, params: list[object] | None = None) -> list[tuple]:
        """Execute one statement and fetch its result completely."""
        return self._con.execute(sql, params or []).fetchall()

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, read_only: bool = False) -> Store:
        """Open (creating if needed) the store at ``path``.

        Args:
            path: the DuckDB file; parent folders are created.
            read_only: open without write access (the file must exist).

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
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.Error, OSError) as exc:
            raise DataError(f"cannot open store {path}: {exc}") from None
        store = cls(con, path, read_only)
        try:
            if not read_only:
                store._create_tables()
            store._check_version()
        except BaseException:
            con.close()
            raise
        return store

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

    def _create_tables(self) -> None:
        run = self._run
        run("CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        run(_ddl("transactions", _TX_TYPES, True))
        run(_ddl("quarantine", _Q_TYPES, True))
        run(_ddl("ingest_log", _LOG_TYPES, False))
        run(
            "INSERT INTO store_meta SELECT 'schema_version', ? "
            "WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'schema_version')",
            [str(SCHEMA_VERSION)],
        )

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

    # -- writing -----------------------------------------------------------
    def write_ingest(
        self, result: IngestResult, data_end: DateLike | None = None, replace: bool = False
    ) -> int:
        """Write an ingest's transactions, quarantine and log row in one transaction.

        Args:
            result: from :func:`ltvcast.data.ingest.ingest`.
            data_end: declared last observed day (``YYYY-MM-DD``); overrides
                ``result.data_end``.
            replace: if this source was ingested before, delete the earlier
                ingest's rows (and log) first; without it a repeated source
                is refused (it would count every purchase twice).

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
            ingest_id = self._run("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log")[0][0]
            for table in ("transactions", "quarantine", "ingest_log"):
                self._run(
                    f"DELETE FROM {table} WHERE ingest_id IN (SELECT unnest(?::INTEGER[]))",
                    [previous],
                )
            self._insert_transactions(ingest_id, result.transactions)
            self._insert_quarantine(ingest_id, result.quarantine)
            self._insert_log(ingest_id, result, declared)
            if declared is not None:
                last = self._run('SELECT max("timestamp") FROM transactions')[0][0]
                last_day = pd.Timestamp(last).tz_localize("UTC").normalize()
                if declared < last_day:
                    raise DataError(
                        f"data_end {declared.date()} is before the last transaction day "
                        f"{last_day.date()} in {self.path}; declare a data_end on or after it"
                    )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return int(ingest_id)

    def _insert_transactions(self, ingest_id: int, frame: pd.DataFrame) -> None:
        data = frame.loc[:, list(TRANSACTION_COLUMNS)].copy()
        data["timestamp"] = data["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None)
        self._insert_frame("transactions", ingest_id, data, TRANSACTION_COLUMNS)

    def _insert_quarantine(self, ingest_id: int, frame: pd.DataFrame) -> None:
        data = frame.loc[:, list(QUARANTINE_COLUMNS)]
        self._insert_frame("quarantine", ingest_id, data, QUARANTINE_COLUMNS)

    def _insert_frame(
        self, table: str, ingest_id: int, data: pd.DataFrame, columns: tuple[str, ...]
    ) -> None:
        if len(data) == 0:
            return
        view = f"_ltvcast_{table}_in"
        cols = ", ".join(_q(c) for c in columns)
        self._con.register(view, data)
        try:
            self._run(
                f"INSERT INTO {table} (ingest_id, {cols}) SELECT ?, {cols} FROM {view}",
                [ingest_id],
            )
        finally:
            self._con.unregister(view)

    def _insert_log(self, ingest_id: int, result: IngestResult, declared: pd.Timestamp | None) -> None:
        stats = result.stats
        ts = result.transactions["timestamp"]
        first_day = ts.min().date() if len(ts) else None
        last_day = ts.max().date() if len(ts) else None
        row = [
            ingest_id,
            stats.source,
            stats.format,
            stats.rows_read,
            stats.rows_kept,
            stats.rows_quarantined,
            stats.duplicates_dropped,
            stats.identical_rows_kept,
            stats.ids_normalised,
            first_day,
            last_day,
            None if declared is None else declared.date(),
            json.dumps(result.mapping.to_dict(), ensure_ascii=False),
            stats.started_at.tz_convert("UTC").tz_localize(None).to_pydatetime(),
            float(stats.seconds),
        ]
        placeholders = ", ".join("?" * len(row))
        self._run(
            f"INSERT INTO ingest_log ({', '.join(_q(c) for c in _LOG_TYPES)}) VALUES ({placeholders})",
            row,
        )

    # -- reading -----------------------------------------------------------
    def transactions(self, before: DateLike | None = None) -> pd.DataFrame:
        """All transactions as the canonical frame, sorted by customer_id, timestamp.

        Args:
            before: optional cutoff; only rows with ``timestamp`` strictly
                before it (a date means 00:00 UTC of that day).

        Returns:
            Frame with columns :data:`~ltvcast.data.schema.TRANSACTION_COLUMNS`
            and the canonical dtypes (``str`` ids, ``datetime64[us, UTC]``,
            float64 amount/quantity, Int64 line), index 0..n-1; ties keep
            write order.
        """
        cols = ", ".join(_q(c) for c in TRANSACTION_COLUMNS)
        sql = f"SELECT {cols} FROM transactions"
        params: list[object] = []
        if before is not None:
            sql += ' WHERE "timestamp" < ?'
            params.append(declared_day(before, "before").tz_localize(None).to_pydatetime())
        sql += ' ORDER BY customer_id, "timestamp", ingest_id, rowid'
        frame = self._con.execute(sql, params).df()
        template = empty_transactions()
        out = {}
        for name in TRANSACTION_COLUMNS:
            if name == "timestamp":
                out[name] = _utc(frame[name])
            else:
                out[name] = frame[name].astype(template[name].dtype)
        return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))

    def quarantine(self) -> pd.DataFrame:
        """All quarantined rows: ``ingest_id`` then :data:`QUARANTINE_COLUMNS`, by ingest and row."""
        cols = ", ".join(_q(c) for c in ("ingest_id",) + QUARANTINE_COLUMNS)
        frame = self._con.execute(
            f"SELECT {cols} FROM quarantine ORDER BY ingest_id, source_row"
        ).df()
        return frame.astype({"ingest_id": np.int64, "source_row": np.int64})

    def quarantine_counts(self) -> dict[str, int]:
        """Quarantined rows per reason code over the whole store (reasons with rows only)."""
        rows = self._run("SELECT reason, count(*) FROM quarantine GROUP BY reason")
        counts = dict(rows)
        order = [r for r in REASONS if r in counts] + sorted(set(counts) - set(REASONS))
        return {r: int(counts[r]) for r in order}

    def ingest_log(self) -> pd.DataFrame:
        """The ``ingest_log`` table ordered by ingest_id.

        Dates (first_day, last_day, data_end) and started_at come back as
        ``datetime64[us, UTC]`` (days at 00:00); counts as int64.
        """
        cols = ", ".join(_q(c) for c in _LOG_TYPES)
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
