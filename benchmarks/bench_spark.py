"""Spark (local[2]) against DuckDB on the same Parquet files: features, RFM summary, scoring.

Usage:
    python benchmarks/bench_spark.py [--lines 1e7] [--master local[2]] [--dir DIR] [--keep] [--data DIR]

Writes a synthetic shop of LINES order lines (``bench_features.synthetic_store``:
LINES/5 customers, LINES events) and copies its canonical tables to the
Parquet layout of docs/scale.md. Then, each engine in a fresh process on
those files:

* ``features``: the FeatureSet customer table (``build`` on DuckDB views over
  the Parquet files / ``build_spark``), written as Parquet;
* ``rfm``: ``rfm_summary`` (DuckDB, over the transactions read from Parquet)
  / ``rfm_summary_spark``, written as Parquet;
* ``score``: a BG/NBD model (fitted once beforehand, registered) scores every
  customer: DuckDB ``write_scores`` over the summary / ``score_spark``
  (summary on Spark + ``mapInPandas``), written as Parquet; customers/s.

Peak memory: the largest sum of RSS over the worker's process tree (the
JVM included for Spark), sampled every 0.2 s. Prints the wall time and the
CPU seconds of the worker's process tree (JVM and Python workers included)
per stage, the Spark / DuckDB ratios and ``os.getloadavg()``. On a shared
machine the CPU seconds are the steadier figure: wall time there mostly
measures waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CUTOFF = "2023-07-01"
HORIZON = 182.0
STAGES = ("features", "rfm", "score")


def _tree(pid: int) -> tuple[int, float]:
    """Bytes resident in ``pid`` and all its descendants, and the CPU seconds they used so far (from /proc)."""
    children: dict[int, list[int]] = {}
    rss, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(parts[1]), []).append(int(entry))
            rss[int(entry)] = int(parts[21]) * os.sysconf("SC_PAGE_SIZE")
            cpu[int(entry)] = sum(int(parts[i]) for i in (11, 12, 13, 14)) / tick  # own + waited-for children
        except (OSError, IndexError, ValueError):
            continue
    total, seconds, todo = 0, 0.0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        seconds += cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total, seconds


def _tree_rss(pid: int) -> int:
    return _tree(pid)[0]


class Clock:
    """Wall and CPU seconds (this process and its children: the JVM, Python workers) per stage."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), _tree(os.getpid())[1]

    def stop(self, stage: str) -> None:
        self.times[stage] = time.perf_counter() - self._wall
        self.cpu[stage] = _tree(os.getpid())[1] - self._cpu


def run_worker(args: list[str]) -> tuple[dict, int]:
    """Run this script as a worker; return its JSON result and the peak RSS of its process tree."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker", *args], stdout=subprocess.PIPE, text=True)
    peak = [0]

    def poll():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.2)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak[0]


def worker(engine: str, lake: str, registry: str, outdir: str, master: str) -> dict:
    """One engine, three stages, timed; returns {'times': {stage: s}, 'cpu': {stage: CPU s}, 'customers': n}."""
    out = Path(outdir)
    clock = Clock()
    if engine == "duckdb":
        import duckdb
        import pandas as pd

        from ltvcast.engines.spark import CANONICAL_TABLES
        from ltvcast.features import build, rfm_summary
        from ltvcast.registry import load_model
        from ltvcast.serve.score import write_scores

        con = duckdb.connect(":memory:")
        for table in CANONICAL_TABLES:
            if (Path(lake) / table).is_dir():
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{lake}/{table}/*.parquet')")
        meta = dict(con.execute("SELECT key, value FROM store_meta").fetchall())
        clock.start()
        fs = build(con, CUTOFF)
        fs.customers.to_parquet(out / "duck_features.parquet", index=False)
        clock.stop("features")
        clock.start()
        tx = con.execute("SELECT * FROM transactions").df()
        summary = rfm_summary(tx, CUTOFF, "W", timezone=meta["shop_timezone"], revenue_basis=meta["revenue_basis"],
                              allow_future_cutoff=True)
        summary.to_parquet(out / "duck_rfm.parquet", index=False)
        clock.stop("rfm")
        model = load_model("bench", registry)
        clock.start()
        write_scores(model.forecaster, summary[["customer_id", "frequency", "recency", "T", "monetary_value"]],
                     pd.Timestamp(CUTOFF), HORIZON, out / "duck_scores.parquet", label="bench:1")
        clock.stop("score_predict")
        for table in (clock.times, clock.cpu):
            table["score"] = table["score_predict"] + table["rfm"]
        customers = len(summary)
    else:
        from ltvcast.engines.spark import session
        from ltvcast.features.spark import build_spark, open_shop, rfm_summary_spark
        from ltvcast.registry import load_model
        from ltvcast.serve.spark_score import score_spark

        clock.start()
        spark = session(master, app_name="ltvcast-bench",
                        conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                              "spark.driver.memory": "3g"})
        spark.sparkContext.setLogLevel("ERROR")
        shop = open_shop(spark, lake)
        clock.stop("startup")
        clock.start()
        feats = build_spark(shop, CUTOFF)
        feats.customers.write.mode("overwrite").parquet(str(out / "spark_features"))
        feats.release()
        clock.stop("features")
        clock.start()
        rfm_summary_spark(shop, CUTOFF, "W").write.mode("overwrite").parquet(str(out / "spark_rfm"))
        clock.stop("rfm")
        clock.start()
        done = score_spark(load_model("bench", registry), shop, CUTOFF, HORIZON, str(out / "spark_scores"))
        clock.stop("score")
        customers = done.customers
        spark.stop()
    return {"times": clock.times, "cpu": clock.cpu, "customers": customers}


def prepare(lines: int, root: Path) -> str:
    """Synthetic store -> Parquet layout; a BG/NBD model registered in root/registry."""
    import duckdb
    from bench_features import synthetic_store

    from ltvcast.data.datasets import History
    from ltvcast.engines.lake import write_source
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.registry import save_model
    from ltvcast.store import Store
    from ltvcast.timeutil import observation_end

    db = root / "shop.duckdb"
    synthetic_store(db, lines, customers=max(lines // 5, 1), events=lines)
    con = duckdb.connect(str(db))
    write_source(con, root / "lake")
    tx = con.execute(f"SELECT customer_id, timestamp, amount, kind, order_id FROM transactions "
                     f"WHERE timestamp < TIMESTAMP '{CUTOFF}'").df()
    con.close()
    history = History(tx, observation_end(tx, None), "bench", Store.open(":memory:"), "Europe/Berlin", "net")
    model = make_forecaster("bgnbd").fit(history, CUTOFF, HORIZON)
    save_model(model, name="bench", cutoff=CUTOFF, horizon_days=HORIZON, history=history, root=root / "registry")
    db.unlink()
    return str(root / "lake")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=float, default=1e7)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder for the prepared shop of LINES lines (lake + registry), kept; reused when present")
    parser.add_argument("--worker", nargs=5, metavar=("ENGINE", "LAKE", "REGISTRY", "OUT", "MASTER"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    lines = int(args.lines)
    if args.data is not None:
        root = args.data / f"lines_{lines}"
        root.mkdir(parents=True, exist_ok=True)
        for engine in ("duckdb", "spark"):
            shutil.rmtree(root / engine, ignore_errors=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="bench_spark_", dir=args.dir))
    try:
        t = time.perf_counter()
        if (root / "registry").is_dir() and (root / "lake" / "transactions").is_dir():
            lake = str(root / "lake")
            print(f"{lines:,} order lines reused from {lake}")
        else:
            lake = prepare(lines, root)
            print(f"{lines:,} order lines written to {lake} in {time.perf_counter() - t:.0f} s")
        results = {}
        for engine in ("duckdb", "spark"):
            (root / engine).mkdir()
            results[engine] = run_worker([engine, lake, str(root / "registry"), str(root / engine), args.master])
        (duck, duck_peak), (spark, spark_peak) = results["duckdb"], results["spark"]
        print(f"{'stage':10} {'duckdb s':>10} {'spark s':>10} {'spark/duckdb':>13} "
              f"{'duckdb cpu s':>13} {'spark cpu s':>12} {'cpu ratio':>10}")
        for stage in STAGES:
            a, b = duck["times"][stage], spark["times"][stage]
            ca, cb = duck["cpu"][stage], spark["cpu"][stage]
            print(f"{stage:10} {a:10.1f} {b:10.1f} {b / a:13.2f} {ca:13.1f} {cb:12.1f} {cb / max(ca, 1e-9):10.2f}")
        print(f"spark startup (session + source) {spark['times']['startup']:.1f} s, "
              f"{spark['cpu']['startup']:.1f} CPU s")
        for name, res, peak in (("duckdb", duck, duck_peak), ("spark", spark, spark_peak)):
            rate = res["customers"] / res["times"]["score"]
            print(f"{name}: {res['customers']:,} customers, scoring {rate:,.0f} customers/s "
                  f"(inputs included), peak RSS {peak / 2**30:.2f} GiB")
        print(f"duckdb predict+write only: {duck['customers'] / duck['times']['score_predict']:,.0f} customers/s")
        print(f"loadavg {os.getloadavg()}")
        print("JSON " + json.dumps({"lines": lines, "duckdb": duck, "spark": spark,
                                    "peak": {"duckdb": duck_peak, "spark": spark_peak}}))
    finally:
        if not args.keep and args.data is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
