"""Customer-level models: the BTYD family and a naive baseline.

Each class takes a per-customer summary frame (columns ``frequency``,
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
