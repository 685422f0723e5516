"""Deep model fit time by phase, against the fit's own forward/backward passes.

Usage: python benchmarks/bench_deep.py [--model deep] [--dataset cdnow] [--cutoff 1998-01-01] [--horizon 181]
       [--simulate CUSTOMERS] [--months 24] [--reference] [--score CUSTOMERS] [--set NAME=VALUE ...]

Fits one deep model (default ``deep``) on CDNOW (or, with ``--simulate N``, on
a simulated shop of N customers, cutoff 26 weeks before its last day) and
prints, in wall seconds and in CPU seconds of the process (every thread; on
shared cores the CPU time moves much less with the load than the wall time),
each phase of ``fit``: the examples (the windows' features and sequences,
:class:`~ltvcast.models.learned.deep.SequenceFeatureMaker`, and their labels),
the per-period spend of the labels, the tensors and input moments, the
validation training, the refit, the calibration and the reconciliation's
prediction at the cutoff; each training run with its epochs, steps and the
time of its validation losses.

The network's own arithmetic is timed inside the fit, on the fit's own
batches: each training forward pass with its five head losses, each
backward pass and each AdamW step. The ratio ``fit / (forward + backward +
step)`` is what ``fit`` spends beyond the network's training arithmetic
(goal <= 2, issue 12), printed for wall and CPU time. ``--reference`` also
times, after the fit, a fresh network of the same configuration through as
many bare steps of the same batch sizes on random rows with whole
sequences (no shared empty periods skipped). ``--score N`` then times batch
scoring of N customers with the network in onnxruntime (:func:`score`). The
load average is printed beside the times.
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

# as ltvcast.models.learned.deep sets it, before anything loads torch: spinning OpenMP threads are many
# times slower on shared cores (this script imports torch before the package)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_WALL: dict[str, float] = defaultdict(float)
_CPU: dict[str, float] = defaultdict(float)
_CALLS: dict[str, int] = defaultdict(int)
_ORIGINALS: list[tuple[object, str, object]] = []  # what _timed replaced, put back by _restore


def _timed(owner, name: str, key: str, when=None) -> None:
    """Wrap ``owner.name`` so that its calls add to phase ``key`` (only calls where ``when()`` holds, if given)."""
    original = getattr(owner, name, None)
    if original is None:  # an older version of the code, without this function
        return
    _ORIGINALS.append((owner, name, original))

    def wrapper(*args, **kwargs):
        if when is not None and not when():
            return original(*args, **kwargs)
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            _WALL[key] += time.perf_counter() - w0
            _CPU[key] += time.process_time() - c0
            _CALLS[key] += 1

    setattr(owner, name, wrapper)


def _restore() -> None:
    """Put back every function :func:`_timed` wrapped (torch.export reads ``DeepNet.forward``'s signature)."""
    while _ORIGINALS:
        owner, name, original = _ORIGINALS.pop()
        setattr(owner, name, original)


def _row(key: str, calls: int | None = None, wall: float | None = None, cpu: float | None = None, note: str = "") -> None:
    calls = _CALLS[key] if calls is None else calls
    wall = _WALL[key] if wall is None else wall
    cpu = _CPU[key] if cpu is None else cpu
    print(f"{key:<44} {calls:>6} {wall:>8.1f} {cpu:>8.1f}   {note}")


def bench(model_name: str, history, cutoff, horizon: float, settings: dict, reference: bool):
    import numpy as np
    import torch

    import ltvcast.models.learned.deep.forecaster as fmod
    from ltvcast.models.catalog import make_forecaster
    from ltvcast.models.learned.deep import DeepNet, SequenceFeatureMaker
    from ltvcast.models.learned.deep.training import Tensors, head_losses, torch_state

    runs: list[dict] = []
    batches: list[int] = []
    captured = {}
    training = torch.is_grad_enabled

    _timed(fmod, "training_examples", "examples (features, sequences, labels)")
    _timed(SequenceFeatureMaker, "__call__", "  of which features + sequences")
    _timed(fmod, "period_spend", "per-period label spend")
    _timed(fmod.DeepForecaster, "_tensors", "tensors")
    _timed(fmod.DeepForecaster, "_fit_inputs", "input moments, vocabularies")
    _timed(fmod.DeepForecaster, "_evaluate", "validation losses")
    _timed(fmod.DeepForecaster, "_calibrate", "calibration")
    _timed(fmod.DeepForecaster, "_raw", "network outputs for the calibrations")
    _timed(fmod.DeepForecaster, "inputs", "reconcile: inputs at the cutoff")
    _timed(fmod.DeepForecaster, "predict_inputs", "reconcile: prediction at the cutoff")
    _timed(DeepNet, "forward", "forward", when=training)
    _timed(torch.Tensor, "backward", "backward")
    _timed(torch.optim.AdamW, "step", "AdamW step")
    _timed(torch.nn.utils, "clip_grad_norm_", "gradient clipping")
    _timed(torch, "_foreach_lerp_", "weight average")

    losses = fmod.head_losses

    def counting_losses(out, t):
        if torch.is_grad_enabled():
            batches.append(len(t.spend))
            w0, c0 = time.perf_counter(), time.process_time()
            result = losses(out, t)
            _WALL["forward"] += time.perf_counter() - w0
            _CPU["forward"] += time.process_time() - c0
            return result
        return losses(out, t)

    fmod.head_losses = counting_losses
    skipped: list[int] = []
    common_lead = Tensors.common_lead

    def counting_lead(self):
        skipped.append(common_lead(self))
        return skipped[-1]

    train = fmod.DeepForecaster._train

    def timed_train(self, data, *args, **kwargs):
        captured["data"] = data
        before = len(batches)
        nets = {k: (_WALL[k], _CPU[k]) for k in ("forward", "backward", "AdamW step", "validation losses")}
        Tensors.common_lead = counting_lead
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            result = train(self, data, *args, **kwargs)
        finally:
            Tensors.common_lead = common_lead
        run = {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0, "epochs": len(result[2]),
               "best": result[1], "steps": len(batches) - before}
        for k, (w, c) in nets.items():
            run[k] = (_WALL[k] - w, _CPU[k] - c)
        runs.append(run)
        return result

    fmod.DeepForecaster._train = timed_train
    _ORIGINALS.extend([(fmod, "head_losses", losses), (fmod.DeepForecaster, "_train", train)])

    load0 = os.getloadavg()
    forecaster = make_forecaster(model_name)
    for name, value in settings.items():  # the constructor's parameters are plain attributes
        if not hasattr(forecaster, name):
            raise SystemExit(f"{model_name} has no setting {name!r}")
        setattr(forecaster, name, value)
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        forecaster.fit(history, cutoff, horizon)
    finally:
        _restore()
    fit_wall, fit_cpu = time.perf_counter() - w0, time.process_time() - c0
    load1 = os.getloadavg()

    data = captured["data"]
    print(f"{model_name}: {len(data):,} training rows, {forecaster.config_['lookback']} periods × "
          f"{forecaster.config_['n_channels']} channels, {forecaster.config_['n_numeric']} numeric inputs, "
          f"{forecaster.n_threads} torch threads, batches of {forecaster.batch_size}, "
          f"{forecaster.epoch_rows or len(data):,} rows an epoch, patience {forecaster.patience}"
          + (f"; settings {settings}" if settings else ""))
    print(f"load average (1, 5, 15 min): before fit {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}; "
          f"after fit {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")
    print(f"{'phase':<44} {'calls':>6} {'wall s':>8} {'CPU s':>8}")
    for key in ("examples (features, sequences, labels)", "  of which features + sequences", "per-period label spend",
                "tensors", "input moments, vocabularies"):
        _row(key)
    names = ["validation network", "final network (refit)"] if len(runs) == 2 else ["network"] * len(runs)
    for name, run in zip(names, runs):
        fb = [sum(run[k][i] for k in ("forward", "backward", "AdamW step")) for i in (0, 1)]
        _row(name, 1, run["wall"], run["cpu"],
             f"{run['epochs']} epochs (best {run['best']}), {run['steps']} steps, {run['wall'] / max(run['epochs'], 1):.2f} "
             f"s/epoch; forward/backward/step {fb[0]:.1f} s wall, {fb[1]:.1f} s CPU; validation losses "
             f"{run['validation losses'][0]:.1f} s wall")
    for key in ("calibration", "network outputs for the calibrations", "reconcile: inputs at the cutoff",
                "reconcile: prediction at the cutoff"):
        _row(key)
    print("the network's training arithmetic (every run):")
    for key in ("forward", "backward", "AdamW step", "gradient clipping", "weight average"):
        _row("  " + key if key != "forward" else "  forward + head losses", _CALLS[key] if key != "forward" else len(batches),
             _WALL[key], _CPU[key])
    if skipped:
        share = sum(skipped) / (len(skipped) * forecaster.config_["lookback"])
        print(f"recurrent steps run once per training batch (periods empty in every row of the batch): {share:.0%}")
    net_wall = sum(_WALL[k] for k in ("forward", "backward", "AdamW step"))
    net_cpu = sum(_CPU[k] for k in ("forward", "backward", "AdamW step"))
    print(f"fit total: {fit_wall:.1f} s wall, {fit_cpu:.1f} s CPU; its forward/backward/step ({len(batches)} steps, "
          f"{sum(batches):,} rows): {net_wall:.1f} s wall, {net_cpu:.1f} s CPU; ratio fit / forward-backward "
          f"{fit_wall / net_wall:.2f}x wall, {fit_cpu / net_cpu:.2f}x CPU (goal <= 2)")
    if not reference:
        return forecaster
    net = DeepNet(forecaster.config_)
    opt = torch.optim.AdamW(net.parameters(), lr=forecaster.learning_rate, weight_decay=forecaster.weight_decay,
                            fused=True)
    rng = np.random.default_rng(0)
    with torch_state(forecaster.n_threads, forecaster.seed):
        net.train()
        w1, c1 = time.perf_counter(), time.process_time()
        for size in batches:
            batch = data.take(torch.from_numpy(rng.integers(0, len(data), size)))
            loss = sum(head_losses(net(*batch.inputs()), batch).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bare_wall, bare_cpu = time.perf_counter() - w1, time.process_time() - c1
    print(f"reference: {len(batches)} bare steps on random rows, whole sequences: {bare_wall:.1f} s wall, "
          f"{bare_cpu:.1f} s CPU (load {os.getloadavg()[0]:.1f}); ratio fit / reference {fit_wall / bare_wall:.2f}x wall, "
          f"{fit_cpu / bare_cpu:.2f}x CPU")
    return forecaster


def score(forecaster, history, cutoff, horizon: float, customers: int) -> None:
    """Batch scoring with the network in onnxruntime: ``write_scores`` against the bare ``OnnxRunner`` call.

    The fitted network is exported (:meth:`DeepForecaster.to_onnx`, checked
    against torch) and run by :meth:`DeepForecaster.use_onnx`, as ``ltvcast
    score`` runs a registered model; the shop's inputs at the cutoff are
    repeated under new ids to ``customers`` rows. Timed: the bare call of the
    runner on the network's input arrays of those rows, and
    :func:`ltvcast.serve.score.write_scores` (inputs to Parquet in chunks of
    100,000: the arrays, the network, the calibrated columns, the frame).
    """
    import numpy as np
    import pandas as pd

    from ltvcast.serve.score import write_scores

    forecaster.use_onnx(forecaster.to_onnx("bench", atol=1e-4).blob)
    inputs = forecaster.inputs(history, cutoff, horizon)
    reps = -(-customers // len(inputs))
    big = pd.concat([inputs] * reps, ignore_index=True).iloc[:customers]
    big["customer_id"] = pd.array(np.char.add("c", np.arange(customers).astype(str)), dtype="string")
    arrays = forecaster.network_inputs(big, cutoff, horizon)
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in (1, 2):  # the second pair shows how much the load moved the first
            load = os.getloadavg()[0]
            w0, c0 = time.perf_counter(), time.process_time()
            forecaster._onnx(*arrays)
            bare_wall, bare_cpu = time.perf_counter() - w0, time.process_time() - c0
            w1, c1 = time.perf_counter(), time.process_time()
            write_scores(forecaster, big, cutoff, horizon, Path(tmp) / "scores.parquet", label="bench")
            score_wall, score_cpu = time.perf_counter() - w1, time.process_time() - c1
            print(f"ONNX scoring, {customers:,} customers, {forecaster._onnx.n_threads} runner threads, load {load:.1f} "
                  f"(run {attempt}): write_scores {score_wall:.1f} s wall ({customers / score_wall:,.0f} customers/s), "
                  f"{score_cpu:.1f} s CPU; bare OnnxRunner call {bare_wall:.1f} s wall "
                  f"({customers / bare_wall:,.0f} customers/s), {bare_cpu:.1f} s CPU; ratio {score_wall / bare_wall:.2f}x "
                  f"wall, {score_cpu / bare_cpu:.2f}x CPU (goal >= 50,000 customers/s, <= 1.5x)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deep")
    parser.add_argument("--dataset", default="cdnow", help="built-in dataset: cdnow or cdnow-sample")
    parser.add_argument("--cutoff", default=None, help="default: 1998-01-01 on CDNOW, 26 weeks before the end otherwise")
    parser.add_argument("--horizon", type=float, default=181.0, help="days")
    parser.add_argument("--simulate", type=int, default=0, help="a simulated shop of this many customers instead of CDNOW")
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--score", type=int, default=0, metavar="CUSTOMERS",
                        help="after the fit, time ONNX batch scoring of this many customers (the inputs repeated)")
    parser.add_argument("--reference", action="store_true", help="also time bare steps on random rows after the fit")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a model setting, e.g. --set patience=5 (a number, True/False/None or text)")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        name, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        settings[name] = {"True": True, "False": False, "None": None}.get(value, value) if isinstance(value, str) else value
    import pandas as pd

    from ltvcast.data.datasets import open_history

    if not args.simulate:
        print(f"{args.dataset}, cutoff {args.cutoff or '1998-01-01'}, {args.horizon:g} days")
        history, cutoff = open_history(dataset=args.dataset), args.cutoff or "1998-01-01"
        forecaster = bench(args.model, history, cutoff, args.horizon, settings, args.reference)
        if args.score:
            score(forecaster, history, cutoff, args.horizon, args.score)
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
        forecaster = bench(args.model, history, cutoff, args.horizon, settings, args.reference)
        if args.score:
            score(forecaster, history, cutoff, args.horizon, args.score)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
