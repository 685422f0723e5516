"""gbm fit and batch scoring speed on CDNOW, as ratios against plain LightGBM in the same process.

Usage: python benchmarks/bench_gbm.py [--customers 500000] [--db SHOP.duckdb] [--threads 2]

Fit (issue 12, goal 1: ratio <= 30): ``gbm`` (every default) fitted at
1998-01-01 for 181 days, against an *anchor*: one LightGBM Tweedie booster
of 300 rounds on five RFM features (frequency, recency, T, monetary_value,
total_spend in weeks, :func:`ltvcast.features.rfm_summary`) of the one
window ``[1997-07-04, 1998-01-01)``, labels its spend. The fit's stages are
printed beside it: the windows' features and labels, the boosting.

Scoring (goal 5, gbm half: >= 100,000 customers/s, ratio <= 1.5): the
model's inputs at the cutoff repeated to ``--customers`` rows, scored
through :meth:`~ltvcast.models.learned.gbm.GBMForecaster.predict_columns`
(what ``ltvcast score`` runs per chunk), against the bare LightGBM predict
calls of its five boosters on the same float32 matrix.

``--db`` also times a fit on a store (e.g. a simulated shop of 100k
accounts; goal: <= 60 s), cutoff 26 weeks before its last day.
Every line prints the absolute times and ``os.getloadavg()``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

CUTOFF = "1998-01-01"
HORIZON = 181.0


def _load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def anchor_seconds(history, threads: int) -> float:
    """Seconds of the anchor: one Tweedie booster, 300 rounds, five RFM features of one window."""
    import lightgbm as lgb

    from ltvcast.features import horizon_labels, rfm_summary

    c0 = pd.Timestamp(CUTOFF) - pd.Timedelta(days=HORIZON)
    t0 = time.perf_counter()
    s = rfm_summary(history.transactions, c0, unit="W", timezone=history.timezone, revenue_basis=history.revenue_basis)
    y = horizon_labels(history.transactions, s["customer_id"], c0.date(), HORIZON, timezone=history.timezone,
                       revenue_basis=history.revenue_basis)["actual_spend"].to_numpy(float)
    X = s[["frequency", "recency", "T", "monetary_value", "total_spend"]].to_numpy(np.float32)
    params = {"objective": "tweedie", "verbose": -1, "num_threads": threads, "seed": 0, "deterministic": True}
    lgb.train(params, lgb.Dataset(X, np.maximum(y, 0.0)), num_boost_round=300)
    return time.perf_counter() - t0


def fit_gbm(history, cutoff, horizon: float, threads: int):
    """The default gbm fitted at ``cutoff``; returns (model, seconds, seconds of windows + features)."""
    from ltvcast.models.learned.gbm import GBMForecaster

    model = GBMForecaster(n_jobs=threads)
    t0 = time.perf_counter()
    prep = model.prepare(history, cutoff, horizon)
    t1 = time.perf_counter()
    model.fit_prepared(prep)
    return model, time.perf_counter() - t0, t1 - t0


def scoring(model, history, customers: int, threads: int) -> tuple[float, float]:
    """(seconds of predict_columns, seconds of the bare booster predicts) on ``customers`` rows."""
    inputs = model.inputs(history, CUTOFF, HORIZON)
    big = pd.concat([inputs] * -(-customers // len(inputs)), ignore_index=True).iloc[:customers]
    for b in (model._spend, model._ziln, model._tx, model._churn, model._next):
        b.booster.params["num_threads"] = threads
    t0 = time.perf_counter()
    model.predict_columns(big, HORIZON)
    full = time.perf_counter() - t0
    X = model._matrix(big.assign(label_days=HORIZON))
    boosters = {id(b): b for b in (model._spend, model._ziln, model._tx, model._churn, model._next)}.values()
    t1 = time.perf_counter()
    for b in boosters:
        b.booster.predict(X, raw_score=True, num_iteration=b.rounds, num_threads=threads)
    return full, time.perf_counter() - t1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500_000, help="rows scored")
    parser.add_argument("--db", default=None, help="also time a fit on this store (26 weeks before its end)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from ltvcast.data.datasets import open_history

    print(_load())
    history = open_history(dataset="cdnow")
    history.transactions  # noqa: B018 - read before timing
    anchor = anchor_seconds(history, args.threads)
    model, fit_s, prep_s = fit_gbm(history, CUTOFF, HORIZON, args.threads)
    rounds = sum(b.rounds for b in (model._spend, model._ziln, model._tx, model._churn, model._next))
    print(f"CDNOW fit: gbm {fit_s:.1f} s (windows + features {prep_s:.1f} s, boosting and the rest "
          f"{fit_s - prep_s:.1f} s; final trees {rounds}), anchor {anchor:.2f} s; ratio {fit_s / anchor:.1f} "
          f"(goal <= 30); {_load()}")
    full, bare = scoring(model, history, args.customers, args.threads)
    print(f"scoring {args.customers:,} rows: {args.customers / full:,.0f} customers/s (goal >= 100,000), "
          f"{full:.2f} s vs bare booster predicts {bare:.2f} s; ratio {full / bare:.2f} (goal <= 1.5); {_load()}")
    if args.db:
        shop = open_history(db=args.db)
        shop.transactions  # noqa: B018
        cutoff = (shop.observation_end - pd.Timedelta(days=181)).normalize()
        _, s, p = fit_gbm(shop, cutoff, 182.0, args.threads)
        print(f"{args.db}: gbm fit {s:.1f} s (windows + features {p:.1f} s; goal <= 60 s); "
              f"anchor on CDNOW {anchor:.2f} s; {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
