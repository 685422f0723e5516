"""Time of a backtest of every model on a simulated shop, per model and per stage; and of a rolling backtest.

Usage: python benchmarks/bench_backtest.py [--customers 50000] [--months 36] [--horizon 182]
       [--models naive,bgnbd,paretonbd,gbm,hybrid,auto,deep] [--cutoffs 4] [--stride 91] [--no-rolling]
       [--db shop.duckdb]

Simulates a shop (:func:`ltvcast.simulate.simulate_shop`, ``--customers`` accounts over ``--months``
months), ingests it (``ltvcast ingest --config``; ``--db`` reuses or keeps the store), then runs

1. ``run_backtest`` at the last cutoff whose ``--horizon`` window the data cover, every model;
2. ``run_rolling_backtest`` at ``--cutoffs`` cutoffs ``--stride`` days apart, ending there.

Stages, timed by wrapping the library's functions in this process (nothing in the library changes):
``features`` (:func:`ltvcast.features.build` and :func:`ltvcast.features.rfm_summary`, wherever a model
calls them, training windows included), ``labels`` (the training windows' labels:
:func:`ltvcast.features.horizon_labels` and ``next_purchase_labels`` called by the learned models),
``fit`` and ``predict`` (the rest of each model's fit and predict), ``scoring`` (the backtest's actuals,
metrics, level and notes). Per model: fit and predict split into those stages, and how many feature
builds it ran and at how many distinct cutoffs (a build repeated at a cutoff is work a shared FeatureSet
would save).

The reference, timed in the same process: one :func:`ltvcast.features.build` of the store at the
backtest's cutoff; each total is also printed as a multiple of it. ``os.getloadavg()`` is printed before
and after (absolute times on a shared machine move with its load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd

MODELS = "naive,bgnbd,paretonbd,gbm,hybrid,auto,deep"


class Clock:
    """Seconds per stage, attributed to the model whose step is running; feature builds counted per cutoff."""

    def __init__(self) -> None:
        self.model = "-"
        self.phase = "scoring"
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.builds: dict[str, list[str]] = defaultdict(list)
        self._inner = 0.0  # seconds of wrapped calls inside the current step
        self._mark = time.perf_counter()
        self._depth = 0

    def step(self, text: str) -> None:
        """The backtest's progress callback: ``fit NAME``, ``predict NAME``, ``score`` (maybe ``DAY: `` first)."""
        self._close()
        words = text.split(": ")[-1].split()
        self.phase = words[0] if words[0] in ("fit", "predict") else "scoring"
        self.model = words[1] if len(words) > 1 and self.phase != "scoring" else "-"

    def _close(self) -> None:
        now = time.perf_counter()
        self.seconds[(self.model, self.phase)] += now - self._mark - self._inner
        self._mark, self._inner = now, 0.0

    def finish(self) -> None:
        """Book the time since the last step."""
        self._close()
        self.model, self.phase = "-", "scoring"

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            if self._depth:  # a wrapped call inside another: booked by the outer one
                return fn(*args, **kwargs)
            if fn.__name__ == "build" and len(args) > 1:
                self.builds[self.model].append(str(pd.Timestamp(args[1]).date()))
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - t0
                self._depth -= 1
                self._inner += took
                self.seconds[(self.model, f"{self.phase} {stage}")] += took

        timed.__wrapped__ = fn
        return timed


def instrument(clock: Clock) -> None:
    """Replace the feature and label functions by timed ones in every loaded ltvcast module that imported them."""
    import ltvcast.features as features
    import ltvcast.features.labels as labels
    from ltvcast.models.catalog import MODEL_NAMES, make_forecaster

    for name in MODEL_NAMES:  # load every model module (their imports of the functions are what is replaced)
        try:
            make_forecaster(name)
        except Exception:  # noqa: BLE001 - a model that cannot be made is reported by the backtest
            pass
    wanted = {
        features.build: "features", features.rfm_summary: "features",
        labels.horizon_labels: "labels", labels.next_purchase_labels: "labels",
    }
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith("ltvcast.models"):
            continue
        for attr, value in list(vars(module).items()):
            original = getattr(value, "__wrapped__", value)  # wrapped by an earlier clock: wrap the original
            if callable(value) and original in wanted:
                setattr(module, attr, clock.wrap(wanted[original], original))


def shop(args, folder: Path) -> Path:
    """The store of the simulated shop (made unless ``--db`` names an existing one)."""
    from ltvcast.simulate import simulate_shop

    db = Path(args.db) if args.db else folder / "shop.duckdb"
    if db.exists():
        print(f"store: {db} (reused)")
        return db
    t0 = time.perf_counter()
    out = folder / "shop"
    simulate_shop(out, args.customers, args.months, seed=0)
    cli = [sys.executable, "-c", "from ltvcast.cli import main; main()"]
    proc = subprocess.run([*cli, "ingest", "--config", str(out / "sources.yaml"), "--db", str(db)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ingest failed: {proc.stderr.strip() or proc.stdout.strip()}")
    print(f"simulated shop: {args.customers:,} accounts, {args.months} months, simulated and ingested in "
          f"{time.perf_counter() - t0:.1f} s")
    return db


def report(title: str, clock: Clock, wall: float, reference: float, models: list[str]) -> None:
    print(f"\n{title}: {wall:.1f} s in all ({wall / reference:.0f}x the reference build)")
    rows = []
    stages = ("fit features", "fit labels", "fit", "predict features", "predict")
    for m in models:
        values = [clock.seconds.get((m, s), 0.0) for s in stages]
        days = clock.builds.get(m, [])
        rows.append([m, *[f"{v:.1f}" for v in values], f"{sum(values):.1f}",
                     f"{len(days)} at {len(set(days))}"])
    scoring = sum(v for (m, s), v in clock.seconds.items() if m == "-")
    rows.append(["scoring", *[""] * len(stages), f"{scoring:.1f}", ""])
    frame = pd.DataFrame(rows, columns=["model", *[f"{s} s" for s in stages], "total s", "builds at cutoffs"])
    print(frame.to_string(index=False))
    total = {s: sum(clock.seconds.get((m, s), 0.0) for m in models) for s in stages}
    split = ", ".join(f"{s} {v:.1f} s" for s, v in total.items())
    print(f"per stage, every model: {split}, scoring {scoring:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--horizon", type=float, default=182.0)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--cutoffs", type=int, default=4, help="cutoffs of the rolling backtest")
    parser.add_argument("--stride", type=int, default=91, help="days between the rolling backtest's cutoffs")
    parser.add_argument("--no-rolling", action="store_true")
    parser.add_argument("--db", default=None, help="a store to reuse (or to keep, when it does not exist yet)")
    args = parser.parse_args()

    from ltvcast.data.datasets import open_history
    from ltvcast.evaluate.backtest import run_backtest, run_rolling_backtest
    from ltvcast.features import build

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    print(f"load average at the start {os.getloadavg()}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        db = shop(args, Path(tmp))
        history = open_history(db=db)
        try:
            cutoff = (history.observation_end - pd.Timedelta(days=round(args.horizon) - 1)).date()
            t0 = time.perf_counter()
            build(history.store, cutoff, timezone=history.timezone, revenue_basis=history.revenue_basis)
            reference = time.perf_counter() - t0
            print(f"{history.transactions['customer_id'].nunique():,} customers with transactions, "
                  f"{len(history.transactions):,} rows; reference: one feature build at {cutoff}: {reference:.2f} s")
            clock = Clock()
            instrument(clock)
            t0 = time.perf_counter()
            result = run_backtest(history, str(cutoff), args.horizon, models, clock.step)
            clock.finish()
            report(f"backtest at {cutoff}, horizon {args.horizon:g} days", clock, time.perf_counter() - t0,
                   reference, models)
            if result.failures:
                print(f"failed: {result.failures}")
            print(result.metrics.drop(columns="cutoff").round(3).to_string(index=False))
            if not args.no_rolling:
                cutoffs = [str((pd.Timestamp(cutoff) - pd.Timedelta(days=args.stride * k)).date())
                           for k in range(args.cutoffs)]
                clock = Clock()
                instrument(clock)
                t0 = time.perf_counter()
                rolling = run_rolling_backtest(history, cutoffs, args.horizon, models, clock.step)
                clock.finish()
                report(f"rolling backtest at {len(cutoffs)} cutoffs {cutoffs[-1]} .. {cutoffs[0]}", clock,
                       time.perf_counter() - t0, reference, models)
                if rolling.failures:
                    print(f"failed: {rolling.failures}")
        finally:
            history.store.close()
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
