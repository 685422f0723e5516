"""Time a multi-source ``ltvcast ingest --config`` and print wall time and peak memory.

Usage:
    python benchmarks/bench_ingest.py [--events 1e7] [--customers 5e4] [--out DIR] [--keep]
    python benchmarks/bench_ingest.py --profile [--events 2e5]     # largest allocations (tracemalloc)

The shop is written with DuckDB SQL (``COPY ... TO`` CSV, bounded memory) in
the shape of issue 11's shop: customers (with an extra ``age_band``),
orders (with ``promo_name``), order_items with string line ids
(``L0000000137``), repeated identical lines under distinct ids and a
fraction ``discount`` column, returns (with ``return_reason``), and
``--events`` events of six types (session_start, view, add_to_cart,
purchase, email_open, search; with ``campaign_id``); one order per 25 events,
two lines per order. Then, each in a fresh process (peak = its own
``ru_maxrss``, the interpreter and libraries included, ~150 MB):

* ``reference``: a bare DuckDB ``read_csv`` of the same files (count rows);
* ``ingest``: :func:`ltvcast.ingest.multisource.ingest_sources` into a new store.

Printed: rows, wall seconds, peak MiB of each, the ratios (time and memory
against the reference, peak against the CSV size), and the load average
(the machine is shared: read timings beside it). Goal of issue 11: the
10M-event shop in at most 2 GiB peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

GOAL_MIB = 2048


def write_shop(root: Path, events: int, customers: int, seed: int = 0) -> dict[str, int]:
    """Write the CSV files and sources.yaml under ``root``; return rows per file."""
    root.mkdir(parents=True, exist_ok=True)
    orders = max(events // 25, 1)
    con = duckdb.connect()
    con.execute(f"SELECT setseed({0.5 + seed / 1e6})")
    start = "TIMESTAMP '2023-01-01'"

    def copy(name: str, query: str) -> None:
        con.execute(f"COPY ({query}) TO '{root / name}' (HEADER, DELIMITER ',')")

    copy("customers.csv", f"""
        SELECT 'c' || i AS customer_id, {start} + to_days(CAST(i % 365 AS INTEGER)) AS signup_at,
               ['north','south','east','west'][1 + i % 4] AS region, ['18-24','25-34','35-54','55+'][1 + i % 4] AS age_band
        FROM range({customers}) t(i)""")
    copy("orders.csv", f"""
        SELECT 'O' || i AS order_id, 'c' || (hash(i) % {customers}) AS customer_id,
               {start} + to_seconds(CAST(hash(i * 7) % 47304000 AS BIGINT)) AS created,
               CASE WHEN i % 10 = 0 THEN 'spring' END AS promo_name
        FROM range({orders}) t(i)""")
    # two lines per order; every 20th order's second line repeats the first (distinct line id)
    copy("order_items.csv", f"""
        SELECT 'L' || lpad(CAST(2 * i + k AS VARCHAR), 10, '0') AS order_item_id, 'O' || i AS order_id,
               'P' || CASE WHEN k = 1 AND i % 20 = 0 THEN hash(i) % 500 ELSE hash(i * 3 + k) % 500 END AS product_id,
               1 + CAST(CASE WHEN k = 1 AND i % 20 = 0 THEN 0 ELSE hash(i + k) % 3 END AS INTEGER) AS quantity,
               round(5 + CAST(CASE WHEN k = 1 AND i % 20 = 0 THEN hash(i) ELSE hash(i * 5 + k) END % 9500 AS DOUBLE) / 100, 2)
                   AS unit_price,
               CASE WHEN i % 4 = 0 THEN 0.1 ELSE 0 END AS discount
        FROM range({orders}) t(i), range(2) s(k)""")
    copy("returns.csv", f"""
        SELECT 'R' || i AS return_id, 'O' || i AS order_id, {start} + to_seconds(CAST(hash(i * 7) % 47304000 AS BIGINT))
                   + INTERVAL 5 DAY AS timestamp, 5.00 AS amount, 'too small' AS return_reason
        FROM range(0, {orders}, 20) t(i)""")
    copy("events.csv", f"""
        SELECT 'e' || i AS event_id, 'c' || (hash(i // 5) % {customers}) AS customer_id, 's' || (i // 5) AS session_id,
               {start} + to_seconds(CAST(hash(i // 5) % 47304000 AS BIGINT) + i % 5 * 30) AS timestamp,
               ['session_start','view','add_to_cart','purchase','email_open','search'][1 + CAST(hash(i) % 6 AS INTEGER)]
                   AS event_type,
               CASE WHEN hash(i) % 6 = 4 THEN 'k' || (i % 100) END AS campaign_id
        FROM range({events}) t(i)""")
    con.close()
    (root / "sources.yaml").write_text(
        "shop: {currency: EUR, timezone: UTC}\n"
        "sources:\n"
        "  - {kind: customers, path: customers.csv}\n"
        "  - {kind: orders, path: orders.csv, mapping: {timestamp: created}}\n"
        "  - {kind: order_items, path: order_items.csv, mapping: {line: order_item_id, discount_rate: discount}}\n"
        "  - {kind: returns, path: returns.csv}\n"
        "  - {kind: events, path: events.csv}\n",
        encoding="utf-8",
    )
    return {"customers": customers, "orders": orders, "order_items": 2 * orders,
            "returns": len(range(0, orders, 20)), "events": events}


def _peak_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


def _reference(root: Path) -> dict:
    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = 0
    for name in ("customers", "orders", "order_items", "returns", "events"):
        rows += con.execute(f"SELECT count(*) FROM read_csv('{root / name}.csv', all_varchar=true)").fetchone()[0]
    con.close()
    return {"rows": rows, "seconds": time.perf_counter() - t0, "peak_mib": _peak_mib()}


def _ingest(root: Path, db: Path) -> dict:
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.store import Store

    t0 = time.perf_counter()
    with Store.open(db) as store:
        result = ingest_sources(load_config(root / "sources.yaml"), store)
    counts = {r.kind: [r.counts.rows_read, r.counts.rows_kept, r.counts.rows_quarantined, r.counts.duplicates_dropped]
              for r in result.sources}
    return {"rows": sum(c[0] for c in counts.values()), "seconds": time.perf_counter() - t0,
            "peak_mib": _peak_mib(), "counts": counts}


def _profile(root: Path, db: Path, top: int = 8) -> None:
    """Snapshot Python allocations at every ingest stage; print the stages and the top allocations
    (ltvcast frames of their tracebacks) at the stage holding the most memory."""
    import tracemalloc

    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.store import Store

    tracemalloc.start(12)
    best: list = [0, "", None]

    def step(text: str) -> None:
        current, _ = tracemalloc.get_traced_memory()
        print(f"{current / 2**20:8,.0f} MiB held before: {text[:90]}")
        if current > best[0]:
            best[:] = [current, text, tracemalloc.take_snapshot()]

    with Store.open(db) as store:
        ingest_sources(load_config(root / "sources.yaml"), store, progress=step)
    _, peak = tracemalloc.get_traced_memory()
    print(f"tracemalloc peak {peak / 2**20:,.0f} MiB (Python allocations only; DuckDB's own memory not traced)")
    print(f"largest holders before {best[1][:90]!r}:")
    for stat in best[2].statistics("traceback")[:top]:
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback if "ltvcast" in f.filename]
        print(f"{stat.size / 2**20:10,.1f} MiB  {' <- '.join(reversed(frames[-4:])) or stat.traceback[0]}")


def _child(mode: str, root: Path, db: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--out", str(root), "--db", str(db)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{mode} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse the arguments, write the shop, time the reference and the ingest, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=float, default=1e7)
    ap.add_argument("--customers", type=float, default=5e4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--db", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--child", choices=("reference", "ingest"), default=None)
    args = ap.parse_args()
    if args.child:
        fn = _reference(args.out) if args.child == "reference" else _ingest(args.out, args.db)
        print(json.dumps(fn))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    root = args.out or tmp / "shop"
    db = args.db or tmp / "shop.duckdb"
    try:
        t0 = time.perf_counter()
        rows = write_shop(root, int(args.events), int(args.customers))
        size = sum(f.stat().st_size for f in root.glob("*.csv"))
        print(f"shop written in {time.perf_counter() - t0:.1f} s: {rows} ({size / 2**20:,.0f} MiB of CSV)")
        if args.profile:
            _profile(root, db)
            return
        ref = _child("reference", root, db)
        ing = _child("ingest", root, db)
        print(f"{'':10} {'rows':>12} {'seconds':>9} {'peak MiB':>9}")
        print(f"{'reference':10} {ref['rows']:>12,} {ref['seconds']:>9.1f} {ref['peak_mib']:>9,.0f}   bare DuckDB read_csv")
        print(f"{'ingest':10} {ing['rows']:>12,} {ing['seconds']:>9.1f} {ing['peak_mib']:>9,.0f}   ingest_sources")
        print(f"ratio ingest/reference: {ing['seconds'] / ref['seconds']:.1f}x time, "
              f"{ing['peak_mib'] / ref['peak_mib']:.1f}x memory; goal peak <= {GOAL_MIB} MiB: "
              f"{'met' if ing['peak_mib'] <= GOAL_MIB else 'NOT met'}")
        print(f"peak / input size: {ing['peak_mib'] / (size / 2**20):.1f}x ({size / 2**20:,.0f} MiB of CSV); "
              f"peak per million events: {ing['peak_mib'] / (rows['events'] / 1e6):,.0f} MiB")
        print("per source [read, kept, quarantined, duplicates]:", ing["counts"])
        print("load average (1, 5, 15 min):", " ".join(f"{x:.2f}" for x in os.getloadavg()), f"on {os.cpu_count()} cpus")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
