"""BTYD forecasters: a count model (Naive, BG/NBD, Pareto/NBD) with Gamma-Gamma spend.

The count model is fitted on the RFM summary in weeks; spend per purchase
occasion comes from Gamma-Gamma (Fader, Hardie & Lee 2005, JMR), except for
``naive``, which keeps each repeat buyer's own mean repeat value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import ConvergenceError, DataError, NotFittedError
from ltvcast.features import rfm_summary
from ltvcast.models.base import Forecaster, feature_schema
from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.btyd_dist import btyd_horizon
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.naive import Naive
from ltvcast.models.paretonbd import ParetoNBD
from ltvcast.schema.predictions import predictions_frame
from ltvcast.timeutil import to_day

DAYS_PER_WEEK = 7.0
COUNT_MODELS = {"naive": Naive, "bgnbd": BGNBD, "paretonbd": ParetoNBD}
#: The RFM summary columns the models read (their ``feature_schema_``).
RFM_INPUTS = ("frequency", "recency", "T", "monetary_value")


class BTYDForecaster(Forecaster):
    """A BTYD count model plus a spend model behind the shared interface.

    Args:
        name: ``"naive"``, ``"bgnbd"`` or ``"paretonbd"``.
        n_draws: 0 leaves ``pred_spend_p10/p50/p90`` and
            ``pred_next_purchase_days`` null; any positive number fills them
            from the horizon's exact distribution
            (:func:`ltvcast.models.btyd_dist.btyd_horizon`: closed forms and
            fixed quadrature, no draws). The name and ``seed`` remain from
            the posterior simulation they replaced, so that registered
            models and their manifests keep loading unchanged.
        seed: not used by the computation (kept with ``n_draws``).

    Attributes (after ``fit``):
        count_model_: the fitted count model (time unit: weeks).
        spend_model_: the fitted :class:`GammaGamma`, or ``None`` for naive
            (which keeps each repeat buyer's own mean repeat value) and where
            Gamma-Gamma cannot be fitted (no repeat buyer with a positive
            value, or all with the same value): then every customer gets
            ``fill_value_`` per purchase occasion, with a note.
        notes_: the forecaster's notes plus the count and spend models' own
            (adequacy, boundary, priors: docs/fitting.md).
        summary_: the RFM summary (weeks) the models were fitted on.

    Non-positive values (one rule for all three): under the net revenue
    basis, or with zero-value purchases, a repeat buyer's mean repeat value
    can be ≤ 0. Such a value says nothing usable about spend per purchase, so
    the spend model treats it as unknown: the customer is left out of the
    Gamma-Gamma fit and gets its population mean (naive: the mean over repeat
    buyers with a positive value), exactly like a customer without repeat
    purchases. The count is in ``notes_``. Predicted spend is therefore never
    negative.
    """

    def __init__(self, name: str, n_draws: int = 400, seed: int = 0) -> None:
        super().__init__()
        if name not in COUNT_MODELS:
            raise ValueError(f"unknown BTYD model {name!r}; choose from {sorted(COUNT_MODELS)}")
        self.name = name
        self.n_draws = n_draws
        self.seed = seed

    @staticmethod
    def _summary(data: History, cutoff) -> pd.DataFrame:
        # The cutoff was checked against the data's end by the History's owner
        # (models.forecast / the CLI, with the user's --allow-future-cutoff).
        return rfm_summary(
            data.transactions, cutoff, unit="W", timezone=data.timezone, revenue_basis=data.revenue_basis,
            data_end=data.observation_end, allow_future_cutoff=True,
        )

    @staticmethod
    def _unknown_value(summary: pd.DataFrame) -> np.ndarray:
        return ((summary["frequency"] > 0) & (summary["monetary_value"] <= 0)).to_numpy()

    def fit(self, data: History, cutoff, horizon_days: float = 0.0) -> BTYDForecaster:
        """Fit on the data before ``cutoff`` (``horizon_days`` is not used).

        Raises:
            DataError: transactions lack required columns, or no customer
                bought before the cutoff.
            ConvergenceError: a maximum-likelihood fit did not converge.
        """
        self.notes_ = []
        summary = self._summary(data, cutoff)
        if summary.empty:
            raise DataError(f"{self.name}: no customer has a purchase before the cutoff {to_day(cutoff).date()}")
        unknown = self._unknown_value(summary)
        if unknown.any():
            self.notes_.append(
                f"{self.name}: {int(unknown.sum())} repeat buyer(s) with a non-positive mean repeat value "
                "get the population value per purchase"
            )
        if self.name == "naive":
            repeat = summary.loc[(summary["frequency"] > 0) & ~unknown, "monetary_value"]
            first = summary["total_spend"] / (summary["frequency"] + 1.0) if "total_spend" in summary else repeat
            self.fill_value_ = float(repeat.mean() if len(repeat) else max(float(first.mean()), 0.0))
            if not len(repeat):
                self.notes_.append(f"{self.name}: no repeat buyer before the cutoff; every customer gets the mean "
                                   f"value per purchase occasion, {self.fill_value_:.2f}")
            self.count_model_ = Naive().fit(self._with_fill(summary), fallback_value=self.fill_value_)
            self.spend_model_ = None
        else:
            self.count_model_ = COUNT_MODELS[self.name](time_unit="weeks").fit(summary)
            self.notes_ += self.count_model_.notes_
            usable = (summary["frequency"] > 0).to_numpy() & ~unknown
            try:
                self.spend_model_ = GammaGamma().fit(summary[usable])
                self.notes_ += self.spend_model_.notes_
            except (DataError, ConvergenceError) as exc:
                # No spend distribution to learn: one value per occasion for everybody.
                self.spend_model_ = None
                repeat = summary.loc[usable, "monetary_value"]
                first = summary["total_spend"] / (summary["frequency"] + 1.0) if "total_spend" in summary else repeat
                self.fill_value_ = float(repeat.mean() if len(repeat) else max(float(first.mean()), 0.0))
                self.notes_.append(f"{self.name}: Gamma-Gamma not fitted ({exc}); every customer gets "
                                   f"{self.fill_value_:.2f} per purchase occasion")
        self.summary_ = summary
        self.feature_schema_ = feature_schema(summary.filter(items=RFM_INPUTS))
        return self

    def _with_fill(self, summary: pd.DataFrame) -> pd.DataFrame:
        out = summary.copy()
        out.loc[self._unknown_value(summary), "monetary_value"] = self.fill_value_
        return out

    def inputs(self, data: History, cutoff, horizon_days: float = 0.0) -> pd.DataFrame:
        """The RFM summary at ``cutoff`` in weeks (:func:`ltvcast.features.rfm_summary`): the model's inputs.

        Raises:
            NotFittedError: ``fit`` was not called.
        """
        if not hasattr(self, "count_model_"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        return self._summary(data, cutoff)

    def predict_inputs(self, summary: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions for ``[cutoff, cutoff + horizon_days)`` from an RFM summary in weeks.

        ``pred_transactions`` = expected purchase occasions; ``pred_spend`` =
        expected occasions × expected value per occasion (currency);
        ``p_churn`` = P(no purchase in the horizon); ``p_alive`` for BG/NBD
        and Pareto/NBD; ``pred_spend_p10/p50/p90`` and
        ``pred_next_purchase_days`` (expected days to the next purchase given
        one in the horizon) from the horizon's distribution when ``n_draws > 0``.

        :meth:`inputs` computes the summary from the history; the online
        service (:mod:`ltvcast.serve`) builds it from its incremental state.
        Each customer's columns depend only on that customer's row
        (:func:`~ltvcast.models.btyd_dist.btyd_horizon` uses no random
        numbers), so a customer's prediction is the same in any batch.

        Args:
            summary: n rows with ``customer_id``, ``frequency``, ``recency``,
                ``T`` (weeks) and ``monetary_value`` (currency), as
                :func:`ltvcast.features.rfm_summary` returns them (float64).
            cutoff: the prediction date (recorded in the frame).
            horizon_days: horizon in days.

        Returns:
            The canonical predictions frame, n rows in the summary's order.

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: the summary's columns differ from those of ``fit``.
        """
        return predictions_frame(
            summary["customer_id"], self.name, cutoff, horizon_days, **self.predict_columns(summary, horizon_days)
        )

    def predict_columns(self, summary: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
        """The numeric prediction columns from an RFM summary in weeks: the math of :meth:`predict_inputs`.

        The online service calls it directly for single customers (it skips
        building a frame); :meth:`predict_inputs` wraps the same arrays in
        the canonical frame.

        Args:
            summary: n rows as for :meth:`predict_inputs`.
            horizon_days: horizon in days.

        Returns:
            ``pred_transactions``, ``pred_spend``, ``p_churn``, ``p_alive``
            (absent for naive), and with ``n_draws > 0`` ``pred_spend_p10/p50/p90``
            and ``pred_next_purchase_days``; each an (n,) array.

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: the summary's columns differ from those of ``fit``.
        """
        if not hasattr(self, "count_model_"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        self.check_features(summary.filter(items=RFM_INPUTS))
        t = horizon_days / DAYS_PER_WEEK
        model = self.count_model_
        # the count model's columns once per distinct (frequency, recency, T), then per customer
        codes, first = _distinct_histories(summary)
        hist = summary.iloc[first]
        pred_tx = model.expected_transactions(hist, t)[codes]
        value = None
        if self.name != "naive" and self.spend_model_ is None:  # Gamma-Gamma could not be fitted
            value = np.full(len(summary), self.fill_value_)
            pred_spend = pred_tx * value
            p_alive = model.p_alive(hist)[codes]
        elif self.spend_model_ is None:
            value = model.expected_value(self._with_fill(summary))
            pred_spend = model.expected_spend(self._with_fill(summary), t)
            p_alive = None
        else:
            pred_spend = pred_tx * self._spend_per_occasion(summary)
            p_alive = model.p_alive(hist)[codes]
        horizon = {}
        if self.n_draws > 0:
            horizon = btyd_horizon(model, self.spend_model_, summary, horizon_days, p_alive=p_alive, value=value)
        out = {"pred_transactions": pred_tx, "pred_spend": pred_spend, "p_churn": model.p_no_purchase(hist, t)[codes]}
        if p_alive is not None:
            out["p_alive"] = p_alive
        return {**out, **horizon}

    def _spend_per_occasion(self, summary: pd.DataFrame) -> np.ndarray:
        gg = self.spend_model_
        value = np.full(len(summary), gg.population_mean())
        usable = (summary["frequency"] > 0).to_numpy() & ~self._unknown_value(summary)
        if usable.any():
            value[usable] = gg.conditional_expected_value(summary[usable])
        return value


def _distinct_histories(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct (frequency, recency, T) rows and each code's first row position.

    Exact (factorised values, no hashing; a NaN is a value of its own, so the
    models' input checks still see it). Many customers share a history (every
    one-time buyer of a day has x = t_x = 0 and the same T).
    """
    n = len(summary)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key = None
    for col in ("frequency", "recency", "T"):
        codes, uniques = pd.factorize(summary[col].to_numpy(float), use_na_sentinel=False)
        key = codes if key is None else pd.factorize(key.astype(np.int64) * len(uniques) + codes)[0]
    first = np.empty(int(key.max()) + 1, dtype=np.int64)
    first[key[::-1]] = np.arange(n - 1, -1, -1)
    return key, first
