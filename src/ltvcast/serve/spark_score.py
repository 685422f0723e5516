"""Batch scoring on Spark: a registered model's inputs computed on Spark, predicted on the executors.

The model is pickled once and shipped to the executors as one broadcast
variable; ``mapInPandas`` unpickles it once per Python worker and runs
:meth:`~ltvcast.models.base.Forecaster.predict_inputs` on each Arrow batch
(a row's prediction depends on that row only, so any split gives the same
rows as :func:`ltvcast.serve.score.score`). The output is the canonical
predictions frame written as Parquet, one folder, one file per partition.

Models: those whose inputs are the RFM summary (``naive``, ``bgnbd``,
``paretonbd``), computed on Spark by
:func:`ltvcast.features.spark.rfm_summary_spark`. The learned models' inputs
add driver-side steps (BTYD fits, the shop's seasonal index) that do not run
on Spark yet; they are refused with that reason.
"""

from __future__ import annotations

import pickle
import time
import uuid
from dataclasses import dataclass

import pandas as pd

from ltvcast.engines.spark import EngineError
from ltvcast.features.spark import SparkShop, rfm_summary_spark
from ltvcast.models.btyd import RFM_INPUTS, BTYDForecaster
from ltvcast.registry import RegisteredModel, check_registered
from ltvcast.schema import PREDICTION_COLUMNS
from ltvcast.timeutil import horizon_window

#: Spark types of the canonical predictions frame (ltvcast.schema.predictions).
_TYPES = {"customer_id": "string", "model": "string", "cutoff": "timestamp"}
_MODELS: dict[str, object] = {}  # job key -> unpickled forecaster, one per Python worker


@dataclass(frozen=True)
class SparkScoreResult:
    """What :func:`score_spark` wrote.

    Attributes:
        path: the output folder (Parquet part files).
        customers: rows written.
        model: ``NAME:VERSION``.
        seconds: wall time of the whole job (inputs, predictions, write).
    """

    path: str
    customers: int
    model: str
    seconds: float


def prediction_schema() -> str:
    """The canonical predictions frame as a Spark DDL schema string."""
    return ", ".join(f"{c} {_TYPES.get(c, 'double')}" for c in PREDICTION_COLUMNS)


def _predictor(broadcast, cutoff, horizon_days: float, label: str):
    key = uuid.uuid4().hex  # names this job's model in the worker's cache

    def predict(batches):
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = pickle.loads(broadcast.value)
        for batch in batches:
            if batch.empty:
                continue
            batch = batch.reset_index(drop=True).astype({"customer_id": "string"})
            frame = model.predict_inputs(batch, cutoff, horizon_days)
            frame["model"] = label
            yield frame[list(PREDICTION_COLUMNS)]

    return predict


def score_spark(
    model: RegisteredModel,
    shop: SparkShop,
    cutoff,
    horizon_days: float,
    out: str,
    *,
    partitions: int | None = None,
) -> SparkScoreResult:
    """Score every customer with a purchase before ``cutoff`` on Spark; write partitioned Parquet.

    Args:
        model: a registered BTYD-family model (:func:`ltvcast.registry.load_model`).
        shop: the canonical tables (:func:`ltvcast.features.spark.open_shop`).
        cutoff: prediction date; history strictly before it is used.
        horizon_days: horizon in days (rounded to whole days, as ``score``).
        out: output folder (any path Spark writes), overwritten.
        partitions: repartition the inputs to this many partitions first
            (default: as Spark planned them).

    Returns:
        A :class:`SparkScoreResult`; the folder holds the canonical frame
        with ``model`` = ``NAME:VERSION``, one row per customer.

    Raises:
        EngineError: the model's inputs cannot be computed on Spark.
        LtvcastError: the checks of :func:`ltvcast.registry.check_registered`.
    """
    label = check_registered(model, cutoff)
    forecaster = model.forecaster
    if not isinstance(forecaster, BTYDForecaster):
        raise EngineError(
            f"{label} is a {forecaster.name} model: on Spark only the RFM-summary models (naive, bgnbd, "
            "paretonbd) score; score it with the DuckDB engine (ltvcast score --db ...)"
        )
    began = time.perf_counter()
    start, end = horizon_window(cutoff, horizon_days)
    h = float((end - start).days)
    summary = rfm_summary_spark(shop, start.date(), "W").select("customer_id", *RFM_INPUTS)
    if partitions is not None:
        summary = summary.repartition(int(partitions), "customer_id")
    broadcast = shop.spark.sparkContext.broadcast(pickle.dumps(forecaster))
    try:
        scored = summary.mapInPandas(_predictor(broadcast, pd.Timestamp(start), h, label), prediction_schema())
        scored.write.mode("overwrite").parquet(out)
    finally:
        broadcast.unpersist()
    customers = shop.spark.read.parquet(out).count()
    return SparkScoreResult(out, customers, label, time.perf_counter() - began)
