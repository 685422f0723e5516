"""Every model ltvcast can fit, by name: the one registry the CLI, forecasts and backtests use.

``make_forecaster(name)`` returns a new, unfitted
:class:`~ltvcast.models.base.Forecaster`. Learned models (LightGBM, PyTorch)
are imported only when asked for, so the BTYD models work without them.

================  ================================================================
name              model
================  ================================================================
naive             historical repeat rate per customer (Poisson), own mean value
bgnbd             BG/NBD + Gamma-Gamma (Fader, Hardie & Lee 2005)
paretonbd         Pareto/NBD + Gamma-Gamma (Schmittlein, Morrison & Colombo 1987)
gbm               LightGBM on time-shifted windows, ZILN/Tweedie spend
                  (:mod:`ltvcast.models.learned.gbm`)
hybrid            gbm with BTYD predictions as inputs
                  (:mod:`ltvcast.models.learned.hybrid`)
auto              per-output choice or blend of gbm, hybrid and the BTYD models by
                  validation-window score (:mod:`ltvcast.models.learned.auto`)
deep              GRU over per-period sequences + customer features, ZILN spend,
                  per-period trajectory, churn, next purchase (PyTorch,
                  :mod:`ltvcast.models.learned.deep`)
deep-lstm         deep with an LSTM encoder
deep-transformer  deep with a small Transformer encoder
================  ================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from ltvcast.errors import LtvcastError
from ltvcast.models.base import Forecaster

__all__ = ["MODEL_NAMES", "LEARNED_MODELS", "make_forecaster"]


def _btyd(name: str) -> Callable[[], Forecaster]:
    def make() -> Forecaster:
        from ltvcast.models.btyd import BTYDForecaster

        return BTYDForecaster(name)

    return make


def _gbm(**params) -> Forecaster:
    from ltvcast.models.learned.gbm import GBMForecaster

    return GBMForecaster(**params)


def _hybrid(**params) -> Forecaster:
    from ltvcast.models.learned.hybrid import HybridForecaster

    return HybridForecaster(**params)


def _auto(**params) -> Forecaster:
    from ltvcast.models.learned.auto import AutoForecaster

    return AutoForecaster(**params)


def _deep(name: str, encoder: str) -> Callable[..., Forecaster]:
    def make(**params) -> Forecaster:
        from ltvcast.models.learned.deep import DeepForecaster

        return DeepForecaster(name, encoder=encoder, **params)

    return make


_FACTORIES: dict[str, Callable[..., Forecaster]] = {
    "naive": _btyd("naive"),
    "bgnbd": _btyd("bgnbd"),
    "paretonbd": _btyd("paretonbd"),
    "gbm": _gbm,
    "hybrid": _hybrid,
    "auto": _auto,
    "deep": _deep("deep", "gru"),
    "deep-lstm": _deep("deep-lstm", "lstm"),
    "deep-transformer": _deep("deep-transformer", "transformer"),
}

#: Every model name, in the order of the table above.
MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)
#: The learned models (slower to fit: minutes on CDNOW with two cores).
LEARNED_MODELS: tuple[str, ...] = ("gbm", "hybrid", "auto", "deep", "deep-lstm", "deep-transformer")


def make_forecaster(name: str, calendar=None) -> Forecaster:
    """A new, unfitted forecaster by name (see :data:`MODEL_NAMES`).

    Args:
        name: the model name.
        calendar: the shop calendar (a ``calendar.yaml`` path or its parsed
            events) handed to the learned models
            (:data:`LEARNED_MODELS`, their ``calendar=``); the BTYD models
            ignore it. None: no declared events.

    Raises:
        LtvcastError: the name is unknown (the message lists the known ones).
        DataError: the calendar cannot be read.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise LtvcastError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}") from None
    if calendar is not None and name in LEARNED_MODELS:
        return factory(calendar=calendar)
    return factory()
