"""``auto``: pick or blend learned and BTYD models per output by validation-window performance.

Candidates: the learned models ``gbm`` and ``hybrid``
(:class:`~ltvcast.models.learned.gbm.GBMForecaster`, trained once on shared
examples), their average ``mean(gbm, hybrid)`` (an equal-weight ensemble of
every output), and the BTYD models ``paretonbd`` and ``bgnbd``
(:class:`~ltvcast.models.btyd.BTYDForecaster`). Every candidate is scored on
the validation window (the latest full training window ``c_0 = C − H``):
the learned models by their validation boosters (trained on the older
windows only), the BTYD models by their fit at ``c_0`` on the history before
it (the hybrid's BTYD inputs of that window). Per output, ``auto`` takes the
blend ``w · learned + (1 − w) · BTYD`` (``w`` on a grid, ``w = 1`` = the
learned model alone) with the best validation score under a proper scoring
rule for what the output predicts:

===============================  ===============================
output                            validation criterion
===============================  ===============================
pred_spend (a mean)               RMSE (non-positive labels as 0)
pred_transactions (a mean)        RMSE
p_churn (a probability)           Brier score
p10 / p50 / p90 (learned only)    mean pinball loss
pred_next_purchase_days (learned) MAE over the customers who bought
===============================  ===============================

The learned models' validation predictions are those before their own
calibration (which is fitted on the same window, so calibrated scores would
be in-sample). The choice is written to ``notes_`` (and so to the backtest
report) with the validation scores. ``p_alive`` stays null (not a BTYD model). Caveat: the
validation window's customers are younger than those scored at ``C`` when
all customers joined at once (CDNOW), and BTYD models fitted on a short
history are weaker there than at ``C``; the validation scores are the only
evidence the choice may use, so ``auto`` follows them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import ConvergenceError, DataError, NotFittedError
from ltvcast.features import rfm_summary
from ltvcast.models.base import Forecaster
from ltvcast.models.btyd import RFM_INPUTS, BTYDForecaster
from ltvcast.models.learned.examples import history_at, scored_window, training_examples
from ltvcast.models.learned.features import FeatureMaker
from ltvcast.models.learned.gbm import QUANTILES, GBMForecaster
from ltvcast.schema.predictions import predictions_frame

__all__ = ["AutoForecaster"]

#: BTYD validation columns (hybrid inputs at c_0) per family and output.
_BTYD_VAL = {
    "paretonbd": {"pred_spend": "pnbd_spend", "pred_transactions": "pnbd_tx", "p_churn": "pnbd_p_none"},
    "bgnbd": {"pred_spend": "bgnbd_spend", "pred_transactions": "bgnbd_tx", "p_churn": "bgnbd_p_none"},
}
_BLENDED = ("pred_spend", "pred_transactions", "p_churn")


#: Name of the learned candidate that averages every learned model's outputs.
ENSEMBLE = "mean(gbm, hybrid)"


def _average(outputs: list) -> dict | pd.DataFrame:
    """Column-wise mean of the learned models' outputs (dicts of arrays or validation frames).

    Averaging quantiles is quantile averaging (Vincentization): the result is
    the quantile function of the averaged quantile functions.
    """
    if isinstance(outputs[0], pd.DataFrame):
        out = outputs[0].copy()
        cols = [c for c in out.columns if c.startswith("pred_") or c == "p_churn"]
        out[cols] = sum(o[cols].to_numpy(float) for o in outputs) / len(outputs)
        return out
    return {k: sum(np.asarray(o[k], dtype=float) for o in outputs) / len(outputs) for k in outputs[0]}


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _pinball(y: np.ndarray, qs: dict[float, np.ndarray]) -> float:
    total = 0.0
    for q, pred in qs.items():
        d = y - pred
        total += float(np.mean(np.maximum(q * d, (q - 1.0) * d)))
    return total / len(qs)


class AutoForecaster(Forecaster):
    """Per-output choice or blend of learned and BTYD models by validation score.

    Args:
        name: model name (default ``"auto"``).
        learned: learned candidates, from ``"gbm"`` and ``"hybrid"``.
        btyd: BTYD candidates, from ``"paretonbd"`` and ``"bgnbd"``.
        weights: blend weights of the learned model to try (1 = alone).
        **kwargs: :class:`GBMForecaster` settings shared by the learned
            candidates (windows, LightGBM settings, calibration, seed).

    Attributes (after ``fit``):
        learned_: dict name -> fitted :class:`GBMForecaster`.
        btyd_: dict name -> fitted :class:`BTYDForecaster` (at ``C``), for
            the families the choice uses.
        choice_: dict output -> ``{"learned", "btyd", "w", "score"}``.
        scores_: frame of every candidate's validation score per output.
        level_factor_: spend multiplier from the top-down reconciliation
            (1.0 when not reconciled; see :func:`ltvcast.models.level.reconcile`).
    """

    name = "auto"

    def __init__(
        self,
        name: str = "auto",
        *,
        learned: tuple[str, ...] = ("gbm", "hybrid"),
        btyd: tuple[str, ...] = ("paretonbd", "bgnbd"),
        weights: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0),
        **kwargs,
    ) -> None:
        super().__init__()
        bad = [m for m in learned if m not in ("gbm", "hybrid")] + [m for m in btyd if m not in _BTYD_VAL]
        if bad or not learned:
            raise ValueError(f"auto: unknown or missing candidates {bad or learned}")
        kwargs.pop("btyd_features", None)
        self.name = name
        self.learned = tuple(learned)
        self.btyd = tuple(btyd)
        self.weights = tuple(sorted({float(w) for w in weights}, reverse=True))
        self.kwargs = kwargs

    def _template(self) -> GBMForecaster:
        return GBMForecaster(self.name, **self.kwargs)

    def _maker(self, data: History, template: GBMForecaster, *, btyd: bool) -> FeatureMaker:
        """The shared feature maker: calendar inputs and text features as the gbm settings say."""
        use = bool(getattr(self, "calendar_used_", False))
        return FeatureMaker(
            data.store, data.timezone, data.revenue_basis, age_robust=True, btyd=btyd,
            calendar=use, events=template.events() if use else None, categoricals=template.categoricals,
        )

    def fit(self, data: History, cutoff, horizon_days: float) -> "AutoForecaster":
        """Fit the candidates before ``cutoff`` and choose per output on the validation window.

        Raises:
            CutoffError: no full training window fits before ``cutoff``.
            DataError: no customers before ``cutoff``.
        """
        self.notes_ = []
        template = self._template()
        calendar_note = template.decide_calendar(data, cutoff, horizon_days)
        self.calendar_used_ = template.calendar_used_
        maker = self._maker(data, template, btyd=True)
        start, h, _, ex = training_examples(template, data, cutoff, horizon_days, maker)
        self.learned_ = {}
        for name in self.learned:
            model = GBMForecaster(name, btyd_features=(name == "hybrid"), **self.kwargs)
            model.calendar_used_ = self.calendar_used_
            notes = (maker.notes if name == "hybrid" else []) + [calendar_note]
            self.learned_[name] = model.fit_examples(ex, notes)
            self.notes_.extend(f"auto/{n}" for n in model.notes_)
        self.feature_schema_ = {k: v for m in self.learned_.values() for k, v in m.feature_schema_.items()}

        self.btyd_ = {}
        for fam in self.btyd:
            try:
                self.btyd_[fam] = BTYDForecaster(fam).fit(data, start, h)
            except (ConvergenceError, DataError) as exc:
                self.notes_.append(f"{self.name}: {fam} left out: its fit at {start.date()} failed ({exc})")
        self._choose(ex.frame[ex.frame["window"] == 0])
        used = {c["btyd"] for c in self.choice_.values() if c.get("btyd") and c["w"] < 1.0}
        self.btyd_ = {k: v for k, v in self.btyd_.items() if k in used}
        self.level_factor_ = 1.0
        if self.kwargs.get("reconcile", "auto") != "off":
            self._reconcile(data, start, h, ex)
        return self

    def _reconcile(self, data: History, start, h: float, ex) -> None:
        """The top-down level (:func:`ltvcast.models.level.reconcile`) against ``auto``'s bottom-up total.

        The validation total is the chosen spend output on window 0: the
        learned validation predictions × their level factors (fitted on the
        same-season window when there is one: out of sample), blended with
        the BTYD validation column as chosen. Sets ``level_factor_``,
        ``level_forecast_``, ``bottom_up_total_``, ``reconciled_``.
        """
        from ltvcast.models.level import reconcile

        tx = history_at(data, start, self.name)
        bottom_up = float(self.predict_inputs(self.inputs(data, start, h), start, h)["pred_spend"].sum())
        c = self.choice_["pred_spend"]
        val_cutoff, val_bu, val_actual = None, float("nan"), float("nan")
        learned_val = {n: m.validation_ for n, m in self.learned_.items() if m.validation_ is not None}
        same_season = any(w.is_seasonal for w in ex.windows)
        if learned_val and same_season:
            preds = {n: v["pred_spend"].to_numpy(float) * self.learned_[n].level_.factor_ for n, v in learned_val.items()}
            if len(preds) > 1:
                preds[ENSEMBLE] = sum(preds.values()) / len(preds)
            val = ex.frame[ex.frame["window"] == 0]
            if c["learned"] in preds:
                lp = preds[c["learned"]]
                if c["btyd"] is not None and c["w"] < 1.0:
                    lp = c["w"] * lp + (1.0 - c["w"]) * val[_BTYD_VAL[c["btyd"]]["pred_spend"]].to_numpy(float)
                val_cutoff = ex.windows[0].cutoff
                val_bu = float(np.sum(lp))
                val_actual = float(np.maximum(val["actual_spend"].to_numpy(float), 0).sum())
        rec = reconcile(tx, data.timezone, start, h, bottom_up, val_cutoff=val_cutoff, val_bottom_up=val_bu,
                        val_actual=val_actual)
        self.level_factor_ = rec.factor
        self.level_forecast_ = rec.forecast
        self.bottom_up_total_ = bottom_up
        self.reconciled_ = rec.reconciled
        self.notes_.extend(f"{self.name}: {n}" for n in rec.notes)

    # ------------------------------------------------------------------ choice
    def _choose(self, val: pd.DataFrame) -> None:
        vals = {n: m.validation_ for n, m in self.learned_.items() if m.validation_ is not None}
        if len(vals) == len(self.learned_) > 1:
            vals[ENSEMBLE] = _average(list(vals.values()))
        self.choice_: dict[str, dict] = {}
        rows = []
        if not vals:
            first = self.learned[0]
            for out in _BLENDED + ("quantiles", "pred_next_purchase_days"):
                self.choice_[out] = {"learned": first, "btyd": None, "w": 1.0, "score": float("nan")}
            self.notes_.append(f"{self.name}: no validation window; every output from {first}")
            self.scores_ = pd.DataFrame(columns=["output", "learned", "btyd", "w", "score"])
            return
        y_spend = np.maximum(val["actual_spend"].to_numpy(float), 0.0)
        y_tx = val["actual_transactions"].to_numpy(float)
        y_churn = (y_tx == 0).astype(float)
        truth = {"pred_spend": y_spend, "pred_transactions": y_tx, "p_churn": y_churn}
        scorer = {"pred_spend": _rmse, "pred_transactions": _rmse, "p_churn": _brier}
        for out in _BLENDED:
            best = None
            for lname, v in vals.items():
                lp = v[out].to_numpy(float)
                fams = [f for f in self.btyd_ if val[_BTYD_VAL[f][out]].notna().all()]
                for w in self.weights:
                    for fam in fams if w < 1.0 else [None]:
                        pred = lp if fam is None else w * lp + (1.0 - w) * val[_BTYD_VAL[fam][out]].to_numpy(float)
                        score = scorer[out](truth[out], pred)
                        rows.append({"output": out, "learned": lname, "btyd": fam, "w": w, "score": score})
                        if best is None or score < best["score"] - 1e-12:
                            best = {"learned": lname, "btyd": fam, "w": w, "score": score}
            self.choice_[out] = best
        # learned-only outputs
        y_next = val["next_purchase_days"].to_numpy(float)
        bought = ~np.isnan(y_next)
        for out, score_fn in (
            ("quantiles", lambda v: _pinball(y_spend, {q: v[f"pred_spend_p{int(q * 100)}"].to_numpy(float) for q in QUANTILES})),
            (
                "pred_next_purchase_days",
                lambda v: float(np.mean(np.abs(v["pred_next_purchase_days"].to_numpy(float)[bought] - y_next[bought])))
                if bought.any() else float("nan"),
            ),
        ):
            best = None
            for lname, v in vals.items():
                score = score_fn(v)
                rows.append({"output": out, "learned": lname, "btyd": None, "w": 1.0, "score": score})
                if best is None or (np.isfinite(score) and not score >= best["score"] - 1e-12):
                    best = {"learned": lname, "btyd": None, "w": 1.0, "score": score}
            self.choice_[out] = best
        self.scores_ = pd.DataFrame(rows)
        crit = {"pred_spend": "RMSE", "pred_transactions": "RMSE", "p_churn": "Brier", "quantiles": "pinball",
                "pred_next_purchase_days": "MAE"}
        parts = []
        for out, c in self.choice_.items():
            what = c["learned"] if c["w"] >= 1.0 else (
                c["btyd"] if c["w"] <= 0.0 else f"{c['w']:.2f}·{c['learned']} + {1 - c['w']:.2f}·{c['btyd']}"
            )
            alone = self.scores_[(self.scores_["output"] == out) & (self.scores_["w"] == 1.0)]
            ref = ", ".join(f"{r.learned} {r.score:.4g}" for r in alone.itertuples())
            parts.append(f"{out} = {what} (validation {crit[out]} {c['score']:.4g}; learned alone: {ref})")
        self.notes_.append(f"{self.name}: chosen on the validation window: " + "; ".join(parts))

    # ------------------------------------------------------------------ predict
    def inputs(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """The inputs of every sub-model at ``cutoff``, one row per customer with a purchase before it.

        Returns:
            ``customer_id``, the learned models' features, and the RFM
            summary in weeks that the BTYD sub-models read, as
            ``rfm_frequency``, ``rfm_recency``, ``rfm_T``, ``rfm_monetary_value``.

        Raises:
            NotFittedError: ``fit`` was not called.
            DataError: no customer before ``cutoff``.
            SchemaMismatchError: the features differ from those of ``fit``.
        """
        if not hasattr(self, "choice_"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        start, h = scored_window(cutoff, horizon_days)
        tx = history_at(data, start, self.name)
        needs_btyd = any(m.btyd_features for m in self.learned_.values())
        maker = self._maker(data, self._template(), btyd=needs_btyd)
        feats = maker(tx, start, h)
        # text features left out at fit (no value in training) are not inputs
        unused = [c for c in feats.columns if c != "customer_id" and not pd.api.types.is_numeric_dtype(feats[c])
                  and c not in (self.feature_schema_ or {})]
        feats = feats.drop(columns=unused)
        self.check_features(feats.drop(columns="customer_id").assign(label_days=h))
        if not self.btyd_:
            return feats
        # tx is history cut at start: observed through that day.
        summary = rfm_summary(tx, start, unit="W", timezone=data.timezone, revenue_basis=data.revenue_basis,
                              data_end=start)
        rfm = summary[["customer_id", *RFM_INPUTS]].rename(columns={c: f"rfm_{c}" for c in RFM_INPUTS})
        rfm["customer_id"] = rfm["customer_id"].astype(feats["customer_id"].dtype)
        return feats.merge(rfm, on="customer_id", how="left", validate="one_to_one")

    def predict_inputs(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions from :meth:`inputs`' rows: each output from its chosen model or blend.

        A row's prediction depends on that row only (the BTYD simulation is
        seeded per customer), so inputs can be scored in chunks.

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: a feature of a sub-model is missing or retyped.
        """
        if not hasattr(self, "choice_"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        start, h = scored_window(cutoff, horizon_days)
        ids = inputs["customer_id"]
        learned = {n: m.predict_features(inputs, h) for n, m in self.learned_.items()}
        if len(learned) > 1:
            learned[ENSEMBLE] = _average(list(learned.values()))
        btyd = {}
        if self.btyd_:
            summary = inputs[["customer_id"]].assign(**{c: inputs[f"rfm_{c}"].to_numpy(float) for c in RFM_INPUTS})
            for fam, model in self.btyd_.items():
                btyd[fam] = model.predict_inputs(summary, start, h)
        out: dict[str, np.ndarray] = {}
        for col in _BLENDED:
            c = self.choice_[col]
            value = learned[c["learned"]][col]
            if c["btyd"] is not None and c["w"] < 1.0:
                value = c["w"] * value + (1.0 - c["w"]) * btyd[c["btyd"]][col].to_numpy(float)
            out[col] = value
        level = getattr(self, "level_factor_", 1.0)
        out["pred_spend"] = level * out["pred_spend"]
        q_from = learned[self.choice_["quantiles"]["learned"]]
        for q in QUANTILES:
            key = f"pred_spend_p{int(q * 100)}"
            out[key] = level * q_from[key]
        out["pred_next_purchase_days"] = learned[self.choice_["pred_next_purchase_days"]["learned"]][
            "pred_next_purchase_days"
        ]
        return predictions_frame(ids, self.name, start, h, **out)
