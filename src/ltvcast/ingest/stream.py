"""Events sources in bounded memory: staged in the database batch by batch, resolved and written with SQL.

An events source is the large one (browsing, e-mail: tens of millions of
rows), so it is never held whole in Python. :meth:`EventStage.stage` reads
it in batches (:func:`ltvcast.ingest.readers.read_batches`), parses each
batch exactly as any source (:func:`ltvcast.ingest.staging.stage_table`) and
appends the good rows, with their raw text, to a temporary table of the
store's connection; the bad rows go to a temporary quarantine table at once.
Inside the run's transaction, once the other kinds are written,
:meth:`EventStage.write` decides every staged row's fate in SQL, with the
rules :mod:`ltvcast.ingest.resolve` applies to the other kinds:

1. the key is ``event_id``, or ``h:`` + 16 hex of the row hash when the
   source has none;
2. a key already in the store (``ingest_keys``, kind ``events``) or earlier
   in the run (earlier source, then earlier row, of a known customer: a
   quarantined row never claims a key) is a *duplicate* when the row hash
   (parsed values and ``attributes``,
   :func:`ltvcast.ingest.resolve.content_hashes`) equals the first one's
   (dropped, counted), else quarantined ``duplicate_id``;
3. a customer that is in none of ``customers``, ``orders`` (the run's
   included) and ``transactions`` is quarantined ``unknown_customer``;
4. the rest is kept.

Quarantine rows carry the same row numbers, reasons, columns, values and
raw rows (JSON of the row's text) as in memory, and the counts add up:
``rows_read = kept + quarantined + duplicates + excluded`` per source.
The database works under :data:`ltvcast.ingest.write.MEMORY_LIMIT` during
the run and spills to its temporary directory beyond it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ltvcast.ingest.config import ShopConfig, SourceSpec
from ltvcast.ingest.kinds import KIND_KEYS
from ltvcast.ingest.ledger import DUPLICATE, KEPT, FileCounts, Ledger, check_counts
from ltvcast.ingest.parse import number_format
from ltvcast.ingest.readers import RawTable, ReadAgain
from ltvcast.ingest.resolve import content_hashes
from ltvcast.ingest.staging import StagedTable, stage_table
from ltvcast.store import Store
from ltvcast.store.connection import as_naive, quote

#: Parsed columns of a staged event row (then the raw text columns ``r0``, ``r1``, ...).
_PARSED = (
    ("_row", "BIGINT"), ("_hash", "VARCHAR"), ("event_id", "VARCHAR"), ("customer_id", "VARCHAR"),
    ("session_id", "VARCHAR"), ("timestamp", "TIMESTAMP"), ("event_type", "VARCHAR"), ("product_id", "VARCHAR"),
    ("attributes", "VARCHAR"),
)
_QUARANTINE = "_ltvcast_events_quarantine"
_FATE = "_ltvcast_events_fate"
_REJECTED = "_ltvcast_events_rejected"
#: Orders rows across sources: ``_file * _ORDER + _row`` (sources < 9e6, rows < 1e12).
_ORDER = 10**12
#: Quarantine rows turned into JSON per step (bounded memory).
_PAGE = 100_000


def _key_sql(alias: str = "") -> str:
    """SQL: the event's key (its id, else ``h:`` + 16 hex of the row hash; :func:`ltvcast.ingest.resolve._id_or_hash`)."""
    return f"coalesce({alias}event_id, 'h:' || substr({alias}_hash, 1, 16))"


@dataclass
class _Source:
    """One staged events source table: where its rows are and what the batches counted."""

    table: str
    raw_columns: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    ids_normalised: int = 0


def raw_text(raw: pa.Table) -> list[pa.Array]:
    """The columns of a staged table's raw text as the quarantine shows them (:class:`~ltvcast.ingest.ledger.Ledger`):
    text, ``""`` where missing; timestamps (Parquet, Excel) as pandas writes them."""
    out = []
    for column in raw.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            out.append(pc.fill_null(column, "").combine_chunks())
        else:
            values = column.to_pandas()
            out.append(pa.array(["" if pd.isna(v) else str(v) for v in values], type=pa.string()))
    return out


class EventStage:
    """The events sources of one ``ingest --config`` run, staged in temporary tables of ``store``.

    Use :meth:`stage` for each events source table (before the run's
    transaction), :meth:`write` inside it, and :meth:`drop` at the end
    (whatever happened).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sources: dict[int, _Source] = {}
        self._quarantine_made = False

    # -- staging -------------------------------------------------------------
    def stage(
        self,
        f: int,
        batches: Callable[[str | None, bool], Iterator[tuple[int, RawTable]]],
        spec: SourceSpec,
        shop: ShopConfig,
        source: str,
        fmt: str,
        content_hash: str,
        id_key: bytes | None,
    ) -> StagedTable:
        """Stage one events source table batch by batch.

        Args:
            f: the table's position among the run's staged tables (``_file``).
            batches: ``batches(encoding, lenient)`` iterates the source as
                :func:`~ltvcast.ingest.readers.read_batches` does (first call:
                ``(spec.encoding, False)``); called again when it raises
                :class:`~ltvcast.ingest.readers.ReadAgain`, the rows staged so
                far discarded.
            spec, shop, content_hash, id_key: as for :func:`~ltvcast.ingest.staging.stage_table`.
            source: the label stored with its rows (absolute path or database label).
            fmt: the reader format.

        Returns:
            A :class:`StagedTable` with ``streamed`` set: names, columns and
            counts of staging; its rows are in the database.

        Raises:
            DataError: as :func:`~ltvcast.ingest.staging.stage_table` and the readers.
        """
        t0 = time.perf_counter()
        encoding, lenient = spec.encoding, False
        while True:
            try:
                return self._stage_once(f, batches(encoding, lenient), spec, shop, source, fmt, content_hash, id_key, t0)
            except ReadAgain as again:
                encoding, lenient = again.encoding, again.lenient
                self._discard(f)

    def _stage_once(self, f, batches, spec, shop, source, fmt, content_hash, id_key, t0) -> StagedTable:
        con = self.store.connection
        self._make_quarantine()
        name = f"_ltvcast_events_{f}"
        staged = self.sources[f] = _Source(name)
        dates: dict[str, dict[str, str]] = {}
        first: StagedTable | None = None
        for offset, raw in batches:
            raw = RawTable(frame=raw.frame, source=source, format=raw.format, encoding=raw.encoding, bad_rows=raw.bad_rows)
            with number_format(spec.decimal):
                part = stage_table(raw, spec, shop, content_hash, id_key, dates)
            if first is None:
                first = part
                staged.columns = part.columns
                staged.raw_columns = [str(c) for c in part.raw.column_names]
                cols = [*(f"{quote(c)} {t}" for c, t in _PARSED), *(f"r{i} VARCHAR" for i in range(len(staged.raw_columns)))]
                con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({', '.join(cols)})")
            self._append(f, name, part, offset)
            staged.rows_read += part.rows_read
            staged.ids_normalised += part.ids_normalised
            for k, n in part.excluded.items():
                staged.excluded[k] = staged.excluded.get(k, 0) + n
        assert first is not None, "a reader yields at least one batch"
        # the order the whole-table rule gives: rule by rule, value by value
        order = [f"{k}={v}" for k, values in spec.exclude.items() for v in values]
        excluded = {k: staged.excluded[k] for k in order if k in staged.excluded}
        table = StagedTable(
            spec=spec, source=source, format=fmt, content_hash=content_hash, raw=pa.table({}),
            columns=staged.columns, rows=first.rows.iloc[:0], bad=first.bad.iloc[:0],
            ids_normalised=staged.ids_normalised, personal_dropped=first.personal_dropped,
            ignored=first.ignored, excluded=excluded, attributes=first.attributes, streamed=True,
        )
        table.rows_read = staged.rows_read
        table.seconds = time.perf_counter() - t0
        return table

    def _append(self, f: int, name: str, part: StagedTable, offset: int) -> None:
        """Append a staged batch: its good rows (parsed and raw text) to ``name``, its bad rows to the quarantine."""
        rows = part.rows
        data: dict[str, pa.Array] = {
            "_row": pa.array(rows["_row"].to_numpy(dtype=np.int64) + offset, type=pa.int64()),
            "_hash": pa.array(content_hashes(rows["_hash"], rows.get("attributes")), type=pa.string(), from_pandas=True),
        }
        for c, _ in _PARSED[2:]:
            if c == "timestamp":
                data[c] = pa.array(as_naive(rows[c]).dt.as_unit("us"), type=pa.timestamp("us"), from_pandas=True)
            elif c in rows:
                data[c] = pa.array(rows[c].astype(object), type=pa.string(), from_pandas=True)
            else:
                data[c] = pa.nulls(len(rows), type=pa.string())
        good = part.raw.take(pa.array(rows.index.to_numpy(dtype=np.int64), type=pa.int64()))
        for i, column in enumerate(raw_text(good)):
            data[f"r{i}"] = column
        self._insert(name, pa.table(data))
        if len(part.bad):
            q = Ledger([part]).quarantine(0)
            if len(q):
                q["source_row"] += offset
                self._insert(_QUARANTINE, pa.Table.from_pandas(
                    q.assign(_file=f)[["_file", *q.columns]], preserve_index=False))

    def _insert(self, table: str, data: pa.Table) -> None:
        con = self.store.connection
        con.register("_ltvcast_batch", data)
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM _ltvcast_batch")
        finally:
            con.unregister("_ltvcast_batch")

    def _make_quarantine(self) -> None:
        if not self._quarantine_made:
            self.store.connection.execute(
                f"CREATE OR REPLACE TEMP TABLE {_QUARANTINE} (_file INTEGER, source_row BIGINT, reason VARCHAR, "
                "source_column VARCHAR, raw_value VARCHAR, raw_row VARCHAR)"
            )
            self._quarantine_made = True

    def _discard(self, f: int) -> None:
        """Forget what was staged of table ``f`` (it is read again)."""
        con = self.store.connection
        con.execute(f"DROP TABLE IF EXISTS {self.sources[f].table}")
        con.execute(f"DELETE FROM {_QUARANTINE} WHERE _file = ?", [f])
        del self.sources[f]

    # -- resolving and writing ---------------------------------------------
    def write(self, counts: list[FileCounts | None], days: list, ids: list[int], tables: list[StagedTable]) -> None:
        """Resolve the staged rows and write them: ``events``, ``ingest_keys``, ``quarantine``.

        Call inside the run's transaction, after the run's customers and
        orders are written (they make customers known). Fills ``counts[f]``
        and ``days[f]`` (first and last UTC day of the kept rows) of every
        staged table ``f``.

        Args:
            counts, days: the run's lists (:class:`~ltvcast.ingest.resolve.ResolvedRun`), filled in place.
            ids: the ingest id of every staged table of the run.
            tables: the run's staged tables.

        Raises:
            AssertionError: the counts of a table do not add up (a bug; the transaction is rolled back).
        """
        if not self.sources:
            return
        self.store.need_transaction()
        con = self.store.connection
        union = " UNION ALL ".join(
            f"SELECT {f} AS _file, _row, _file * {_ORDER} + _row AS ord, _hash, {_key_sql()} AS key, customer_id "
            f"FROM {s.table}"
            for f, s in sorted(self.sources.items())
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {_FATE} AS
            WITH known AS (SELECT customer_id FROM customers UNION SELECT customer_id FROM orders
                           UNION SELECT customer_id FROM transactions),
            s AS (SELECT u.*, k.customer_id IS NOT NULL AS is_known FROM ({union}) u
                  LEFT JOIN known k ON k.customer_id = u.customer_id),
            firsts AS (SELECT key, min(ord) AS first, arg_min(_hash, ord) AS hash FROM s WHERE is_known GROUP BY key),
            stored AS (SELECT key, any_value(row_hash) AS hash FROM ingest_keys WHERE kind = 'events' GROUP BY key)
            SELECT s._file, s._row, CASE
                WHEN st.hash IS NOT NULL THEN (CASE WHEN s._hash = st.hash THEN '{DUPLICATE}' ELSE 'duplicate_id' END)
                WHEN s.ord > fi.first THEN (CASE WHEN s._hash = fi.hash THEN '{DUPLICATE}' ELSE 'duplicate_id' END)
                WHEN NOT s.is_known THEN 'unknown_customer'
                ELSE '{KEPT}' END AS fate
            FROM s LEFT JOIN firsts fi USING (key) LEFT JOIN stored st USING (key)""")
        for f, staged in sorted(self.sources.items()):
            self._write_one(f, staged, ids[f], tables[f])
            counts[f] = self._counts(f, staged, tables[f])
            first, last = con.execute('SELECT min("timestamp"), max("timestamp") FROM events WHERE ingest_id = ?',
                                      [ids[f]]).fetchone()
            days[f] = (None, None) if first is None else (
                pd.Timestamp(first).tz_localize("UTC").normalize(), pd.Timestamp(last).tz_localize("UTC").normalize())

    def _write_one(self, f: int, staged: _Source, ingest_id: int, table: StagedTable) -> None:
        con = self.store.connection
        kept = (f"FROM {staged.table} s JOIN (SELECT _row, fate FROM {_FATE} WHERE _file = {f}) x USING (_row) "
                f"WHERE x.fate = '{KEPT}' ORDER BY s._row")
        con.execute(
            'INSERT INTO events (ingest_id, event_id, customer_id, session_id, "timestamp", event_type, product_id, '
            f"attributes) SELECT {ingest_id}, {_key_sql('s.')}, customer_id, session_id, \"timestamp\", event_type, "
            f"product_id, attributes {kept}"
        )
        con.execute(
            f"INSERT INTO ingest_keys (ingest_id, kind, key, row_hash) SELECT {ingest_id}, 'events', "
            f"{_key_sql('s.')}, s._hash {kept}"
        )
        raw = ", ".join(f"s.r{i}" for i in range(len(staged.raw_columns)))
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_REJECTED} AS SELECT s._row, x.fate{', ' + raw if raw else ''} "
            f"FROM {staged.table} s JOIN (SELECT _row, fate FROM {_FATE} WHERE _file = {f}) x USING (_row) "
            f"WHERE x.fate NOT IN ('{KEPT}', '{DUPLICATE}')"
        )
        last = 0
        while True:  # a page at a time, by row number
            page = con.sql(f"SELECT * FROM {_REJECTED} WHERE _row > {last} ORDER BY _row LIMIT {_PAGE}").to_arrow_table()
            if not page.num_rows:
                break
            self._insert(_QUARANTINE, pa.Table.from_pandas(self._rejected_rows(f, staged, page), preserve_index=False))
            last = page.column("_row")[-1].as_py()
        con.execute(f"DROP TABLE {_REJECTED}")
        con.execute(
            "INSERT INTO quarantine (ingest_id, source, source_row, reason, source_column, raw_value, raw_row, kind) "
            f"SELECT ?, ?, source_row, reason, source_column, raw_value, raw_row, 'events' FROM {_QUARANTINE} "
            "WHERE _file = ? ORDER BY source_row",
            [ingest_id, table.source, f],
        )

    @staticmethod
    def _rejected_rows(f: int, staged: _Source, page: pa.Table) -> pd.DataFrame:
        """Quarantine rows of rows rejected in SQL (``duplicate_id``: the id's column; ``unknown_customer``:
        the customer's), as :meth:`~ltvcast.ingest.ledger.Ledger.quarantine` builds them."""
        names = staged.raw_columns
        texts = [page.column(f"r{i}").to_pylist() for i in range(len(names))]
        fates = page.column("fate").to_pylist()
        field_of = {"duplicate_id": KIND_KEYS["events"][0], "unknown_customer": "customer_id"}
        source_cols, values = [], []
        for k, fate in enumerate(fates):
            col = staged.columns.get(field_of[fate])
            source_cols.append(col)
            values.append(texts[names.index(col)][k] if col in names else None)
        records = [json.dumps(dict(zip(names, vals)), ensure_ascii=False) for vals in zip(*texts)] if names else (
            ["{}"] * len(fates))
        return pd.DataFrame({
            "_file": np.full(len(fates), f, dtype=np.int32),
            "source_row": page.column("_row").to_numpy(),
            "reason": pd.Series(fates, dtype=object),
            "source_column": pd.Series(source_cols, dtype=object),
            "raw_value": pd.Series(values, dtype=object),
            "raw_row": pd.Series(records, dtype=object),
        })

    def _counts(self, f: int, staged: _Source, table: StagedTable) -> FileCounts:
        con = self.store.connection
        fates = dict(con.execute(f"SELECT fate, count(*) FROM {_FATE} WHERE _file = ? GROUP BY 1", [f]).fetchall())
        reasons = dict(con.execute(f"SELECT reason, count(*) FROM {_QUARANTINE} WHERE _file = ? GROUP BY 1", [f]).fetchall())
        counts = FileCounts(
            rows_read=staged.rows_read, rows_kept=int(fates.get(KEPT, 0)), duplicates_dropped=int(fates.get(DUPLICATE, 0)),
            quarantined={str(r): int(n) for r, n in sorted(reasons.items())}, excluded=dict(table.excluded),
        )
        return check_counts(counts, table.source)

    @property
    def rows(self) -> int:
        """Data rows staged (all events sources of the run)."""
        return sum(s.rows_read for s in self.sources.values())

    def drop(self) -> None:
        """Drop the temporary tables (idempotent; call when the run ends, however it ends)."""
        con = self.store.connection
        for name in [s.table for s in self.sources.values()] + [_QUARANTINE, _FATE, _REJECTED]:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        self.sources.clear()
        self._quarantine_made = False
