"""``hybrid``: the LightGBM forecaster with BTYD predictions as inputs.

At every training window's cutoff, Pareto/NBD and BG/NBD (with Gamma-Gamma
spend) are fitted on the history before that cutoff — never later — and
their predictions for the window's label length (expected occasions,
P(alive), P(no purchase), expected spend) join the age-robust store features
(:func:`ltvcast.models.learned.features.btyd_features`). At prediction time
the same models are fitted on the history before the prediction cutoff. The
BTYD posterior encodes how a customer's frequency, recency and age translate
into future purchases, which trees cannot extrapolate to ages the training
windows never reach; the trees add what the BTYD summary leaves out (recent
windows, basket, timing regularity).
"""

from __future__ import annotations

from ltvcast.models.learned.gbm import GBMForecaster

__all__ = ["HybridForecaster"]


class HybridForecaster(GBMForecaster):
    """:class:`GBMForecaster` with ``btyd_features=True`` (model name ``hybrid``).

    Args:
        name: model name (default ``"hybrid"``).
        **kwargs: any :class:`GBMForecaster` setting except ``btyd_features``.
    """

    def __init__(self, name: str = "hybrid", **kwargs) -> None:
        kwargs.pop("btyd_features", None)
        super().__init__(name, btyd_features=True, **kwargs)
