"""Per-customer reasons for any registered model: dispatch to the model family, batch and single customers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ltvcast.errors import DataError, LtvcastError
from ltvcast.explain.attribution import TARGETS, Attribution
from ltvcast.explain.btyd import explain_btyd
from ltvcast.explain.reasons import top_reasons
from ltvcast.explain.trees import explain_gbm
from ltvcast.models.btyd import RFM_INPUTS, BTYDForecaster
from ltvcast.models.learned.auto import ENSEMBLE, AutoForecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.registry import RegisteredModel, check_registered
from ltvcast.schema.predictions import write_frame
from ltvcast.timeutil import horizon_window

__all__ = ["Explanation", "attribute", "explain", "explain_inputs", "explain_registered", "explanation_record",
           "write_reasons"]


@dataclass
class Explanation:
    """Reasons for a set of customers.

    Attributes:
        predictions: the canonical predictions frame of those customers.
        reasons: the long frame of :data:`~ltvcast.explain.attribution.REASON_COLUMNS`
            (top ``k`` per customer and target).
        attributions: one :class:`Attribution` per target (every driver).
        notes: how each target was explained.
    """

    predictions: pd.DataFrame
    reasons: pd.DataFrame
    attributions: list[Attribution]
    notes: list[str] = field(default_factory=list)


def _is_deep(forecaster) -> bool:
    return type(forecaster).__name__ == "DeepForecaster" and hasattr(forecaster, "network_inputs")


def _auto(forecaster: AutoForecaster, inputs: pd.DataFrame, cutoff, h: float) -> list[Attribution]:
    """The drivers of the component carrying most weight in each of auto's outputs."""
    out = []
    cache: dict[str, list[Attribution]] = {}
    for target in TARGETS:
        c = forecaster.choice_[target]
        w = float(c["w"])
        if c.get("btyd") and w < 0.5:
            name, weight = c["btyd"], 1.0 - w
            if name not in cache:
                summary = inputs[["customer_id"]].assign(**{k: inputs[f"rfm_{k}"].to_numpy(float) for k in RFM_INPUTS})
                cache[name] = explain_btyd(forecaster.btyd_[name], summary, h, source=f"{forecaster.name}/{name}")
        else:
            name, weight = c["learned"], w
            if name == ENSEMBLE:  # an equal-weight average of the learned models: the first one's drivers
                name, weight = next(iter(forecaster.learned_)), w / len(forecaster.learned_)
            if name not in cache:
                cache[name] = explain_gbm(forecaster.learned_[name], inputs, h)
                for att in cache[name]:
                    att.source = f"{forecaster.name}/{name}"
        att = next(a for a in cache[name] if a.target == target)
        att.notes = [*att.notes, f"{forecaster.name}: {target} shows the drivers of {name}, the component with the "
                                 f"largest weight ({weight:.2f}) in its choice"]
        out.append(att)
    return out


def attribute(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float) -> list[Attribution]:
    """Every driver of ``pred_spend`` and ``p_churn`` for every row of a model's inputs.

    Dispatch: ``gbm``/``hybrid`` → :func:`~ltvcast.explain.trees.explain_gbm`
    (tree SHAP); ``deep*`` → :func:`~ltvcast.explain.deep.explain_deep`
    (Captum); ``naive``/``bgnbd``/``paretonbd`` →
    :func:`~ltvcast.explain.btyd.explain_btyd` (elasticities); ``auto`` →
    per output, the component with the largest weight (said in the notes).

    Args:
        forecaster: a fitted forecaster.
        inputs: its ``inputs(history, cutoff, horizon_days)`` rows (BTYD: the RFM summary).
        cutoff: the prediction cutoff.
        horizon_days: horizon in days.

    Returns:
        ``[pred_spend, p_churn]`` attributions, rows in the order of ``inputs``.

    Raises:
        LtvcastError: a model family without an explainer.
        NotFittedError, SchemaMismatchError: as the model's ``predict_inputs``.
    """
    h = float(horizon_days)
    if isinstance(forecaster, AutoForecaster):
        return _auto(forecaster, inputs, cutoff, h)
    if isinstance(forecaster, GBMForecaster):
        return explain_gbm(forecaster, inputs, h)
    if isinstance(forecaster, BTYDForecaster):
        return explain_btyd(forecaster, inputs, h)
    if _is_deep(forecaster):
        from ltvcast.explain.deep import explain_deep  # torch and captum only for deep models

        return explain_deep(forecaster, inputs, cutoff, h)
    raise LtvcastError(f"no explainer for a {type(forecaster).__name__} model ({getattr(forecaster, 'name', '?')})")


def explain_inputs(forecaster, inputs: pd.DataFrame, cutoff, horizon_days: float, *, k: int = 3) -> Explanation:
    """Predictions, attributions and the top ``k`` reasons for the rows of a model's inputs.

    Raises:
        DataError: ``k < 1``; as :func:`attribute`.
    """
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    preds = forecaster.predict_inputs(inputs, cutoff, horizon_days)
    atts = attribute(forecaster, inputs, cutoff, horizon_days)
    notes = list(dict.fromkeys(n for a in atts for n in a.notes))
    return Explanation(preds, top_reasons(atts, k), atts, notes)


def _select(inputs: pd.DataFrame, customer_ids: Sequence[str] | None, cutoff) -> pd.DataFrame:
    if customer_ids is None:
        return inputs
    ids = [str(c) for c in customer_ids]
    known = inputs["customer_id"].astype(str)
    missing = sorted(set(ids) - set(known))
    if missing:
        raise DataError(
            f"no purchase before {pd.Timestamp(cutoff).date()} for customer(s) {', '.join(missing[:5])}: "
            "the models predict (and explain) only customers with a purchase before the cutoff"
        )
    pos = {c: i for i, c in enumerate(known)}
    return inputs.iloc[[pos[c] for c in dict.fromkeys(ids)]].reset_index(drop=True)


def explain(forecaster, history, cutoff, horizon_days: float, *, customer_ids: Sequence[str] | None = None,
            k: int = 3) -> Explanation:
    """Reasons from a history: the model's ``inputs`` at ``cutoff``, then :func:`explain_inputs`.

    Args:
        forecaster: a fitted forecaster.
        history: the shop's :class:`~ltvcast.data.datasets.History`.
        cutoff: prediction cutoff; horizon_days: horizon in days.
        customer_ids: explain only these (default: every customer with a
            purchase before the cutoff).
        k: reasons per customer and target.

    Raises:
        DataError: a requested customer has no purchase before the cutoff; ``k < 1``.
        LtvcastError: as the model's ``inputs`` and :func:`attribute`.
    """
    inputs = forecaster.inputs(history, cutoff, horizon_days)
    return explain_inputs(forecaster, _select(inputs, customer_ids, cutoff), cutoff, horizon_days, k=k)


def explain_registered(model: RegisteredModel, history, cutoff, horizon_days: float | None = None, *,
                       customer_ids: Sequence[str] | None = None, k: int = 3) -> Explanation:
    """Reasons of a registered model (``ltvcast explain``): checks of :func:`~ltvcast.registry.check_registered`, then :func:`explain`.

    The horizon defaults to the trained one and is rounded to whole days as in
    :func:`~ltvcast.registry.predict_registered`; ``predictions["model"]`` is
    ``NAME:VERSION`` and ``reasons`` carries the same ``source`` names as the model's kind.

    Raises:
        RegistryError, SchemaMismatchError: as :func:`~ltvcast.registry.check_registered`.
        DataError, LtvcastError: as :func:`explain`.
    """
    label = check_registered(model, cutoff)
    days = float(model.manifest["horizon_days"]) if horizon_days is None else float(horizon_days)
    start, end = horizon_window(cutoff, days)
    out = explain(model.forecaster, history, cutoff, float((end - start).days), customer_ids=customer_ids, k=k)
    out.predictions["model"] = pd.Series(label, index=out.predictions.index, dtype=out.predictions["model"].dtype)
    return out


def contribution_check(att: Attribution) -> np.ndarray:
    """``base + Σ contributions − output`` per row (0 for additive attributions; NaN for elasticities)."""
    return att.base + np.nansum(att.contributions, axis=1) - att.output


def write_reasons(reasons: pd.DataFrame, path) -> None:
    """Write a reasons frame (long format) as Parquet (``.parquet``) or CSV (``.csv``).

    Raises:
        DataError: another file suffix.
        OSError: the file cannot be written.
    """
    write_frame(reasons, path, "reasons")


def explanation_record(explanation: Explanation, customer_id: str) -> dict:
    """One customer's explanation as JSON-ready data (the service's ``/explanation`` body, less its envelope).

    Returns:
        ``{"customer_id", "pred_spend", "p_churn", "reasons": {target: [{rank, feature, value,
        contribution, effect, scale, method, source, sentence}, ...]}, "notes": [...]}``; NaN as None.

    Raises:
        DataError: the customer is not in the explanation.
    """
    cid = str(customer_id)
    preds = explanation.predictions[explanation.predictions["customer_id"].astype(str) == cid]
    if preds.empty:
        raise DataError(f"customer {cid!r} is not in this explanation")

    def clean(v):
        if isinstance(v, (float, np.floating)):
            return None if not np.isfinite(v) else float(v)
        if isinstance(v, np.integer):
            return int(v)
        return v

    mine = explanation.reasons[explanation.reasons["customer_id"].astype(str) == cid]
    reasons: dict[str, list[dict]] = {t: [] for t in TARGETS}
    for r in mine.to_dict("records"):
        reasons[r["target"]].append({k: clean(v) for k, v in r.items() if k not in ("customer_id", "target")})
    row = preds.iloc[0]
    return {
        "customer_id": cid,
        "pred_spend": clean(row["pred_spend"]),
        "p_churn": clean(row["p_churn"]),
        "reasons": reasons,
        "notes": list(explanation.notes),
    }
