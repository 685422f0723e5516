"""Batch scoring speed: customers per second per model family, for 1M customers.

Usage: python benchmarks/bench_score.py [--models bgnbd,paretonbd,gbm,deep,deep-onnx]
       [--customers 1000000] [--simulate 20000] [--months 24] [--chunk-size 100000]

A simulated shop of ``--simulate`` customers (:func:`ltvcast.simulate.simulate_shop`,
ingested with ``ltvcast ingest --config``) is the data; each model is fitted
26 weeks before its last day and its inputs (RFM summary or features) are
computed at that cutoff. The scoring stage —
:func:`ltvcast.serve.score.write_scores`: predict in chunks and write Parquet,
exactly what ``ltvcast score`` runs after the inputs — is timed on
``--customers`` rows made by repeating the simulated customers' inputs under
new ids (so 1M customers need no 1M-customer ingest). The inputs stage is
timed on the simulated shop itself and reported as its own rate. Each model
runs in its own child process; peak memory is that child's ``ru_maxrss``.
``deep-onnx`` (any deep model name + ``-onnx``) is that model registered,
exported (``ltvcast export``) and loaded again, so its network runs in
onnxruntime as ``ltvcast score`` runs it; the same seed gives ``deep`` and
``deep-onnx`` the same network.

For BTYD models the same rows are also predicted in one bare call of the
model's math (``predict_columns``: every column, quantiles and next purchase
included, no frame and no file) and in one call of the closed-form columns
alone (``n_draws=0``: expected count, spend, P(churn), P(alive)); the goal
of issue 12 is batch scoring at most 1.5x the bare call and at least
200,000 customers/s. ``ratio`` = scoring time / bare-call time; ``cf ratio``
= scoring time / closed-form-only time; ``cpu ratio`` the same as
``ratio`` in process CPU seconds (all threads), steadier than wall time on
a machine shared with other jobs. The load average is printed with each
model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("bgnbd", "paretonbd", "gbm", "deep", "deep-onnx")


def one(model: str, db: str, horizon: float, customers: int, chunk_size: int, out: str) -> dict:
    """Fit one model, time its inputs and its chunked scoring of ``customers`` rows."""
    import numpy as np
    import pandas as pd

    from ltvcast.data.datasets import open_history
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.serve.score import write_scores

    history = open_history(db=db)
    cutoff = (history.observation_end - pd.Timedelta(days=round(horizon) - 1)).normalize()
    forecaster = make_forecaster(model.removesuffix("-onnx")).fit(history, cutoff, horizon)
    if model.endswith("-onnx"):
        from ltvcast.registry import export_onnx, load_model, save_model

        root = Path(out).with_suffix(".models")
        export_onnx(save_model(forecaster, name=model, cutoff=cutoff, horizon_days=horizon, history=history, root=root))
        forecaster = load_model(model, root).forecaster
    t0 = time.perf_counter()
    inputs = forecaster.inputs(history, cutoff, horizon)
    inputs_s = time.perf_counter() - t0
    reps = -(-customers // len(inputs))
    big = pd.concat([inputs] * reps, ignore_index=True).iloc[:customers]
    big["customer_id"] = pd.array(np.char.add("c", np.arange(customers).astype(str)), dtype="string")
    clear = getattr(sys.modules.get("ltvcast.models.btyd_dist"), "_spend_table", None)
    if clear is not None:  # every timed call starts without the spend tables of an earlier one
        clear.cache_clear()
    t1, c1 = time.perf_counter(), time.process_time()
    write_scores(forecaster, big, cutoff, horizon, out, label=f"{model}:bench", chunk_size=chunk_size)
    score_s, score_cpu = time.perf_counter() - t1, time.process_time() - c1
    bare_s = closed_s = bare_cpu = float("nan")
    if hasattr(forecaster, "predict_columns"):  # the model's math alone, one call
        if clear is not None:
            clear.cache_clear()
        t2, c2 = time.perf_counter(), time.process_time()
        forecaster.predict_columns(big, horizon)
        bare_s, bare_cpu = time.perf_counter() - t2, time.process_time() - c2
    if hasattr(forecaster, "n_draws"):  # BTYD: the closed-form columns alone
        closed = copy.copy(forecaster)
        closed.n_draws = 0
        t3 = time.perf_counter()
        closed.predict_columns(big, horizon)
        closed_s = time.perf_counter() - t3
    return {
        "model": model,
        "shop_customers": len(inputs),
        "inputs_per_s": len(inputs) / inputs_s,
        "customers": customers,
        "score_s": score_s,
        "score_per_s": customers / score_s,
        "bare_s": bare_s,
        "score_cpu_s": score_cpu,
        "bare_cpu_s": bare_cpu,
        "closed_s": closed_s,
        "load": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--simulate", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--horizon", type=float, default=182.0)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        result = one(args.one, args.db, args.horizon, args.customers, args.chunk_size, args.out)
        print(json.dumps(result))
        return 0
    from ltvcast.simulate import simulate_shop

    with tempfile.TemporaryDirectory() as tmp:
        shop, db = Path(tmp) / "shop", Path(tmp) / "shop.duckdb"
        t0 = time.perf_counter()
        simulate_shop(shop, args.simulate, args.months, seed=0)
        cli = str(Path(sys.executable).with_name("ltvcast"))
        proc = subprocess.run([cli, "ingest", "--config", str(shop / "sources.yaml"), "--db", str(db)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"ingest failed: {proc.stderr.strip() or proc.stdout.strip()}")
            return 1
        print(f"simulated shop: {args.simulate:,} customers, {args.months} months, "
              f"simulated and ingested in {time.perf_counter() - t0:.1f} s")
        print(f"scoring {args.customers:,} customers in chunks of {args.chunk_size:,} to Parquet, "
              f"horizon {args.horizon:g} days")
        print(f"{'model':<10} {'inputs cust/s':>13} {'score s':>8} {'score cust/s':>13} {'bare s':>7} "
              f"{'ratio':>6} {'cpu ratio':>9} {'cf s':>6} {'cf ratio':>8} {'peak RSS MB':>11} {'load':>5}")
        for model in [m.strip() for m in args.models.split(",") if m.strip()]:
            cmd = [sys.executable, __file__, "--one", model, "--db", str(db), "--horizon", str(args.horizon),
                   "--customers", str(args.customers), "--chunk-size", str(args.chunk_size),
                   "--out", str(Path(tmp) / f"{model}.parquet")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{model:<10} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{r['model']:<10} {r['inputs_per_s']:>13,.0f} {r['score_s']:>8.2f} "
                  f"{r['score_per_s']:>13,.0f} {r['bare_s']:>7.2f} {r['score_s'] / r['bare_s']:>6.2f} "
                  f"{r['score_cpu_s'] / r['bare_cpu_s']:>9.2f} {r['closed_s']:>6.2f} {r['score_s'] / r['closed_s']:>8.2f} {r['peak_rss_mb']:>11.0f} "
                  f"{r['load']:>5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
