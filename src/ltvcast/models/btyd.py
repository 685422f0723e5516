"""BTYD forecasters: a count model (Naive, BG/NBD, Pareto/NBD) with Gamma-Gamma spend.

The count model is fitted on the RFM summary in weeks; spend per purchase
occasion comes from Gamma-Gamma (Fader, Hardie & Lee 2005, JMR), except for
``naive``, which keeps each customer's own mean occasion value (all occasions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import NotFittedError
from ltvcast.features import rfm_summary
from ltvcast.models.base import Forecaster
from ltvcast.predictions import predictions_frame
from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.naive import Naive
from ltvcast.models.paretonbd import ParetoNBD

DAYS_PER_WEEK = 7.0
COUNT_MODELS = {"naive": Naive, "bgnbd": BGNBD, "paretonbd": ParetoNBD}


class BTYDForecaster(Forecaster):
    """A BTYD count model plus a spend model behind the shared interface.

    Args:
        name: ``"naive"``, ``"bgnbd"`` or ``"paretonbd"``.

    Attributes (after ``fit``):
        count_model_: the fitted count model (time unit: weeks).
        spend_model_: the fitted :class:`GammaGamma`, or ``None`` for naive.
        summary_: the RFM summary (weeks) the models were fitted on.

    Gamma-Gamma is fitted on repeat buyers whose mean repeat value is
    positive. Repeat buyers with a non-positive mean (zero-value or returned
    purchases) are left out of the fit, counted in ``notes_``, and predicted
    with the Gamma-Gamma population mean, like customers with no repeat
    purchase.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in COUNT_MODELS:
            raise ValueError(f"unknown BTYD model {name!r}; choose from {sorted(COUNT_MODELS)}")
        self.name = name

    def fit(self, data: History, cutoff, horizon_days: float = 0.0) -> "BTYDForecaster":
        """Fit on transactions before ``cutoff`` (``horizon_days`` is not used).

        Raises:
            DataError: transactions lack required columns.
            ConvergenceError: a maximum-likelihood fit did not converge.
        """
        self.notes_ = []
        summary = rfm_summary(data.transactions, cutoff, unit="W")
        self.count_model_ = COUNT_MODELS[self.name]().fit(summary)
        self.spend_model_ = None
        if self.name != "naive":
            repeat = summary[summary["frequency"] > 0]
            usable = repeat[repeat["monetary_value"] > 0]
            left_out = len(repeat) - len(usable)
            if left_out:
                self.notes_.append(
                    f"{self.name}: {left_out} repeat buyer(s) with a non-positive mean repeat "
                    "value were left out of the Gamma-Gamma fit and get its population mean"
                )
            self.spend_model_ = GammaGamma().fit(usable)
        self.summary_ = summary
        return self

    def predict(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions for ``[cutoff, cutoff + horizon_days)``.

        ``pred_transactions`` = expected purchase occasions; ``pred_spend`` =
        expected occasions × expected value per occasion (currency);
        ``p_churn`` = P(no purchase in the horizon); ``p_alive`` for BG/NBD
        and Pareto/NBD.

        Raises:
            NotFittedError: ``fit`` was not called.
        """
        if not hasattr(self, "count_model_"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        summary = rfm_summary(data.transactions, cutoff, unit="W")
        t = horizon_days / DAYS_PER_WEEK
        model = self.count_model_
        pred_tx = model.expected_transactions(summary, t)
        if self.spend_model_ is None:
            value = (summary["total_spend"] / (summary["frequency"] + 1.0)).to_numpy()
            p_alive = None
        else:
            value = self._spend_per_occasion(summary)
            p_alive = model.p_alive(summary)
        return predictions_frame(
            summary["customer_id"],
            self.name,
            cutoff,
            horizon_days,
            pred_transactions=pred_tx,
            pred_spend=pred_tx * value,
            p_churn=model.p_no_purchase(summary, t),
            p_alive=p_alive,
        )

    def _spend_per_occasion(self, summary: pd.DataFrame) -> np.ndarray:
        gg = self.spend_model_
        value = np.full(len(summary), gg.population_mean())
        usable = (summary["frequency"] > 0) & (summary["monetary_value"] > 0)
        if usable.any():
            value[usable.to_numpy()] = gg.conditional_expected_value(summary[usable])
        return value


def make_forecaster(name: str) -> Forecaster:
    """Return a new, unfitted forecaster by name (``naive``, ``bgnbd``, ``paretonbd``).

    Raises:
        LtvcastError: the name is unknown.
    """
    from ltvcast.errors import LtvcastError

    if name not in COUNT_MODELS:
        raise LtvcastError(f"unknown model {name!r}; available: {', '.join(COUNT_MODELS)}")
    return BTYDForecaster(name)
