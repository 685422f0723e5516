"""Forward forecasts: fit on all history before a cutoff and predict the horizon after it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import ConvergenceError, LtvcastError
from ltvcast.models.base import Forecaster
from ltvcast.models.catalog import MODEL_NAMES, make_forecaster
from ltvcast.timeutil import check_cutoff, horizon_window


def forecast(
    data: History,
    cutoff,
    horizon_days: float,
    models: Sequence[str],
    *,
    allow_future_cutoff: bool = False,
    on_step: Callable[[str], None] | None = None,
    calendar=None,
) -> tuple[pd.DataFrame, list[str]]:
    """Predict ``[cutoff, cutoff + horizon)`` for every customer seen before ``cutoff``.

    Args:
        data: the shop's history (transactions, observation end, store).
        cutoff: prediction date; at most the day after the observation end.
        horizon_days: horizon in days (rounded to whole days, see
            :func:`ltvcast.timeutil.horizon_window`).
        models: model names (:data:`ltvcast.models.catalog.MODEL_NAMES`).
        allow_future_cutoff: accept a cutoff after the day following the
            observation end (T then counts unobserved days).
        on_step: progress callback, called with a short text before each step.
        calendar: the shop calendar for the learned models (see
            :func:`ltvcast.models.catalog.make_forecaster`).

    Returns:
        The canonical predictions frame (models stacked), notes from the fits,
        and the fitted forecasters by model name (the models left out are not in it).

    Raises:
        CutoffError: the cutoff is after the day following the observation end.
        ConvergenceError: a fit failed.
    """
    check_cutoff(cutoff, data.observation_end, allow_future=allow_future_cutoff)
    start, end = horizon_window(cutoff, horizon_days)
    predictions, notes, _ = fit_predict(data, cutoff, float((end - start).days), models, on_step, calendar=calendar)
    return predictions, notes


def fit_predict(
    data: History,
    cutoff,
    horizon_days: float,
    models: Sequence[str],
    on_step: Callable[[str], None] | None = None,
    failures: dict[str, str] | None = None,
    calendar=None,
) -> tuple[pd.DataFrame, list[str], dict[str, Forecaster]]:
    """Fit each model on history before ``cutoff`` and predict ``horizon_days`` after it.

    No check of the cutoff against the data: callers do that
    (:func:`forecast`, :func:`ltvcast.evaluate.backtest.run_backtest`).

    Returns:
        The canonical predictions frame (models stacked), notes from the fits,
        and the fitted forecasters by model name (the models left out are not in it).

    A model whose fit does not converge is left out with a note; the others
    still predict. When ``failures`` is given, each left-out model's name is
    written into it with the reason (model name -> text), so that callers can
    show the model with its reason rather than drop it. ``calendar`` goes to
    the learned models (:func:`ltvcast.models.catalog.make_forecaster`).

    Raises:
        LtvcastError: no model, or an unknown model name.
        ConvergenceError: no model could be fitted.
    """
    step = on_step or (lambda _msg: None)
    names = list(dict.fromkeys(models))
    if not names:
        raise LtvcastError(f"no model given; choose from {', '.join(MODEL_NAMES)}")
    forecasters = [make_forecaster(name, calendar) for name in names]  # unknown names fail before any fit
    frames, notes, failed, fitted = [], [], [], {}
    for model in forecasters:
        step(f"fit {model.name}")
        try:
            model.fit(data, cutoff, horizon_days)
        except ConvergenceError as exc:
            failed.append(str(exc))
            notes.append(f"{model.name} left out: {exc}")
            if failures is not None:
                failures[model.name] = str(exc)
            continue
        step(f"predict {model.name}")
        frames.append(model.predict(data, cutoff, horizon_days))
        notes.extend(model.notes_)
        fitted[model.name] = model
    if not frames:
        raise ConvergenceError("no model could be fitted: " + " | ".join(failed))
    return pd.concat(frames, ignore_index=True), notes, fitted
