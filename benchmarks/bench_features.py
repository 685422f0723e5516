"""Time ``ltvcast.features.build`` on a large store and print seconds and peak memory.

Usage:
    python benchmarks/bench_features.py synthetic [--lines 1e7] [--customers 2e6] [--events 1e7]
                                                  [--db PATH] [--keep]
    python benchmarks/bench_features.py simulate  [--customers 2e6] [--months 24] [--seed 0]
                                                  [--out DIR] [--db PATH] [--keep]
    python benchmarks/bench_features.py build DB [--cutoff YYYY-MM-DD] [--period W] [--lookback 52]
                                                  [--memory-limit 3GB] [--threads N]

* ``synthetic`` writes the contract's tables (docs/multisource.md) straight
  into a DuckDB file with SQL (uniformly random customers, 3 lines per order,
  5 % of lines returned 3-40 days later, sessions of 5 events), then runs
  ``build`` in a fresh process.
* ``simulate`` runs ``ltvcast.simulate.simulate_shop(out_dir, customers,
  months, seed)`` and ``ltvcast ingest --config OUT/sources.yaml --db DB``,
  then runs ``build`` in a fresh process.
* ``build`` times ``build(store, cutoff)`` alone on an existing store.

The goal of the issue: 10M order lines / 2M customers in about 60 s and at
most 4 GiB peak. Peak memory is the ``build`` process's ``ru_maxrss`` (the
interpreter and libraries included, about 150 MB), so the store is written by
a different process than the one measured. The weekly tensor alone is
n_customers × lookback × channels × 4 bytes (2M × 52 × 7 × 4 = 2.9 GB).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb


def synthetic_store(db: Path, lines: int, customers: int, events: int, start: str = "2022-01-01",
                    days: int = 730) -> None:
    """The contract tables at the given size, written with DuckDB SQL only."""
    con = duckdb.connect(str(db))
    n_orders = lines // 3
    con.execute(f"""
    CREATE TABLE store_meta AS SELECT * FROM (VALUES ('schema_version', '2'), ('shop_currency', 'EUR'),
        ('shop_timezone', 'Europe/Berlin'), ('revenue_basis', 'net')) v(key, value);
    CREATE TABLE products AS
        SELECT 'P' || i AS product_id, 'cat' || (i % 40) AS category,
               CASE WHEN i % 7 = 0 THEN NULL ELSE 'brand' || (i % 150) END AS brand,
               CAST(5 + i % 95 AS DECIMAL(18,4)) AS list_price
        FROM range(5000) t(i);
    CREATE TABLE customers AS
        SELECT 'c' || lpad(CAST(i AS VARCHAR), 8, '0') AS customer_id,
               CASE WHEN i % 10 = 0 THEN NULL
                    ELSE TIMESTAMP '{start}' + to_seconds(CAST(hash(i, 1) % ({days} * 86400) AS BIGINT)) END
                   AS signup_at,
               ['ads', 'search', 'social', 'direct'][1 + i % 4] AS acquisition_channel,
               'region' || (i % 12) AS region, 'DE' AS country
        FROM range({customers}) t(i);
    CREATE TABLE orders AS
        SELECT 'o' || i AS order_id,
               'c' || lpad(CAST(hash(i, 2) % {customers} AS VARCHAR), 8, '0') AS customer_id,
               TIMESTAMP '{start}' + to_seconds(CAST(hash(i, 3) % ({days} * 86400) AS BIGINT)) AS timestamp,
               ['web', 'app', 'store'][1 + i % 3] AS channel, 'EUR' AS currency
        FROM range({n_orders}) t(i);
    CREATE TABLE order_items AS
        SELECT o.order_id, l.line, 'P' || (hash(o.order_id, l.line) % 5000) AS product_id,
               CAST(1 + hash(o.order_id, l.line, 1) % 3 AS DOUBLE) AS quantity,
               CAST(2 + (hash(o.order_id, l.line, 2) % 9000) / 100.0 AS DECIMAL(18,4)) AS unit_price,
               CAST(CASE WHEN hash(o.order_id, l.line, 3) % 5 = 0 THEN 1 ELSE 0 END AS DECIMAL(18,4)) AS discount
        FROM orders o, (SELECT * FROM range(1, 4) r(line)) l;
    ALTER TABLE order_items ADD COLUMN amount DECIMAL(18,4);
    UPDATE order_items SET amount = CAST(quantity AS DECIMAL(18,4)) * unit_price - discount;
    CREATE TABLE returns AS
        SELECT 'r' || i.order_id || '_' || i.line AS return_id, i.order_id, i.line, o.customer_id,
               o.timestamp + to_days(CAST(3 + hash(i.order_id, i.line, 4) % 38 AS INTEGER)) AS timestamp,
               i.quantity, i.amount, TRUE AS linked
        FROM order_items i JOIN orders o USING (order_id)
        WHERE hash(i.order_id, i.line, 5) % 20 = 0;
    CREATE TABLE transactions AS
        SELECT 1 AS ingest_id, o.customer_id, o.timestamp, i.amount, i.order_id, i.line, i.quantity,
               i.product_id, p.category, p.brand, o.channel, 'EUR' AS currency, 'sale' AS kind
        FROM order_items i JOIN orders o USING (order_id) JOIN products p USING (product_id)
        UNION ALL
        SELECT 1, r.customer_id, r.timestamp, -r.amount, r.order_id, r.line, -r.quantity, i.product_id,
               p.category, p.brand, o.channel, 'EUR', 'return'
        FROM returns r JOIN order_items i USING (order_id, line) JOIN orders o USING (order_id)
        JOIN products p USING (product_id);
    CREATE TABLE events AS
        SELECT 'e' || i AS event_id,
               'c' || lpad(CAST(hash(i // 5, 6) % {customers} AS VARCHAR), 8, '0') AS customer_id,
               's' || (i // 5) AS session_id,
               TIMESTAMP '{start}' + to_seconds(CAST(hash(i // 5, 7) % ({days} * 86400) + (i % 5) * 60 AS BIGINT))
                   AS timestamp,
               ['session_start', 'view', 'view', 'add_to_cart', 'purchase'][1 + i % 5] AS event_type,
               'P' || (hash(i) % 5000) AS product_id
        FROM range({events}) t(i);
    """)
    con.close()


def simulated_store(out: Path, db: Path, customers: int, months: int, seed: int) -> None:
    """simulate_shop + `ltvcast ingest --config` (needs ltvcast.simulate and the multi-source ingest)."""
    from ltvcast.simulate import simulate_shop

    simulate_shop(out, customers=customers, months=months, seed=seed, overwrite=True)
    exe = Path(sys.executable).with_name("ltvcast")
    cmd = [str(exe) if exe.exists() else "ltvcast", "ingest", "--config", str(out / "sources.yaml"), "--db", str(db)]
    subprocess.run(cmd, check=True)


def run_build(db: Path, cutoff: str | None, period: str, lookback: int | None, memory_limit: str | None,
              threads: int | None, lean_allocator: bool = False) -> int:
    from ltvcast.features import build

    con = duckdb.connect(str(db), read_only=True)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if lean_allocator:
        con.execute("SET allocator_background_threads = true")
        con.execute("SET allocator_flush_threshold = '32MB'")
    if cutoff is None:
        last = con.execute("SELECT MAX(timestamp) FROM transactions").fetchone()[0]
        cutoff = str((last - timedelta(days=90)).date())
    sizes = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("transactions", "events")}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    fs = build(con, cutoff, period=period, lookback=lookback)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    con.close()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"store: {sizes['transactions']:,} transactions rows, {sizes['events']:,} events; {cpus} CPUs")
    print(f"build(cutoff={cutoff}, period={period}): {len(fs.customers):,} customers x "
          f"{fs.customers.shape[1] - 1} features; sequences {fs.sequences.shape} "
          f"({fs.sequences.nbytes / 2**30:.2f} GiB)")
    print(f"  {seconds:.1f} s, peak RSS {peak / 1024:.2f} GiB (before build {rss0 / 1024:.2f} GiB)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    syn = sub.add_parser("synthetic")
    syn.add_argument("--lines", type=float, default=1e7)
    syn.add_argument("--customers", type=float, default=2e6)
    syn.add_argument("--events", type=float, default=1e7)
    sim = sub.add_parser("simulate")
    sim.add_argument("--customers", type=float, default=2e6)
    sim.add_argument("--months", type=int, default=24)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", type=Path, default=None)
    for p in (syn, sim):
        p.add_argument("--db", type=Path, default=None)
        p.add_argument("--keep", action="store_true")
    bld = sub.add_parser("build")
    bld.add_argument("db", type=Path)
    for p in (syn, sim, bld):
        p.add_argument("--cutoff", default=None)
        p.add_argument("--period", default="W")
        p.add_argument("--lookback", type=int, default=None)
        p.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 3GB")
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--lean-allocator", action="store_true",
                       help="SET allocator_background_threads=true, allocator_flush_threshold='32MB' "
                            "(DuckDB returns freed memory to the OS sooner)")
    args = parser.parse_args(argv)

    if args.mode == "build":
        return run_build(args.db, args.cutoff, args.period, args.lookback, args.memory_limit, args.threads,
                         args.lean_allocator)

    tmp = Path(tempfile.mkdtemp(prefix="ltvcast-bench-features-"))
    db = args.db or tmp / "shop.duckdb"
    started = time.perf_counter()
    if args.mode == "synthetic":
        synthetic_store(db, int(args.lines), int(args.customers), int(args.events))
    else:
        simulated_store(args.out or tmp / "shop", db, int(args.customers), args.months, args.seed)
    print(f"store written in {time.perf_counter() - started:.1f} s: {db}")
    cmd = [sys.executable, __file__, "build", str(db), "--period", args.period]
    for flag, value in (("--cutoff", args.cutoff), ("--lookback", args.lookback),
                        ("--memory-limit", args.memory_limit), ("--threads", args.threads)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.lean_allocator:
        cmd.append("--lean-allocator")
    rc = subprocess.run(cmd, check=False).returncode
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif not any(tmp.iterdir()):
        tmp.rmdir()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
