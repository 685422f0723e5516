"""Point-in-time features from the multi-source store: ``build(store, cutoff)``.

>>> from ltvcast.store import Store
>>> from ltvcast.features import build
>>> with Store.open("shop.duckdb", read_only=True) as store:     # doctest: +SKIP
...     fs = build(store, "2024-01-01", period="W", lookback=52)
>>> fs.customers.head()                                          # doctest: +SKIP
>>> fs.sequences.shape      # (n_customers, 52, 7)               # doctest: +SKIP

What goes in (the tables of docs/multisource.md):

* ``transactions`` (required): sale rows (``kind = 'sale'``) and return rows
  (``kind = 'return'``, negative amounts); a store without ``kind`` (the
  foundation's single-source store) reads a negative amount as a return.
* ``order_items`` + ``orders``: only for the discount share (order time from
  ``orders.timestamp``); ``orders.returned_amount``/``net_amount`` are never
  read (they include returns made after the cutoff).
* ``events``: sessions, views, add-to-carts, purchases.
* ``customers``: attributes, when the row is known at the cutoff.
* ``store_meta``: ``shop_timezone`` (default UTC) and ``revenue_basis``
  (``net`` default, or ``gross``).
* ``products`` and ``fx_rates`` are not read: category and brand come from
  ``transactions`` (the ingest fills them from ``products``), amounts are
  already in the shop currency.

Point in time: the cutoff is a calendar day ``C`` in the shop's time zone,
and history is every row strictly before 00:00 of ``C`` there — each table
on its own timestamp (transactions, events and orders by ``timestamp``,
returns at the time of the return, customers by ``signup_at``, or by their
first sale when ``signup_at`` is NULL). A missing table reads as empty.

Population: ``buyers`` (default) = every customer with a sale row before
the cutoff; ``all`` adds customers with only returns, only events or only a
customers row known at the cutoff (their purchase features are 0 / NULL as
the catalog says).

The SQL lives in ``ltvcast/features/sql/`` (one file per family, see its
README); :func:`feature_sql` returns it rendered for a cutoff.

Memory: the result itself is about n_customers × (8 B × ~62 numeric columns
+ lookback × channels × 4 B) — 1.6M customers, 52 weeks, 7 channels: 0.8 GB
+ 2.1 GB. On top comes DuckDB's working memory; build frees its temporary
tables as soon as no later step needs them, and the caller may bound DuckDB
on the store's connection (``SET memory_limit``; ``SET
allocator_flush_threshold = '32MB'`` and ``SET allocator_background_threads
= true`` make it hand freed memory back sooner). See
``benchmarks/bench_features.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ltvcast.errors import DataError
from ltvcast.features import sequences as seq
from ltvcast.features._sql import (
    Context,
    check_timezone,
    cutoff_day,
    render,
    source_views,
    store_columns,
    store_meta,
)
from ltvcast.features.catalog import (
    DEFAULT_WINDOWS,
    FAMILIES,
    FeatureSpec,
    feature_specs,
)

#: The point-in-time layer, in execution order (sql/<name>.sql).
HISTORY_STEPS = (
    "history_lines",
    "history_items",
    "history_events",
    "history_orders",
    "history_daily",
    "history_categories",
    "history_brands",
    "history_events_daily",
    "history_customers",
    "population",
)


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of every customer at one cutoff.

    Attributes:
        customers: one row per customer, sorted by ``customer_id`` (pandas
            string); then every column of
            :func:`ltvcast.features.catalog.feature_specs` in that order:
            ``int`` features int64 (never missing), ``float`` features
            float64 (NaN = NULL as documented), categoricals as pandas
            strings (NaN = missing). Index 0..n-1.
        sequences: float32 array (n_customers, n_periods, n_channels), rows
            in the order of ``customers``; zeros where nothing happened.
        channels: channel names of the last axis (see
            :data:`ltvcast.features.sequences.CHANNEL_DOCS`).
        period_starts: ``datetime64[D]`` array of the n_periods local start
            days, oldest first; the last period ends at the cutoff.
        cutoff: the cutoff day (local calendar day; history ends at its 00:00
            in ``timezone``).
        period: ``"W"`` (7 days) or ``"M"`` (calendar months aligned to the
            cutoff's day of the month).
        feature_docs: column name -> ``definition [unit]`` for every feature.
        channel_docs: channel name -> ``definition [unit]``.
        timezone: the shop time zone used for calendar days.
        revenue_basis: ``net`` or ``gross``.
        population: ``buyers`` or ``all``.
        windows: the window lengths (days) of the windowed features.
    """

    customers: pd.DataFrame
    sequences: np.ndarray
    channels: tuple[str, ...]
    period_starts: np.ndarray
    cutoff: date
    period: str
    feature_docs: dict[str, str]
    channel_docs: dict[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    revenue_basis: str = "net"
    population: str = "buyers"
    windows: tuple[int, ...] = DEFAULT_WINDOWS

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns of ``customers`` (all but ``customer_id``)."""
        return tuple(c for c in self.customers.columns if c != "customer_id")

    def equals(self, other: FeatureSet) -> bool:
        """True when both hold the same customers, features, sequences and settings."""
        return (
            isinstance(other, FeatureSet)
            and self.customers.equals(other.customers)
            and list(self.customers.dtypes) == list(other.customers.dtypes)
            and self.sequences.shape == other.sequences.shape
            and np.array_equal(self.sequences, other.sequences)
            and self.channels == other.channels
            and np.array_equal(self.period_starts, other.period_starts)
            and (self.cutoff, self.period, self.timezone, self.revenue_basis, self.population, self.windows)
            == (other.cutoff, other.period, other.timezone, other.revenue_basis, other.population, other.windows)
        )


def _check(period: str, lookback, windows, population: str, basis: str, channels):
    if period not in seq.DEFAULT_LOOKBACK:
        raise DataError(f"period {period!r} is not 'W' (weeks) or 'M' (months)")
    lookback = seq.DEFAULT_LOOKBACK[period] if lookback is None else lookback
    if isinstance(lookback, bool) or not isinstance(lookback, (int, np.integer)) or lookback < 1:
        raise DataError(f"lookback must be a positive number of periods, got {lookback!r}")
    wins = tuple(windows)
    if (
        not wins
        or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in wins)
        or len(set(wins)) != len(wins)
    ):
        raise DataError(f"windows must be distinct positive numbers of days, got {windows!r}")
    if population not in ("buyers", "all"):
        raise DataError(f"population {population!r} is not 'buyers' or 'all'")
    if basis not in ("net", "gross"):
        raise DataError(f"revenue_basis {basis!r} is not 'net' or 'gross'")
    return int(lookback), tuple(int(w) for w in wins), seq.check_channels(channels)


#: Order in which build() runs the families: those reading the large
#: family-only tables first, so each table is dropped once its last reader ran.
RUN_ORDER = ("basket", "loyalty", "diversity", "attributes", "tenure", "rfm", "ipt", "windows", "trend",
             "returns", "events")
assert sorted(RUN_ORDER) == sorted(FAMILIES)

_H_TABLE = re.compile(r"\bh_[a-z_]+\b")


def _drop_schedule(sql: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """For each family in :data:`RUN_ORDER`, the h_ tables to drop after it ran.

    A table is dropped after the last family that reads it (the sequence
    rows are fetched before the families run); ``h_pop`` stays until the
    cursor is closed.
    """
    created = {m.group(1) for step in HISTORY_STEPS
               for m in [re.search(r"CREATE OR REPLACE TEMP TABLE (h_[a-z_]+)", sql[step])] if m}
    keep = {"h_pop"}
    last_reader: dict[str, str] = {}
    for family in RUN_ORDER:
        for table in set(_H_TABLE.findall(sql[family])) & created:
            last_reader[table] = family
    return {
        family: tuple(sorted(t for t, f in last_reader.items() if f == family and t not in keep))
        for family in RUN_ORDER
    }


def _filled(spec: FeatureSpec, alias: str) -> str:
    ref = f'{alias}."{spec.name}"'
    if spec.fill is not None:
        ref = f"COALESCE({ref}, {spec.fill})"
    return f'{ref} AS "{spec.name}"'


def _customers_sql(specs: tuple[FeatureSpec, ...], families: dict[str, str]) -> str:
    """The join of every family onto ``h_pop``, filling absent customers per the catalog.

    One statement for the whole customer table (for reading and transpiling);
    :func:`build` runs the same joins one family at a time (:func:`_family_join_sql`),
    which needs less memory.
    """
    ctes = ",\n".join(f"f_{name} AS (\n{sql.rstrip()}\n)" for name, sql in families.items())
    cols = [f"       {_filled(s, 'f_' + s.family)}" for s in specs]
    joins = "\n".join(
        f"LEFT JOIN f_{name} ON f_{name}.customer_id = p.customer_id" for name in families
    )
    return (
        f"WITH {ctes}\nSELECT p.customer_id,\n" + ",\n".join(cols) + f"\nFROM h_pop p\n{joins}\nORDER BY p.cidx\n"
    )


def _family_join_sql(family: str, specs: tuple[FeatureSpec, ...], sql: str) -> str:
    """One family LEFT JOINed onto ``h_pop``: a row per customer with ``cidx``, fills applied."""
    cols = ",\n       ".join(_filled(s, "f") for s in specs if s.family == family)
    return f"SELECT p.cidx,\n       {cols}\nFROM h_pop p\nLEFT JOIN (\n{sql.rstrip()}\n) f ON f.customer_id = p.customer_id\n"


def _arrow(rel: duckdb.DuckDBPyRelation):
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        method = getattr(rel, name, None)
        if method is not None:
            return method()
    raise RuntimeError("this duckdb version cannot return Arrow tables")  # pragma: no cover


def _fetch_family(cur, sql: str, n: int, specs: tuple[FeatureSpec, ...]) -> dict[str, object]:
    """Run one family's join and return its columns in cidx order (numpy / pandas string arrays)."""
    table = _arrow(cur.sql(sql))
    cidx = table.column("cidx").to_numpy()
    if len(cidx) != n:
        raise RuntimeError(f"a feature family returned more than one row for some customer:\n{sql}")
    perm = None
    out: dict[str, object] = {}
    for spec in specs:
        col = table.column(spec.name)
        if spec.kind == "str":
            if perm is None:
                perm = np.empty(n, dtype=np.int64)
                perm[cidx] = np.arange(n, dtype=np.int64)
            out[spec.name] = pd.array(col.take(perm), dtype="str")
        else:
            dtype = np.int64 if spec.kind == "int" else np.float64
            values = np.empty(n, dtype=dtype)
            values[cidx] = col.to_numpy(zero_copy_only=False)
            out[spec.name] = values
    return out


def feature_sql(
    cutoff,
    period: str = "W",
    lookback: int | None = None,
    *,
    windows=DEFAULT_WINDOWS,
    population: str = "buyers",
    channels=seq.DEFAULT_CHANNELS,
    timezone: str = "UTC",
    revenue_basis: str = "net",
) -> dict[str, str]:
    """The feature SQL rendered for one cutoff, in execution order.

    Keys: the history steps (:data:`HISTORY_STEPS`), each family name of
    :data:`~ltvcast.features.catalog.FAMILIES` (a SELECT, at most one row
    per customer), ``customers`` (the join of the families onto ``h_pop``)
    and ``sequences``. The ``src_*`` views the history steps read depend on
    the store and are not included; ``h_calendar`` (day, period) is a
    registered table (see :func:`ltvcast.features.sequences.calendar`).
    """
    lookback, wins, chans = _check(period, lookback, windows, population, revenue_basis, channels)
    day = cutoff_day(cutoff)
    starts = seq.period_starts(day, period, lookback)
    ctx = Context(
        cutoff_day=day,
        timezone=check_timezone(timezone),
        windows=wins,
        basis=revenue_basis,
        population=population,
        channels=chans,
        first_day=pd.Timestamp(starts[0]).date(),
    )
    out = {name: render(name, ctx) for name in HISTORY_STEPS}
    families = {name: render(name, ctx) for name in FAMILIES}
    out.update(families)
    out["customers"] = _customers_sql(feature_specs(wins), families)
    out["sequences"] = render("sequences", ctx)
    return out


@dataclass(frozen=True)
class CustomerSubset:
    """A store read for some customers only: :func:`build` on it computes the features of those customers.

    Every feature is a function of one customer's own rows (each family
    groups by ``customer_id``; none ranks customers or uses shop-level
    figures), so a customer's features from a subset equal those from the
    whole store. The online service predicts learned models this way
    (:mod:`ltvcast.serve.mirror`).

    Attributes:
        store: an open :class:`ltvcast.store.Store` or a DuckDB connection.
        customer_ids: the customers whose rows are read.
    """

    store: object
    customer_ids: tuple[str, ...]


def _connection(store) -> duckdb.DuckDBPyConnection:
    if isinstance(store, pd.DataFrame):
        raise DataError(
            "build() reads a store, not a frame: write the frame with `ltvcast ingest` (or "
            "ltvcast.ingest.write) so it is validated once, or use ltvcast.features.rfm_summary, "
            "which validates a frame itself"
        )
    if isinstance(store, duckdb.DuckDBPyConnection):
        return store
    con = getattr(store, "connection", None)  # a public accessor, once Store has one
    if isinstance(con, duckdb.DuckDBPyConnection):
        return con
    con = getattr(store, "_con", None)
    if isinstance(con, duckdb.DuckDBPyConnection):
        return con
    raise DataError(f"build() needs an ltvcast Store or a DuckDB connection, got {type(store).__name__}")


def build(
    store,
    cutoff,
    period: str = "W",
    lookback: int | None = None,
    *,
    windows=DEFAULT_WINDOWS,
    population: str = "buyers",
    channels=seq.DEFAULT_CHANNELS,
    timezone: str | None = None,
    revenue_basis: str | None = None,
) -> FeatureSet:
    """Customer features and period sequences at ``cutoff``, computed in DuckDB.

    Args:
        store: an open :class:`ltvcast.store.Store` (or a DuckDB connection
            to a store file); only read, through a private cursor whose
            temporary tables vanish when build returns. A
            :class:`CustomerSubset` reads only its customers' rows.
        cutoff: the cutoff day (``YYYY-MM-DD``, a date, or a timestamp at
            00:00); history is everything before 00:00 of that day in the
            shop's time zone.
        period: ``"W"`` weeks or ``"M"`` months for the sequences.
        lookback: number of periods in the sequences (default 52 weeks or
            24 months); the last period ends at the cutoff.
        windows: lengths in days of the windowed features (``*_30d`` ...).
        population: ``"buyers"`` (everyone with a sale before the cutoff) or
            ``"all"`` (also customers with only returns, events or a signup).
        channels: sequence channels, from
            :data:`ltvcast.features.sequences.SEQUENCE_CHANNELS`.
        timezone: override ``store_meta.shop_timezone`` (default UTC).
        revenue_basis: override ``store_meta.revenue_basis`` (default net).

    Returns:
        A :class:`FeatureSet`; its ``feature_docs`` define every column.

    Raises:
        CutoffError: the cutoff is not a calendar day.
        DataError: ``store`` is a DataFrame (build reads a store, whose rows
            ingest validated; for a frame use :func:`ltvcast.features.rfm_summary`);
            the store has no transactions table or lacks a required
            column; an unknown time zone, period, window, channel, population
            or revenue basis.
    """
    subset = store if isinstance(store, CustomerSubset) else None
    con = _connection(store if subset is None else subset.store)
    cur = con.cursor()
    try:
        if subset is not None:
            cur.register("h_subset", pa.table({"customer_id": pa.array(subset.customer_ids, pa.string())}))
        columns = store_columns(cur)
        meta = store_meta(cur, columns)
        tz = timezone or meta.get("shop_timezone") or "UTC"
        basis = revenue_basis or meta.get("revenue_basis") or "net"
        lookback, wins, chans = _check(period, lookback, windows, population, basis, channels)
        sql = feature_sql(
            cutoff,
            period,
            lookback,
            windows=wins,
            population=population,
            channels=chans,
            timezone=tz,
            revenue_basis=basis,
        )
        day = cutoff_day(cutoff)
        starts = seq.period_starts(day, period, lookback)
        for view in source_views(columns, customers=None if subset is None else "h_subset").values():
            cur.execute(view)
        for step in HISTORY_STEPS:
            cur.execute(sql[step])
        specs = feature_specs(wins)
        # The sequence rows first, in coordinate form (small); the dense array
        # is made after the cursor (and its temporary tables) is gone.
        cur.register("h_calendar", seq.calendar(starts, day))
        seq_rows = seq.fetch_rows(cur, sql["sequences"], chans)
        ids = _arrow(cur.sql("SELECT customer_id FROM h_pop ORDER BY cidx")).column("customer_id")
        n = len(ids)
        data: dict[str, object] = {"customer_id": pd.array(ids, dtype="str")}
        drops = _drop_schedule(sql)
        for family in RUN_ORDER:
            family_specs = tuple(s for s in specs if s.family == family)
            data.update(_fetch_family(cur, _family_join_sql(family, specs, sql[family]), n, family_specs))
            for table in drops[family]:  # free memory as soon as no later step reads it
                cur.execute(f"DROP TABLE {table}")
        customers = pd.DataFrame(
            {name: data[name] for name in ["customer_id"] + [s.name for s in specs]},
            index=pd.RangeIndex(n),
            copy=False,
        )
        del data
    finally:
        cur.close()  # drops every temporary table and view of this build
    sequences = seq.densify(seq_rows, n, len(starts))
    del seq_rows
    return FeatureSet(
        customers=customers,
        sequences=sequences,
        channels=chans,
        period_starts=starts,
        cutoff=day,
        period=period,
        feature_docs={s.name: s.doc for s in specs},
        channel_docs={c: seq.CHANNEL_DOCS[c] for c in chans},
        timezone=tz,
        revenue_basis=basis,
        population=population,
        windows=wins,
    )
