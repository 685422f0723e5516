"""The Gamma-Gamma model of spend per purchase occasion (Fader, Hardie & Lee 2005).

Source: P. S. Fader, B. G. S. Hardie, K. L. Lee (2005), "RFM and CLV: using
iso-value curves for customer base analysis", *Journal of Marketing
Research* 42(4), 415-430 ("FHL 2005 JMR"), spend sub-model (the section
adding monetary value; eq. 5 is the conditional expectation).

Model: the value of each of a customer's transactions is Gamma(p, ν); ν
varies across customers as Gamma(q, γ). Only the mean ``monetary_value``
z̄ of a customer's x repeat transactions (``frequency``) is used; x·z̄ ~
Gamma(px, ν). p and q are unitless; γ is in currency units.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from scipy.special import digamma, gammaln

from ltvcast.errors import DataError, LtvcastError
from ltvcast.models._mle import (
    MIN_REPEAT_BUYERS,
    Prior,
    _FittedMixin,
    compress,
    fit_robust,
    numeric_column,
    require_columns,
    row_labels,
    start_values,
)

PARAM_NAMES = ("p", "q", "gamma")

#: Weak priors of the MAP fallback: log-normal, centred on the CDNOW fit
#: (FHL 2005 JMR: p 6.25, q 3.74, gamma 15.44 $) with gamma relative to the
#: mean repeat value z̄ (35.08 $ on CDNOW, so 0.440·mean z̄), sd 2 on the log
#: scale. Weakly informative in the way PyMC-Marketing's Gamma-Gamma model
#: puts proper priors on p, q and v; the values are ours.
PRIOR = Prior(
    mean=np.log([6.25, 3.74, 15.44 / 35.08]),
    text="log-normal priors centred on the CDNOW fit p=6.25, q=3.74, gamma=0.440·mean spend, sd 2 on the log scale",
)


class _CountModel(Protocol):
    def expected_transactions(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray: ...


def gammagamma_log_likelihood(
    p: float, q: float, gamma: float, frequency: np.ndarray, monetary_value: np.ndarray
) -> np.ndarray:
    """Per-customer log-density of the mean spend z̄ given x (FHL 2005 JMR spend sub-model).

    ``f(z̄ | x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q z̄^(px−1) x^(px) / (γ + x z̄)^(px+q)``
    — the density of the mean of x Gamma(p, ν) values, ν ~ Gamma(q, γ)
    integrated out (FHL 2005 JMR, spend sub-model).

    Args:
        p, q, gamma: parameters (positive; gamma in currency units).
        frequency: (n,) x > 0.
        monetary_value: (n,) z̄ > 0 (currency).

    Returns:
        (n,) log-densities (per currency unit of z̄).
    """
    x = np.asarray(frequency, dtype=float)
    z = np.asarray(monetary_value, dtype=float)
    px = p * x
    return (
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
        + (px - 1.0) * np.log(z) + px * np.log(x) - (px + q) * np.log(gamma + x * z)
    )


def _grad(theta: np.ndarray, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Gradient of the per-row log-density w.r.t. (ln p, ln q, ln γ); rows × 3."""
    p, q, g = np.exp(theta)
    px = p * x
    d_p = x * (digamma(px + q) - digamma(px) + np.log(z) + np.log(x) - np.log(g + x * z))
    d_q = digamma(px + q) - digamma(q) + np.log(g) - np.log(g + x * z)
    d_g = q / g - (px + q) / (g + x * z)
    return np.column_stack([d_p * p, d_q * q, d_g * g])


class GammaGamma(_FittedMixin):
    """Gamma-Gamma spend model (Fader, Hardie & Lee 2005, JMR 42(4)).

    Args:
        initial_params: starting values ``{"p", "q", "gamma"}`` (gamma in
            currency); ``None`` starts at p = 1, q = 2, gamma = mean z̄ (a
            population mean of p·γ/(q−1) = mean z̄).
        maxiter: iteration limit of each optimiser run.

    Attributes (after :meth:`fit`):
        params_: dict ``p, q, gamma`` (``gamma`` is the paper's γ, "v" in
            some software).
        fit_method_: ``"mle"`` or ``"map"`` (weak priors, see ``PRIOR``;
            used when the likelihood is flat, a parameter runs to 0 or
            infinity, or there are fewer than MIN_REPEAT_BUYERS repeat
            buyers); docs/fitting.md.
        notes_: sentences on how the fit was obtained.
        log_likelihood_: total log-likelihood over the repeat buyers.
        n_customers_: number of repeat buyers fitted on.
        converged_: True (a fit that does not converge raises instead).
        optimizer_result_: ``scipy.optimize.OptimizeResult`` (internal
            units: log-parameters, money scaled by the mean z̄).

    The model assumes spend is independent of the purchase process; it does
    not check that (the paper reports a correlation check on the data).
    """

    _model_name = "Gamma-Gamma"

    def __init__(self, initial_params: dict[str, float] | None = None, maxiter: int = 2000) -> None:
        self.initial_params = initial_params
        self.maxiter = maxiter

    def _repeat_buyers(self, summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate; return (mask of repeat buyers (n,), x, z̄) of those rows.

        Raises:
            DataError: missing columns, bad frequency, or a repeat buyer's
                monetary_value is NaN, infinite or <= 0.
        """
        require_columns(summary, ("frequency", "monetary_value"), self._model_name)
        x = numeric_column(summary, "frequency", self._model_name)
        z = numeric_column(summary, "monetary_value", self._model_name)
        bad_x = ~np.isfinite(x) | (x < 0) | (x != np.round(x))
        if bad_x.any():
            raise DataError(
                f"{self._model_name}: frequency must be a whole number >= 0; bad in {row_labels(summary, bad_x)}"
            )
        rep = x > 0
        bad_z = rep & ~(np.isfinite(z) & (z > 0))
        if bad_z.any():
            raise DataError(
                f"{self._model_name}: monetary_value must be > 0 (and finite) for customers with frequency > 0; "
                f"non-positive or missing in {row_labels(summary, bad_z)}. The Gamma-Gamma model has no zero "
                "or negative spend: drop or correct these customers before fitting."
            )
        return rep, x[rep], z[rep]

    def fit(self, summary: pd.DataFrame) -> GammaGamma:
        """Fit on the repeat buyers (``frequency > 0``): maximum likelihood, else MAP.

        Maximum likelihood of the FHL 2005 JMR spend density; where it has no
        interior, identified maximum (e.g. q → ∞ when spend hardly varies
        between customers, p → ∞ when it hardly varies within them) or
        there are fewer than MIN_REPEAT_BUYERS repeat buyers, the MAP
        estimate under ``PRIOR`` (:func:`ltvcast.models._mle.fit_robust`);
        ``notes_`` says which.

        Args:
            summary: DataFrame with ``frequency`` and ``monetary_value`` (n
                rows; z̄ in currency); rows with frequency 0 are ignored.

        Returns:
            self.

        Raises:
            DataError: missing columns; a repeat buyer with monetary_value
                <= 0 or NaN (named by customer_id, else row index); no repeat
                buyers; all repeat buyers with the same value (degenerate).
            ConvergenceError: maximum likelihood and MAP both failed (e.g.
                ``maxiter`` too small).
        """
        _, x, z = self._repeat_buyers(summary)
        if x.size == 0:
            raise DataError(f"{self._model_name}: no customer with frequency > 0 to fit on")
        if np.ptp(np.log(z)) < 1e-9:
            raise DataError(
                f"{self._model_name}: all {x.size:,} repeat buyers have the same mean repeat value {z[0]:.6g}: "
                "spend does not vary, so its distribution cannot be fitted (the likelihood grows without bound); "
                "use that value per purchase"
            )
        scale = float(np.mean(z))
        comp = compress(x, z / scale)
        ux, uz = comp.columns
        w = comp.counts
        n = x.size

        def nll(th: np.ndarray) -> float:
            p, q, g = np.exp(th)
            return -float(np.dot(w, gammagamma_log_likelihood(p, q, g, ux, uz))) / n

        def jac(th: np.ndarray) -> np.ndarray:
            return -(w @ _grad(th, ux, uz)) / n

        init = start_values(self.initial_params, {"p": 1.0, "q": 2.0, "gamma": scale}, self._model_name)
        z0 = np.log([init["p"], init["q"], init["gamma"] / scale])

        def to_params(th: np.ndarray) -> dict[str, float]:
            v = np.exp(th)
            return {"p": float(v[0]), "q": float(v[1]), "gamma": float(v[2] * scale)}

        too_few = None
        if n < MIN_REPEAT_BUYERS:
            too_few = f"{n:,} repeat buyers: too few to estimate Gamma-Gamma (want at least {MIN_REPEAT_BUYERS})"
        out = fit_robust(nll, z0, model=self._model_name, names=PARAM_NAMES, to_params=to_params, n=n, jac=jac,
                         maxiter=self.maxiter, ll_shift=-n * np.log(scale), prior=PRIOR, too_few=too_few)
        self._record(out, n)
        pr = self.params_
        self.log_likelihood_ = float(np.sum(gammagamma_log_likelihood(pr["p"], pr["q"], pr["gamma"], x, z)))
        return self

    def log_likelihood(self, summary: pd.DataFrame) -> np.ndarray:
        """Per-customer log-density of z̄ at the fitted parameters.

        Args:
            summary: DataFrame with ``frequency``, ``monetary_value`` (n rows).

        Returns:
            (n,) array; NaN for customers with frequency 0 (no z̄ observed).

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: as in :meth:`fit`.
        """
        pr = self._check_fitted()
        rep, x, z = self._repeat_buyers(summary)
        out = np.full(rep.shape, np.nan)
        out[rep] = gammagamma_log_likelihood(pr["p"], pr["q"], pr["gamma"], x, z)
        return out

    def population_mean(self) -> float:
        """Mean spend per transaction across customers, E[Z] = pγ/(q−1) (FHL 2005 JMR).

        Returns:
            float, currency.

        Raises:
            NotFittedError: called before :meth:`fit`.
            LtvcastError: q <= 1, where the mean does not exist.
        """
        pr = self._check_fitted()
        self._require_mean(pr)
        return pr["p"] * pr["gamma"] / (pr["q"] - 1.0)

    def _require_mean(self, pr: dict[str, float]) -> None:
        if pr["q"] <= 1.0:
            raise LtvcastError(
                f"{self._model_name}: fitted q = {pr['q']:.4g} <= 1, so the mean spend per transaction "
                "p·gamma/(q−1) does not exist (the spend distribution's tail is too heavy); "
                "expected values cannot be computed with this fit"
            )

    def conditional_expected_value(self, summary: pd.DataFrame) -> np.ndarray:
        """E[spend per transaction | x, z̄], FHL 2005 JMR eq. (5).

        ``E[M | p, q, γ, x, z̄] = p(γ + x z̄) / (px + q − 1)`` =
        ``(q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · z̄``: a weighted mean of
        the population mean and the customer's own mean. Customers with
        frequency 0 get the population mean pγ/(q−1).

        Args:
            summary: DataFrame with ``frequency``, ``monetary_value`` (n rows;
                monetary_value is ignored where frequency is 0).

        Returns:
            (n,) expected spend per transaction, currency.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: missing columns; a repeat buyer with monetary_value
                <= 0 or NaN.
            LtvcastError: q <= 1 (the mean does not exist).
        """
        pr = self._check_fitted()
        self._require_mean(pr)
        rep, x, z = self._repeat_buyers(summary)
        p, q, g = pr["p"], pr["q"], pr["gamma"]
        out = np.full(rep.shape, p * g / (q - 1.0))
        out[rep] = p * (g + x * z) / (p * x + q - 1.0)
        return out

    def expected_spend(self, count_model: _CountModel, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected spend in (T, T+t]: E[transactions] × E[spend per transaction].

        Uses the independence of spend and the purchase process assumed by
        FHL 2005 JMR: ``count_model.expected_transactions(summary, t) ×
        conditional_expected_value(summary)`` (the paper's CLV building
        block, undiscounted).

        Args:
            count_model: a fitted BGNBD, ParetoNBD or Naive (any object with
                ``expected_transactions(summary, t)``).
            summary: DataFrame with ``frequency``, ``recency``, ``T``,
                ``monetary_value`` (n rows).
            t: horizon (scalar or (n,) array), the count model's time unit.

        Returns:
            (n,) expected spend, currency.

        Raises:
            NotFittedError: this model or the count model is not fitted.
            DataError: invalid summary or horizon.
            LtvcastError: q <= 1 (the mean does not exist).
        """
        value = self.conditional_expected_value(summary)
        return np.asarray(count_model.expected_transactions(summary, t), dtype=float) * value
