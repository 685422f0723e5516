"""The Pareto/NBD model (Schmittlein, Morrison & Colombo 1987).

Sources: D. C. Schmittlein, D. G. Morrison, R. Colombo (1987), "Counting
your customers: who are they and what will they do next?", *Management
Science* 33(1), 1-24 ("SMC 1987"); P. S. Fader, B. G. S. Hardie (2005), "A
note on deriving the Pareto/NBD model and related expressions" (note 009 at
brucehardie.com, "FH 2005 note" below): Section 3 likelihood, Section 4
mean, Section 5 P(alive), Section 6 conditional expectation. (Sections are
cited rather than equation numbers, which we could not verify.)

Model: while alive a customer buys at Poisson rate λ, λ ~ Gamma(r, α); the
unobserved lifetime is exponential with rate μ, μ ~ Gamma(s, β); λ and μ
are independent. Data per customer: ``frequency`` x, ``recency`` t_x,
``T`` (one time unit; α and β are in that unit, r and s unitless).

Numerics: the likelihood's A0 term (FH 2005 note, Section 3) is a
difference of two Gaussian hypergeometric terms
``₂F₁(r+s+x, s+1 | r+x; r+s+x+1; z) / (·)^(r+s+x)``. With Euler's
transformation each becomes ``₂F₁(1, r+x | s+1; r+s+x+1; z)`` times powers:
a series of positive terms with z in [0, 1) and no cancellation.
``scipy.special.hyp2f1`` is used for z <= 0.9; beyond that it can return
inf/nan or lose digits, so :func:`log_hyp2f1_a1` switches to quadrature of
Euler's integral. Everything else is done in log space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betaln, gammaln, hyp2f1, logsumexp

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
    nbd_p_none,
    start_values,
)

PARAM_NAMES = ("r", "alpha", "s", "beta")

#: Weak priors of the MAP fallback: log-normal, centred on the CDNOW fit
#: (FHL 2005 comparison: r 0.553, alpha 10.578 weeks, s 0.606, beta 11.669
#: weeks) with alpha and beta relative to mean T (32.72 weeks on CDNOW), sd 2
#: on the log scale. Weakly informative in the way PyMC-Marketing's CLV
#: models put proper priors on the same four parameters; the values are ours.
PRIOR = Prior(
    mean=np.log([0.553, 10.578 / 32.716, 0.606, 11.669 / 32.716]),
    text="log-normal priors centred on the CDNOW fit r=0.553, alpha=0.323·mean T, s=0.606, beta=0.357·mean T, "
    "sd 2 on the log scale",
)
#: What the NBD limit (no dropout) says in ``notes_``.
NBD_LIMIT = (
    "no dropout is visible in these data (s -> 0 or beta -> infinity: the dropout rate goes to 0), "
    "so Pareto/NBD reduces to the NBD; s and beta are not identified (stored as s=0, beta=1) and P(alive) = 1"
)

#: Up to this argument scipy's ``hyp2f1(1, b; c; z)`` (Cephes power series)
#: is used; beyond it the quadrature below (see :func:`log_hyp2f1_a1`).
Z_SAFE = 0.9
_STEP = 1.0 / 16.0
_CHUNK = 4096


def _log_hyp2f1_quad(b: np.ndarray, c: np.ndarray, z: np.ndarray, omz: np.ndarray) -> np.ndarray:
    """ln ₂F₁(1, b; c; z) for 1-D arrays (c > b > 0, 0 < z < 1) by quadrature.

    Euler's integral (Abramowitz & Stegun 15.3.1) in the logit variable
    y = ln(u/(1−u)) reads ``B(b, c−b) ₂F₁(1, b; c; z) = ∫ e^(by)
    (1+e^y)^(1−c) / (1 + (1−z) e^y) dy`` over the real line. The integrand is
    analytic in the strip |Im y| < π, so the trapezoidal rule after the
    double-exponential map y = y_c + σ sinh(t) (y_c, σ: centre and width of
    the beta kernel) converges geometrically: step 1/16 in t, range chosen
    per call to reach e^−40 in the tails. Log space throughout; ``omz`` =
    1 − z is passed separately so that z close to 1 loses no digits.
    """
    out = np.empty(b.shape)
    for start in range(0, b.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        out[sl] = _log_hyp2f1_quad_chunk(b[sl], c[sl], z[sl], omz[sl])
    return out


def _log_hyp2f1_quad_chunk(b: np.ndarray, c: np.ndarray, z: np.ndarray, omz: np.ndarray) -> np.ndarray:
    m1 = c - b
    yc = np.log(b) - np.log(m1)
    sig = np.minimum(1.0, np.sqrt(1.0 / b + 1.0 / m1))
    log_w = np.log(omz)
    reach = 40.0 / np.minimum(b, m1) + np.abs(-log_w - yc) + 10.0
    tmax = float(np.clip(np.max(np.arcsinh(reach / sig)), 3.0, 14.0))
    t = np.arange(-tmax, tmax + _STEP / 2, _STEP)
    y = yc[:, None] + sig[:, None] * np.sinh(t)[None, :]
    log_f = (
        b[:, None] * y
        + (1.0 - c)[:, None] * np.logaddexp(0.0, y)
        - np.logaddexp(0.0, y + log_w[:, None])
        + np.log(sig[:, None] * np.cosh(t)[None, :])
    )
    return logsumexp(log_f, axis=1) + np.log(_STEP) - betaln(b, m1)


def log_hyp2f1_a1(b, c, z, omz=None) -> np.ndarray:
    """ln ₂F₁(1, b; c; z) for c > b > 0 and 0 <= z < 1, vectorised.

    scipy's ``hyp2f1`` (Cephes) is exact to ~1e−15 for z <= 0.9 (its power
    series; checked against a direct positive-term summation over b, c−b in
    [0.01, 5000]) but near z = 1 it returns inf/nan when c is large
    (overflowing gamma products, e.g. ₂F₁(1, 0.5; 101.5; 0.999) = inf) and
    loses up to 1e−5 relative accuracy when c−b−1 is (near) an integer.
    Those arguments (z > 0.9, or a non-finite result) go to
    :func:`_log_hyp2f1_quad` instead (agreement ~1e−11 in the same checks).

    Args:
        b, c, z: broadcastable arrays.
        omz: 1 − z computed without cancellation, if the caller has it.

    Returns:
        Array of the broadcast shape.
    """
    b, c, z = np.broadcast_arrays(np.asarray(b, float), np.asarray(c, float), np.asarray(z, float))
    omz = 1.0 - z if omz is None else np.broadcast_to(np.asarray(omz, float), z.shape)
    out = np.full(z.shape, np.nan)
    easy = z <= Z_SAFE
    with np.errstate(all="ignore"):
        out[easy] = np.log(hyp2f1(1.0, b[easy], c[easy], z[easy]))
    hard = ~np.isfinite(out)
    if hard.any():
        # distinct arguments only (rows sharing x and t share them)
        args = np.column_stack([b[hard], c[hard], z[hard], omz[hard]])
        uniq, inverse = np.unique(args, axis=0, return_inverse=True)
        with np.errstate(all="ignore"):
            vals = _log_hyp2f1_quad(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3])
        out[hard] = vals[inverse.ravel()]
    return out


def _log_tail_term(r: float, alpha: float, s: float, beta: float, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """ln[(r+s+x) ∫_t^∞ (α+τ)^−(r+x) (β+τ)^−(s+1) dτ] — one of the two A0 terms.

    FH 2005 note, Section 3, A0 for α >= β: ``₂F₁(r+s+x, s+1; r+s+x+1; (α−β)/(α+t))
    / (α+t)^(r+s+x)`` = ``(α+t)^−(r+x) (β+t)^−s ₂F₁(1, r+x; r+s+x+1; z)``;
    and for α < β: ``₂F₁(r+s+x, r+x; r+s+x+1; (β−α)/(β+t)) /
    (β+t)^(r+s+x)`` = ``(α+t)^(1−r−x) (β+t)^−(s+1) ₂F₁(1, s+1; r+s+x+1; z)``.
    """
    c = r + s + x + 1.0
    if alpha >= beta:
        z = (alpha - beta) / (alpha + t)
        omz = (beta + t) / (alpha + t)
        return -(r + x) * np.log(alpha + t) - s * np.log(beta + t) + log_hyp2f1_a1(r + x, c, z, omz)
    z = (beta - alpha) / (beta + t)
    omz = (alpha + t) / (beta + t)
    return (1.0 - r - x) * np.log(alpha + t) - (s + 1.0) * np.log(beta + t) + log_hyp2f1_a1(s + 1.0, c, z, omz)


def _log_terms(r, alpha, s, beta, x, tx, T):
    """ln of the two summands of the likelihood's braces (FH 2005 note, Section 3)
    and the common factor: returns (common, ln term_alive, ln term_dead)."""
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    log_alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    hi = _log_tail_term(r, alpha, s, beta, x, tx)
    lo = _log_tail_term(r, alpha, s, beta, x, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        # ln A0 = ln(e^hi − e^lo); −inf when t_x == T (the term vanishes)
        diff = np.minimum(lo - hi, 0.0)
        log_a0 = hi + np.log(-np.expm1(diff))
    log_dead = np.log(s) - np.log(r + s + x) + log_a0
    return common, log_alive, log_dead


def paretonbd_log_likelihood(
    r: float, alpha: float, s: float, beta: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer Pareto/NBD log-likelihood, FH 2005 note, Section 3.

    ``L = Γ(r+x) α^r β^s / Γ(r) · [ 1/((α+T)^(r+x) (β+T)^s) + s/(r+s+x) A0 ]``
    with A0 the difference of two ₂F₁ terms (α >= β and α < β cases, see
    :func:`_log_tail_term`).

    Args:
        r, alpha, s, beta: parameters (positive; alpha, beta in the time unit).
        frequency, recency, T: (n,) arrays (x, t_x, T).

    Returns:
        (n,) log-likelihoods (a density in the purchase times: depends on the
        time unit through −x·ln(unit)).
    """
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    common, log_alive, log_dead = _log_terms(r, alpha, s, beta, x, tx, T)
    return common + np.logaddexp(log_alive, log_dead)


def _frac_rate(shape_l: np.ndarray, shape_m: float, rate_l: np.ndarray, rate_m: np.ndarray) -> np.ndarray:
    """E[λ/(λ+μ)] for independent λ ~ Gamma(shape_l, rate_l), μ ~ Gamma(shape_m, rate_m).

    Arrays broadcast; ``shape_m`` is a scalar.

    With U = Beta(shape_l, shape_m) and c = rate_l/rate_m, λ/(λ+μ) =
    U/(U + c(1−U)); Euler's integral for ₂F₁ (Abramowitz & Stegun 15.3.1)
    gives ``k/(k+m) · ₂F₁(1, k+1; k+m+1; 1−1/c) / c`` (c >= 1) and, after
    Pfaff's transformation (A&S 15.3.4), ``k/(k+m) · ₂F₁(1, m; k+m+1; 1−c)``
    (c < 1); both arguments lie in [0, 1).
    """
    k, m = shape_l, shape_m
    c = rate_l / rate_m
    lead = k / (k + m)
    ge = c >= 1.0
    c_safe_ge = np.where(ge, c, 1.0)
    c_safe_lt = np.where(ge, 1.0, c)
    big = lead / c_safe_ge * np.exp(log_hyp2f1_a1(k + 1.0, k + m + 1.0, 1.0 - 1.0 / c_safe_ge, 1.0 / c_safe_ge))
    small = lead * np.exp(log_hyp2f1_a1(m, k + m + 1.0, 1.0 - c_safe_lt, c_safe_lt))
    return np.where(ge, big, small)


class ParetoNBD(_FittedMixin):
    """Pareto/NBD count model (Schmittlein, Morrison & Colombo 1987).

    Args:
        initial_params: starting values ``{"r", "alpha", "s", "beta"}`` (alpha,
            beta in the summary's time unit); ``None`` starts at r = s = 1 and
            alpha = beta = mean(T).
        maxiter: iteration limit of each optimiser run.
        time_unit: name of the summary's time unit (e.g. ``"weeks"``), used
            only in notes; ``None`` says "time units".

    Attributes (after :meth:`fit`):
        params_: dict ``r, alpha, s, beta``; ``s = 0`` (and ``beta = 1``) is
            the NBD limit: no dropout.
        fit_method_: ``"mle"``, ``"boundary"`` (the NBD limit) or ``"map"``
            (weak priors, see ``PRIOR``); docs/fitting.md.
        notes_: sentences on data adequacy and on how the fit was obtained.
        log_likelihood_: total log-likelihood at ``params_``.
        n_customers_: number of customers fitted on.
        converged_: True (a fit that does not converge raises instead).
        optimizer_result_: the ``scipy.optimize.OptimizeResult`` (internal
            units: log-parameters, time scaled by mean T).
    """

    _model_name = "Pareto/NBD"

    def __init__(
        self, initial_params: dict[str, float] | None = None, maxiter: int = 2000, time_unit: str | None = None
    ) -> None:
        self.initial_params = initial_params
        self.maxiter = maxiter
        self.time_unit = time_unit

    def fit(self, summary: pd.DataFrame) -> ParetoNBD:
        """Fit: maximum likelihood (FH 2005 note, Section 3; numerical gradient), else the NBD limit, else MAP.

        Same rules as :meth:`ltvcast.models.bgnbd.BGNBD.fit` (docs/fitting.md):
        the NBD limit (no dropout: s → 0 or β → ∞) is stored as
        ``params_["s"] = 0``; a flat likelihood or too little data gives the
        MAP estimate under ``PRIOR``; ``notes_`` says which.

        Args:
            summary: DataFrame with float columns ``frequency``, ``recency``,
                ``T`` (n rows); other columns are ignored.

        Returns:
            self.

        Raises:
            DataError: missing columns or invalid values; every T is 0.
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
            r, al, s, be = np.exp(z)
            return -float(np.dot(w, paretonbd_log_likelihood(r, al, s, be, ux, utx, uT))) / n

        init = start_values(
            self.initial_params, {"r": 1.0, "alpha": scale, "s": 1.0, "beta": scale}, self._model_name
        )
        z0 = np.log([init["r"], init["alpha"] / scale, init["s"], init["beta"] / scale])

        def to_params(z: np.ndarray) -> dict[str, float]:
            p = np.exp(z)
            return {"r": float(p[0]), "alpha": float(p[1] * scale), "s": float(p[2]), "beta": float(p[3] * scale)}

        shift = -float(np.sum(x)) * np.log(scale)

        def fit_limit() -> tuple[dict[str, float], float, object]:
            lres = fit_nbd(ux, uT, w, n, self._model_name, self.maxiter)
            r, al = np.exp(lres.x)
            return {"r": float(r), "alpha": float(al * scale), "s": 0.0, "beta": 1.0}, -n * lres.fun + shift, lres

        out = fit_robust(nll, z0, model=self._model_name, names=PARAM_NAMES, to_params=to_params, n=n,
                         maxiter=self.maxiter, ll_shift=shift, prior=PRIOR, limit=Limit(fit_limit, NBD_LIMIT),
                         too_few=too_few)
        self._record(out, n, self.notes_)
        self.log_likelihood_ = float(np.sum(self._ll(x, tx, T)))
        return self

    def _ll(self, x, tx, T) -> np.ndarray:
        p = self.params_
        if p["s"] == 0.0:
            return nbd_log_likelihood(p["r"], p["alpha"], x, T)
        return paretonbd_log_likelihood(p["r"], p["alpha"], p["s"], p["beta"], x, tx, T)

    def log_likelihood(self, summary: pd.DataFrame) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters (FH 2005 note, Section 3).

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

    def _p_alive(self, x, tx, T) -> np.ndarray:
        p = self.params_
        if p["s"] == 0.0:  # NBD limit: nobody drops out
            return np.ones(np.shape(x))
        _, log_alive, log_dead = _log_terms(p["r"], p["alpha"], p["s"], p["beta"], x, tx, T)
        return np.exp(log_alive - np.logaddexp(log_alive, log_dead))

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """P(customer alive at T | x, t_x, T), FH 2005 note, Section 5.

        ``P = 1 / (1 + s/(r+s+x) (α+T)^(r+x) (β+T)^s A0)`` — the share of the
        likelihood that comes from "still alive at T"; computed as a ratio of
        log-terms, so it stays in [0, 1] for thousands of purchases. 1 in the
        NBD limit (s = 0).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).

        Returns:
            (n,) probabilities in (0, 1].

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: missing columns or invalid values.
        """
        self._check_fitted()
        return self._p_alive(*check_rft(summary, self._model_name))

    def expected_transactions(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """E[Y(t) | x, t_x, T]: expected purchase occasions in (T, T+t], FH 2005 note, Section 6.

        ``E = (r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)``
        (also SMC 1987); at s = 1 the bracket over (s−1) is its limit
        ln(1 + t/(β+T)). In the NBD limit (s = 0): ``(r+x)/(α+T) · t``
        (:func:`~ltvcast.models._mle.nbd_expected`).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) expected number of purchase occasions.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        p = self._check_fitted()
        x, tx, T = check_rft(summary, self._model_name)
        t = check_horizon(t, len(x), self._model_name)
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        if s == 0.0:
            return nbd_expected(r, alpha, x, T, t)
        mean_rate = (r + x) / (alpha + T)
        return mean_rate * _mean_lifetime_in(s, beta + T, t) * self._p_alive(x, tx, T)

    def population_expected_transactions(self, t: float | np.ndarray) -> np.ndarray:
        """Unconditional E[X(t)] = rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)], FH 2005 note, Section 4.

        In the NBD limit (s = 0) it is ``r t / α`` (the formula's own limit).

        Args:
            t: scalar or (k,) array of times >= 0 (fitted time unit).

        Returns:
            Array of the shape of ``t``.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: negative or non-finite t.
        """
        p = self._check_fitted()
        t_arr = np.asarray(t, dtype=float)
        check_horizon(t_arr.ravel(), t_arr.size, self._model_name)
        if p["s"] == 0.0:
            return p["r"] / p["alpha"] * t_arr
        return p["r"] / p["alpha"] * _mean_lifetime_in(p["s"], p["beta"], t_arr)

    def p_no_purchase(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """P(no purchase occasion in (T, T+t] | x, t_x, T), closed form.

        Given alive at T, λ ~ Gamma(r+x, α+T) and μ ~ Gamma(s, β+T)
        independently (posterior implied by the FH 2005 note's Section 3
        likelihood: the "alive" term is λ^x e^−(λ+μ)T), and
        P(none in t | λ, μ) = μ/(λ+μ) + λ/(λ+μ) e^−(λ+μ)t. Taking the
        expectation: ``E[λ/(λ+μ) e^−(λ+μ)t] = ((α+T)/(α+T+t))^(r+x)
        ((β+T)/(β+T+t))^s E'[λ/(λ+μ)]`` under the exponentially tilted
        Gamma(r+x, α+T+t), Gamma(s, β+T+t), and E[λ/(λ+μ)] is a ₂F₁ with
        argument in [0, 1) (derivation in :func:`_frac_rate`). Then
        ``P = (1 − P(alive)) + P(alive) (1 − E[λ/(λ+μ)] + that term)``.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) probabilities; 1 at t = 0; (1 − P(alive)) + P(alive)
            E[μ/(λ+μ)] as t → ∞. In the NBD limit (s = 0)
            ``((α+T)/(α+T+t))^(r+x)`` (:func:`~ltvcast.models._mle.nbd_p_none`).

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        p = self._check_fitted()
        x, tx, T = check_rft(summary, self._model_name)
        t = check_horizon(t, len(x), self._model_name)
        r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
        if s == 0.0:
            return nbd_p_none(r, alpha, x, T, t)
        k = r + x
        A, B = alpha + T, beta + T
        frac_now = _frac_rate(k, s, A, B)
        tilt = np.exp(-k * np.log1p(t / A) - s * np.log1p(t / B))
        frac_tilted = _frac_rate(k, s, A + t, B + t)
        quiet_if_alive = 1.0 - frac_now + tilt * frac_tilted
        pa = self._p_alive(x, tx, T)
        return np.clip((1.0 - pa) + pa * quiet_if_alive, 0.0, 1.0)


def _mean_lifetime_in(s: float, b: np.ndarray, t) -> np.ndarray:
    """E[(1 − e^−μt)/μ] for μ ~ Gamma(s, b): ``b/(s−1) [1 − (b/(b+t))^(s−1)]``
    (expected time alive within the next t); limit b·ln(1+t/b) at s = 1."""
    u = np.log1p(t / b)
    if abs(s - 1.0) < 1e-10:
        return b * u
    return b * (-np.expm1(-(s - 1.0) * u)) / (s - 1.0)
