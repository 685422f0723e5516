"""Before/after table for seasons and the level (issue 13): total error %, nGini, churn AUC.

"before" = the learned models without same-season windows and without the
top-down reconciliation (``seasonal_years=0, reconcile="off"``: today's
behaviour); "after" = the defaults. Shops: CDNOW 1998-01-01 / 26 weeks
(``--dataset cdnow``) and a seasonal simulated shop (``--db``, e.g. written by
``--simulate DIR``: 8,000 customers, 36 months from 2022-01-01, seed 11,
cutoff 2024-07-01, 184 days holding the Q4 peak).

``--before trend`` instead compares the learned models without the weekly
trend inputs (``spend_slope_13w``, ``spend_13w_vs_52w``, ``visit_slope_13w``,
``visits_13w_vs_52w``: left out as age columns) with the defaults.

Run:  .venv/bin/python benchmarks/bench_seasons.py --simulate /tmp/seasons_shop --models gbm,auto
      .venv/bin/python benchmarks/bench_seasons.py --dataset cdnow --cutoff 1998-01-01 --horizon 181 --models gbm,auto
      .venv/bin/python benchmarks/bench_seasons.py --simulate /tmp/seasons_shop3 --customers 3000 --before trend
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from ltvcast.data.datasets import open_history
from ltvcast.evaluate.backtest import evaluation_window, horizon_actuals
from ltvcast.metrics import evaluate

TREND = ("spend_slope_13w", "spend_13w_vs_52w", "visit_slope_13w", "visits_13w_vs_52w")


def leave_out(columns: tuple[str, ...]) -> None:
    """Make ``columns`` (of :data:`TREND`) age columns, which the learned models skip; the other trend columns are used."""
    import ltvcast.models.learned.deep.inputs as deep_inputs
    import ltvcast.models.learned.features as learned_features

    base = tuple(c for c in learned_features.AGE_COLUMNS if c not in TREND)
    learned_features.AGE_COLUMNS = deep_inputs.AGE_COLUMNS = base + tuple(columns)


def make(name: str, after: bool, deep_epochs: int | None, before: str = "seasons", left_out=TREND):
    settings = {} if after or before != "seasons" else {"seasonal_years": 0, "reconcile": "off"}
    if before == "trend":
        leave_out(() if after else left_out)
    if name == "gbm":
        from ltvcast.models.learned.gbm import GBMForecaster

        return GBMForecaster(**settings)
    if name == "auto":
        from ltvcast.models.learned.auto import AutoForecaster

        return AutoForecaster(**settings)
    if name == "deep":
        from ltvcast.models.learned.deep import DeepForecaster

        extra = {} if deep_epochs is None else {"max_epochs": deep_epochs}
        return DeepForecaster(**settings, **extra)
    raise SystemExit(f"unknown model {name}")


def simulate(folder: Path, customers: int) -> Path:
    from ltvcast.ingest.config import load_config
    from ltvcast.ingest.multisource import ingest_sources
    from ltvcast.simulate import simulate_shop
    from ltvcast.store import Store

    db = folder / "shop.duckdb"
    folder.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        simulate_shop(
            folder / "sim", customers=customers, months=36, seed=11, start="2022-01-01", dirty_rate=0.0, overwrite=True
        )
        with Store.open(db) as store:
            ingest_sources(load_config(folder / "sim" / "sources.yaml"), store)
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset")
    ap.add_argument("--db")
    ap.add_argument("--simulate", help="folder: simulate the seasonal shop there (once) and use it")
    ap.add_argument("--cutoff", default="2024-07-01")
    ap.add_argument("--horizon", type=float, default=184.0)
    ap.add_argument("--models", default="gbm,auto")
    ap.add_argument("--deep-epochs", type=int, default=None)
    ap.add_argument("--customers", type=int, default=8000, help="with --simulate")
    ap.add_argument("--before", choices=("seasons", "trend"), default="seasons", help="what 'before' leaves out")
    ap.add_argument("--after-only", action="store_true", help="fit the defaults only")
    ap.add_argument("--before-only", action="store_true", help="fit the 'before' settings only")
    ap.add_argument("--leave-out", default=",".join(TREND), help="--before trend: the trend columns left out")
    args = ap.parse_args()
    print("load average", os.getloadavg(), flush=True)
    db = simulate(Path(args.simulate), args.customers) if args.simulate else args.db
    data = open_history(dataset=args.dataset, db=db)
    days, _ = evaluation_window(args.cutoff, args.horizon, data.observation_end)
    rows = []
    actuals = None
    for name in args.models.split(","):
        for after in (True,) if args.after_only else (False,) if args.before_only else (False, True):
            t = time.perf_counter()
            model = make(name, after, args.deep_epochs, args.before, tuple(args.leave_out.split(","))).fit(data, args.cutoff, days)
            pred = model.predict(data, args.cutoff, days)
            if actuals is None:
                actuals = horizon_actuals(data, pred["customer_id"].drop_duplicates(), args.cutoff, days)
                # next-purchase days are not scored here (total, ranking and churn are)
                actuals = actuals.drop(columns="actual_next_purchase_days")
            m = evaluate(pred, actuals).iloc[0]
            lf = getattr(model, "level_forecast_", None)
            rows.append(
                {
                    "model": name,
                    "run": "after" if after else "before",
                    "total_pred": round(float(m["total_spend_pred"])),
                    "total_actual": round(float(m["total_spend_actual"])),
                    "total_err_%": round(float(m["total_spend_error_pct"]), 1),
                    "gini": round(float(m["gini_norm"]), 4),
                    "churn_auc": round(float(m["churn_auc"]), 4),
                    "top_down_existing": None if lf is None else round(lf.existing_total),
                    "reconciled": getattr(model, "reconciled_", None),
                    "seconds": round(time.perf_counter() - t),
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
            for note in model.notes_:
                if "calibrations fitted" in note or "top-down" in note or "level factor" in note:
                    print("   ", note, flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
