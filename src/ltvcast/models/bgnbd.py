"""The BG/NBD model (Fader, Hardie & Lee 2005).

Source: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "'Counting your
customers' the easy way: an alternative to the Pareto/NBD model",
*Marketing Science* 24(2), 275-284 — "FHL 2005" below; and Fader, Hardie &
Lee (2008), "Computing P(alive) using the BG/NBD model" (note at
brucehardie.com) for P(alive).

Model: while active, a customer buys at Poisson rate λ, λ ~ Gamma(r, α)
across customers; after each *repeat* purchase the customer drops out for
good with probability p, p ~ Beta(a, b). The data per customer are
``frequency`` x (repeat purchase occasions), ``recency`` t_x (time of the
last one, measured from the first purchase) and ``T`` (time from the first
purchase to the end of the calibration period), all in one time unit of the
caller's choosing; α is in that unit, r, a, b are unitless.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betaincinv, betaln, digamma, expit, gammaln, hyp2f1

from ltvcast.errors import DataError
from ltvcast.models._mle import (
    Limit,
    Prior,
    _FittedMixin,
    adequacy,
    check_horizon,
    check_rft,
    compress,
    fit_nbd,
    fit_robust,
    nbd_expected,
    nbd_log_likelihood,
    start_values,
)

PARAM_NAMES = ("r", "alpha", "a", "b")

#: Weak priors of the MAP fallback: log-normal, centred on the CDNOW fit
#: (FHL 2005: r 0.243, alpha 4.414 weeks, a 0.793, b 2.426) with alpha
#: taken relative to mean T (32.72 weeks on CDNOW, so 0.135·mean T), sd 2 on
#: the log scale. Weakly informative in the way PyMC-Marketing's CLV models
#: put proper priors on the same four parameters; the values are ours.
PRIOR = Prior(
    mean=np.log([0.243, 4.414 / 32.716, 0.793, 2.426]),
    text="log-normal priors centred on the CDNOW fit r=0.243, alpha=0.135·mean T, a=0.793, b=2.426, "
    "sd 2 on the log scale",
)
#: What the NBD limit (no dropout) says in ``notes_``.
NBD_LIMIT = (
    "no dropout is visible in these data (a -> 0 or b -> infinity: the dropout probability goes to 0), "
    "so BG/NBD reduces to the NBD; a and b are not identified (stored as a=0, b=1) and P(alive) = 1"
)


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood, FHL 2005 eq. (6).

    ``ln L = ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    + ln[ (α+T)^−(r+x) + 1{x>0} a/(b+x−1) (α+t_x)^−(r+x) ]``
    (the two beta-function ratios of eq. 6 rewritten as one common factor
    and a ratio, computed with ``logaddexp``).

    Args:
        r, alpha, a, b: model parameters (positive; alpha in the time unit).
        frequency, recency, T: (n,) arrays (x, t_x, T; time unit of alpha).

    Returns:
        (n,) log-likelihood of each customer (density of the purchase times,
        so it depends on the time unit through a −x·ln(unit) term).
    """
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    term_T = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        term_tx = np.where(
            x > 0,
            np.log(a) - np.log(np.where(x > 0, b + x - 1.0, 1.0)) - (r + x) * np.log(alpha + tx),
            -np.inf,
        )
    return common + np.logaddexp(term_T, term_tx)


def _ll_and_grad(theta: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and its gradient w.r.t. (ln r, ln α, ln a, ln b)."""
    r, alpha, a, b = np.exp(theta)
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    lT = -(r + x) * np.log(alpha + T)
    pos = x > 0
    bx1 = np.where(pos, b + x - 1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ltx = np.where(pos, np.log(a) - np.log(bx1) - (r + x) * np.log(alpha + tx), -np.inf)
    ll = common + np.logaddexp(lT, ltx)
    w = np.where(pos, expit(ltx - lT), 0.0)  # weight of the t_x term
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - (1 - w) * np.log(alpha + T) - w * np.log(alpha + tx)
    d_alpha = r / alpha - (1 - w) * (r + x) / (alpha + T) - w * (r + x) / (alpha + tx)
    d_a = digamma(a + b) - digamma(a + b + x) + w / a
    d_b = digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x) - w / bx1
    grad = np.column_stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return ll, grad


class BGNBD(_FittedMixin):
    """BG/NBD count model (Fader, Hardie & Lee 2005, Marketing Science 24(2)).

    Args:
        initial_params: starting values ``{"r", "alpha", "a", "b"}`` for the
            optimiser; ``alpha`` in the summary's time unit. ``None`` (the
            default) starts at r = a = b = 1 and alpha = mean(T).
        maxiter: iteration limit of each optimiser run.
        time_unit: name of the summary's time unit (e.g. ``"weeks"``), used
            only in notes; ``None`` says "time units".

    Attributes (after :meth:`fit`):
        params_: dict ``r, alpha, a, b`` (alpha in the summary's time unit);
            ``a = 0`` (and ``b = 1``) is the NBD limit: no dropout.
        fit_method_: ``"mle"``, ``"boundary"`` (the NBD limit) or ``"map"``
            (weak priors, see ``PRIOR``); docs/fitting.md.
        notes_: sentences on data adequacy and on how the fit was obtained.
        log_likelihood_: total log-likelihood at ``params_`` (float).
        n_customers_: number of customers fitted on.
        converged_: True (a fit that does not converge raises instead).
        optimizer_result_: the ``scipy.optimize.OptimizeResult`` (in the
            optimiser's internal units: log-parameters, time scaled by mean T).
    """

    _model_name = "BG/NBD"

    def __init__(
        self, initial_params: dict[str, float] | None = None, maxiter: int = 2000, time_unit: str | None = None
    ) -> None:
        self.initial_params = initial_params
        self.maxiter = maxiter
        self.time_unit = time_unit

    # ------------------------------------------------------------------ fit
    def fit(self, summary: pd.DataFrame) -> BGNBD:
        """Fit on a customer summary: maximum likelihood (FHL 2005 eq. 6), else its NBD limit, else MAP.

        The rules (:func:`ltvcast.models._mle.fit_robust`, docs/fitting.md):
        an interior maximum is the answer; where the likelihood rises
        towards a → 0 or b → ∞ (no dropout in the data) the NBD limit is
        fitted instead (``params_["a"] = 0``); where the likelihood is flat
        (too little data) the MAP estimate under ``PRIOR``. ``notes_`` says
        which, with adequacy notes (counts; a span shorter than one unit).

        Args:
            summary: DataFrame with float columns ``frequency``, ``recency``,
                ``T`` (n rows, any time unit); other columns are ignored.

        Returns:
            self, with ``params_``, ``log_likelihood_`` etc. set.

        Raises:
            DataError: missing columns or invalid values (see
                :func:`ltvcast.models._mle.check_rft`); every T is 0.
            ConvergenceError: maximum likelihood, the NBD limit and MAP all
                failed (e.g. ``maxiter`` too small).
        """
        x, tx, T = check_rft(summary, self._model_name)
        if np.max(T) <= 0:
            raise DataError(f"{self._model_name}: every customer has T = 0 (all first purchases on the last day "
                            "before the cutoff): no time observed to learn from")
        self.notes_, too_few = adequacy(x, T, self._model_name, self.time_unit)
        scale = float(np.mean(T)) if np.mean(T) > 0 else 1.0
        comp = compress(x, tx / scale, T / scale)
        ux, utx, uT = comp.columns
        w = comp.counts
        n = len(x)

        def nll(z: np.ndarray) -> float:
            r, al, a, b = np.exp(z)
            return -float(np.dot(w, bgnbd_log_likelihood(r, al, a, b, ux, utx, uT))) / n

        def jac(z: np.ndarray) -> np.ndarray:
            _, g = _ll_and_grad(z, ux, utx, uT)
            return -(w @ g) / n

        init = start_values(self.initial_params, {"r": 1.0, "alpha": scale, "a": 1.0, "b": 1.0}, self._model_name)
        z0 = np.log([init["r"], init["alpha"] / scale, init["a"], init["b"]])

        def to_params(z: np.ndarray) -> dict[str, float]:
            p = np.exp(z)
            return {"r": float(p[0]), "alpha": float(p[1] * scale), "a": float(p[2]), "b": float(p[3])}

        shift = -float(np.sum(x)) * np.log(scale)

        def fit_limit() -> tuple[dict[str, float], float, object]:
            lres = fit_nbd(ux, uT, w, n, self._model_name, self.maxiter)
            r, al = np.exp(lres.x)
            return {"r": float(r), "alpha": float(al * scale), "a": 0.0, "b": 1.0}, -n * lres.fun + shift, lres

        out = fit_robust(nll, z0, model=self._model_name, names=PARAM_NAMES, to_params=to_params, n=n, jac=jac,
                         maxiter=self.maxiter, ll_shift=shift, prior=PRIOR, limit=Limit(fit_limit, NBD_LIMIT),
                         too_few=too_few)
        self._record(out, n, self.notes_)
        self.log_likelihood_ = float(np.sum(self._ll(x, tx, T)))
        return self

    def _ll(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        p = self.params_
        if p["a"] == 0.0:
            return nbd_log_likelihood(p["r"], p["alpha"], x, T)
        return bgnbd_log_likelihood(p["r"], p["alpha"], p["a"], p["b"], x, tx, T)

    # ---------------------------------------------------------- predictions
    def log_likelihood(self, summary: pd.DataFrame) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters, FHL 2005 eq. (6).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).

        Returns:
            (n,) float array.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: missing columns or invalid values.
        """
        self._check_fitted()
        return self._ll(*check_rft(summary, self._model_name))

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(customer still active at T | x, t_x, T).

        ``P = 1 / (1 + 1{x>0} a/(b+x−1) ((α+T)/(α+t_x))^(r+x))`` — Fader,
        Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model"
        (note at brucehardie.com); customers with x = 0 get 1 (no repeat purchase, hence no
        chance yet to drop out — the BG/NBD convention). In the NBD limit
        (a = 0) every customer gets 1. Computed as a logistic of the log-odds,
        so it stays in [0, 1] for thousands of purchases.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).

        Returns:
            (n,) probabilities in (0, 1].

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: missing columns or invalid values.
        """
        p = self._check_fitted()
        x, tx, T = check_rft(summary, self._model_name)
        return _p_alive(p, x, tx, T)

    def expected_transactions(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected purchase occasions in (T, T+t] given the history, FHL 2005 eq. (10).

        ``E[Y(t) | x, t_x, T] = (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x)
        ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] / (1 + 1{x>0} a/(b+x−1)
        ((α+T)/(α+t_x))^(r+x))``. Computed with Euler's transformation,
        ``((α+T)/(α+T+t))^(r+x) ₂F₁(...) = (1−z)^(a−1) ₂F₁(a+b−1−r, a−1;
        a+b+x−1; z)``, z = t/(α+T+t), which stays O(1) for large x; at
        a = 1 exactly (removable singularity) the mean of a = 1 ± 1e−5 is used.
        In the NBD limit (a = 0): ``(r+x)/(α+T) · t`` (:func:`~ltvcast.models._mle.nbd_expected`).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon length (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) expected number of repeat purchase occasions.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        p = self._check_fitted()
        x, tx, T = check_rft(summary, self._model_name)
        t = check_horizon(t, len(x), self._model_name)
        return _conditional_expectation(p, x, tx, T, t)

    def p_no_purchase(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """P(no purchase occasion in (T, T+t] | x, t_x, T).

        In the BG/NBD a customer can only drop out right after a purchase,
        and given that they are active at T their rate is λ | data ~
        Gamma(r+x, α+T) (FHL 2005, posterior from eq. 6), so
        ``P = (1 − P(alive)) + P(alive) · ((α+T)/(α+T+t))^(r+x)``; in the NBD
        limit P(alive) = 1 and this is the NBD zero class.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) probabilities; 1 at t = 0, 1 − P(alive) as t → ∞.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        p = self._check_fitted()
        x, tx, T = check_rft(summary, self._model_name)
        t = check_horizon(t, len(x), self._model_name)
        pa = _p_alive(p, x, tx, T)
        r, alpha = p["r"], p["alpha"]
        quiet = np.exp(-(r + x) * np.log1p(t / (alpha + T)))
        return (1.0 - pa) + pa * quiet

    def population_expected_transactions(self, t: float | np.ndarray) -> np.ndarray:
        """Unconditional E[X(t)] for a customer's first t time units, FHL 2005 eq. (9).

        ``E[X(t)] = (a+b−1)/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b; a+b−1; t/(α+t))]``
        (repeat purchases in (0, t] after the first purchase at 0); in the NBD
        limit (a = 0) ``r t / α``.

        Args:
            t: scalar or (k,) array of times >= 0, in the fitted time unit.

        Returns:
            Array of the shape of ``t``.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: negative or non-finite t.
        """
        p = self._check_fitted()
        t_arr = np.asarray(t, dtype=float)
        check_horizon(t_arr.ravel(), t_arr.size, self._model_name)
        x0 = np.zeros_like(t_arr)
        # eq. (9) is eq. (10)'s bracket with x = 0, T = 0 (P(alive) = 1).
        return _conditional_expectation(p, x0, x0, x0, t_arr)


def _p_alive(p: dict[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    pos = (x > 0) & (a > 0)  # a = 0: the NBD limit, nobody drops out
    with np.errstate(divide="ignore"):
        log_odds = np.log(a) - np.log(np.where(pos, b + x - 1.0, 1.0)) + (r + x) * (
            np.log(alpha + T) - np.log(alpha + tx)
        )
    return np.where(pos, expit(-log_odds), 1.0)


def _bracket_over_a1(r: float, alpha: float, a: float, b: float, x: np.ndarray, T: np.ndarray, t) -> np.ndarray:
    """``(a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)]``.

    Where scipy's ``hyp2f1`` overflows (e.g. a and b in the tens of
    thousands, a dropout probability fitted as nearly fixed), the same
    quantity is computed by :func:`_bracket_quadrature`.
    """
    x, T, t = np.broadcast_arrays(np.asarray(x, float), np.asarray(T, float), np.asarray(t, float))
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    # Euler: 2F1(r+x, b+x; c; z) = (1−z)^(a−1−r−x) 2F1(a+b−1−r, a−1; c; z)
    with np.errstate(all="ignore"):
        tail = np.exp((a - 1.0) * np.log1p(-z)) * hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        out = c / (a - 1.0) * (1.0 - tail)
    bad = ~np.isfinite(out)
    if bad.any():
        out = out.copy()
        out[bad] = _bracket_quadrature(r, alpha, a, b, x[bad], T[bad], t[bad])
    return out


def _bracket_quadrature(r: float, alpha: float, a: float, b: float, x: np.ndarray, T: np.ndarray, t) -> np.ndarray:
    """The bracket of :func:`_bracket_over_a1` as an expectation over the dropout probability.

    Given alive at T, λ ~ Gamma(r+x, α+T) and p ~ Beta(a, b+x) independently,
    and a customer with (λ, p) makes (1 − e^(−λpt))/p expected purchases in
    the next t, so the bracket is E_p[(1 − ((α+T)/(α+T+pt))^(r+x)) / p]. The
    integral over the Beta quantile u in (0, 1) uses 256 Gauss–Legendre nodes
    (relative error about 1e−7 against the closed form for a < 1; smaller for
    concentrated Betas).
    """
    u, w = np.polynomial.legendre.leggauss(256)
    u, w = (u + 1.0) / 2.0, w / 2.0
    p = betaincinv(a, (b + x)[:, None], u[None, :])
    k = (np.asarray(t, float) / (alpha + T))[:, None]
    f = -np.expm1(-(r + x)[:, None] * np.log1p(p * k)) / p
    return f @ w


def _conditional_expectation(p: dict[str, float], x, tx, T, t) -> np.ndarray:
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    if a == 0.0:  # NBD limit: no dropout
        x, T, t = np.broadcast_arrays(np.asarray(x, float), np.asarray(T, float), np.asarray(t, float))
        return nbd_expected(r, alpha, x, T, t)
    if abs(a - 1.0) < 1e-7:
        h = 1e-5
        bracket = 0.5 * (_bracket_over_a1(r, alpha, 1 + h, b, x, T, t) + _bracket_over_a1(r, alpha, 1 - h, b, x, T, t))
    else:
        bracket = _bracket_over_a1(r, alpha, a, b, x, T, t)
    return bracket * _p_alive(p, x, tx, T)
