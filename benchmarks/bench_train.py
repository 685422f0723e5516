"""Training time and peak memory of every model on CDNOW (and, optionally, a simulated shop).

Usage: python benchmarks/bench_train.py [--models naive,bgnbd,paretonbd,gbm,hybrid,auto,deep]
       [--cutoff 1998-01-01] [--horizon 181] [--simulate CUSTOMERS] [--months 24]

Each model runs in its own child process (so that peak memory is that
model's alone): open the data, fit before the cutoff, predict the horizon.
Printed per model: seconds to open the data, to fit, to predict, the
child's peak resident memory (``ru_maxrss``, which includes the interpreter,
pandas, DuckDB and the data, about 300-400 MB on CDNOW before any model),
and how good the predictions are on the horizon after the cutoff (which the
data must cover): normalized Gini of ``pred_spend``, churn ROC AUC and the
total spend error (:mod:`ltvcast.metrics`).

``--simulate N`` also benchmarks a simulated shop of N customers over
``--months`` months (:func:`ltvcast.simulate.simulate_shop`, ingested with
``ltvcast ingest --config``), cutoff 26 weeks before its last day.
The learned models use two threads (``n_jobs=2``, ``n_threads=2``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("naive", "bgnbd", "paretonbd", "gbm", "hybrid", "auto", "deep")


def one(model: str, dataset: str | None, db: str | None, cutoff: str | None, horizon: float) -> dict:
    """Run one model in this process; return timings and peak memory."""
    import pandas as pd

    from ltvcast.data.datasets import open_history
    from ltvcast.features import horizon_labels
    from ltvcast.metrics import churn_auc, churn_labels, normalized_gini, total_error_pct
    from ltvcast.models.catalog import make_forecaster

    t0 = time.perf_counter()
    history = open_history(dataset=dataset, db=db)
    if cutoff is None:
        cutoff = str((history.observation_end - pd.Timedelta(days=round(horizon) - 1)).date())
    t1 = time.perf_counter()
    forecaster = make_forecaster(model)
    forecaster.fit(history, cutoff, horizon)
    t2 = time.perf_counter()
    predictions = forecaster.predict(history, cutoff, horizon)
    t3 = time.perf_counter()
    actual = horizon_labels(
        history.transactions, predictions["customer_id"], cutoff, horizon,
        timezone=history.timezone, revenue_basis=history.revenue_basis,
    ).set_index("customer_id").loc[predictions["customer_id"].astype(str)]
    spend, pred = actual["actual_spend"].to_numpy(float), predictions["pred_spend"].to_numpy(float)
    return {
        "model": model,
        "cutoff": cutoff,
        "customers": len(predictions),
        "transactions": len(history.transactions),
        "open_s": t1 - t0,
        "fit_s": t2 - t1,
        "predict_s": t3 - t2,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "gini": normalized_gini(spend, pred),
        "churn_auc": churn_auc(churn_labels(actual["actual_transactions"]), predictions["p_churn"]),
        "total_error_pct": total_error_pct(spend, pred),
    }


def run_all(models: list[str], label: str, source: list[str], cutoff: str | None, horizon: float) -> None:
    print(f"\n{label}")
    print(
        f"{'model':<10} {'customers':>9} {'open s':>7} {'fit s':>8} {'predict s':>9} {'peak RSS MB':>11} "
        f"{'Gini':>6} {'AUC':>6} {'total %':>8}"
    )
    for model in models:
        cmd = [sys.executable, __file__, "--one", model, "--horizon", str(horizon), *source]
        if cutoff:
            cmd += ["--cutoff", cutoff]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{model:<10} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['model']:<10} {r['customers']:>9,} {r['open_s']:>7.1f} {r['fit_s']:>8.1f} "
            f"{r['predict_s']:>9.1f} {r['peak_rss_mb']:>11.0f} {r['gini']:>6.3f} {r['churn_auc']:>6.3f} "
            f"{r['total_error_pct']:>+8.1f}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cutoff", default=None, help="default: 1998-01-01 on CDNOW, 26 weeks before the end otherwise")
    parser.add_argument("--horizon", type=float, default=181.0, help="days (CDNOW: 181 observed days after 1998-01-01)")
    parser.add_argument("--simulate", type=int, default=0, help="also a simulated shop of this many customers")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.dataset, args.db, args.cutoff, args.horizon)))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    run_all(models, f"CDNOW, cutoff {args.cutoff or '1998-01-01'}, {args.horizon:g} days",
            ["--dataset", "cdnow"], args.cutoff or "1998-01-01", args.horizon)
    if args.simulate:
        from ltvcast.simulate import simulate_shop

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "shop"
            db = Path(tmp) / "shop.duckdb"
            t0 = time.perf_counter()
            simulate_shop(out, args.simulate, args.months, seed=0)
            cli = str(Path(sys.executable).with_name("ltvcast"))
            ingest = [cli, "ingest", "--config", str(out / "sources.yaml"), "--db", str(db)]
            proc = subprocess.run(ingest, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"simulated shop: ingest failed: {proc.stderr.strip() or proc.stdout.strip()}")
                return 1
            print(f"\nsimulated shop: {args.simulate:,} customers, {args.months} months, "
                  f"simulated and ingested in {time.perf_counter() - t0:.1f} s")
            run_all(models, f"simulated shop, horizon {args.horizon:g} days", ["--db", str(db)], None, args.horizon)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
