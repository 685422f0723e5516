"""Batch scoring: every customer of a store with a registered model, in chunks, to Parquet or CSV.

The model's inputs for every customer are computed once at the cutoff
(:meth:`~ltvcast.models.base.Forecaster.inputs`: the RFM summary for BTYD
models, the feature table for learned ones), then predicted and written
``chunk_size`` rows at a time (:meth:`~ltvcast.models.base.Forecaster.predict_inputs`,
whose rows do not depend on each other). Peak memory is the input table plus
one chunk's predictions (a BTYD model: plus its prediction arrays, below),
not the whole predictions frame; the output is
written as it goes (a Parquet row group per chunk). A model with
``predict_columns`` (BTYD, gbm) skips the pandas frame when writing
Parquet: its arrays go straight into Arrow columns of the canonical schema.
A BTYD model predicts every row in one call and the chunks are slices of
its arrays: its work is per distinct history (the horizon distribution of
each distinct (frequency, T), :mod:`ltvcast.models.btyd_dist`), which
per-chunk calls would redo in every chunk; its arrays (about 80 bytes a
customer) are smaller than its inputs. Only the constant columns (model,
cutoff, horizon) are dictionary-encoded in Parquet: ids and predictions
are mostly distinct, and trying a dictionary for them doubled the write
time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ltvcast.data.datasets import History
from ltvcast.errors import LtvcastError
from ltvcast.models.btyd import BTYDForecaster
from ltvcast.registry import RegisteredModel, check_registered
from ltvcast.store import Store
from ltvcast.timeutil import horizon_window

__all__ = ["ScoreResult", "log_score", "score", "write_scores"]


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score` wrote.

    Attributes:
        path: the predictions file.
        customers: rows written (one per customer).
        model: ``NAME:VERSION``.
        inputs_seconds: time to compute the inputs (features) at the cutoff.
        predict_seconds: time to predict and write every chunk.
        runtime: what ran a deep model's network (``"torch"`` or
            ``"onnxruntime"``, see :mod:`ltvcast.models.learned.deep.onnx`);
            ``None`` for the other models.
    """

    path: Path
    customers: int
    model: str
    inputs_seconds: float
    predict_seconds: float
    runtime: str | None = None


def _check_output(out: str | Path, chunk_size: int) -> tuple[Path, str]:
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise LtvcastError(f"cannot write predictions to {out}: use a .parquet or .csv file name")
    if chunk_size < 1:
        raise LtvcastError(f"chunk size must be at least 1, got {chunk_size}")
    return out, suffix


def score(
    model: RegisteredModel,
    history: History,
    cutoff,
    horizon_days: float,
    out: str | Path,
    *,
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score every customer with a purchase before ``cutoff`` and write the canonical frame.

    Args:
        model: a registered model (:func:`ltvcast.registry.load_model`).
        history: the shop's data (:func:`ltvcast.data.datasets.open_history`).
        cutoff: prediction date; history strictly before it is used.
        horizon_days: horizon in days (rounded to whole days like every
            prediction path).
        out: ``.parquet`` or ``.csv`` file, overwritten.
        chunk_size: customers predicted and written at a time (>= 1).
        progress: called as ``progress(done, total)`` after each chunk.

    Returns:
        A :class:`ScoreResult`; the file holds the canonical frame with
        ``model`` = ``NAME:VERSION``, rows in the order of the model's inputs
        (by ``customer_id``).

    Raises:
        LtvcastError: a bad file extension or chunk size; the checks of
            :func:`ltvcast.registry.check_registered`; whatever the model's
            ``inputs`` raise (no customer before the cutoff, a feature schema
            mismatch).
    """
    out, _ = _check_output(out, chunk_size)
    label = check_registered(model, cutoff)
    start, end = horizon_window(cutoff, horizon_days)
    h = float((end - start).days)
    forecaster = model.forecaster

    t0 = time.perf_counter()
    inputs = forecaster.inputs(history, start, h)
    t1 = time.perf_counter()
    write_scores(forecaster, inputs, start, h, out, label=label, chunk_size=chunk_size, progress=progress)
    runtime = getattr(forecaster, "runtime", None)
    return ScoreResult(out, len(inputs), label, t1 - t0, time.perf_counter() - t1, runtime)


def write_scores(
    forecaster,
    inputs: pd.DataFrame,
    cutoff,
    horizon_days: float,
    out: str | Path,
    *,
    label: str,
    chunk_size: int = 100_000,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Predict a model's inputs ``chunk_size`` rows at a time and write them as they come.

    Args:
        forecaster: a fitted :class:`~ltvcast.models.base.Forecaster`.
        inputs: its :meth:`~ltvcast.models.base.Forecaster.inputs` at ``cutoff`` (n rows).
        cutoff, horizon_days: as given to ``inputs`` (a day; whole days).
        out: ``.parquet`` (a row group per chunk) or ``.csv``, overwritten.
        label: the ``model`` column's value (``NAME:VERSION``).
        chunk_size: rows per chunk (>= 1).
        progress: called as ``progress(done, n)`` after each chunk.

    Returns:
        ``out``, holding n rows of the canonical frame in the inputs' order.

    Raises:
        LtvcastError: a bad file extension or chunk size.
    """
    out, suffix = _check_output(out, chunk_size)
    total = len(inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet" and total and hasattr(forecaster, "predict_columns"):
        _write_arrow(forecaster, inputs, cutoff, horizon_days, out, label, chunk_size, progress)
        return out
    writer = None
    try:
        for lo in range(0, total, chunk_size):
            frame = forecaster.predict_inputs(inputs.iloc[lo : lo + chunk_size], cutoff, horizon_days)
            frame["model"] = pd.Series(label, index=frame.index, dtype="string")
            if suffix == ".parquet":
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema, use_dictionary=_DICTIONARY)
                writer.write_table(table)
            else:
                frame.to_csv(out, index=False, mode="w" if lo == 0 else "a", header=lo == 0)
            if progress is not None:
                progress(min(lo + chunk_size, total), total)
    finally:
        if writer is not None:
            writer.close()
    return out


#: The canonical columns that hold one value per file (Parquet dictionary-encodes these only).
_DICTIONARY = ["model", "cutoff", "horizon_days"]


def _write_arrow(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float, out: Path, label: str,
                 chunk_size: int, progress: Callable[[int, int], None] | None) -> None:
    """Parquet straight from ``predict_columns``: a row group per chunk, no pandas frame.

    The first input row predicted the ordinary way (through the pandas
    frame) gives the schema and the values of the columns that are the same
    on every row (model, cutoff, horizon_days).
    """
    total = len(inputs)
    head = forecaster.predict_inputs(inputs.iloc[:1], cutoff, horizon_days)
    head["model"] = pd.Series(label, index=head.index, dtype="string")
    head = pa.Table.from_pandas(head, preserve_index=False)
    ids = pa.array(inputs["customer_id"].astype("string").array).cast(head.schema.field("customer_id").type)
    whole = forecaster.predict_columns(inputs, horizon_days) if isinstance(forecaster, BTYDForecaster) else None
    with pq.ParquetWriter(out, head.schema, use_dictionary=_DICTIONARY) as writer:
        for lo in range(0, total, chunk_size):
            hi = min(lo + chunk_size, total)
            if whole is None:
                cols = forecaster.predict_columns(inputs.iloc[lo:hi], horizon_days)
            else:
                cols = {name: values[lo:hi] for name, values in whole.items()}
            writer.write_table(_arrow_chunk(cols, ids[lo:hi], head))
            if progress is not None:
                progress(hi, total)


def _arrow_chunk(cols: dict[str, np.ndarray], ids: pa.Array, head: pa.Table) -> pa.Table:
    """One chunk of the canonical frame as an Arrow table of ``head``'s schema (NaN written as null)."""
    n = len(ids)
    same = pa.array(np.zeros(n, dtype=np.int64))
    arrays = []
    for field in head.schema:
        if field.name == "customer_id":
            arrays.append(ids)
        elif field.name in cols:
            arrays.append(pa.array(np.asarray(cols[field.name], dtype=float), type=field.type, from_pandas=True))
        elif field.name in ("model", "cutoff", "horizon_days"):
            arrays.append(head.column(field.name).combine_chunks().take(same))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=head.schema)


def log_score(
    db: str | Path,
    result: ScoreResult,
    model: RegisteredModel,
    cutoff,
    horizon_days: float,
    *,
    source: str = "score",
) -> int:
    """Log a scoring run in the store for live-accuracy monitoring (``score_log``, ``score_log_predictions``).

    Reads ``customer_id, pred_transactions, pred_spend, p_churn`` back from
    ``result.path`` and writes them with the run's model, cutoff and horizon
    (docs/monitoring.md). Open the store for writing only after any
    read-only handle on it is closed (DuckDB allows one configuration per
    file and process).

    Args:
        db: the store file the run scored.
        result: what :func:`score` returned.
        model: the registered model that scored.
        cutoff, horizon_days: as given to :func:`score`.
        source: ``score`` (batch) or ``service``.

    Returns:
        The new ``run_id``.

    Raises:
        DataError: the store cannot be opened for writing.
    """
    cols = ["customer_id", "pred_transactions", "pred_spend", "p_churn"]
    if result.path.suffix.lower() == ".parquet":
        frame = pq.read_table(result.path, columns=cols).to_pandas()
    else:
        frame = pd.read_csv(result.path, usecols=cols, dtype={"customer_id": "string"})
    start, end = horizon_window(cutoff, horizon_days)
    run = {
        "logged_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        "model": f"{model.name}:{model.version}",
        "model_name": model.name,
        "model_version": int(model.version),
        "model_kind": model.manifest["model"]["kind"],
        "cutoff": start.date(),
        "horizon_days": float((end - start).days),
        "customers": int(len(frame)),
        "pred_spend_total": float(frame["pred_spend"].sum()),
        "source": source,
        "output": str(Path(result.path).resolve()),
    }
    with Store.open(db) as store:
        return store.log_score_run(run, frame)
