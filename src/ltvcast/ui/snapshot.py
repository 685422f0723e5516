"""What the web app shows for one model version, computed once and kept while that version is served.

A :class:`Snapshot` holds the model's predictions for every customer at the
day after the data end over :data:`HORIZON_DAYS` (the next 12 months), the
segments (:mod:`ltvcast.actions.segments`), the matured-window check of the
model (its predictions at its training cutoff against what customers then
did: the Lorenz curve and deciles of :mod:`ltvcast.metrics`), and an index of
the transactions by customer for the customer page. Pages read it; nothing
in it changes until another version is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.actions.segments import assign_segments, rfm_at, segment_summary
from ltvcast.data.datasets import History
from ltvcast.evaluate.backtest import horizon_actuals
from ltvcast.metrics import decile_calibration, gain_curve, normalized_gini, top_decile_capture, total_error_pct
from ltvcast.registry import RegisteredModel, check_registered
from ltvcast.timeutil import horizon_window

#: The overview's horizon: the next 12 months (365 days, as ``12m`` in :func:`ltvcast.timeutil.parse_horizon`).
HORIZON_DAYS = 365.0
#: z of the two-sided 80 % normal interval (10th to 90th percentile).
Z80 = 1.2815515655446004
#: Points kept of the Lorenz curve (it is drawn, not scored).
LORENZ_POINTS = 200


@dataclass
class Matured:
    """The served model's own predictions at its training cutoff against the actuals of that window.

    Attributes:
        cutoff: the training cutoff (UTC day); horizon_days: its horizon.
        lorenz: ``share_customers``, ``share_actual`` (the gain curve, ≤ :data:`LORENZ_POINTS` rows).
        deciles: :func:`ltvcast.metrics.decile_calibration`'s frame.
        metrics: normalised Gini, top-decile capture, total error (%).
    """

    cutoff: pd.Timestamp
    horizon_days: float
    lorenz: pd.DataFrame
    deciles: pd.DataFrame
    metrics: dict[str, float]


@dataclass
class Snapshot:
    """Everything the pages show for one model version (module doc).

    Attributes:
        label: ``NAME:VERSION``; kind: the catalog model name.
        model: the registered model.
        cutoff: the prediction day (day after the data end, UTC midnight);
            horizon_days: the predicted window in days.
        inputs: the model's inputs at ``cutoff`` (one row per customer), for reasons.
        predictions: the canonical frame, one row per customer with a purchase before ``cutoff``.
        segments, summary: :func:`~ltvcast.actions.segments.assign_segments` and
            :func:`~ltvcast.actions.segments.segment_summary` of the predictions.
        total: the predicted spend of every customer in the window (currency).
        interval: an 80 % interval of ``total`` (:func:`total_interval`), or None without quantiles.
        matured: the matured-window check, or None when the window has not matured in the data.
        currency: the shop's currency code, or None.
    """

    label: str
    kind: str
    model: RegisteredModel
    history: History
    cutoff: pd.Timestamp
    horizon_days: float
    inputs: pd.DataFrame
    predictions: pd.DataFrame
    segments: pd.DataFrame
    summary: pd.DataFrame
    total: float
    interval: tuple[float, float] | None
    matured: Matured | None
    currency: str | None
    notes: list[str] = field(default_factory=list)
    _tx: pd.DataFrame | None = None
    _tx_ids: np.ndarray | None = None

    def transactions_of(self, customer_id: str) -> pd.DataFrame:
        """One customer's transaction rows (``timestamp``, ``amount``, ...), oldest first; empty if unknown."""
        lo, hi = np.searchsorted(self._tx_ids, customer_id, "left"), np.searchsorted(self._tx_ids, customer_id, "right")
        return self._tx.iloc[lo:hi]

    def customer(self, customer_id: str) -> dict | None:
        """The customer's prediction and segment rows as one dict (tier, risk, RFM group, ...), or None if unknown."""
        pos = self._index.get(customer_id)
        if pos is None:
            return None
        return {**self.predictions.iloc[pos].to_dict(), **self.segments.iloc[pos].to_dict()}

    def customer_inputs(self, customer_id: str) -> pd.DataFrame:
        """The customer's row of :attr:`inputs` (one row, or none when unknown)."""
        pos = self._index.get(customer_id)
        return self.inputs.iloc[[] if pos is None else [pos]]

    def __post_init__(self) -> None:
        # predict_inputs keeps the inputs' rows and assign_segments the predictions': one position per customer
        ids = self.segments["customer_id"].astype(str)
        self._index = dict(zip(ids, range(len(ids)), strict=True))
        tx = self.history.transactions
        tx_ids = tx["customer_id"].astype(str).to_numpy()
        order = np.lexsort((tx["timestamp"].to_numpy(), tx_ids))
        self._tx = tx.iloc[order].reset_index(drop=True)
        self._tx_ids = tx_ids[order]


def total_interval(predictions: pd.DataFrame) -> tuple[float, float] | None:
    """An approximate 80 % interval of the summed ``pred_spend`` over independent customers.

    Each customer's standard deviation is read from their own 10th and 90th
    percentiles as under a normal distribution, ``σᵢ = (p90ᵢ − p10ᵢ) / (2 · 1.2816)``;
    the total, a sum of many independent customers, is taken as normal
    (central limit theorem): ``Σ pred_spend ± 1.2816 · √Σσᵢ²``, the lower
    end clipped at 0. A rough interval: it ignores what customers share (a
    season, the shop's fortunes) and is only as good as the quantiles.

    Returns:
        ``(low, high)`` in currency, or None when the model gives no quantiles.
    """
    if predictions[["pred_spend_p10", "pred_spend_p90"]].isna().all().all():
        return None
    p10 = predictions["pred_spend_p10"].to_numpy(float)
    p90 = predictions["pred_spend_p90"].to_numpy(float)
    sd = np.nan_to_num((p90 - p10) / (2 * Z80))
    total = float(np.nansum(predictions["pred_spend"].to_numpy(float)))
    half = Z80 * float(np.sqrt(np.sum(sd**2)))
    return max(total - half, 0.0), total + half


def matured_window(model: RegisteredModel, history: History) -> Matured | None:
    """The model's predictions at its training cutoff scored against that window's actuals.

    Returns None when the data end before the window does (the check waits
    for the window to mature: ``ltvcast monitor`` measures it as it goes).

    Raises:
        LtvcastError: as :func:`ltvcast.registry.check_registered` and the model's ``predict``.
    """
    cutoff = pd.Timestamp(model.manifest["cutoff"], tz="UTC")
    days = float(model.manifest["horizon_days"])
    start, end = horizon_window(cutoff, days)
    if history.observation_end < end - pd.Timedelta(days=1):
        return None
    check_registered(model, cutoff)
    h = float((end - start).days)
    preds = model.forecaster.predict(history, cutoff, h)
    actual = horizon_actuals(history, preds["customer_id"].astype("string"), cutoff, h)
    merged = preds[["customer_id", "pred_spend"]].assign(customer_id=lambda f: f["customer_id"].astype("string"))
    merged = merged.merge(actual[["customer_id", "actual_spend"]], on="customer_id").dropna()
    y, p = merged["actual_spend"].to_numpy(float), merged["pred_spend"].to_numpy(float)
    x_share, y_share = gain_curve(y, p)
    keep = np.unique(np.linspace(0, len(x_share) - 1, min(LORENZ_POINTS, len(x_share))).round().astype(int))
    return Matured(
        cutoff, h,
        pd.DataFrame({"share_customers": x_share[keep], "share_actual": y_share[keep]}),
        decile_calibration(y, p),
        {"gini_norm": normalized_gini(y, p), "top_decile_capture": top_decile_capture(y, p),
         "total_error_pct": total_error_pct(y, p)},
    )


def build_snapshot(model: RegisteredModel, history: History, *, horizon_days: float = HORIZON_DAYS) -> Snapshot:
    """Predict every customer at the day after the data end and derive what the pages show.

    Args:
        model: the registered model (``NAME:VERSION``) in service.
        history: the shop's data (store or built-in dataset).
        horizon_days: the window predicted (default 365 days).

    Raises:
        LtvcastError: as :func:`ltvcast.registry.check_registered`, the model's ``inputs`` and ``predict_inputs``
            (e.g. no customer before the cutoff), and :func:`~ltvcast.actions.segments.assign_segments`.
    """
    cutoff = (history.observation_end + pd.Timedelta(days=1)).normalize()
    label = check_registered(model, cutoff)
    start, end = horizon_window(cutoff, horizon_days)
    days = float((end - start).days)
    fc = model.forecaster
    inputs = fc.inputs(history, cutoff, days)
    preds = fc.predict_inputs(inputs, cutoff, days)
    preds["model"] = pd.Series(label, index=preds.index, dtype=preds["model"].dtype)
    segs = assign_segments(preds, rfm_at(history, cutoff))
    notes = []
    matured = matured_window(model, history)
    if matured is None:
        notes.append(f"the model's own window ({model.manifest['cutoff']}, {model.manifest['horizon_days']:g} days) "
                     "has not ended in the data yet: no matured-window Lorenz or deciles")
    return Snapshot(
        label=label, kind=str(model.manifest["model"].get("kind")), model=model, history=history, cutoff=cutoff,
        horizon_days=days, inputs=inputs, predictions=preds, segments=segs, summary=segment_summary(segs),
        total=float(np.nansum(preds["pred_spend"].to_numpy(float))), interval=total_interval(preds),
        matured=matured, currency=history.store.meta().get("shop_currency") or None, notes=notes,
    )
