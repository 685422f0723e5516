"""The feature set, the RFM summary and the labels on Spark, from the same SQL files as DuckDB.

Every statement comes from :func:`ltvcast.features.build.feature_sql` (the
``sql/`` templates rendered for the cutoff) or from the SQL of
:mod:`ltvcast.features.rfm` / :mod:`ltvcast.features.labels`, transpiled by
:mod:`ltvcast.engines.transpile`; nothing is written twice. A DuckDB
``TEMP TABLE`` becomes a cached Spark temporary view, a ``TEMP VIEW`` a
temporary view (cached too when two or more later steps read it,
:func:`shared_views`). tests/test_spark_features.py holds every family, the
summary and the labels equal to DuckDB's within 1e-9.

>>> from ltvcast.engines.spark import session
>>> spark = session("local[2]")                                   # doctest: +SKIP
>>> shop = open_shop(spark, "/lake/shop")                          # doctest: +SKIP
>>> feats = build_spark(shop, "2024-01-01")                        # doctest: +SKIP
>>> feats.customers.write.parquet("features/")                    # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ltvcast.engines.spark import duck_type, read_source
from ltvcast.engines.transpile import split_create
from ltvcast.errors import DataError
from ltvcast.features import labels as duck_labels
from ltvcast.features import sequences as seq
from ltvcast.features._sql import Context, check_timezone, cutoff_day, local_midnight_utc, render, source_views
from ltvcast.features.build import HISTORY_STEPS, FeatureSet, feature_sql
from ltvcast.features.catalog import DEFAULT_WINDOWS, FeatureSpec, feature_specs
from ltvcast.features.rfm import UNIT_DAYS, summary_sql


@dataclass
class SparkShop:
    """A shop's canonical tables registered in a Spark session.

    Attributes:
        spark: the session.
        source: where the tables came from (a Parquet root or ``table:DB``).
        columns: ``{table: {column: DuckDB type name}}`` of the tables present.
        meta: the ``store_meta`` key/value pairs (empty without the table).
    """

    spark: object
    source: str
    columns: dict[str, dict[str, str]]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def timezone(self) -> str:
        """``store_meta.shop_timezone`` (default UTC)."""
        return self.meta.get("shop_timezone") or "UTC"

    @property
    def revenue_basis(self) -> str:
        """``store_meta.revenue_basis`` (default net)."""
        return self.meta.get("revenue_basis") or "net"


def run_statement(spark, sql: str, name: str, cached: list | None = None, *, cache: bool = False):
    """Run one DuckDB statement on Spark (transpiled); return the query's DataFrame.

    A ``CREATE TEMP TABLE|VIEW t`` registers ``t`` as a temporary view. A
    TABLE, or a VIEW with ``cache``, is cached (memory, spilling to disk) and
    counted, so later steps read it once; its DataFrame is appended to
    ``cached`` for the caller to unpersist. Counted at once, not left to fill
    when first read: the families read the tables from concurrent query
    stages, each of which would compute a table not yet cached (local[2],
    50,000 lines, lazy caches: 186 jobs and 382 stages instead of 130 and 297).
    """
    target, materialise, query = split_create(sql, name)
    frame = spark.sql(query)
    if target is not None:
        if materialise or cache:
            frame = frame.persist()
            frame.count()
            if cached is not None:
                cached.append(frame)
        frame.createOrReplaceTempView(target)
    return frame


_RELATION = re.compile(r"\bh_[a-z_]+\b")
_CREATED = re.compile(r"CREATE OR REPLACE TEMP (?:TABLE|VIEW) (h_[a-z_]+)")


def shared_views(sql: dict[str, str]) -> set[str]:
    """The history views (``TEMP VIEW h_*``) that two or more later statements of ``feature_sql`` read.

    Spark caches them: each reader of a view would scan and decode the
    source files again (``h_lines``: the transactions, read by h_orders,
    h_categories, h_brands, basket and attributes), where DuckDB re-scans
    its own storage cheaply.
    """
    views = {m.group(1) for step in HISTORY_STEPS for m in [_CREATED.search(sql[step])]
             if m and "TEMP VIEW" in m.group(0)}
    readers = {v: 0 for v in views}
    for name, text in sql.items():
        if name == "customers":  # the families joined again
            continue
        made = _CREATED.search(text)
        for view in set(_RELATION.findall(text)) & views:
            if made is None or made.group(1) != view:
                readers[view] += 1
    return {v for v, n in readers.items() if n >= 2}


def open_shop(spark, source: str) -> SparkShop:
    """Register the canonical tables of ``source`` and the ``src_*`` views over them.

    Args:
        spark: a session (:func:`ltvcast.engines.spark.session`).
        source: a Parquet root with one folder per table, or ``table:DB``
            (:func:`ltvcast.engines.spark.read_source`).

    Raises:
        EngineError: no transactions table.
        DataError: a table lacks a required column (as for a store).
    """
    tables = read_source(spark, source)
    columns = {}
    for name, frame in tables.items():
        frame.createOrReplaceTempView(name)
        columns[name] = {f.name.lower(): duck_type(f.dataType.simpleString()) for f in frame.schema.fields}
    for table, view in source_views(columns).items():
        run_statement(spark, view, f"src_{table}")
    meta = {}
    if "store_meta" in tables:
        meta = {str(r[0]): str(r[1]) for r in tables["store_meta"].select("key", "value").collect() if r[1] is not None}
    return SparkShop(spark, source, columns, meta)


@dataclass
class SparkFeatures:
    """The feature set of :func:`build_spark`, still on Spark.

    Attributes:
        customers: DataFrame, one row per customer: ``customer_id`` then
            every column of :func:`~ltvcast.features.catalog.feature_specs`
            (``int`` bigint, ``float`` double, ``str`` string), as
            ``FeatureSet.customers``.
        sequence_rows: DataFrame ``customer_id``, ``period`` (0 = oldest),
            one double column per channel: the non-zero (customer, period)
            cells of ``FeatureSet.sequences``.
        specs, channels, period_starts, cutoff, period, timezone,
        revenue_basis, population, windows: as in
            :class:`~ltvcast.features.build.FeatureSet`.
        cached: the cached history DataFrames (:meth:`release` frees them).
    """

    customers: object
    sequence_rows: object
    specs: tuple[FeatureSpec, ...]
    channels: tuple[str, ...]
    period_starts: np.ndarray
    cutoff: date
    period: str
    timezone: str
    revenue_basis: str
    population: str
    windows: tuple[int, ...]
    cached: list = field(default_factory=list)

    def release(self) -> None:
        """Unpersist the cached history tables."""
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()

    def to_feature_set(self) -> FeatureSet:
        """Collect to the driver as a :class:`~ltvcast.features.build.FeatureSet` (same dtypes as ``build``).

        Memory: the whole feature table and the dense sequences on the driver
        (see ``build``'s docs for the size).
        """
        frame = self.customers.toPandas()
        n = len(frame)
        data: dict[str, object] = {"customer_id": pd.array(frame["customer_id"], dtype="str")}
        for spec in self.specs:
            col = frame[spec.name]
            if spec.kind == "str":
                data[spec.name] = pd.array(col.astype(object).where(col.notna(), None), dtype="str")
            else:
                data[spec.name] = col.to_numpy(dtype=np.int64 if spec.kind == "int" else np.float64, na_value=np.nan)
        customers = pd.DataFrame(data, index=pd.RangeIndex(n))
        rows = self.sequence_rows.toPandas()
        index = pd.Index(customers["customer_id"].astype(object))
        cidx = index.get_indexer(rows["customer_id"].astype(object)).astype(np.int64)
        values = rows[list(self.channels)].to_numpy(np.float32) if len(rows) else np.zeros((0, len(self.channels)), np.float32)
        sequences = seq.densify((cidx, rows["period"].to_numpy(np.int32), values), n, len(self.period_starts))
        return FeatureSet(
            customers=customers,
            sequences=sequences,
            channels=self.channels,
            period_starts=self.period_starts,
            cutoff=self.cutoff,
            period=self.period,
            feature_docs={s.name: s.doc for s in self.specs},
            channel_docs={c: seq.CHANNEL_DOCS[c] for c in self.channels},
            timezone=self.timezone,
            revenue_basis=self.revenue_basis,
            population=self.population,
            windows=self.windows,
        )


def build_spark(
    shop: SparkShop,
    cutoff,
    period: str = "W",
    lookback: int | None = None,
    *,
    windows=DEFAULT_WINDOWS,
    population: str = "buyers",
    channels=seq.DEFAULT_CHANNELS,
    timezone: str | None = None,
    revenue_basis: str | None = None,
) -> SparkFeatures:
    """Customer features and period sequences at ``cutoff``, computed on Spark.

    Arguments as :func:`ltvcast.features.build`; the shop comes from
    :func:`open_shop`. The history tables stay cached until
    :meth:`SparkFeatures.release`.

    Raises:
        CutoffError, DataError: as ``build``.
        TranspileError: a feature statement does not transpile faithfully.
    """
    spark = shop.spark
    tz = timezone or shop.timezone
    basis = revenue_basis or shop.revenue_basis
    sql = feature_sql(cutoff, period, lookback, windows=windows, population=population, channels=channels,
                      timezone=tz, revenue_basis=basis)
    day = cutoff_day(cutoff)
    wins = tuple(int(w) for w in windows)
    chans = seq.check_channels(channels)
    starts = seq.period_starts(day, period, lookback or seq.DEFAULT_LOOKBACK[period])
    cached: list = []
    shared = shared_views(sql)
    for step in HISTORY_STEPS:
        made = _CREATED.search(sql[step])
        run_statement(spark, sql[step], step, cached, cache=made is not None and made.group(1) in shared)
    specs = feature_specs(wins)
    customers = run_statement(spark, sql["customers"], "customers")
    customers = customers.select(
        "customer_id",
        *[customers[s.name].cast({"int": "bigint", "float": "double", "str": "string"}[s.kind]).alias(s.name)
          for s in specs],
    )
    spark.createDataFrame(seq.calendar(starts, day).to_pandas()).createOrReplaceTempView("h_calendar")
    rows = run_statement(spark, sql["sequences"], "sequences")
    pop = spark.table("h_pop")
    rows = rows.join(pop, "cidx").select("customer_id", rows["period"].cast("int").alias("period"), *chans)
    return SparkFeatures(customers, rows, specs, chans, starts, day, period, tz, basis, population, wins, cached)


_RFM_STEPS = ("history_lines", "history_orders", "history_daily")


def rfm_summary_spark(shop: SparkShop, cutoff, unit: str = "W", *, timezone: str | None = None,
                      revenue_basis: str | None = None):
    """The BTYD summary of :func:`ltvcast.features.rfm_summary` on Spark, as a DataFrame.

    Same definitions (``rfm.sql`` and the history steps it reads, the same
    wrapper query), same columns: ``customer_id``, ``frequency``,
    ``recency``, ``T`` (``unit``), ``monetary_value``, ``total_spend``,
    ``n_transactions``, ``first_purchase``, ``last_purchase`` (dates),
    ``unmatched_refunds``, ``unmatched_refund_amount``; customers with a
    sale before the cutoff only. The frame is not validated row by row: the
    source holds canonical rows, as a store does (ingest checked them).

    Raises:
        DataError: unknown unit, time zone or revenue basis.
        CutoffError: the cutoff is not a calendar day.
    """
    key = str(unit).upper()
    if key not in UNIT_DAYS:
        raise DataError(f"unit {unit!r} is not one of {sorted(UNIT_DAYS)}")
    basis = revenue_basis or shop.revenue_basis
    if basis not in ("net", "gross"):
        raise DataError(f"revenue basis {basis!r} is not 'net' or 'gross'")
    day = cutoff_day(cutoff)
    ctx = Context(cutoff_day=day, timezone=check_timezone(timezone or shop.timezone), windows=(), basis=basis,
                  population="buyers", channels=(), first_day=day)
    for step in _RFM_STEPS:
        run_statement(shop.spark, render(step, ctx), step)
    wrapper = summary_sql(ctx, UNIT_DAYS[key])
    out = run_statement(shop.spark, wrapper, "rfm_summary")
    from pyspark.sql import functions as F

    cut = F.lit(day)
    return out.select(
        "customer_id", "frequency", "recency", "T", "monetary_value", "total_spend",
        out["n_transactions"].cast("double").alias("n_transactions"),
        F.date_sub(cut, out["first_offset"].cast("int") + 1).alias("first_purchase"),
        F.date_sub(cut, out["last_offset"].cast("int")).alias("last_purchase"),
        "unmatched_refunds", "unmatched_refund_amount",
    )


def rfm_frame(summary) -> pd.DataFrame:
    """Collect :func:`rfm_summary_spark` to pandas with ``rfm_summary``'s dtypes, sorted by ``customer_id``."""
    out = summary.toPandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    out["customer_id"] = out["customer_id"].astype("string")
    for col in ("first_purchase", "last_purchase"):
        out[col] = pd.to_datetime(out[col]).dt.date
    return out


def horizon_labels_spark(shop: SparkShop, customers, cutoff, horizon_days: float, *, timezone: str | None = None,
                         revenue_basis: str | None = None):
    """:func:`ltvcast.features.horizon_labels` on Spark: the same SQL, transpiled.

    Args:
        shop: from :func:`open_shop` (its ``transactions`` are labelled).
        customers: a DataFrame with a ``customer_id`` column (the ids to label).
        cutoff, horizon_days, timezone, revenue_basis: as ``horizon_labels``.

    Returns:
        DataFrame ``customer_id``, ``actual_transactions``, ``actual_spend``
        (doubles), one row per distinct id.

    Raises:
        DataError: unknown time zone or revenue basis.
        CutoffError: the cutoff is not a calendar day.
    """
    return _labels_spark(duck_labels.LABELS_SQL, shop, customers, cutoff, horizon_days, timezone, revenue_basis)


def window_labels_spark(shop: SparkShop, customers, cutoff, horizon_days: float, *, timezone: str | None = None,
                        revenue_basis: str | None = None):
    """:func:`ltvcast.features.labels.window_labels` on Spark (horizon and next-purchase labels, one query).

    Arguments and errors as :func:`horizon_labels_spark`.

    Returns:
        DataFrame ``customer_id``, ``actual_transactions``, ``actual_spend``,
        ``next_purchase_days`` (doubles; whole local days from the cutoff day
        to the first occasion of the window, NULL without one), one row per
        distinct id.
    """
    return _labels_spark(duck_labels.WINDOW_LABELS_SQL, shop, customers, cutoff, horizon_days, timezone,
                         revenue_basis)


def _labels_spark(sql: str, shop: SparkShop, customers, cutoff, horizon_days: float, timezone, revenue_basis):
    """Run one of the window SQLs of :mod:`ltvcast.features.labels` on Spark, parameters as literals."""
    basis = revenue_basis or shop.revenue_basis
    if basis not in ("net", "gross"):
        raise DataError(f"revenue basis {basis!r} is not 'net' or 'gross'")
    tz = check_timezone(timezone or shop.timezone)
    day = cutoff_day(cutoff)
    start = local_midnight_utc(day, tz)
    end = local_midnight_utc(day + timedelta(days=round(horizon_days)), tz)
    # The label SQL reads `tx` and `customers`; the ids go under another name, as the
    # store's `customers` table is registered already.
    customers.select("customer_id").distinct().createOrReplaceTempView("h_label_ids")
    shop.spark.sql("SELECT customer_id, ts AS timestamp, amount, kind, order_id FROM src_transactions") \
        .createOrReplaceTempView("h_label_tx")
    literals = {  # $start_day before $start, its prefix
        "$start_day": f"DATE '{day:%Y-%m-%d}'",
        "$start": f"TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'",
        "$end": f"TIMESTAMP '{end:%Y-%m-%d %H:%M:%S}'",
        "$tz": f"'{tz}'",
        "$net": "TRUE" if basis == "net" else "FALSE",
    }
    sql = sql.format(kind="kind", order_id="CAST(order_id AS VARCHAR)")
    sql = sql.replace("FROM tx", "FROM h_label_tx").replace("FROM customers c", "FROM h_label_ids c")
    for param, literal in literals.items():
        sql = sql.replace(param, literal)
    return run_statement(shop.spark, sql, "labels")


#: Purchase occasions before the cutoff above which customers share one sampling stratum.
STRATA_CAP = 5


def collect_history(shop: SparkShop, cutoff, *, max_customers: int = 1_000_000, data_end=None, seed: int = 0):
    """The shop's rows on the driver as a :class:`~ltvcast.data.datasets.History`, for training.

    Training works on customer-level tables that fit one machine; what
    comes to the driver is every canonical row of the customers kept. Up to
    ``max_customers`` customers (those with any transactions row) all are
    kept; above it, a stratified sample: strata by purchase occasions before
    ``cutoff`` (0, 1, ..., ``STRATA_CAP`` or more), the same fraction
    ``max_customers / customers`` in each (Spark ``sampleBy`` with ``seed``),
    so the mix of one-time and repeat buyers is that of the shop. The rows go
    into an in-memory store, so every model trains as on ``--db``.

    Raises:
        DataError: ``max_customers`` < 1, or no transactions.
    """
    from pyspark.sql import functions as F

    from ltvcast.data.datasets import History
    from ltvcast.store import Store
    from ltvcast.timeutil import observation_end

    if max_customers < 1:
        raise DataError(f"max_customers must be at least 1, got {max_customers}")
    spark = shop.spark
    ids = spark.table("src_transactions").select("customer_id").distinct()
    total = ids.count()
    if total == 0:
        raise DataError(f"source {shop.source} holds no transactions")
    origin = f"spark source {shop.source}: {total:,} customers"
    if total > max_customers:
        occasions = rfm_summary_spark(shop, cutoff, "W").select(
            "customer_id", F.least(F.col("frequency") + 1, F.lit(float(STRATA_CAP))).cast("int").alias("stratum")
        )
        strata = ids.join(occasions, "customer_id", "left").fillna(0, ["stratum"])
        fraction = max_customers / total
        ids = strata.sampleBy("stratum", {k: fraction for k in range(STRATA_CAP + 1)}, seed).select("customer_id")
        origin += f", stratified sample of {fraction:.2%}"
    ids = F.broadcast(ids) if total <= 10 * max_customers else ids
    store = Store.open(":memory:")
    for table, frame in _sampled_tables(spark, ids).items():
        have = list(store.fetch_df(f'SELECT * FROM "{table}" LIMIT 0').columns)
        cols = tuple(c for c in frame.columns if c in have and c != "ingest_id")
        store.insert_frame(table, None if "ingest_id" in frame.columns else 0, frame, cols)
    store.set_shop(shop.meta.get("shop_currency") or "EUR", shop.timezone, shop.revenue_basis)
    tx = store.transactions()
    end = observation_end(tx, data_end)
    return History(tx, end, origin, store, shop.timezone, shop.revenue_basis)


def _sampled_tables(spark, ids) -> dict[str, pd.DataFrame]:
    """The canonical tables restricted to ``ids`` (order_items through their orders), collected."""
    out = {}
    registered = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    for table in ("transactions", "orders", "events", "customers", "order_items"):
        if table not in registered:
            continue
        frame = spark.table(table)
        if table == "order_items":
            if "orders" not in registered:
                continue
            orders = spark.table("orders").join(ids, "customer_id", "left_semi").select("order_id")
            frame = frame.join(orders, "order_id", "left_semi")
        else:
            frame = frame.join(ids, "customer_id", "left_semi")
        decimals = [f.name for f in frame.schema.fields if f.dataType.simpleString().startswith("decimal")]
        frame = frame.select(*[frame[c].cast("double").alias(c) if c in decimals else frame[c] for c in frame.columns])
        out[table] = frame.toPandas()
    return out
