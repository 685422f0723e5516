"""Hyper-parameter search for the learned models (Optuna TPE), without peeking past the cutoff.

Protocol, for a model to be used at cutoff ``C`` with horizon ``H`` days:

1. **Trials, entirely before C.** Each trial fits the model with its
   parameters at the *trial cutoff* ``C' = C − H`` on the history before
   ``C'`` and scores its predictions on the window ``[C', C)`` (the same
   metrics as a backtest, :func:`ltvcast.metrics.evaluate`). The
   trials get the transactions cut at ``C`` (and an observation end before
   ``C``); the store features they build are point-in-time at ``C'`` or
   earlier. Nothing at or after ``C`` is read (the tests change all of it).
2. **Final fit at C.** The model is fitted at ``C`` with the best trial's
   parameters, on all history before ``C``.

The search is Optuna's TPE sampler (Bergstra, Bardenet, Bengio & Kégl 2011,
"Algorithms for Hyper-Parameter Optimization", NeurIPS), seeded, with a trial
budget and a time budget: the study starts no new trial once ``n_trials`` are
done or ``timeout`` seconds have passed, whichever comes first (a running
trial is finished). Trial 0 scores the model's default settings, so the best
trial is never worse than the defaults on the trial window. TPE's first
:data:`N_STARTUP_TRIALS` (10) trials are drawn at random from the space.

The library never prints and leaves Optuna's logging alone; the CLI sets its
verbosity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import ConvergenceError, CutoffError, DataError, LtvcastError
from ltvcast.evaluate.backtest import horizon_actuals
from ltvcast.metrics import evaluate
from ltvcast.models.base import Forecaster
from ltvcast.models.learned.examples import history_before
from ltvcast.timeutil import check_cutoff, horizon_window, to_day

__all__ = [
    "N_STARTUP_TRIALS",
    "SEARCH_SPACES",
    "TUNE_METRICS",
    "TUNABLE_MODELS",
    "Choice",
    "Float",
    "Int",
    "Objective",
    "TuneResult",
    "tune",
]


# --------------------------------------------------------------------------
# search spaces
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Float:
    """A real parameter in ``[low, high]``, sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial: Any, name: str) -> float:
        """Draw a value for ``name`` from an Optuna trial."""
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is a number in ``[low, high]``."""
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the manifest."""
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]``, sampled on a log scale when ``log``."""

    low: int
    high: int
    log: bool = False

    def suggest(self, trial: Any, name: str) -> int:
        """Draw a value for ``name`` from an Optuna trial."""
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        """True when ``value`` is an integer in ``[low, high]``."""
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the manifest."""
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice:
    """A parameter taking one of ``choices``."""

    choices: tuple

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw a value for ``name`` from an Optuna trial."""
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """True when ``value`` is one of the choices."""
        return value in self.choices

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the manifest."""
        return {"type": "choice", "choices": list(self.choices)}


_GBM_SPACE: dict[str, Float | Int | Choice] = {
    "learning_rate": Float(0.01, 0.2, log=True),
    "num_leaves": Int(4, 63, log=True),
    "min_data_in_leaf": Int(10, 400, log=True),
    "feature_fraction": Float(0.4, 1.0),
    "lambda_l2": Float(1e-3, 30.0, log=True),
    "spend_loss": Choice(("auto", "ziln", "tweedie")),
    "tweedie_power": Float(1.1, 1.9),
}
_DEEP_SPACE: dict[str, Float | Int | Choice] = {
    "hidden_size": Choice((16, 32, 64, 128)),
    "n_layers": Int(1, 3),
    "dropout": Float(0.0, 0.5),
    "learning_rate": Float(1e-4, 1e-2, log=True),
    "weight_decay": Float(1e-6, 1e-2, log=True),
    "batch_size": Choice((128, 256, 512, 1024)),
}

#: The searched constructor parameters of every tunable model (the model's
#: other settings keep their defaults unless fixed by the caller).
SEARCH_SPACES: dict[str, dict[str, Float | Int | Choice]] = {
    "gbm": _GBM_SPACE,
    "hybrid": _GBM_SPACE,
    "deep": {"encoder": Choice(("gru", "lstm", "transformer")), **_DEEP_SPACE},
    "deep-lstm": _DEEP_SPACE,
    "deep-transformer": _DEEP_SPACE,
}
TUNABLE_MODELS: tuple[str, ...] = tuple(SEARCH_SPACES)
#: Trials TPE draws at random before it models the scores (Optuna's default).
N_STARTUP_TRIALS = 10


def _gbm(**params: Any) -> Forecaster:
    from ltvcast.models.learned.gbm import GBMForecaster

    return GBMForecaster(**params)


def _hybrid(**params: Any) -> Forecaster:
    from ltvcast.models.learned.hybrid import HybridForecaster

    return HybridForecaster(**params)


def _deep(name: str, encoder: str | None) -> Callable[..., Forecaster]:
    def make(**params: Any) -> Forecaster:
        from ltvcast.models.learned.deep import DeepForecaster

        fixed = {"encoder": encoder} if encoder else {}
        return DeepForecaster(name=name, **fixed, **params)

    return make


_BUILDERS: dict[str, Callable[..., Forecaster]] = {
    "gbm": _gbm,
    "hybrid": _hybrid,
    "deep": _deep("deep", None),
    "deep-lstm": _deep("deep-lstm", "lstm"),
    "deep-transformer": _deep("deep-transformer", "transformer"),
}


# --------------------------------------------------------------------------
# objectives
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """What a trial is scored by: a column of :func:`~ltvcast.metrics.evaluate`.

    Attributes:
        column: the metrics column.
        direction: ``"minimize"`` or ``"maximize"``.
        absolute: score ``|value|`` (for signed errors, where 0 is best).
    """

    column: str
    direction: str
    absolute: bool = False


#: ``--metric`` names and what they score (spend unless named otherwise).
TUNE_METRICS: dict[str, Objective] = {
    "rmse": Objective("spend_rmse", "minimize"),
    "mae": Objective("spend_mae", "minimize"),
    "gini": Objective("gini_norm", "maximize"),
    "spearman": Objective("spearman", "maximize"),
    "top_decile": Objective("top_decile_capture", "maximize"),
    "decile_mape": Objective("decile_mape", "minimize"),
    "total_error": Objective("total_spend_error_pct", "minimize", absolute=True),
    "pinball": Objective("spend_pinball", "minimize"),
    "tx_rmse": Objective("tx_rmse", "minimize"),
    "tx_mae": Objective("tx_mae", "minimize"),
    "auc": Objective("churn_auc", "maximize"),
    "pr_auc": Objective("churn_pr_auc", "maximize"),
    "brier": Objective("churn_brier", "minimize"),
}


class _UndefinedScore(LtvcastError):
    """A trial's metric is NaN (e.g. a model that does not predict that output)."""


# --------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------


@dataclass
class TuneResult:
    """A finished search and (optionally) the final model.

    Attributes:
        model_name: the tuned model (:data:`TUNABLE_MODELS`).
        metric: the ``--metric`` name; ``objective`` its column and direction.
        best_params: the best trial's searched parameters.
        best_value: its score (for ``total_error`` the absolute percent).
        best_trial: its number.
        fixed_params: constructor settings held fixed in every trial and the
            final fit (the caller's, plus ``seed``).
        trials: one row per trial: ``number``, ``state`` (``COMPLETE`` or
            ``FAIL``), ``value`` (NaN when failed), ``duration_s``, ``error``
            (why it failed, else empty), then one column per searched parameter.
        cutoff: ``C``; trial_cutoff: ``C' = C − H`` (UTC midnight).
        horizon_days: ``H`` in whole days.
        seed: seed of the sampler (and of the model, unless fixed).
        n_trials, timeout: the budgets (timeout in seconds, None = none).
        stopped_by: ``"n_trials"`` or ``"timeout"``.
        search_space: the space searched (the model's minus fixed parameters).
        forecaster: the model fitted at ``C`` with the best parameters
            (``None`` when ``refit=False``).
        seconds: wall time of the search (without the final fit).
    """

    model_name: str
    metric: str
    objective: Objective
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    fixed_params: dict[str, Any]
    trials: pd.DataFrame
    cutoff: pd.Timestamp
    trial_cutoff: pd.Timestamp
    horizon_days: float
    seed: int
    n_trials: int
    timeout: float | None
    stopped_by: str
    search_space: dict[str, Float | Int | Choice]
    forecaster: Forecaster | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        """The study as a JSON-ready dict (the registry manifest's ``tuning`` field).

        Keys: ``model``, ``metric``, ``metric_column``, ``direction``,
        ``best_params``, ``best_value``, ``best_trial``, ``fixed_params``,
        ``search_space``, ``trials`` (``number``, ``state``, ``value``
        (null when failed), ``duration_s``, ``params``, ``error``),
        ``sampler`` (``name``, ``seed``, ``n_startup_trials``), ``budget``
        (``n_trials``, ``timeout_s``), ``stopped_by``, ``seconds``,
        ``protocol`` (``cutoff``, ``trial_cutoff``, ``trial_window``,
        ``horizon_days``), ``optuna_version``.
        """
        import optuna

        names = list(self.search_space)
        trials = []
        for rec in self.trials.to_dict("records"):
            value = rec["value"]
            trials.append(
                {
                    "number": int(rec["number"]),
                    "state": rec["state"],
                    "value": None if pd.isna(value) else float(value),
                    "duration_s": float(rec["duration_s"]),
                    "params": {n: _plain(rec[n]) for n in names if not _missing(rec[n])},
                    "error": rec["error"],
                }
            )
        return {
            "model": self.model_name,
            "metric": self.metric,
            "metric_column": self.objective.column,
            "direction": self.objective.direction,
            "best_params": {k: _plain(v) for k, v in self.best_params.items()},
            "best_value": float(self.best_value),
            "best_trial": int(self.best_trial),
            "fixed_params": {k: _plain(v) for k, v in self.fixed_params.items()},
            "search_space": {k: v.describe() for k, v in self.search_space.items()},
            "trials": trials,
            "sampler": {"name": "TPESampler", "seed": self.seed, "n_startup_trials": N_STARTUP_TRIALS},
            "budget": {"n_trials": self.n_trials, "timeout_s": self.timeout},
            "stopped_by": self.stopped_by,
            "seconds": round(self.seconds, 3),
            "protocol": {
                "cutoff": str(self.cutoff.date()),
                "trial_cutoff": str(self.trial_cutoff.date()),
                "trial_window": [str(self.trial_cutoff.date()), str((self.cutoff - pd.Timedelta(days=1)).date())],
                "horizon_days": self.horizon_days,
            },
            "optuna_version": optuna.__version__,
        }


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (numpy numbers become Python ones)."""
    return value.item() if hasattr(value, "item") else value


# --------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------


def _check_arguments(model_name: str, metric: str, n_trials: Any, timeout: Any, seed: Any) -> None:
    if model_name not in SEARCH_SPACES:
        raise LtvcastError(f"cannot tune model {model_name!r}; tunable: {', '.join(TUNABLE_MODELS)}")
    if metric not in TUNE_METRICS:
        raise LtvcastError(f"unknown metric {metric!r}; choose from {', '.join(TUNE_METRICS)}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise LtvcastError(f"the trial budget must be a whole number >= 1, got {n_trials!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise LtvcastError(f"the time budget must be a number of seconds > 0 (or none), got {timeout!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LtvcastError(f"seed must be a whole number >= 0, got {seed!r}")


def _build(model_name: str, params: Mapping[str, Any]) -> Forecaster:
    try:
        return _BUILDERS[model_name](**params)
    except (TypeError, ValueError) as exc:  # unknown setting or a value the model refuses
        raise LtvcastError(f"{model_name}: bad parameters {dict(params)}: {exc}") from None


def _trial_history(history: History, cutoff: pd.Timestamp) -> History:
    """The history cut before ``cutoff``: what the trials may read."""
    past = history_before(history.transactions, cutoff, history.timezone)
    end = min(to_day(history.observation_end), cutoff - pd.Timedelta(days=1))
    return replace(history, transactions=past, observation_end=end)


def tune(
    model_name: str,
    history: History,
    cutoff,
    horizon_days: float,
    *,
    n_trials: int = 20,
    timeout: float | None = None,
    metric: str = "rmse",
    seed: int = 0,
    fixed_params: Mapping[str, Any] | None = None,
    refit: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> TuneResult:
    """Search a learned model's settings before ``cutoff`` and fit the best at ``cutoff``.

    See the module notes for the protocol (trials at ``C' = C − H`` scored
    on ``[C', C)``; final fit at ``C``).

    Args:
        model_name: one of :data:`TUNABLE_MODELS`.
        history: the shop's history; rows at or after ``cutoff`` are never read.
        cutoff: ``C``, the cutoff the final model is for; at most the day
            after the observation end.
        horizon_days: ``H`` in days (rounded to whole days).
        n_trials: trial budget (>= 1).
        timeout: time budget in seconds (> 0), or None for none; no trial
            starts after it, a running one finishes.
        metric: one of :data:`TUNE_METRICS` (``rmse`` = spend RMSE).
        seed: seeds the TPE sampler and, unless ``fixed_params`` sets it,
            the model's own ``seed``.
        fixed_params: constructor settings held fixed (e.g. fewer training
            windows); a searched parameter given here is not searched.
        refit: fit the final model at ``C`` (False: search only).
        on_step: progress callback, called with a short text before each
            trial and before the final fit.

    Returns:
        A :class:`TuneResult`.

    Raises:
        LtvcastError: unknown model or metric, a budget or seed out of range,
            settings the model refuses, or every searched parameter fixed.
        CutoffError: ``C`` after the day following the observation end, no
            purchase before ``C'``, or the model cannot train at ``C'`` (e.g.
            no training window fits before it); the message names ``C'``.
        ConvergenceError: no trial completed (every fit failed or scored NaN).
    """
    import optuna

    _check_arguments(model_name, metric, n_trials, timeout, seed)
    step = on_step or (lambda _msg: None)
    fixed = dict(fixed_params or {})
    fixed.setdefault("seed", seed)
    space = {k: v for k, v in SEARCH_SPACES[model_name].items() if k not in fixed}
    if not space:
        raise LtvcastError(f"{model_name}: every searched parameter is fixed; nothing to tune")
    defaults = _build(model_name, fixed)  # refuses bad fixed settings before any fit

    start, end = horizon_window(check_cutoff(cutoff, history.observation_end), horizon_days)
    h = float((end - start).days)
    trial_cutoff = start - pd.Timedelta(days=h)
    past = _trial_history(history, start)
    if history_before(past.transactions, trial_cutoff, past.timezone).empty:
        raise CutoffError(
            f"tuning scores trials at C' = cutoff − horizon = {trial_cutoff.date()} on [{trial_cutoff.date()}, "
            f"{start.date()}), but no purchase lies before {trial_cutoff.date()}; choose a later cutoff or a "
            "shorter horizon"
        )
    objective = TUNE_METRICS[metric]
    prepared: dict[str, Any] = {}  # the trials' shared windows and features (gbm, hybrid), made once

    def score(trial: Any) -> float:
        step(f"trial {trial.number + 1}/{n_trials}")
        model = _build(model_name, {**fixed, **{name: p.suggest(trial, name) for name, p in space.items()}})
        try:
            if hasattr(model, "prepare"):  # windows and features do not depend on the searched settings
                if "data" not in prepared:
                    prepared["data"] = model.prepare(past, trial_cutoff, h, features=True)
                preds = model.fit_prepared(prepared["data"]).predict_prepared(prepared["data"])
            else:
                model.fit(past, trial_cutoff, h)
                preds = model.predict(past, trial_cutoff, h)
        except ConvergenceError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        except (CutoffError, DataError) as exc:  # the data, not the trial's settings: stop the study
            raise type(exc)(
                f"tuning fits each trial at C' = cutoff − horizon = {trial_cutoff.date()} and scores "
                f"[{trial_cutoff.date()}, {start.date()}): {exc}"
            ) from exc
        actuals = horizon_actuals(past, preds["customer_id"].drop_duplicates(), trial_cutoff, h)
        value = float(evaluate(preds, actuals)[objective.column].iloc[0])
        if not math.isfinite(value):
            trial.set_user_attr("error", f"{objective.column} is undefined (NaN) for this model's predictions")
            raise _UndefinedScore(trial.user_attrs["error"])
        return abs(value) if objective.absolute else value

    sampler = optuna.samplers.TPESampler(n_startup_trials=N_STARTUP_TRIALS, seed=seed)
    study = optuna.create_study(direction=objective.direction, sampler=sampler)
    start_params = {name: getattr(defaults, name, None) for name in space}
    if all(p.contains(start_params[name]) for name, p in space.items()):
        study.enqueue_trial(start_params)
    began = time.perf_counter()
    study.optimize(score, n_trials=n_trials, timeout=timeout, catch=(ConvergenceError, _UndefinedScore))
    seconds = time.perf_counter() - began

    trials = _trials_frame(study.trials, space)
    done = trials[trials["state"] == "COMPLETE"]
    if trials.empty:
        raise ConvergenceError(f"{model_name}: the time budget of {timeout:g} s ended before the first trial")
    if done.empty:
        raise ConvergenceError(
            f"{model_name}: no trial completed: " + " | ".join(sorted(set(trials["error"]) - {""}))
        )
    best = study.best_trial
    result = TuneResult(
        model_name=model_name,
        metric=metric,
        objective=objective,
        best_params=dict(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        fixed_params=fixed,
        trials=trials,
        cutoff=start,
        trial_cutoff=trial_cutoff,
        horizon_days=h,
        seed=seed,
        n_trials=n_trials,
        timeout=None if timeout is None else float(timeout),
        stopped_by="n_trials" if len(study.trials) >= n_trials else "timeout",
        search_space=space,
        seconds=seconds,
    )
    if refit:
        step(f"final fit at {start.date()}")
        model = _build(model_name, {**fixed, **best.params})
        model.fit(history, start, h)
        result.forecaster = model
        result.notes = list(model.notes_)
    return result


def _trials_frame(trials: list[Any], space: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else float("nan")
        row = {
            "number": t.number,
            "state": t.state.name,
            "value": float(t.value) if t.value is not None else float("nan"),
            "duration_s": duration,
            "error": str(t.user_attrs.get("error", "")),
        }
        row.update({name: t.params.get(name) for name in space})
        rows.append(row)
    return pd.DataFrame(rows, columns=["number", "state", "value", "duration_s", "error", *space])
