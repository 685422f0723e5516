"""ONNX export of the deep model (``deep``, ``deep-lstm``, ``deep-transformer``) and prediction in onnxruntime.

:func:`export_onnx` writes ``model.onnx`` beside a registered deep model's
``model.pkl`` (``models/NAME/VERSION/``) and records it in the manifest's
``onnx`` field; :func:`ltvcast.registry.load_model` then runs that model's
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

Manifest field ``onnx``: ``file`` (``model.onnx``), ``bytes``, ``sha256``,
``opset``, ``exporter`` (``torch.onnx.export dynamo=True, torch <version>``),
``onnxruntime`` (version used for the check), ``max_abs_diff`` (largest
|ONNX − torch| over every output) and ``max_abs_diff_by_output``,
``checked_rows``, ``atol``, ``created_at`` (UTC). Both files are written
atomically (temporary file in the same folder, fsync, ``os.replace``):
first ``model.onnx``, then the manifest. A reader that loads the version
between the two replacements of a re-export sees a SHA-256 mismatch.

**At load** (:func:`attach_onnx`): the file's SHA-256 must equal the
manifest's, else the load is **refused** with a :class:`RegistryError`
(a changed or corrupt network must not score silently; export again to
repair it, ``load_model(..., use_onnx=False)`` loads the torch network). A
``model.onnx`` the manifest does not record is ignored.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import stat
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ltvcast.errors import LtvcastError, RegistryError
from ltvcast.models.learned.deep import DeepForecaster
from ltvcast.registry import ARTIFACT, MANIFEST, RegisteredModel

__all__ = ["ONNX_FILE", "TOLERANCE", "OnnxExport", "OnnxRunner", "attach_onnx", "export_onnx"]

ONNX_FILE = "model.onnx"
#: Largest |ONNX − torch| accepted on any output at export (absolute, in each output's unit).
TOLERANCE = 1e-4
#: Keys of :meth:`DeepForecaster._run`'s dict, in ``DeepForecaster.OUTPUT_NAMES`` order.
_RAW_KEYS = ("ziln", "log_shares", "log_tx", "churn_logit", "next_days")
_MASKED_BELOW = -1000.0  # a masked trajectory logit is -1e4: exp() of it and of anything below -1000 is 0
_CHECK_BATCHES = (1, 2, 300)
# Rows per onnxruntime call: measured on 2 shared cores (default deep, 52 weeks x 7 channels, one thread),
# 1,024 rows ran 10-15 % faster than 4,096 and 20-40 % faster than 8,192-16,384 (activations stay in cache).
_RUN_ROWS = 1024


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ``model.onnx`` file.
        bytes: its size.
        sha256: its SHA-256 (hex), as in the manifest.
        opset: the ONNX opset of the graph.
        max_abs_diff: largest |ONNX − torch| over every output and checked row.
        max_abs_diff_by_output: the same per output name (``DeepForecaster.OUTPUT_NAMES``).
        checked_rows: rows compared (all batch sizes together).
    """

    path: Path
    bytes: int
    sha256: str
    opset: int
    max_abs_diff: float
    max_abs_diff_by_output: dict[str, float]
    checked_rows: int


class OnnxRunner:
    """A deep model's exported network in onnxruntime sessions (CPUExecutionProvider).

    Called like :meth:`DeepForecaster._run` without the network:
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
            not ``DeepForecaster.INPUT_NAMES`` with this network's sizes.
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
        if list(got) != list(DeepForecaster.INPUT_NAMES) or got != expected:
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
        names = list(DeepForecaster.OUTPUT_NAMES)

        def run(lo: int) -> list[np.ndarray]:
            feed = {k: np.ascontiguousarray(a[lo : lo + _RUN_ROWS]) for k, a in zip(DeepForecaster.INPUT_NAMES, arrays)}
            return self.session.run(names, feed)

        starts = range(0, len(arrays[0]), _RUN_ROWS)
        if self.n_threads == 1 or len(starts) == 1:
            parts = [run(lo) for lo in starts]
        else:  # session.run releases the GIL
            with ThreadPoolExecutor(self.n_threads) as pool:
                parts = list(pool.map(run, starts))
        return {k: np.concatenate([p[i] for p in parts]).astype(np.float64) for i, k in enumerate(_RAW_KEYS)}


# ---------------------------------------------------------------------------- export
def export_onnx(model: RegisteredModel, *, atol: float = TOLERANCE, seed: int = 0) -> OnnxExport:
    """Export a registered deep model's network to ``model.onnx`` in its version folder, checked against torch.

    Args:
        model: a registered deep model (:func:`ltvcast.registry.load_model`;
            its folder ``model.path`` is written).
        atol: largest |ONNX − torch| accepted on any output (absolute).
        seed: seed of the generated check inputs (module docstring).

    Returns:
        An :class:`OnnxExport`. ``model`` itself is not changed: load the
        version again to predict through the export.

    Raises:
        LtvcastError: the model is not a deep model (the message names its
            kind); the export fails; or an output differs from torch's by
            more than ``atol`` (nothing is written then).
        RegistryError: the version's manifest cannot be read.
        OSError: the folder cannot be written.
    """
    import onnxruntime

    from ltvcast.registry import _read_manifest

    forecaster, label = model.forecaster, f"{model.name}:{model.version}"
    if not isinstance(forecaster, DeepForecaster):
        kind = getattr(forecaster, "name", type(forecaster).__name__)
        raise LtvcastError(
            f"model {label} is a {kind!r} model; only deep models (deep, deep-lstm, deep-transformer) export to ONNX"
        )
    module, sample = forecaster.export_module(n_rows=2)
    # the exporter gets a copy (it may touch the module); the check compares with the network predict runs
    blob, opset = _export(copy.deepcopy(module).eval(), sample, label)
    runner = OnnxRunner(blob, forecaster.config_, n_threads=forecaster.n_threads)
    by_output = dict.fromkeys(DeepForecaster.OUTPUT_NAMES, 0.0)
    rows = 0
    for n in _CHECK_BATCHES:
        inputs = _check_inputs(forecaster, n, np.random.default_rng([seed, n]))
        with torch.no_grad():
            expected = [o.numpy() for o in module(*(torch.from_numpy(a) for a in inputs))]
        got = runner(*inputs)
        for name, key, a in zip(DeepForecaster.OUTPUT_NAMES, _RAW_KEYS, expected):
            by_output[name] = max(by_output[name], _max_abs_diff(name, a, got[key]))
        rows += n
    worst = max(by_output.values())
    if not worst <= atol:
        detail = ", ".join(f"{k} {v:.3g}" for k, v in by_output.items())
        raise LtvcastError(
            f"{label}: the ONNX export differs from torch by {worst:.3g} > {atol:g} (max |difference| per output: "
            f"{detail}); nothing was written"
        )
    manifest = _read_manifest(model.path)
    path = model.path / ONNX_FILE
    _replace(path, blob, like=model.path / manifest["artifact"].get("file", ARTIFACT))
    digest = hashlib.sha256(blob).hexdigest()
    manifest["onnx"] = {
        "file": ONNX_FILE,
        "bytes": len(blob),
        "sha256": digest,
        "opset": opset,
        "exporter": f"torch.onnx.export dynamo=True, torch {torch.__version__}",
        "onnxruntime": onnxruntime.__version__,
        "max_abs_diff": worst,
        "max_abs_diff_by_output": by_output,
        "checked_rows": rows,
        "atol": atol,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _replace(model.path / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False).encode(), like=model.path / MANIFEST)
    return OnnxExport(path, len(blob), digest, opset, worst, by_output, rows)


def _export(module: torch.nn.Module, sample: tuple[torch.Tensor, ...], label: str) -> tuple[bytes, int]:
    """The ONNX bytes and opset of ``module`` with a dynamic batch axis (the dynamo exporter)."""
    batch = torch.export.Dim("batch")
    names = DeepForecaster.INPUT_NAMES
    chatty = logging.getLogger("torch.onnx")  # e.g. "torchvision is not installed" at WARNING
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # deprecation notes from inside torch.export
            program = torch.onnx.export(
                module, sample, None, input_names=list(names), output_names=list(DeepForecaster.OUTPUT_NAMES),
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


def _check_inputs(forecaster: DeepForecaster, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
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


def _replace(path: Path, data: bytes, like: Path) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, fsync, ``os.replace``).

    The file gets the permission bits of ``like`` (mkstemp's are 0600).
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- load
def attach_onnx(forecaster, folder: Path, entry: dict) -> None:
    """Make a loaded deep model predict through its recorded ONNX export (called by ``load_model``).

    Args:
        forecaster: the unpickled forecaster of the version.
        folder: the version folder.
        entry: the manifest's ``onnx`` field (module docstring).

    Raises:
        RegistryError: the manifest records an export for a model that is
            not deep; the file is missing or unreadable; its SHA-256 differs
            from the manifest's (changed or corrupt: the load is refused); or
            onnxruntime cannot load it.
    """
    if not isinstance(forecaster, DeepForecaster) or not isinstance(entry, dict):
        raise RegistryError(f"the manifest in {folder} records an ONNX export for a model that is not a deep model")
    path = folder / str(entry.get("file", ONNX_FILE))
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read the ONNX export {path}: {exc.strerror or exc}") from None
    if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
        raise RegistryError(
            f"the ONNX export {path} was changed or is corrupt: its SHA-256 differs from the manifest's; export it "
            "again (`ltvcast export --model NAME:VERSION --format onnx`)"
        )
    try:
        forecaster.use_onnx(blob)
    except LtvcastError as exc:
        raise RegistryError(str(exc)) from None
