"""Uplift models from a randomised campaign, and the Qini / AUUC curves that judge them.

* :class:`TLearner` — one LightGBM regressor per arm, ``τ̂(x) = μ̂₁(x) − μ̂₀(x)``.
* :class:`XLearner` — Künzel, Sekhon, Bickel & Yu (2019, PNAS, "Meta-learners
  for estimating heterogeneous treatment effects"), eqs. for the X-learner:
  imputed effects ``D¹ = Y¹ − μ̂₀(X¹)`` on the treated, ``D⁰ = μ̂₁(X⁰) − Y⁰``
  on the controls, regressions ``τ̂₁``, ``τ̂₀`` of them, combined as
  ``τ̂ = e·τ̂₀ + (1 − e)·τ̂₁`` with ``e`` the (constant, randomised) treated share.
* :func:`qini_curve`, :func:`qini_coefficient`, :func:`auuc`,
  :func:`uplift_at` — causalml's ``metrics`` definitions (Radcliffe 2007):
  customers sorted by predicted uplift (descending), at each prefix ``k``:
  ``Qini(k) = Y_T(k) − Y_C(k)·N_T(k)/N_C(k)`` (sums of the outcome and counts
  per arm in the prefix); cumulative gain ``G(k) = (Y_T/N_T − Y_C/N_C)(k) ·
  k``. The Qini coefficient is the area between the model's curve and the
  random line ``Qini(n)·k/n``, averaged over k and divided by ``|Qini(n)|``
  (causalml ``qini_score`` with ``normalize=True``); AUUC is the mean of
  ``G(k)/|G(n)|`` (causalml ``auuc_score``).

The regressors use the Huber loss (robust to the few very large baskets;
``alpha`` = the 90th percentile of the absolute deviation from the median of
what they fit) with strong regularisation (``LGBM_PARAMS``): effects are small
beside the noise of spend. Features are any numeric frame (columns of ``str``/``category`` dtype become
LightGBM categoricals with the training categories).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.errors import DataError

LGBM_PARAMS = {
    "objective": "huber",
    "n_estimators": 200,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "verbose": -1,
    "n_jobs": 1,
}


def prepare_features(frame: pd.DataFrame, categories: dict[str, list] | None = None):
    """Numeric features for LightGBM: text columns become categoricals (with ``categories`` when given).

    Returns (frame, categories). Raises DataError for an empty frame.
    """
    if frame.shape[1] == 0:
        raise DataError("no feature columns")
    out = frame.copy()
    cats = dict(categories or {})
    for col in out.columns:
        dtype = out[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        else:
            values = out[col].astype("string")
            if col not in cats:
                cats[col] = sorted(values.dropna().unique().tolist())
            out[col] = pd.Categorical(values.astype(object), categories=cats[col])
    return out, cats


def _regressor(seed: int, params: dict | None, target=None):
    """A LightGBM regressor; with the Huber loss its ``alpha`` is the 90th percentile of |target − median|."""
    import lightgbm as lgb

    params = dict(params or LGBM_PARAMS)
    if params.get("objective") == "huber" and "alpha" not in params and target is not None:
        target = np.asarray(target, float)
        params["alpha"] = float(np.quantile(np.abs(target - np.median(target)), 0.9)) or 1.0
    return lgb.LGBMRegressor(random_state=seed, **params)


def _check(x: pd.DataFrame, treated: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(treated) or len(x) != len(y):
        raise DataError(f"features ({len(x)}), treated ({len(treated)}) and outcome ({len(y)}) differ in length")
    n_t = int(np.sum(treated))
    if n_t < 20 or len(treated) - n_t < 20:
        raise DataError(f"an uplift model needs at least 20 customers per arm, got {n_t} treated and "
                        f"{len(treated) - n_t} control")


class TLearner:
    """Two-model uplift learner (one LightGBM regressor per arm).

    ``fit(x, treated, y)``: x (n, p) features, treated (n,) bool, y (n,) outcome
    (spend in the window). ``predict(x)`` → τ̂ (n,); ``predict_arms(x)`` → (μ̂₀, μ̂₁).
    """

    def __init__(self, seed: int = 0, params: dict | None = None):
        self.seed = seed
        self.params = params

    def fit(self, x: pd.DataFrame, treated, y) -> TLearner:
        """Fit μ̂₀ on the controls and μ̂₁ on the treated. Raises DataError (fewer than 20 per arm)."""
        treated, y = np.asarray(treated, bool), np.asarray(y, float)
        _check(x, treated, y)
        x, self.categories_ = prepare_features(x)
        self.mu0_ = _regressor(self.seed, self.params, y[~treated]).fit(x[~treated], y[~treated])
        self.mu1_ = _regressor(self.seed + 1, self.params, y[treated]).fit(x[treated], y[treated])
        self.treated_share_ = float(treated.mean())
        return self

    def predict_arms(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(μ̂₀(x), μ̂₁(x)), each shape (n,)."""
        x, _ = prepare_features(x, self.categories_)
        return self.mu0_.predict(x), self.mu1_.predict(x)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """τ̂(x) = μ̂₁(x) − μ̂₀(x), shape (n,)."""
        mu0, mu1 = self.predict_arms(x)
        return mu1 - mu0


class XLearner(TLearner):
    """X-learner (Künzel et al. 2019), first stage a :class:`TLearner`; ``predict`` → τ̂ (n,)."""

    def fit(self, x: pd.DataFrame, treated, y) -> XLearner:
        """Both stages. Raises DataError (fewer than 20 per arm)."""
        super().fit(x, treated, y)
        treated, y = np.asarray(treated, bool), np.asarray(y, float)
        xp, _ = prepare_features(x, self.categories_)
        mu0, mu1 = self.mu0_.predict(xp), self.mu1_.predict(xp)
        d1 = y[treated] - mu0[treated]
        d0 = mu1[~treated] - y[~treated]
        self.tau1_ = _regressor(self.seed + 2, self.params, d1).fit(xp[treated], d1)
        self.tau0_ = _regressor(self.seed + 3, self.params, d0).fit(xp[~treated], d0)
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """τ̂ = e·τ̂₀(x) + (1 − e)·τ̂₁(x), e = the treated share (constant propensity)."""
        xp, _ = prepare_features(x, self.categories_)
        e = self.treated_share_
        return e * self.tau0_.predict(xp) + (1.0 - e) * self.tau1_.predict(xp)


# ---------------------------------------------------------------------------- metrics
def _sorted_cums(score, treated, y):
    score, treated, y = np.asarray(score, float), np.asarray(treated, bool), np.asarray(y, float)
    if not (score.size == treated.size == y.size) or score.size == 0:
        raise DataError("score, treated and outcome must be non-empty and of one length")
    order = np.argsort(-score, kind="stable")
    t, yy = treated[order], y[order]
    n_t = np.cumsum(t)
    n_c = np.cumsum(~t)
    y_t = np.cumsum(np.where(t, yy, 0.0))
    y_c = np.cumsum(np.where(t, 0.0, yy))
    return n_t, n_c, y_t, y_c


def qini_curve(score, treated, y) -> np.ndarray:
    """Qini(k) for k = 1..n (module docstring; 0 where a prefix has no control yet), shape (n,)."""
    n_t, n_c, y_t, y_c = _sorted_cums(score, treated, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_c > 0, y_t - y_c * n_t / np.maximum(n_c, 1), 0.0)


def qini_coefficient(score, treated, y) -> float:
    """Area between the Qini curve and the random line, mean over k, divided by |Qini(n)| (causalml qini_score)."""
    q = qini_curve(score, treated, y)
    n = q.size
    random = q[-1] * np.arange(1, n + 1) / n
    return float((q - random).mean() / abs(q[-1])) if q[-1] != 0 else float("nan")


def auuc(score, treated, y) -> float:
    """Mean of the cumulative gain curve G(k)/|G(n)| (causalml auuc_score, normalised)."""
    n_t, n_c, y_t, y_c = _sorted_cums(score, treated, y)
    k = np.arange(1, n_t.size + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where((n_t > 0) & (n_c > 0), (y_t / np.maximum(n_t, 1) - y_c / np.maximum(n_c, 1)) * k, 0.0)
    return float(g.mean() / abs(g[-1])) if g[-1] != 0 else float("nan")


def uplift_at(score, treated, y, share: float) -> float:
    """Observed uplift ``mean(y | treated) − mean(y | control)`` in the top ``share`` by score (nan if an arm is empty)."""
    if not 0 < share <= 1:
        raise DataError(f"share must be in (0, 1], got {share}")
    score, treated, y = np.asarray(score, float), np.asarray(treated, bool), np.asarray(y, float)
    k = max(int(round(share * score.size)), 1)
    top = np.argsort(-score, kind="stable")[:k]
    t, yy = treated[top], y[top]
    if t.all() or not t.any():
        return float("nan")
    return float(yy[t].mean() - yy[~t].mean())


def true_qini_coefficient(score, effect) -> float:
    """The Qini coefficient against known individual effects (a simulator's truth), shapes (n,).

    With the true effects ``τ`` the Qini curve is ``Q(k) = Σ_{top k} τ`` (the
    expectation of the observed curve); the coefficient is the same area as
    :func:`qini_coefficient`: mean over k of ``Q(k) − Q(n)·k/n``, divided by ``|Q(n)|``.
    """
    score, effect = np.asarray(score, float), np.asarray(effect, float)
    if score.size != effect.size or score.size == 0:
        raise DataError("score and effect must be non-empty and of one length")
    q = np.cumsum(effect[np.argsort(-score, kind="stable")])
    random = q[-1] * np.arange(1, q.size + 1) / q.size
    return float((q - random).mean() / abs(q[-1])) if q[-1] != 0 else float("nan")
