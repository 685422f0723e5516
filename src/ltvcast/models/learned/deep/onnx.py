"""ONNX export of the deep model (``deep``, ``deep-lstm``, ``deep-transformer``) and prediction in onnxruntime.

:func:`export_checked` turns a fitted deep model's network into a checked
ONNX graph (:class:`~ltvcast.models.base.OnnxGraph`), reached through the
Forecaster hook :meth:`~ltvcast.models.base.Forecaster.to_onnx`;
:func:`ltvcast.registry.export_onnx` stores it as ``model.onnx`` beside the
version's ``model.pkl`` and :func:`ltvcast.registry.load_model` runs the
network through onnxruntime (:class:`OnnxRunner`, via
:meth:`~ltvcast.models.learned.deep.DeepForecaster.use_onnx`), so ``ltvcast
score`` and ``ltvcast serve`` use it without being told. Only the network
(:class:`~ltvcast.models.learned.deep.DeepNet`: raw inputs in, raw head
outputs out) is exported; the inputs, the calibration and the canonical frame
stay in Python and are unchanged.

**Exporter.** ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``
based exporter, the default and maintained one since torch 2.9; the
TorchScript exporter is deprecated) with a dynamic batch axis on every input
and output. Measured on torch 2.13: GRU, LSTM and Transformer encoders
export as ONNX ``GRU``/``LSTM`` ops and plain attention ops (opset 20);
without an initial hidden state the recurrent ops start from zeros at any
batch size, so the graph holds for every batch size (checked below at 1, 2
and 300 rows). An export takes 5-15 s of CPU; the old exporter took 0.2-0.7 s
and gave the same outputs.

**Check before writing.** The ONNX graph and the torch network are run on the
same inputs and the export is refused unless every output agrees to ``atol``
(default 1e-4, absolute): every head (``ziln`` ``(f_p, μ, f_s)``,
``log_shares`` of the trajectory, ``log_transactions``, ``churn_logit``,
``next_purchase_days``) at batch sizes 1, 2 and 300. A registered model
keeps no input rows (the training data stays out of the artifact), so the
inputs are generated from the network's own fitted input moments: each
sequence channel and numeric feature drawn as ``sign(z)·(e^|z| − 1)`` with
``z ~ N(mean, 2·std)`` of its ``sign(x)·ln(1 + |x|)`` transform (half of the
sequence periods set to 0, as most customers' weeks are), 20 % of the
numeric values with a missing indicator set to NaN, text indexes uniform
over the vocabulary (0 = unknown included), ``label_days`` the fitted
horizon for two thirds of the rows and uniform in ``[1, H]`` for the rest
(masked trajectory periods). A log share below −1000 is a masked period
(its share is exactly 0 in float32 and float64) and compares equal to
another one; otherwise NaN equals only NaN.

The manifest field ``onnx`` and the load-time checks are the registry's
(:func:`ltvcast.registry.export_onnx`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ltvcast.errors import LtvcastError
from ltvcast.models.base import OnnxGraph
from ltvcast.models.learned.deep.network import INPUT_NAMES, OUTPUT_NAMES

__all__ = ["OnnxRunner", "export_checked"]

#: Keys of :meth:`DeepForecaster._run <ltvcast.models.learned.deep.DeepForecaster>`'s dict, in ``OUTPUT_NAMES`` order.
_RAW_KEYS = ("ziln", "log_shares", "log_tx", "churn_logit", "next_days")
_MASKED_BELOW = -1000.0  # a masked trajectory logit is -1e4: exp() of it and of anything below -1000 is 0
_CHECK_BATCHES = (1, 2, 300)
# Rows per onnxruntime call: measured on 2 shared cores (default deep, 52 weeks x 7 channels, one thread),
# 1,024 rows ran 10-15 % faster than 4,096 and 20-40 % faster than 8,192-16,384 (activations stay in cache).
_RUN_ROWS = 1024


class OnnxRunner:
    """A deep model's exported network in onnxruntime sessions (CPUExecutionProvider).

    Called like :meth:`DeepForecaster._run <ltvcast.models.learned.deep.DeepForecaster>` without the network:
    ``runner(sequence, numeric, categorical, label_days)`` with arrays of the
    shapes of :class:`~ltvcast.models.learned.deep.DeepNet` returns the raw
    outputs as a dict of float64 arrays (``ziln`` (n, 3), ``log_shares``
    (n, K), ``log_tx``, ``churn_logit``, ``next_days`` (n,)). The rows are
    run 1,024 at a time, on ``n_threads`` threads each running whole
    chunks with one onnxruntime thread: rows are independent, and
    onnxruntime's own intra-op threads split each of the 52 recurrent steps
    and wait for each other (measured on 2 shared cores: two intra-op
    threads ran the default GRU at 12,000-16,000 rows/s, one at
    25,000-40,000). An empty input raises, as torch's ``_run`` does.
    Thread-safe (onnxruntime sessions are). Not picklable:
    :class:`DeepForecaster` leaves it out of its pickle.

    Args:
        model: path of an ``.onnx`` file, or its bytes.
        config: the forecaster's ``config_`` (the input sizes are checked).
        n_threads: threads running chunks at once.

    Raises:
        LtvcastError: onnxruntime cannot load the model, or its inputs are
            not ``INPUT_NAMES`` with this network's sizes.
    """

    def __init__(self, model: str | Path | bytes, config: dict, n_threads: int = 2) -> None:
        import onnxruntime as ort

        self.n_threads = max(1, int(n_threads))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the library does not write to the terminal
        source = model if isinstance(model, bytes) else str(model)
        what = "the ONNX model" if isinstance(model, bytes) else f"the ONNX model {model}"
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, NoSuchFile, ...)
            raise LtvcastError(f"onnxruntime cannot load {what}: {str(exc).strip().splitlines()[0]}") from None
        expected = {
            "sequence": [config["lookback"], config["n_channels"]],
            "numeric": [config["n_numeric"]],
            "categorical": [len(config["cat_sizes"])],
            "label_days": [],
        }
        got = {i.name: list(i.shape[1:]) for i in self.session.get_inputs()}
        if list(got) != list(INPUT_NAMES) or got != expected:
            raise LtvcastError(
                f"{what} does not fit this network: its inputs are {got}, the network's {expected} (after the batch)"
            )

    def __call__(self, sequence, numeric, categorical, label_days) -> dict[str, np.ndarray]:
        """Raw head outputs (float64) for raw input arrays; see the class docstring."""
        arrays = (
            np.asarray(sequence, dtype=np.float32),
            np.asarray(numeric, dtype=np.float32),
            np.asarray(categorical, dtype=np.int64),
            np.asarray(label_days, dtype=np.float32),
        )
        names = list(OUTPUT_NAMES)

        def run(lo: int) -> list[np.ndarray]:
            feed = {k: np.ascontiguousarray(a[lo : lo + _RUN_ROWS]) for k, a in zip(INPUT_NAMES, arrays)}
            return self.session.run(names, feed)

        starts = range(0, len(arrays[0]), _RUN_ROWS)
        if self.n_threads == 1 or len(starts) == 1:
            parts = [run(lo) for lo in starts]
        else:  # session.run releases the GIL
            with ThreadPoolExecutor(self.n_threads) as pool:
                parts = list(pool.map(run, starts))
        return {k: np.concatenate([p[i] for p in parts]).astype(np.float64) for i, k in enumerate(_RAW_KEYS)}


# ---------------------------------------------------------------------------- export
def export_checked(forecaster, label: str, *, atol: float, seed: int = 0) -> OnnxGraph:
    """Export a fitted deep model's network to ONNX, checked against torch (module docstring).

    Args:
        forecaster: a fitted :class:`~ltvcast.models.learned.deep.DeepForecaster`.
        label: the model's name in messages (``NAME:VERSION``).
        atol: largest |ONNX − torch| accepted on any output (absolute).
        seed: seed of the generated check inputs.

    Returns:
        The serialized graph and what the check measured.

    Raises:
        LtvcastError: the export fails, or an output differs from torch's by
            more than ``atol``.
    """
    import onnxruntime

    module, sample = forecaster.export_module(n_rows=2)
    # the exporter gets a copy (it may touch the module); the check compares with the network predict runs
    blob, opset = _export(copy.deepcopy(module).eval(), sample, label)
    runner = OnnxRunner(blob, forecaster.config_, n_threads=forecaster.n_threads)
    by_output = dict.fromkeys(OUTPUT_NAMES, 0.0)
    rows = 0
    for n in _CHECK_BATCHES:
        inputs = _check_inputs(forecaster, n, np.random.default_rng([seed, n]))
        with torch.no_grad():
            expected = [o.numpy() for o in module(*(torch.from_numpy(a) for a in inputs))]
        got = runner(*inputs)
        for name, key, a in zip(OUTPUT_NAMES, _RAW_KEYS, expected):
            by_output[name] = max(by_output[name], _max_abs_diff(name, a, got[key]))
        rows += n
    worst = max(by_output.values())
    if not worst <= atol:
        detail = ", ".join(f"{k} {v:.3g}" for k, v in by_output.items())
        raise LtvcastError(
            f"{label}: the ONNX export differs from torch by {worst:.3g} > {atol:g} (max |difference| per output: "
            f"{detail}); nothing was written"
        )
    return OnnxGraph(
        blob=blob,
        opset=opset,
        exporter=f"torch.onnx.export dynamo=True, torch {torch.__version__}",
        onnxruntime=onnxruntime.__version__,
        max_abs_diff=worst,
        max_abs_diff_by_output=by_output,
        checked_rows=rows,
    )


def _export(module: torch.nn.Module, sample: tuple[torch.Tensor, ...], label: str) -> tuple[bytes, int]:
    """The ONNX bytes and opset of ``module`` with a dynamic batch axis (the dynamo exporter)."""
    batch = torch.export.Dim("batch")
    names = INPUT_NAMES
    chatty = logging.getLogger("torch.onnx")  # e.g. "torchvision is not installed" at WARNING
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # deprecation notes from inside torch.export
            program = torch.onnx.export(
                module, sample, None, input_names=list(names), output_names=list(OUTPUT_NAMES),
                dynamic_shapes=tuple({0: batch} for _ in names), dynamo=True, verbose=False,
                report=False,
            )
    except Exception as exc:  # torch.export and the ONNX translation raise many exception types
        first = (str(exc).strip().splitlines() or [""])[0]
        raise LtvcastError(f"{label}: torch.onnx.export failed: {type(exc).__name__}: {first}") from exc
    finally:
        chatty.setLevel(level)
    proto = program.model_proto
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return proto.SerializeToString(), int(opset)


def _check_inputs(forecaster, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``n`` generated input rows in the range of the training inputs (module docstring)."""
    c = forecaster.config_

    def draw(mean, std, shape) -> np.ndarray:
        z = rng.normal(np.asarray(mean, float), 2.0 * np.asarray(std, float), size=shape)
        return (np.sign(z) * np.expm1(np.abs(z))).astype(np.float32)

    seq = draw(c["seq_mean"], c["seq_std"], (n, c["lookback"], c["n_channels"]))
    seq[rng.random((n, c["lookback"])) < 0.5] = 0.0
    num = draw(c["num_mean"], c["num_std"], (n, c["n_numeric"]))
    missing = np.asarray(c["missing"], dtype=np.int64)
    if missing.size:
        cols = num[:, missing]
        cols[rng.random(cols.shape) < 0.2] = np.nan
        num[:, missing] = cols
    cat = np.column_stack([rng.integers(0, size, n) for size in c["cat_sizes"]]).astype(np.int64)
    h = float(forecaster.horizon_days_)
    label_days = np.where(rng.random(n) < 2 / 3, h, rng.uniform(1.0, h, n)).astype(np.float32)
    return seq, num, cat, label_days


def _max_abs_diff(name: str, expected: np.ndarray, got: np.ndarray) -> float:
    """Largest |got − expected| (float64); NaN equals only NaN; masked log shares equal each other."""
    if expected.shape != got.shape:
        return float("inf")
    a, b = expected.astype(np.float64), got.astype(np.float64)
    if name == "log_shares":
        a, b = np.maximum(a, _MASKED_BELOW), np.maximum(b, _MASKED_BELOW)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))
