"""A historical-rate baseline: every customer keeps buying at their past rate.

Each customer's repeat-purchase rate is ``frequency / T`` per time unit (the
maximum-likelihood rate of a Poisson process observed for T, with no death
and no pooling across customers); customers with T = 0 get rate 0. Future
purchase occasions are Poisson with that rate, so E[X(T, T+t]] = rate·t and
P(no purchase in t) = exp(−rate·t). Spend per occasion is the customer's
own ``monetary_value`` when they have repeat purchases, else the mean
``monetary_value`` over repeat buyers. There is no notion of being "alive":
:meth:`Naive.p_alive` returns NaN (the canonical predictions frame's null).

This is the benchmark every BTYD model must beat; no paper is needed beyond
the Poisson process itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeResult
from scipy.special import gammaln, xlogy

from ltvcast.errors import DataError
from ltvcast.models._mle import (
    _FittedMixin,
    check_horizon,
    check_rft,
    numeric_column,
    row_labels,
)

#: T below this (in the summary's time unit) counts as 0: rate 0.
T_EPS = 1e-12


class Naive(_FittedMixin):
    """Historical-rate (Poisson) baseline with the count-model API.

    Attributes (after :meth:`fit`):
        params_: ``{"mean_rate": mean of frequency/T over customers (per time
            unit), "mean_monetary_value": mean monetary_value over repeat
            buyers (currency; NaN if the summary has no monetary_value or no
            repeat buyer)}``.
        log_likelihood_: total Poisson log-likelihood of the observed
            frequencies at each customer's own rate (a saturated model: an
            upper bound, not comparable with BG/NBD or Pareto/NBD, whose
            likelihoods are densities of purchase times).
        n_customers_: number of customers.
        converged_: True (closed form).
        optimizer_result_: an ``OptimizeResult`` with ``success=True`` and
            ``message="closed form"``, for a uniform API.
    """

    _model_name = "Naive"

    def __init__(self) -> None:
        pass

    @staticmethod
    def _rate(x: np.ndarray, T: np.ndarray) -> np.ndarray:
        return np.where(T > T_EPS, x / np.maximum(T, T_EPS), 0.0)

    def _monetary(self, summary: pd.DataFrame, x: np.ndarray) -> np.ndarray | None:
        """monetary_value as (n,) floats, or None when the column is absent.

        Raises:
            DataError: a repeat buyer's monetary_value is NaN, infinite or < 0.
        """
        if "monetary_value" not in summary.columns:
            return None
        z = numeric_column(summary, "monetary_value", self._model_name)
        bad = (x > 0) & ~(np.isfinite(z) & (z >= 0))
        if bad.any():
            raise DataError(
                f"{self._model_name}: monetary_value must be finite and >= 0 for customers with "
                f"frequency > 0; bad in {row_labels(summary, bad)}"
            )
        return z

    def fit(self, summary: pd.DataFrame, fallback_value: float | None = None) -> Naive:
        """Record population means (closed form; nothing is optimised).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows)
                and optionally ``monetary_value`` (currency).
            fallback_value: the population value per purchase when no repeat
                buyer has a ``monetary_value`` (e.g. a shop of one-time buyers);
                None leaves it unknown (then predicting spend for a one-time
                buyer raises).

        Returns:
            self.

        Raises:
            DataError: missing columns or invalid values.
        """
        x, _, T = check_rft(summary, self._model_name)
        z = self._monetary(summary, x)
        rate = self._rate(x, T)
        rep = x > 0
        mean_m = float(np.mean(z[rep])) if z is not None and rep.any() else float("nan")
        if not np.isfinite(mean_m) and fallback_value is not None:
            mean_m = float(fallback_value)
        self.params_ = {"mean_rate": float(np.mean(rate)), "mean_monetary_value": mean_m}
        self.log_likelihood_ = float(np.sum(self._ll(x, T)))
        self.n_customers_ = len(x)
        self.converged_ = True
        self.optimizer_result_ = OptimizeResult(
            x=np.array([self.params_["mean_rate"]]), success=True, status=0, message="closed form", nit=0
        )
        return self

    def _ll(self, x: np.ndarray, T: np.ndarray) -> np.ndarray:
        mu = self._rate(x, T) * T  # = x where T > 0
        return xlogy(x, mu) - mu - gammaln(x + 1.0)

    def log_likelihood(self, summary: pd.DataFrame) -> np.ndarray:
        """Per-customer Poisson log-probability of x in T at the own rate x/T.

        ``ln P = x ln x − x − ln x!`` (0 for x = 0).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).

        Returns:
            (n,) array.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary.
        """
        self._check_fitted()
        x, _, T = check_rft(summary, self._model_name)
        return self._ll(x, T)

    def rate(self, summary: pd.DataFrame) -> np.ndarray:
        """Each customer's historical repeat rate frequency/T (0 where T = 0).

        Returns:
            (n,) purchase occasions per time unit.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary.
        """
        self._check_fitted()
        x, _, T = check_rft(summary, self._model_name)
        return self._rate(x, T)

    def expected_transactions(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """E[purchase occasions in (T, T+t]] = (frequency/T)·t.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) expected occasions.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        self._check_fitted()
        x, _, T = check_rft(summary, self._model_name)
        t = check_horizon(t, len(x), self._model_name)
        return self._rate(x, T) * t

    def p_no_purchase(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """P(no purchase occasion in (T, T+t]) = exp(−(frequency/T)·t) (Poisson).

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) probabilities (1 for customers with no repeat purchase).

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        return np.exp(-self.expected_transactions(summary, t))

    def p_alive(self, summary: pd.DataFrame) -> np.ndarray:
        """Not defined for this model: returns an (n,) array of NaN.

        The baseline has no dropout process; NaN is the canonical frame's
        null for ``p_alive`` (DESIGN.md: "BTYD only, else null").

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary.
        """
        self._check_fitted()
        x, _, _ = check_rft(summary, self._model_name)
        return np.full(len(x), np.nan)

    def expected_value(self, summary: pd.DataFrame) -> np.ndarray:
        """Spend per occasion: own monetary_value for repeat buyers, else the
        fitted mean monetary_value of repeat buyers.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T``,
                ``monetary_value`` (n rows; currency).

        Returns:
            (n,) currency per occasion.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: ``monetary_value`` missing or invalid, or the fit saw
                no monetary_value (population mean unknown) and a customer
                without repeat purchases needs it.
        """
        p = self._check_fitted()
        x, _, _ = check_rft(summary, self._model_name)
        z = self._monetary(summary, x)
        if z is None:
            raise DataError(
                f"{self._model_name}: summary lacks column(s) ['monetary_value']; "
                f"columns found: {[str(c) for c in summary.columns]}"
            )
        rep = x > 0
        if (~rep).any() and not np.isfinite(p["mean_monetary_value"]):
            raise DataError(
                f"{self._model_name}: no mean monetary_value was learned in fit() (no monetary_value column "
                "or no repeat buyer), so customers without repeat purchases have no spend estimate"
            )
        return np.where(rep, z, p["mean_monetary_value"])

    def expected_spend(self, summary: pd.DataFrame, t: float | np.ndarray) -> np.ndarray:
        """Expected spend in (T, T+t] = expected_transactions × expected_value.

        Args:
            summary: DataFrame with ``frequency``, ``recency``, ``T``,
                ``monetary_value`` (n rows).
            t: horizon (scalar or (n,) array, >= 0), same time unit.

        Returns:
            (n,) currency.

        Raises:
            NotFittedError: called before :meth:`fit`.
            DataError: invalid summary or horizon.
        """
        return self.expected_transactions(summary, t) * self.expected_value(summary)
