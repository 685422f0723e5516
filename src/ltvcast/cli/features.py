"""`ltvcast features`: the feature set and the RFM summary at a cutoff, written as Parquet, on DuckDB or Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import Cutoff, Db
from ltvcast.errors import DataError, LtvcastError

TABLES = ("customers", "rfm_summary", "sequences")
Engine = Annotated[str, typer.Option("--engine", help="duckdb (the store, --db) or spark (--source).")]
Source = Annotated[
    str | None,
    typer.Option("--source", help="Spark: Parquet root with one folder per canonical table, or table:DB (docs/scale.md)."),
]
SparkMaster = Annotated[
    str | None, typer.Option("--spark-master", help="Spark master URL, e.g. local[2] (default: spark-submit's, else local[*]).")
]


def check_engine(engine: str, db, source) -> None:
    """Raise LtvcastError unless the engine and its source agree (duckdb: --db; spark: --source)."""
    if engine not in ("duckdb", "spark"):
        raise LtvcastError(f"--engine {engine!r} is not duckdb or spark")
    if engine == "spark" and source is None:
        raise LtvcastError("--engine spark reads --source PATH_OR_TABLE (a Parquet root or table:DB)")
    if engine == "duckdb" and source is not None:
        raise LtvcastError("--source is read by --engine spark only; DuckDB reads the store (--db)")


def _sequence_rows(fs) -> pd.DataFrame:
    cidx, period = fs.sequences.any(axis=2).nonzero()
    rows = {"customer_id": fs.customers["customer_id"].to_numpy()[cidx], "period": period.astype("int32")}
    for j, ch in enumerate(fs.channels):
        rows[ch] = fs.sequences[cidx, period, j].astype("float64")
    return pd.DataFrame(rows)


def _nothing_before(day: str, first, timezone: str, source) -> DataError:
    """The error for a cutoff with no customer before it, naming the source's first transaction day."""
    if first is None:
        return DataError(f"{source} holds no transactions")
    first = pd.Timestamp(first)
    first_day = (first.tz_localize("UTC") if first.tzinfo is None else first).tz_convert(timezone).date()
    return DataError(f"no customer has a purchase before the cutoff {day}: the first transaction in {source} is on "
                     f"{first_day} ({timezone}); choose a later --cutoff")


@app.command("features")
@user_errors
def features_command(
    cutoff: Cutoff,
    out: Annotated[Path, typer.Option(
        "--out", help="Output folder: OUT/<cutoff>/<table>/*.parquet, one subfolder per cutoff.")] = Path("features"),
    db: Db = None,
    engine: Engine = "duckdb",
    source: Source = None,
    spark_master: SparkMaster = None,
    tables: Annotated[
        str, typer.Option("--tables", help="Comma-separated: customers, rfm_summary, sequences.")
    ] = "customers,rfm_summary",
    period: Annotated[str, typer.Option("--period", help="Sequence periods: W (weeks) or M (months).")] = "W",
) -> None:
    """Compute the FeatureSet customer table (and the RFM summary, sequences) at CUTOFF; write Parquet.

    `customers`: one row per customer, every feature of the catalog;
    `rfm_summary`: frequency, recency, T (weeks), monetary_value ...;
    `sequences`: the non-zero (customer, period) cells, one column per channel.
    A rerun at the same cutoff replaces that cutoff's tables; other cutoffs are kept.
    """
    wanted = [t.strip() for t in tables.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(TABLES))
    if unknown or not wanted:
        raise LtvcastError(f"--tables {tables!r}: choose from {', '.join(TABLES)}")
    check_engine(engine, db, source)
    from ltvcast.features.catalog import TYPE_SLOTS, unused_type_slots
    from ltvcast.timeutil import to_day

    day = to_day(cutoff).date().isoformat()
    counts = [cols[0] for cols in TYPE_SLOTS.values()]
    if engine == "spark":
        from ltvcast.engines.spark import session
        from ltvcast.features.spark import build_spark, open_shop, rfm_summary_spark

        spark = session(spark_master, conf={"spark.ui.showConsoleProgress": "false"})
        shop = open_shop(spark, source)
        from pyspark.sql import functions as F  # after session(): it explains a missing PySpark

        feats = build_spark(shop, cutoff, period) if {"customers", "sequences"} & set(wanted) else None
        frames = {
            "customers": lambda: feats.customers,
            "rfm_summary": lambda: rfm_summary_spark(shop, cutoff, "W"),
            "sequences": lambda: feats.sequence_rows,
        }
        for table in wanted:
            target, frame = str(out / day / table), frames[table]()
            if table == "customers":  # computed once (cached) for the slot totals and the write
                cached = frame.persist()
                unused = unused_type_slots(cached.agg(*[F.sum(c).alias(c) for c in counts]).first().asDict())
                frame = cached.drop(*unused)
            frame.write.mode("overwrite").parquet(target)
            rows = spark.read.parquet(target).count()
            if rows == 0 and table != "sequences":
                first = spark.sql("SELECT MIN(timestamp) FROM transactions").first()[0]
                raise _nothing_before(day, first, shop.meta.get("shop_timezone", "UTC"), source)
            console.print(f"{table}: {rows:,} rows -> {target}")
            if table == "customers":
                cached.unpersist()
                _say_unused(unused)
        return
    if db is None:
        raise LtvcastError("--engine duckdb reads a store: give --db PATH")
    from ltvcast.features import build, rfm_summary
    from ltvcast.store import Store

    with Store.open(db, read_only=True) as store:
        meta = store.meta()
        frames = {}
        if {"customers", "sequences"} & set(wanted):
            fs = build(store, cutoff, period)
            frames["customers"], frames["sequences"] = fs.customers, _sequence_rows(fs)
        if "rfm_summary" in wanted:
            frames["rfm_summary"] = rfm_summary(
                store.transactions(), cutoff, "W", timezone=meta.get("shop_timezone", "UTC"),
                revenue_basis=meta.get("revenue_basis", "net"), allow_future_cutoff=True,
            )
        if (frames["customers"] if "customers" in frames else frames["rfm_summary"]).empty:
            first = store.fetch("SELECT MIN(timestamp) FROM transactions")[0][0]
            raise _nothing_before(day, first, meta.get("shop_timezone", "UTC"), db)
    unused = []
    if "customers" in frames:
        unused = unused_type_slots(frames["customers"][counts].sum())
        frames["customers"] = frames["customers"].drop(columns=unused)
    for table in wanted:
        folder = out / day / table
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        frames[table].to_parquet(folder / "part-0.parquet", index=False)
        console.print(f"{table}: {len(frames[table]):,} rows -> {folder}")
    _say_unused(unused)


def _say_unused(unused: list[str]) -> None:
    if unused:
        console.print(f"left out of customers (event-type slots no customer used; docs/models.md): "
                      f"{', '.join(unused)}", highlight=False)


@app.command("lake")
@user_errors
def lake_command(
    db: Annotated[Path, typer.Option("--db", help="DuckDB store written by `ltvcast ingest`.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet root: OUT/<table>/part-0.parquet.")] = Path("lake"),
) -> None:
    """Write the store's canonical tables as the Parquet layout `--engine spark --source` reads (docs/scale.md)."""
    from ltvcast.engines.lake import write_source
    from ltvcast.store import Store

    if not db.exists():
        raise LtvcastError(f"store {db} does not exist; run `ltvcast ingest` first")
    with Store.open(db, read_only=True) as store:
        counts = write_source(store.connection, out)
    for table, rows in counts.items():
        console.print(f"{table}: {rows:,} rows -> {out / table}")
