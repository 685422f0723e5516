"""Calibration of learned predictions on the validation window.

Two maps, each fitted on the validation window (the latest full training
window, predicted by a model trained on the older windows only) and applied
to the final model's predictions:

* :class:`LevelCalibration` — one factor for the level of a non-negative
  prediction (spend): ``a = Σ y / Σ ŷ`` over the validation customers, with
  ``y`` the label under the models' rule (non-positive values count as 0),
  clipped to ``[1 / max_factor, max_factor]``. A single factor keeps the
  ranking (Gini, AUC) unchanged and fixes the total.
* :class:`PlattCalibration` — logistic recalibration of a probability
  (Platt 1999, "Probabilistic outputs for support vector machines"):
  ``p' = sigmoid(a · logit(p) + b)``, ``(a, b)`` by maximum likelihood on
  the validation window. Monotone, so the ranking (AUC) is unchanged.
* :class:`QuantileLevels` — recalibrated quantile levels: for a target level
  ``q`` the level ``q'`` whose predicted quantiles have a share ``q`` of the
  validation customers below them (the empirical calibration of a quantile,
  e.g. Kuleshov, Fenner & Ermon 2018, "Accurate uncertainties for deep
  learning using calibrated regression"). For ``q = 0.1`` and ``0.9`` this
  aims the ``[p10, p90]`` interval at 80% coverage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logit

__all__ = ["LevelCalibration", "PlattCalibration", "QuantileLevels"]


@dataclass
class LevelCalibration:
    """A multiplicative level correction ``ŷ' = factor · ŷ``.

    Args:
        max_factor: the factor is clipped to ``[1/max_factor, max_factor]``
            (a guard against a validation window that is unrepresentative).

    Attributes (after :meth:`fit`):
        factor_: the fitted factor (1.0 when the prediction total is 0).
        raw_factor_: the factor before clipping.
    """

    max_factor: float = 1.5
    factor_: float = 1.0
    raw_factor_: float = 1.0

    def fit(self, y, y_pred, sample_weight=None) -> "LevelCalibration":
        """Fit on labels ``y`` (n,) and predictions ``y_pred`` (n,) >= 0.

        With ``sample_weight`` (n,) >= 0 the factor is ``Σ w·y / Σ w·ŷ``
        (e.g. recency weights of several same-season windows).

        Returns:
            self.

        Raises:
            ValueError: different lengths.
        """
        y = np.maximum(np.asarray(y, dtype=float), 0.0)
        p = np.asarray(y_pred, dtype=float)
        if y.shape != p.shape:
            raise ValueError(f"y and y_pred differ in shape: {y.shape} vs {p.shape}")
        w = np.ones_like(p) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if w.shape != p.shape:
            raise ValueError(f"sample_weight and y_pred differ in shape: {w.shape} vs {p.shape}")
        total = float((w * p).sum())
        self.raw_factor_ = float((w * y).sum() / total) if total > 0 else 1.0
        self.factor_ = float(np.clip(self.raw_factor_, 1.0 / self.max_factor, self.max_factor))
        return self

    def transform(self, y_pred) -> np.ndarray:
        """``factor_ · y_pred``, shape (n,)."""
        return self.factor_ * np.asarray(y_pred, dtype=float)


@dataclass
class PlattCalibration:
    """Logistic recalibration ``p' = sigmoid(a · logit(p) + b)`` (Platt 1999).

    Attributes (after :meth:`fit`):
        a_, b_: slope and intercept (identity: 1, 0).
    """

    a_: float = 1.0
    b_: float = 0.0

    def fit(self, label, p, sample_weight=None) -> "PlattCalibration":
        """Maximum likelihood on binary labels (n,) and probabilities (n,).

        ``sample_weight`` (n,) >= 0 weights each row's log-likelihood.
        Keeps the identity when the labels hold a single class or the
        optimiser fails.

        Returns:
            self.
        """
        y = np.asarray(label, dtype=float)
        x = logit(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6))
        if y.size == 0 or np.unique(y).size < 2:
            return self
        w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        w = w / w.mean()

        def nll(theta: np.ndarray) -> float:
            z = theta[0] * x + theta[1]
            return -float(np.mean(w * (y * log_expit(z) + (1 - y) * log_expit(-z))))

        def grad(theta: np.ndarray) -> np.ndarray:
            z = theta[0] * x + theta[1]
            r = w * (expit(z) - y)
            return np.array([np.mean(r * x), np.mean(r)])

        res = minimize(nll, np.array([1.0, 0.0]), jac=grad, method="L-BFGS-B")
        if res.success and np.all(np.isfinite(res.x)):
            self.a_, self.b_ = float(res.x[0]), float(res.x[1])
        return self

    def transform(self, p) -> np.ndarray:
        """Recalibrated probabilities, shape (n,), in (0, 1)."""
        x = logit(np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6))
        return expit(self.a_ * x + self.b_)


@dataclass
class QuantileLevels:
    """Recalibrated quantile levels ``q -> q'`` fitted on a validation window.

    Args:
        targets: the nominal levels, e.g. ``(0.1, 0.9)``.
        bounds: search range of the recalibrated levels; a level below 0.5
            is kept at most 0.5 and one above 0.5 at least 0.5, so the
            recalibrated quantiles never cross the median.

    With a point mass at zero (most customers buy nothing) the share of
    customers *below* a quantile can stay under its level for every level up
    to P(zero): recalibration then moves a low level up to the median bound.

    Attributes (after :meth:`fit`):
        levels_: dict nominal level -> recalibrated level (identity before
            fitting).
        below_: dict nominal level -> share of validation customers below
            the recalibrated quantile.
    """

    targets: Sequence[float] = (0.1, 0.5, 0.9)
    bounds: tuple[float, float] = (0.01, 0.99)
    levels_: dict[float, float] = field(default_factory=dict)
    below_: dict[float, float] = field(default_factory=dict)

    def fit(self, y, quantile: Callable[[float], np.ndarray], iterations: int = 30) -> "QuantileLevels":
        """Bisection on the level for each target.

        Args:
            y: (n,) validation labels (non-positive values count as 0).
            quantile: ``level -> (n,)`` predicted quantiles of the validation
                customers at that level (non-decreasing in the level).
            iterations: bisection steps.

        Returns:
            self.
        """
        y = np.maximum(np.asarray(y, dtype=float), 0.0)
        for q in self.targets:
            lo, hi = self.bounds
            if q < 0.5:
                hi = min(hi, 0.5)
            elif q > 0.5:
                lo = max(lo, 0.5)
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                if np.mean(y < quantile(mid)) < q:
                    lo = mid
                else:
                    hi = mid
            level = 0.5 * (lo + hi)
            self.levels_[q] = float(level)
            self.below_[q] = float(np.mean(y < quantile(level)))
        return self

    def level(self, q: float) -> float:
        """The recalibrated level for ``q`` (``q`` itself when not fitted)."""
        return self.levels_.get(q, q)
