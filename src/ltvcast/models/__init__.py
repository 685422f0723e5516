"""Every model family, behind one interface.

- :mod:`~ltvcast.models.base` — the :class:`~ltvcast.models.base.Forecaster`
  interface (``fit`` / ``inputs`` / ``predict_inputs`` / ``predict``) every
  model implements; :mod:`~ltvcast.models.catalog` maps the CLI's model
  names to forecasters; :mod:`~ltvcast.models.forecast` fits and predicts
  them at a cutoff (``ltvcast predict``, backtests).
- :mod:`~ltvcast.models.btyd` — the BTYD forecasters (and ``naive``) over
  the estimators below.
- :mod:`~ltvcast.models.learned` — gbm, hybrid, auto and the deep sequence
  models (``deep``, ``deep-lstm``, ``deep-transformer``).

The estimators exported here take a per-customer summary frame (columns ``frequency``,
``recency``, ``T`` and, for spend, ``monetary_value``; time in one unit of
the caller's choosing, money in the shop currency) and follows the
scikit-learn convention: hyper-parameters in ``__init__``, learned
attributes with a trailing underscore, ``fit`` returns ``self``.

- :class:`BGNBD` — Fader, Hardie & Lee (2005), Marketing Science 24(2).
- :class:`ParetoNBD` — Schmittlein, Morrison & Colombo (1987); Fader &
  Hardie (2005) note.
- :class:`GammaGamma` — Fader, Hardie & Lee (2005), JMR 42(4).
- :class:`Naive` — historical Poisson rate per customer.
"""

from ltvcast.models.bgnbd import BGNBD
from ltvcast.models.gammagamma import GammaGamma
from ltvcast.models.naive import Naive
from ltvcast.models.paretonbd import ParetoNBD

__all__ = ["BGNBD", "GammaGamma", "Naive", "ParetoNBD"]
