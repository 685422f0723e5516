"""Deep model fit time by stage, against the bare forward/backward passes of the same training.

Usage: python benchmarks/bench_deep.py [--model deep] [--cutoff 1998-01-01] [--horizon 181]
       [--simulate CUSTOMERS] [--months 24]

Fits one deep model (default ``deep``) on CDNOW (or, with ``--simulate N``, on
a simulated shop of N customers, cutoff 26 weeks before its last day) and
prints the wall time of each stage of ``fit``: the windows' features and
sequences (:class:`~ltvcast.models.learned.deep.SequenceFeatureMaker`), the
per-period spend of the labels, the tensors, each training run (epochs,
seconds per epoch, validation-loss evaluation inside it), the calibration,
and the rest (the reconciliation's prediction at the cutoff, notes).

The reference, timed in the same process on the same tensors right after
the fit: a fresh network of the same configuration run through exactly as
many gradient steps of the same batch sizes (rows drawn with a fixed seed;
forward, the five head losses, backward, AdamW step), and nothing else.
The ratio ``fit / reference`` is what ``fit`` spends beyond the network's own
training arithmetic (goal ≤ 2). The load average is printed beside the
times: on shared cores the absolute times move with it, the ratio much less.
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


def _timed(owner, name: str, key: str, times: dict, calls: dict) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times[key] += time.perf_counter() - t0
            calls[key] += 1

    setattr(owner, name, wrapper)


def bench(model_name: str, history, cutoff, horizon: float) -> None:
    import numpy as np
    import torch

    import ltvcast.models.learned.deep.forecaster as fmod
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.models.learned.deep import DeepNet, SequenceFeatureMaker
    from ltvcast.models.learned.deep.training import Tensors, head_losses, torch_state

    times: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    runs: list[dict] = []
    batches: list[int] = []
    captured = {}

    _timed(SequenceFeatureMaker, "__call__", "features + sequences", times, calls)
    _timed(fmod, "period_spend", "per-period label spend", times, calls)
    _timed(fmod.DeepForecaster, "_tensors", "tensors", times, calls)
    _timed(fmod.DeepForecaster, "_evaluate", "validation loss (in training)", times, calls)
    _timed(fmod.DeepForecaster, "_calibrate", "calibration", times, calls)
    _timed(fmod.DeepForecaster, "inputs", "inputs at the cutoff (reconcile)", times, calls)

    losses = fmod.head_losses

    def counting_losses(out, t):
        if torch.is_grad_enabled():
            batches.append(len(t.spend))
        return losses(out, t)

    fmod.head_losses = counting_losses
    skipped: list[int] = []
    common_lead = Tensors.common_lead

    def counting_lead(self):
        skipped.append(common_lead(self))
        return skipped[-1]

    Tensors.common_lead = counting_lead
    train = fmod.DeepForecaster._train

    def timed_train(self, data, *args, **kwargs):
        captured["data"] = data
        before = len(batches)
        t0 = time.perf_counter()
        result = train(self, data, *args, **kwargs)
        runs.append({"seconds": time.perf_counter() - t0, "epochs": len(result[2]), "steps": len(batches) - before})
        return result

    fmod.DeepForecaster._train = timed_train

    load0 = os.getloadavg()
    forecaster = make_forecaster(model_name)
    t0 = time.perf_counter()
    forecaster.fit(history, cutoff, horizon)
    fit_s = time.perf_counter() - t0
    load1 = os.getloadavg()

    data = captured["data"]
    net = DeepNet(forecaster.config_)
    opt = torch.optim.AdamW(net.parameters(), lr=forecaster.learning_rate, weight_decay=forecaster.weight_decay)
    rng = np.random.default_rng(0)
    with torch_state(forecaster.n_threads, forecaster.seed):
        net.train()
        t1 = time.perf_counter()
        for size in batches:
            batch = data.take(torch.from_numpy(rng.integers(0, len(data), size)))
            loss = sum(head_losses(net(*batch.inputs()), batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bare_s = time.perf_counter() - t1
    load2 = os.getloadavg()

    print(f"{model_name}: {len(data):,} training rows, {forecaster.config_['lookback']} periods × "
          f"{forecaster.config_['n_channels']} channels, {forecaster.config_['n_numeric']} numeric inputs, "
          f"{forecaster.n_threads} torch threads")
    print(f"load average (1, 5, 15 min): before fit {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}; "
          f"after fit {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}; after reference {load2[0]:.1f}")
    print(f"{'stage':<36} {'calls':>5} {'seconds':>8}")
    for key in ("features + sequences", "per-period label spend", "tensors"):
        print(f"{key:<36} {calls[key]:>5} {times[key]:>8.1f}")
    for i, run in enumerate(runs):
        label = ("validation network" if i == 0 and len(runs) > 1 else "final network") if len(runs) > 1 else "network"
        per_epoch = run["seconds"] / max(run["epochs"], 1)
        print(f"{label:<36} {1:>5} {run['seconds']:>8.1f}   {run['epochs']} epochs, {run['steps']} steps, "
              f"{per_epoch:.2f} s/epoch")
    for key in ("validation loss (in training)", "calibration", "inputs at the cutoff (reconcile)"):
        print(f"{key:<36} {calls[key]:>5} {times[key]:>8.1f}")
    if skipped:
        share = sum(skipped) / (len(skipped) * forecaster.config_["lookback"])
        print(f"recurrence steps run once per batch (periods empty in every row of the batch): {share:.0%}")
    print(f"fit total: {fit_s:.1f} s; reference ({len(batches)} bare forward/backward steps, "
          f"{sum(batches):,} rows): {bare_s:.1f} s; ratio fit / reference {fit_s / bare_s:.2f}x (goal <= 2)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deep")
    parser.add_argument("--cutoff", default=None, help="default: 1998-01-01 on CDNOW, 26 weeks before the end otherwise")
    parser.add_argument("--horizon", type=float, default=181.0, help="days")
    parser.add_argument("--simulate", type=int, default=0, help="a simulated shop of this many customers instead of CDNOW")
    parser.add_argument("--months", type=int, default=24)
    args = parser.parse_args(argv)
    import pandas as pd

    from ltvcast.data.datasets import open_history

    if not args.simulate:
        print(f"CDNOW, cutoff {args.cutoff or '1998-01-01'}, {args.horizon:g} days")
        bench(args.model, open_history(dataset="cdnow"), args.cutoff or "1998-01-01", args.horizon)
        return 0
    from ltvcast.simulate import simulate_shop

    with tempfile.TemporaryDirectory() as tmp:
        out, db = Path(tmp) / "shop", Path(tmp) / "shop.duckdb"
        t0 = time.perf_counter()
        simulate_shop(out, args.simulate, args.months, seed=0)
        cli = str(Path(sys.executable).with_name("ltvcast"))
        proc = subprocess.run([cli, "ingest", "--config", str(out / "sources.yaml"), "--db", str(db)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"ingest failed: {proc.stderr.strip() or proc.stdout.strip()}")
            return 1
        print(f"simulated shop: {args.simulate:,} customers, {args.months} months, "
              f"simulated and ingested in {time.perf_counter() - t0:.1f} s")
        history = open_history(db=str(db))
        cutoff = args.cutoff or str((history.observation_end - pd.Timedelta(days=round(args.horizon) - 1)).date())
        print(f"cutoff {cutoff}, {args.horizon:g} days")
        bench(args.model, history, cutoff, args.horizon)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
