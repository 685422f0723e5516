"""The shared forecaster interface and the canonical predictions frame.

Every model family sits behind :class:`Forecaster`: ``fit(data, cutoff,
horizon_days)`` learns from the shop's data strictly before ``cutoff``;
``predict(data, cutoff, horizon_days)`` returns the canonical predictions
frame (DESIGN.md) for every customer first seen before ``cutoff``; it is
``predict_inputs(inputs(...))``: the model's inputs per customer, then the
predictions from them, row by row (batch scoring chunks them, the online
service computes them for one customer). ``data``
is a :class:`ltvcast.data.datasets.History` (transactions plus the store for
point-in-time features).

A fitted forecaster records the inputs it was trained on in
``feature_schema_`` (feature name -> pandas dtype string); its ``predict``
calls :meth:`Forecaster.check_features` on the inputs it builds, so that a
model saved in the registry (:mod:`ltvcast.registry`) refuses data whose
features differ instead of predicting from misaligned columns.

A model with a second runtime (the deep models' network in ONNX) exposes it
through two hooks the registry calls, :meth:`Forecaster.to_onnx` and
:meth:`Forecaster.use_onnx`, so no model module knows where it is stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import LtvcastError, SchemaMismatchError


def feature_schema(features: pd.DataFrame) -> dict[str, str]:
    """The schema of a frame of model inputs: column name -> pandas dtype string (e.g. ``float64``)."""
    return {str(name): str(dtype) for name, dtype in features.dtypes.items()}


def check_feature_schema(
    expected: dict[str, str], actual: dict[str, str], *, what: str, allow_extra: bool = False
) -> None:
    """Compare two feature schemas (name -> dtype string); column order is not compared.

    Args:
        expected: the schema the model was trained on.
        actual: the schema of the inputs at hand.
        what: who is checking, for the message (e.g. the model name).
        allow_extra: accept features the model does not use (a wider shared
            feature frame).

    Raises:
        SchemaMismatchError: naming every missing, extra (unless allowed) and
            retyped feature, e.g. ``missing: a, b; retyped: T (float64 -> int64)``.
    """
    missing = [n for n in expected if n not in actual]
    extra = [] if allow_extra else [n for n in actual if n not in expected]
    retyped = [f"{n} ({expected[n]} -> {actual[n]})" for n in expected if n in actual and actual[n] != expected[n]]
    found = (("missing", missing), ("extra", extra), ("retyped", retyped))
    parts = [f"{label}: {', '.join(names)}" for label, names in found if names]
    if parts:
        raise SchemaMismatchError(
            f"{what}: the inputs differ from the features the model was trained on; " + "; ".join(parts)
        )


@dataclass(frozen=True)
class OnnxGraph:
    """A model's network as a serialized ONNX graph, checked against the model's own runtime.

    Attributes:
        blob: the ``.onnx`` bytes.
        opset: the graph's ONNX opset.
        exporter: what exported it, with versions.
        onnxruntime: the onnxruntime version of the check.
        max_abs_diff: largest |ONNX − original| over every output and checked row.
        max_abs_diff_by_output: the same per output name.
        checked_rows: rows compared.
    """

    blob: bytes
    opset: int
    exporter: str
    onnxruntime: str
    max_abs_diff: float
    max_abs_diff_by_output: dict[str, float]
    checked_rows: int


class Forecaster(ABC):
    """A model that predicts every customer's horizon behaviour at a cutoff.

    Attributes:
        name: the model's name in the predictions frame and the CLI.
        notes_: human-readable remarks from the last ``fit`` (e.g. customers
            left out of a sub-model and why); shown in reports.
        feature_schema_: the inputs ``fit`` trained on, feature name ->
            pandas dtype string (:func:`feature_schema`); ``None`` before
            ``fit`` or for a model that does not record them (then nothing is
            checked).
    """

    name: str
    feature_schema_: dict[str, str] | None = None

    def __init__(self) -> None:
        self.notes_: list[str] = []

    @abstractmethod
    def fit(self, data: History, cutoff, horizon_days: float) -> Forecaster:
        """Learn from the data strictly before ``cutoff``; return self."""

    @abstractmethod
    def inputs(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """The model's inputs at ``cutoff``: ``customer_id`` plus one column per input, one row per customer scored.

        Computed from the data strictly before ``cutoff`` (features, RFM
        summary). Batch scoring and the online service call it for every
        customer or for a few.
        """

    @abstractmethod
    def predict_inputs(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """The canonical frame for the rows of ``inputs``, in their order.

        A row's prediction depends on that row only, so inputs can be
        predicted in chunks or one customer at a time with the same result.
        """

    def predict(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """Predictions for ``[cutoff, cutoff + horizon_days)`` as the canonical frame.

        ``predict_inputs(inputs(data, cutoff, horizon_days), cutoff, horizon_days)``.
        """
        return self.predict_inputs(self.inputs(data, cutoff, horizon_days), cutoff, horizon_days)

    def check_features(self, features: pd.DataFrame, *, allow_extra: bool = False) -> None:
        """Check a frame of inputs (one column per feature) against ``feature_schema_``.

        Nothing is checked while ``feature_schema_`` is ``None``.

        Raises:
            SchemaMismatchError: a feature is missing, extra (unless
                ``allow_extra``) or of another dtype; the message names them.
        """
        if self.feature_schema_ is not None:
            check_feature_schema(
                self.feature_schema_, feature_schema(features), what=self.name, allow_extra=allow_extra
            )

    def known_features(self, features: pd.DataFrame) -> pd.DataFrame:
        """``features`` without the columns ``feature_schema_`` does not name (``customer_id`` kept).

        A model registered before a feature family gained columns keeps
        predicting from the columns it was fitted on; unused text columns are
        dropped the same way. Unchanged while ``feature_schema_`` is ``None``.
        """
        if self.feature_schema_ is None:
            return features
        return features.drop(columns=[c for c in features.columns
                                      if c != "customer_id" and c not in self.feature_schema_])

    def to_onnx(self, label: str, *, atol: float, seed: int = 0) -> OnnxGraph:
        """The model's network as an ONNX graph, checked to ``atol`` (a hook for :func:`ltvcast.registry.export_onnx`).

        Raises:
            LtvcastError: the model has no network to export (this default),
                the export fails, or the check does.
        """
        raise LtvcastError(
            f"model {label} is a {self.name!r} model; only deep models (deep, deep-lstm, deep-transformer) export to ONNX"
        )

    def use_onnx(self, blob: bytes | None) -> None:
        """Predict through an ONNX graph from :meth:`to_onnx` from now on (a hook for :func:`ltvcast.registry.load_model`).

        Raises:
            LtvcastError: the model has no network to run in ONNX (this default).
        """
        raise LtvcastError(f"a {self.name!r} model has no ONNX runtime")
