"""Batch scoring on Spark: a registered model's inputs computed on Spark, predicted on the executors.

The model is pickled once and shipped to the executors as one broadcast
variable; ``mapInPandas`` unpickles it once per Python worker and runs
:meth:`~ltvcast.models.base.Forecaster.predict_inputs` on each Arrow batch
(a row's prediction depends on that row only, so any split gives the same
rows as :func:`ltvcast.serve.score.score`). The output is the canonical
predictions frame written as Parquet, one folder, one file per partition.

Models:

* the RFM-summary models (``naive``, ``bgnbd``, ``paretonbd``): inputs from
  :func:`ltvcast.features.spark.rfm_summary_spark`;
* ``gbm``: the FeatureSet customer table from
  :func:`ltvcast.features.spark.build_spark` for the customers of the RFM
  summary; each executor batch becomes the model's inputs as
  :class:`~ltvcast.models.learned.features.FeatureMaker` makes them
  (:func:`learned_inputs`: numeric store features without the age columns,
  the age-robust ratios, the text columns with ``categoricals``) and, when
  the model uses them, the calendar inputs, which are one value per shop
  computed on the driver from the shop's daily revenue aggregated on Spark.

Refused, with the reason: ``hybrid`` and ``auto`` (their inputs add BTYD
fits at the cutoff over the whole population, a driver-side step not ported)
and the deep models (their inputs are the dense period sequences and their
network needs PyTorch on every executor).
"""

from __future__ import annotations

import pickle
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ltvcast.engines.spark import EngineError
from ltvcast.features.catalog import feature_specs
from ltvcast.features.spark import SparkShop, build_spark, rfm_summary_spark
from ltvcast.models.btyd import RFM_INPUTS, BTYDForecaster
from ltvcast.models.learned.calendar import calendar_inputs
from ltvcast.models.learned.features import AGE_COLUMNS, derived_features
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import RegisteredModel, check_registered
from ltvcast.schema import PREDICTION_COLUMNS
from ltvcast.timeutil import horizon_window, local_midnight

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


#: Column of the inputs that marks customers present in the FeatureSet (FeatureMaker's left join).
_PRESENT = "_in_feature_set"


def learned_inputs(batch: pd.DataFrame, forecaster: GBMForecaster, calendar: dict[str, float] | None = None,
                   ) -> pd.DataFrame:
    """A gbm model's inputs from rows of the FeatureSet customer table, as ``FeatureMaker`` builds them.

    The same columns and values as
    :class:`~ltvcast.models.learned.features.FeatureMaker` (age-robust, no
    BTYD columns) for the same customers, row by row, so executors can build
    them batch by batch: numeric store features but
    :data:`~ltvcast.models.learned.features.AGE_COLUMNS` as float64,
    :func:`~ltvcast.models.learned.features.derived_features` (NaN for a
    customer absent from the FeatureSet), the text features as ``string``
    with ``categoricals``, and the calendar values, the same in every row.
    tests/test_spark_features.py holds the predictions equal to DuckDB's.

    Args:
        batch: ``customer_id``, every column of
            :func:`~ltvcast.features.catalog.feature_specs` (NULL for a
            customer absent from the FeatureSet) and ``_in_feature_set``
            (bool), shape (n, ...).
        forecaster: the fitted gbm model.
        calendar: ``{column: value}`` of
            :func:`~ltvcast.models.learned.calendar.calendar_inputs`, or None
            when the model does not use them.

    Returns:
        Frame of n rows in the batch's order: ``customer_id`` then the model's features.
    """
    present = batch[_PRESENT].to_numpy(bool)
    specs = [s for s in feature_specs() if s.name in batch.columns]
    numeric = [s.name for s in specs if s.kind != "str" and s.name not in AGE_COLUMNS]
    parts = [pd.DataFrame({"customer_id": batch["customer_id"].astype("string")}),
             batch[numeric].astype(float)]
    derived = derived_features(batch)
    derived.loc[~present] = np.nan
    parts.append(derived)
    if forecaster.categoricals:
        text = [s.name for s in specs if s.kind == "str"]
        parts.append(batch[text].astype("string"))
    out = pd.concat(parts, axis=1)
    if calendar is not None:
        out = out.assign(**calendar)
    return out


def _predictor(broadcast, cutoff, horizon_days: float, label: str, calendar: dict[str, float] | None):
    key = uuid.uuid4().hex  # names this job's model in the worker's cache

    def predict(batches):
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = pickle.loads(broadcast.value)
        for batch in batches:
            if batch.empty:
                continue
            batch = batch.reset_index(drop=True).astype({"customer_id": "string"})
            if isinstance(model, GBMForecaster):
                batch = model.known_features(learned_inputs(batch, model, calendar))
                model.check_features(batch.drop(columns="customer_id").assign(label_days=horizon_days))
            frame = model.predict_inputs(batch, cutoff, horizon_days)
            frame["model"] = label
            yield frame[list(PREDICTION_COLUMNS)]

    return predict


def _refusal(forecaster, label: str) -> str | None:
    """Why ``forecaster`` cannot score on Spark (None: it can)."""
    if isinstance(forecaster, BTYDForecaster):
        return None
    if isinstance(forecaster, GBMForecaster) and not forecaster.btyd_features:
        return None
    if isinstance(forecaster, GBMForecaster):
        why = ("its inputs add Pareto/NBD and BG/NBD fits at the cutoff over every customer, a driver-side step "
               "not ported to Spark")
    elif forecaster.name == "auto":
        why = "it blends BTYD fits at the cutoff over every customer into its predictions, not ported to Spark"
    elif forecaster.name.startswith("deep"):
        why = ("its inputs are the dense customer x period sequences and its network needs PyTorch on every "
               "executor; neither is set up on Spark")
    else:
        why = "its inputs are not computed on Spark"
    return (f"{label} is a {forecaster.name} model, which does not score on Spark: {why}. On Spark score naive, "
            "bgnbd, paretonbd or gbm; score this one with the DuckDB engine (ltvcast score --db ...)")


def _daily_revenue_calendar(shop: SparkShop, forecaster: GBMForecaster, start: pd.Timestamp, h: float):
    """The calendar inputs of the scored window, from the shop's revenue per local day aggregated on Spark.

    ``calendar_inputs`` reads the history only through its revenue per
    local day (basis applied); it gets one row per local day (at local noon,
    which exists on every day of every zone), the sum of that day's rows.
    """
    from pyspark.sql import functions as F

    tz = shop.timezone
    cut = local_midnight(start, tz)  # the cut of FeatureMaker's history (history_before)
    tx = shop.spark.table("src_transactions").where(F.col("ts") < F.expr(f"TIMESTAMP '{cut:%Y-%m-%d %H:%M:%S}'"))
    amount = F.col("amount").cast("double")
    if shop.revenue_basis == "gross":
        amount = F.when(F.coalesce(F.col("kind"), F.lit("sale")) == "sale", amount).otherwise(F.lit(0.0))
    daily = (tx.groupBy(F.to_date(F.from_utc_timestamp("ts", tz)).alias("day"))
             .agg(F.sum(amount).alias("amount")).toPandas())
    noon = pd.to_datetime(daily["day"]) + pd.Timedelta(hours=12)
    stamps = noon.dt.tz_localize(tz).dt.tz_convert("UTC").dt.tz_localize(None)
    days = pd.DataFrame({"timestamp": stamps, "amount": daily["amount"].astype(float),
                         "kind": pd.Series("sale", index=daily.index, dtype="string")})
    return calendar_inputs(days, start, h, events=forecaster.events(), timezone=tz, revenue_basis="net")


def _learned_frame(shop: SparkShop, start: pd.Timestamp, summary):
    """The FeatureSet customer table for the summary's customers (left join; ``_in_feature_set`` marks hits)."""
    from pyspark.sql import functions as F

    feats = build_spark(shop, start.date())
    table = feats.customers.withColumn(_PRESENT, F.lit(True))
    frame = summary.select("customer_id").join(table, "customer_id", "left")
    return frame.fillna(False, [_PRESENT]), feats


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
        model: a registered naive, bgnbd, paretonbd or gbm model
            (:func:`ltvcast.registry.load_model`).
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
        EngineError: the model does not score on Spark (hybrid, auto, deep:
            the message says why).
        LtvcastError: the checks of :func:`ltvcast.registry.check_registered`.
    """
    label = check_registered(model, cutoff)
    forecaster = model.forecaster
    refusal = _refusal(forecaster, label)
    if refusal is not None:
        raise EngineError(refusal)
    began = time.perf_counter()
    start, end = horizon_window(cutoff, horizon_days)
    h = float((end - start).days)
    summary = rfm_summary_spark(shop, start.date(), "W")
    feats, calendar = None, None
    if isinstance(forecaster, GBMForecaster):
        if getattr(forecaster, "calendar_used_", False):
            calendar = _daily_revenue_calendar(shop, forecaster, pd.Timestamp(start), h)
        inputs, feats = _learned_frame(shop, pd.Timestamp(start), summary)
    else:
        inputs = summary.select("customer_id", *RFM_INPUTS)
    if partitions is not None:
        inputs = inputs.repartition(int(partitions), "customer_id")
    broadcast = shop.spark.sparkContext.broadcast(pickle.dumps(forecaster))
    try:
        scored = inputs.mapInPandas(_predictor(broadcast, pd.Timestamp(start), h, label, calendar),
                                    prediction_schema())
        scored.write.mode("overwrite").parquet(out)
    finally:
        broadcast.unpersist()
        if feats is not None:
            feats.release()
    customers = shop.spark.read.parquet(out).count()
    return SparkScoreResult(out, customers, label, time.perf_counter() - began)
