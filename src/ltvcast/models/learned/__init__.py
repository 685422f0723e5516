"""Learned CLV models: LightGBM on time-shifted windows, BTYD hybrids, automatic choice.

- :mod:`~ltvcast.models.learned.examples` — training windows before the
  cutoff (full windows ``C − H − k·stride``, recent shortened ones) and
  their labels;
- :mod:`~ltvcast.models.learned.features` — store features, age-robust
  ratios, BTYD outputs as inputs;
- :mod:`~ltvcast.models.learned.ziln` — zero-inflated lognormal loss, mean
  and quantiles (Wang, Liu & Miao 2019, arXiv:1912.07753);
- :mod:`~ltvcast.models.learned.calibration` — level, Platt and quantile
  recalibration on the validation window;
- :mod:`~ltvcast.models.learned.gbm` (``gbm``), :mod:`~ltvcast.models.learned.hybrid`
  (``hybrid``), :mod:`~ltvcast.models.learned.auto` (``auto``) — the
  forecasters behind the shared interface;
- :mod:`~ltvcast.models.learned.deep` (``deep``, ``deep-lstm``,
  ``deep-transformer``) — a PyTorch sequence network with ZILN, trajectory,
  Poisson, churn and next-purchase heads (not imported here: it loads torch).

LightGBM is imported only when a learned model is trained.
"""

from ltvcast.models.learned.auto import AutoForecaster
from ltvcast.models.learned.gbm import GBMForecaster
from ltvcast.models.learned.hybrid import HybridForecaster

__all__ = ["AutoForecaster", "GBMForecaster", "HybridForecaster"]
