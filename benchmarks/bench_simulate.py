"""Time `simulate_shop` and print order lines per second and peak memory.

Usage: python benchmarks/bench_simulate.py [--lines 1000000] [--months 24]
       [--chunk-customers 20000] [--seed 0] [--out DIR] [--keep]

The number of customers is chosen for about ``--lines`` order lines (about
5.5 lines per customer over 24 months with the default process). Peak RSS is
the process's ``ru_maxrss`` (it includes the interpreter and imported
libraries, about 150 MB). Without ``--out`` the files go to a temporary folder
that is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ltvcast.simulate import simulate_shop

LINES_PER_CUSTOMER_24M = 5.47


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=float, default=1e6, help="target number of order lines")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--chunk-customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the files written")
    args = parser.parse_args(argv)

    customers = max(1, round(args.lines / (LINES_PER_CUSTOMER_24M * args.months / 24)))
    out = args.out or Path(tempfile.mkdtemp(prefix="ltvcast-bench-")) / "shop"
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    summary = simulate_shop(
        out,
        customers=customers,
        months=args.months,
        seed=args.seed,
        chunk_customers=args.chunk_customers,
        overwrite=True,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = _folder_bytes(out)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"simulate_shop: {customers:,} customers, {args.months} months, chunks of {args.chunk_customers:,} "
          f"({summary.chunks} chunks), {cpus} CPUs visible")
    for kind, rows in summary.rows.items():
        print(f"  {kind:<12} {rows:>13,} rows  {len(summary.parts[kind]):>4} parts")
    print(f"  dirty rows   {summary.dirty_total:>13,}")
    print(f"order lines:   {summary.order_lines:,}")
    print(f"time:          {seconds:.1f} s")
    print(f"lines/s:       {summary.order_lines / seconds:,.0f}")
    print(f"events/s:      {summary.rows['events'] / seconds:,.0f}")
    print(f"peak RSS:      {peak:,.0f} MiB (before the run: {rss_before:,.0f} MiB)")
    print(f"on disk:       {size / 2**20:,.0f} MiB")
    if args.out is None and not args.keep:
        shutil.rmtree(out.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
