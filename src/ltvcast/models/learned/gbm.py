"""LightGBM forecasters trained on time-shifted windows: ``gbm`` and (with BTYD inputs) ``hybrid``.

Training protocol (:mod:`ltvcast.models.learned.examples`): for a prediction
at cutoff ``C`` and horizon ``H``, examples come from full windows
``c_k = C − H − k·stride`` (``k = 0`` is the validation window) and, by
default, recent windows ``C − j·stride`` whose label windows are shortened
to end at ``C``. Nothing at or after ``C`` is read: the transactions are cut
at ``C`` before anything else.

Inputs (:mod:`ltvcast.models.learned.features`): the numeric store features
of :func:`ltvcast.features.build` without absolute-age columns, age-robust
ratios, the label window length ``label_days`` and — for ``hybrid`` — BTYD
predictions fitted at each window's cutoff on history before it.

Sub-models (one LightGBM booster each, deterministic settings, fixed seeds):

================  ==========================================  =======================
output            objective                                    label
================  ==========================================  =======================
pred_spend        ZILN (Wang, Liu & Miao 2019) or Tweedie      spend in the window
                  (variance power 1.5), chosen by validation
                  normalized Gini
p10 / p50 / p90   quantiles of the ZILN distribution           spend in the window
pred_transactions Poisson                                      purchase occasions
p_churn           binary cross-entropy                         no occasion in the window
next purchase     L2 regression on the customers who bought    days to the first occasion
================  ==========================================  =======================

**Net revenue rule.** A customer's label spend can be ``<= 0`` (returns
larger than purchases). Every sub-model counts a non-positive value as zero
spend: the ZILN puts it in its zero part, Tweedie sees 0, the level
calibration compares against 0. Predictions are therefore ``>= 0`` and finite
(σ of the ZILN is clipped; trees sum finitely many bounded leaves). The
number of such labels is reported in ``notes_``.

**Next purchase.** ``pred_next_purchase_days`` is the expected number of
days from the cutoff to the next purchase occasion *given that the customer
buys within the horizon* (``E[τ | τ < H]``; whether they buy is ``p_churn``).
Conditioning on a purchase in the window makes the target fully observed:
the regression is fitted on the customers who bought in each training
window, with ``label_days`` as an input, so windows of different lengths
(truncation at different points) are told apart. At prediction time
``label_days = H``.

**Validation and refit.** Each sub-model is first trained on the full
windows ``k >= 1`` with early stopping on window 0 (at most
``max_rounds``); its validation predictions choose the spend loss and fit
the calibrations (:mod:`ltvcast.models.learned.calibration`: a level factor
for spend, Platt scaling for ``p_churn``). The final booster is then trained
on every window (validation and recent ones included) with the number of
rounds found. Without a validation window (a single full window fits the
data) ``default_rounds`` are used and nothing is calibrated (noted).

**Seasons** (``seasonal_years``, default 1). When the history reaches a
year before the horizon, the same-season windows ``C − 364·y`` join the
final fit, stay out of the validation boosters' training set, and the level
factor and Platt calibration are fitted on them (recency weights
``0.5^(y−1)``) instead of on window 0
(:func:`~ltvcast.models.learned.examples.calibration_windows`; the choice is
in ``notes_``). Then, with ``reconcile="auto"``, the top-down level
(:mod:`ltvcast.models.level`) is computed at ``C``; when the history holds
more than a year and a quarter and the top-down total of the existing
customers was closer than the bottom-up one on the validation window
(``C − H``; the bottom-up one out of sample: the validation boosters × the
same-season level factor), the spend level factor is replaced by
``existing_total / Σ pred_spend(C)`` (clipped to ``[1/3, 3]``): one factor,
ranking unchanged. Both totals and the choice are in ``notes_`` and
``level_forecast_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import DataError, NotFittedError
from ltvcast.metrics import normalized_gini
from ltvcast.models.base import Forecaster, feature_schema
from ltvcast.models.learned.calendar import calendar_wanted, load_calendar, parse_calendar
from ltvcast.models.learned.calibration import LevelCalibration, PlattCalibration, QuantileLevels
from ltvcast.models.learned.examples import (
    ExampleSet,
    calibration_windows,
    history_at,
    scored_window,
    training_examples,
    window_notes,
)
from ltvcast.models.learned.features import BTYD_DOCS, FeatureMaker, vocabulary
from ltvcast.models.learned.ziln import ZILNObjective, ziln_init_score, ziln_loss, ziln_mean, ziln_quantile
from ltvcast.schema.predictions import predictions_frame
from ltvcast.timeutil import to_day

__all__ = ["GBMForecaster", "Prepared", "QUANTILES"]

#: Spend quantiles filled in the predictions frame.
QUANTILES = (0.1, 0.5, 0.9)
SPEND_LOSSES = ("auto", "ziln", "tweedie")


def _lightgbm():
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DataError("the learned models need LightGBM: pip install lightgbm") from exc
    return lightgbm


@dataclass
class Prepared:
    """The data of a fit at one cutoff (:meth:`GBMForecaster.prepare`).

    Attributes:
        start, h: the cutoff day and the horizon in whole days.
        tx: the transactions before the cutoff day.
        examples: the training windows' features and labels.
        notes: the feature maker's remarks and the calendar decision.
        calendar_used: whether the calendar inputs are used.
        timezone: the shop's time zone.
        features: the features at the cutoff (None when not computed).
    """

    start: pd.Timestamp
    h: float
    tx: pd.DataFrame
    examples: ExampleSet
    notes: list[str]
    calendar_used: bool
    timezone: str
    features: pd.DataFrame | None = None


@dataclass
class _Booster:
    """A fitted LightGBM booster with its constant start (raw scale)."""

    booster: object
    init: np.ndarray  # (k,) raw start added to the booster's raw output
    rounds: int

    def raw(self, X: np.ndarray) -> np.ndarray:
        out = np.asarray(self.booster.predict(X, raw_score=True, num_iteration=self.rounds), dtype=float)
        return out + (self.init if out.ndim == 2 else self.init[0])


class _Binned:
    """A feature matrix binned once, whose bins every sub-model trained on it reuses.

    Finding the bins of CDNOW's ~100k examples costs about as much as 30
    boosting rounds; each sub-model gets a fresh Dataset that takes the bins
    from this one (``reference``) instead of finding them again. Fresh
    Datasets, not one relabelled in place: a LightGBM Dataset whose label
    and start are reset between boosters aborted the process under load.
    """

    def __init__(self, lgb, X: np.ndarray, params: dict, categorical, reference: "_Binned | None" = None) -> None:
        self._lgb, self._X, self._params, self._categorical = lgb, X, params, categorical
        self.data = lgb.Dataset(
            X, label=np.zeros(len(X)), params=params, categorical_feature=categorical,
            reference=None if reference is None else reference.data, free_raw_data=False,
        ).construct()

    def labelled(self, y: np.ndarray, init: np.ndarray, rows: np.ndarray | None = None):
        """A Dataset of the matrix (or its ``rows``, a boolean mask) with label ``y`` and the start ``init`` on every row."""
        X = self._X if rows is None else self._X[rows]
        n = len(y)
        start = np.tile(init, (n, 1)) if init.size > 1 else np.full(n, init[0])
        return self._lgb.Dataset(X, label=y, init_score=start, params=self._params,
                                 categorical_feature=self._categorical, reference=self.data)


def _ziln_objective(y: np.ndarray):
    """LightGBM's custom objective for training labels ``y`` (the label terms computed once, not every round).

    The labels are taken as LightGBM stores them (float32), as its ``get_label()`` would give them.
    """
    objective = ZILNObjective(np.asarray(y, dtype=np.float32))
    return lambda preds, dataset: objective(preds)


def _ziln_eval(preds, dataset):
    return "ziln", float(np.mean(ziln_loss(dataset.get_label(), preds))), False


class GBMForecaster(Forecaster):
    """LightGBM CLV model behind the shared interface (``gbm``; ``hybrid`` adds BTYD inputs).

    Args:
        name: model name in the predictions frame.
        btyd_features: add BTYD outputs at every window's cutoff (hybrid).
        n_windows: full training windows at most (``k = 0 .. n_windows−1``).
        stride_days: days between training cutoffs.
        recent_windows: add the shortened recent windows (see
            :mod:`ltvcast.models.learned.examples`) to the final fit.
        min_label_days: shortest recent label window.
        min_history_days: a window's cutoff needs this many days of data
            before it.
        spend_loss: ``"auto"`` (ZILN or Tweedie by validation normalized
            Gini), ``"ziln"`` or ``"tweedie"``.
        tweedie_power: Tweedie variance power (1 < p < 2).
        learning_rate, num_leaves, min_data_in_leaf, feature_fraction,
        lambda_l2: LightGBM settings shared by every sub-model.
        max_rounds: boosting rounds at most (early stopping on validation).
        early_stopping_rounds: patience of early stopping.
        default_rounds: rounds without a validation window.
        calibrate_level: multiply spend (mean and quantiles) by the
            validation level factor.
        calibrate_churn: Platt-recalibrate ``p_churn`` on validation.
        calibrate_quantiles: recalibrate the levels of the ZILN p10 and p90
            on validation (:class:`QuantileLevels`), so that 10% of the
            validation customers fall below p10 and 10% above p90 (the
            interval then aims at 80% coverage); p50 stays the ZILN median.
            Off by default: spend has a point mass at zero, so even exact
            quantiles cover more than 80% (every non-buyer whose P(no spend)
            lies between 10% and 90% is inside ``[0, p90]``); recalibrating
            moves p10 up to the median and worsens the pinball loss.
        seed: seed of every random choice (feature subsampling).
        n_jobs: LightGBM threads (results are identical for equal settings
            and thread counts).
        seasonal_years: same-season windows ``C − 364·y`` for ``y = 1 ..
            seasonal_years`` (0 = off), see the module docstring.
        reconcile: ``"auto"`` (reconcile the spend level to the top-down
            total where it was better on validation) or ``"off"``.
        calendar_inputs: ``"auto"`` (default), ``"on"`` or ``"off"``: the
            calendar of each label window as inputs (month shares, declared
            events, the shop's seasonal index; see
            :mod:`ltvcast.models.learned.calendar`); ``"auto"`` uses them
            when the history before the cutoff spans ``364 + 2H`` days
            (:func:`~ltvcast.models.learned.calendar.calendar_wanted`).
        calendar: the shop calendar of declared events: a path to a
            ``calendar.yaml`` or the parsed list of ``{name, start, end}``;
            None (default) = no event columns.
        categoricals: text features (customer attributes, first-order
            channel and category) as LightGBM categorical features (codes
            of a vocabulary of the ``max_categories`` most frequent training
            values; unseen and missing values are missing); a text feature
            with no value in training is left out.
        max_categories: vocabulary size at most per text feature.

    Attributes (after ``fit``):
        cutoff_, horizon_days_: what the model was fitted for.
        examples_: the :class:`~ltvcast.models.learned.examples.ExampleSet`.
        feature_names_: model inputs, in order.
        calendar_used_: whether the calendar inputs are used.
        vocabularies_: text feature -> its categories (code = position).
        spend_loss_: ``"ziln"`` or ``"tweedie"``, the chosen spend loss.
        validation_: validation-window frame (``customer_id``, labels, and
            the validation model's ``pred_*``, ``p_churn``), or ``None``.
        validation_scores_: dict of validation metrics per sub-model.
        level_: :class:`LevelCalibration`; churn_calibration_:
            :class:`PlattCalibration`; quantile_levels_:
            :class:`QuantileLevels`.
        feature_importance_: frame ``feature``, ``gain`` of the spend booster.
        notes_: what was done (windows, rounds, choices, rule counts).
    """

    name = "gbm"

    # Parameters added after models were first registered: an unpickled older model has none of them
    # and keeps the behaviour it was trained with (no same-season window, no reconciliation, no calendar
    # inputs, text features dropped).
    seasonal_years = 0
    reconcile = "off"
    calendar_inputs = "off"
    calendar = None
    categoricals = False
    max_categories = 100
    bagging_fraction = 1.0

    def __init__(
        self,
        name: str = "gbm",
        *,
        btyd_features: bool = False,
        n_windows: int = 6,
        stride_days: int = 28,
        recent_windows: bool = True,
        min_label_days: int = 28,
        min_history_days: int = 28,
        spend_loss: str = "auto",
        tweedie_power: float = 1.5,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 100,
        feature_fraction: float = 0.8,
        lambda_l2: float = 1.0,
        bagging_fraction: float = 1.0,
        max_rounds: int = 400,
        early_stopping_rounds: int = 30,
        default_rounds: int = 100,
        calibrate_level: bool = True,
        calibrate_churn: bool = True,
        calibrate_quantiles: bool = False,
        seed: int = 0,
        n_jobs: int = 2,
        seasonal_years: int = 1,
        reconcile: str = "auto",
        calendar_inputs: str = "auto",
        calendar=None,
        categoricals: bool = True,
        max_categories: int = 100,
    ) -> None:
        super().__init__()
        if calendar_inputs not in ("auto", "on", "off"):
            raise ValueError(f"calendar_inputs must be 'auto', 'on' or 'off', got {calendar_inputs!r}")
        if reconcile not in ("auto", "off"):
            raise ValueError(f"reconcile must be 'auto' or 'off', got {reconcile!r}")
        if spend_loss not in SPEND_LOSSES:
            raise ValueError(f"spend_loss must be one of {SPEND_LOSSES}, got {spend_loss!r}")
        if not 1.0 < tweedie_power < 2.0:
            raise ValueError(f"tweedie_power must lie in (1, 2), got {tweedie_power}")
        self.name = name
        self.btyd_features = btyd_features
        self.n_windows = n_windows
        self.stride_days = stride_days
        self.recent_windows = recent_windows
        self.min_label_days = min_label_days
        self.min_history_days = min_history_days
        self.spend_loss = spend_loss
        self.tweedie_power = tweedie_power
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.lambda_l2 = lambda_l2
        self.bagging_fraction = bagging_fraction
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.default_rounds = default_rounds
        self.calibrate_level = calibrate_level
        self.calibrate_churn = calibrate_churn
        self.calibrate_quantiles = calibrate_quantiles
        self.seed = seed
        self.n_jobs = n_jobs
        self.seasonal_years = seasonal_years
        self.reconcile = reconcile
        self.calendar_inputs = calendar_inputs
        self.calendar = calendar
        self.categoricals = categoricals
        self.max_categories = max_categories

    # ------------------------------------------------------------------ helpers
    def _params(self, objective) -> dict:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "max_bin": 63,
            "verbose": -1,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "feature_fraction_seed": self.seed + 1,
            "bagging_seed": self.seed + 2,
            "data_random_seed": self.seed + 3,
        }

    def events(self):
        """The declared shop events of ``calendar`` (None when no calendar is given).

        Raises:
            DataError: the calendar file is missing or malformed.
        """
        if self.calendar is None:
            return None
        if isinstance(self.calendar, (str, Path)):
            return load_calendar(self.calendar)
        return parse_calendar(list(self.calendar))

    def decide_calendar(self, data: History, cutoff, horizon_days: float) -> str:
        """Set ``calendar_used_`` for a fit at ``cutoff`` (:func:`calendar_wanted`) and return the note."""
        start, h = scored_window(cutoff, horizon_days)
        tx = history_at(data, start, self.name)
        self.calendar_used_, note = calendar_wanted(self.calendar_inputs, tx["timestamp"].min(), start, h)
        return note

    def _maker(self, data: History) -> FeatureMaker:
        use = bool(getattr(self, "calendar_used_", False))
        return FeatureMaker(
            data.store, data.timezone, data.revenue_basis, age_robust=True, btyd=self.btyd_features,
            calendar=use, events=self.events() if use else None, categoricals=self.categoricals,
        )

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        vocab = getattr(self, "vocabularies_", {})
        if not vocab:
            return frame[self.feature_names_].to_numpy(dtype=np.float32)
        cols = {}
        for name in self.feature_names_:
            if name in vocab:
                codes = pd.Categorical(frame[name].astype("string"), categories=vocab[name]).codes
                cols[name] = np.where(codes >= 0, codes, np.nan).astype(np.float32)
            else:
                cols[name] = frame[name].to_numpy(dtype=np.float32)
        return np.column_stack([cols[n] for n in self.feature_names_]).astype(np.float32)

    def _categorical_index(self) -> list[int]:
        vocab = getattr(self, "vocabularies_", {})
        return [i for i, n in enumerate(self.feature_names_) if n in vocab]

    def _dataset_params(self) -> dict:
        """The settings a binned Dataset is built with: those of every sub-model (no objective)."""
        return {k: v for k, v in self._params("regression").items() if k != "objective"}

    def _bin(self, X: np.ndarray, reference: "_Binned | None" = None) -> "_Binned":
        cats = self._categorical_index() or "auto"
        return _Binned(_lightgbm(), X, self._dataset_params(), cats, reference)

    def _train(
        self,
        kind: str,
        train: "_Binned",
        y: np.ndarray,
        valid: "_Binned | None" = None,
        y_val: np.ndarray | None = None,
        rounds: int | None = None,
        rows: np.ndarray | None = None,
        rows_val: np.ndarray | None = None,
    ) -> _Booster:
        """One booster on binned data; early stopping on ``(valid, y_val)`` when given, else ``rounds``.

        ``rows`` / ``rows_val`` (boolean masks) train or validate on a subset
        of the binned rows (the bins stay those of the whole matrix).
        """
        lgb = _lightgbm()
        if kind == "ziln":
            params = self._params(_ziln_objective(y))
            params["num_class"] = 3
            params["metric"] = "None"
            init = ziln_init_score(y)
        elif kind == "tweedie":
            params = self._params("tweedie")
            params["tweedie_variance_power"] = self.tweedie_power
            init = np.array([np.log(max(float(np.mean(y)), 1e-6))])
        elif kind == "poisson":
            params = self._params("poisson")
            init = np.array([np.log(max(float(np.mean(y)), 1e-6))])
        elif kind == "binary":
            params = self._params("binary")
            share = float(np.clip(np.mean(y), 1e-4, 1 - 1e-4))
            init = np.array([np.log(share / (1 - share))])
        elif kind == "l2":
            params = self._params("regression")
            init = np.array([float(np.mean(y))])
        else:  # pragma: no cover - programming error
            raise ValueError(kind)

        train_set = train.labelled(y, init, rows)
        if valid is not None and y_val is not None and len(y_val):
            valid_set = valid.labelled(y_val, init, rows_val)
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.max_rounds,
                valid_sets=[valid_set],
                feval=_ziln_eval if kind == "ziln" else None,
                callbacks=callbacks,
            )
            used = int(booster.best_iteration) or self.max_rounds
        else:
            booster = lgb.train(params, train_set, num_boost_round=int(rounds or self.default_rounds))
            used = int(rounds or self.default_rounds)
        booster.free_dataset()
        return _Booster(booster, init, max(used, 1))

    # ------------------------------------------------------------------ fit
    def fit(self, data: History, cutoff, horizon_days: float) -> "GBMForecaster":
        """Train every sub-model on time-shifted windows before ``cutoff``.

        Args:
            data: the shop's history (rows at or after ``cutoff`` are never
                read: transactions are cut first, store features are point
                in time).
            cutoff: prediction cutoff ``C``.
            horizon_days: horizon ``H`` in days (rounded to whole days).

        Returns:
            self.

        Raises:
            CutoffError: no full training window fits before ``cutoff``.
            DataError: no customers, or no buyer in the training windows.
        """
        return self.fit_prepared(self.prepare(data, cutoff, horizon_days))

    def prepare(self, data: History, cutoff, horizon_days: float, *, features: bool = False) -> Prepared:
        """What a fit at ``cutoff`` reads from the data: windows, features, labels (no boosting).

        It depends only on the window and feature settings (``n_windows``,
        ``stride_days``, ``recent_windows``, ``min_label_days``,
        ``min_history_days``, ``seasonal_years``, ``btyd_features``,
        ``calendar_inputs``, ``calendar``, ``categoricals``), so models that
        differ only in their LightGBM settings (the trials of
        :func:`ltvcast.evaluate.tune.tune`) can share one.

        Args:
            data, cutoff, horizon_days: as for :meth:`fit`.
            features: also compute the features at ``cutoff`` (always done
                when ``reconcile="auto"``, which needs them).

        Returns:
            A :class:`Prepared`.

        Raises:
            As :meth:`fit`.
        """
        calendar_note = self.decide_calendar(data, cutoff, horizon_days)
        maker = self._maker(data)
        start, h, tx, ex = training_examples(self, data, cutoff, horizon_days, maker)
        notes = maker.notes + [calendar_note]
        feats = maker(tx, start, h) if features or self.reconcile == "auto" else None
        return Prepared(start, h, tx, ex, notes, self.calendar_used_, data.timezone, feats)

    def fit_prepared(self, prep: Prepared) -> "GBMForecaster":
        """Train every sub-model on a :meth:`prepare` result (which this model's settings must have made).

        Returns:
            self.

        Raises:
            DataError: no buyer in the training windows.
        """
        self.calendar_used_ = prep.calendar_used
        self.fit_examples(prep.examples, prep.notes)
        if self.reconcile == "auto":
            bottom_up = float(self.predict_features(prep.features, prep.h)["pred_spend"].sum())
            self.reconcile_level(prep.tx, prep.timezone, prep.start, prep.h, bottom_up)
        return self

    def predict_prepared(self, prep: Prepared) -> pd.DataFrame:
        """:meth:`predict` at the cutoff of a :meth:`prepare` result made with ``features=True``."""
        return self.predict_inputs(self._own_inputs(prep.features, prep.h), prep.start, prep.h)

    def reconcile_level(self, tx: pd.DataFrame, timezone: str, start, h: float, bottom_up: float) -> None:
        """Compare the top-down level with the bottom-up total and reconcile the spend level where it was better.

        Args:
            tx: transactions before the cutoff.
            timezone: the shop's time zone.
            start, h: the cutoff day and the horizon (days).
            bottom_up: Σ pred_spend over the customers scored at the cutoff
                (currency), with the current level factor.

        Sets ``level_forecast_`` (a :class:`~ltvcast.models.level.LevelForecast`
        or None), ``bottom_up_total_`` and ``reconciled_`` and, when
        reconciled, ``level_.factor_``; writes the comparison to ``notes_``.
        """
        from ltvcast.models.level import reconcile

        val_cutoff, val_bu, val_actual = None, float("nan"), float("nan")
        if self.validation_ is not None and self.calibrate_level:
            val_cutoff = to_day(self.examples_.windows[0].cutoff)
            val_bu = float(self.validation_["pred_spend"].sum()) * self.level_.factor_
            val_actual = float(np.maximum(self.validation_["actual_spend"].to_numpy(float), 0).sum())
        rec = reconcile(tx, timezone, start, h, bottom_up, val_cutoff=val_cutoff, val_bottom_up=val_bu,
                        val_actual=val_actual)
        self.bottom_up_total_ = bottom_up
        self.level_forecast_ = rec.forecast
        self.reconciled_ = rec.reconciled
        self.level_.factor_ *= rec.factor
        self.notes_.extend(f"{self.name}: {n}" for n in rec.notes)

    def fit_examples(self, ex: ExampleSet, feature_notes: list[str] | None = None) -> "GBMForecaster":
        """Train on examples already built (by :meth:`fit`, or shared by :mod:`~ltvcast.models.learned.auto`).

        Uses the columns of ``ex.feature_names`` this model takes: all of
        them for ``hybrid``; without the BTYD columns
        (:data:`~ltvcast.models.learned.features.BTYD_DOCS`) for ``gbm``.

        Args:
            ex: examples of :func:`~ltvcast.models.learned.examples.build_examples`;
                window 0 is the validation window, its label length is H.
            feature_notes: remarks of the feature maker, copied to ``notes_``.

        Returns:
            self.

        Raises:
            DataError: no buyer in any training window.
        """
        self.notes_ = []
        self.examples_ = ex
        names = [f for f in ex.feature_names if self.btyd_features or f not in BTYD_DOCS]
        self.vocabularies_ = {}
        text = [f for f in names if not pd.api.types.is_numeric_dtype(ex.frame[f])]
        for f in text:
            if not self.categoricals:
                continue
            vocab = vocabulary(ex.frame[f].astype("string"), self.max_categories)
            if vocab:
                self.vocabularies_[f] = vocab
        self.feature_names_ = [f for f in names if f not in text or f in self.vocabularies_]
        if self.vocabularies_:
            self.notes_.append(
                f"{self.name}: text features as LightGBM categoricals: "
                + ", ".join(f"{k} ({len(v)} values)" for k, v in self.vocabularies_.items())
            )
        full_windows = [w for w in ex.windows if not w.is_recent]
        start = to_day(full_windows[0].cutoff) + pd.Timedelta(days=full_windows[0].label_days)
        h = int(full_windows[0].label_days)
        self.cutoff_, self.horizon_days_ = start, float(h)
        self._describe_windows(ex, feature_notes or [])

        frame = ex.frame
        self.feature_schema_ = feature_schema(frame[self.feature_names_])
        cal_idx, cal_w, cal_note = calibration_windows(ex.windows)
        seasonal_idx = [w.index for w in ex.windows if w.is_seasonal]
        full_old = frame[(frame["window"] >= 1) & ~frame["window"].isin(seasonal_idx)]
        val = frame[frame["window"] == 0]
        cal = frame[frame["window"].isin(cal_idx)]
        cal_weight = cal["window"].map(dict(zip(cal_idx, cal_w))).to_numpy(float)
        has_val = len(full_old) > 0
        if not has_val:
            self.notes_.append(
                f"{self.name}: only one full training window fits before {start.date()}: no validation; "
                f"{self.default_rounds} boosting rounds, no calibration"
            )
        X_all = self._matrix(frame)
        X_tr = self._matrix(full_old) if has_val else None
        X_va = self._matrix(val) if has_val else None

        spend_all = frame["actual_spend"].to_numpy(float)
        spend_tr = full_old["actual_spend"].to_numpy(float)
        spend_va = val["actual_spend"].to_numpy(float)
        pos_all = np.maximum(spend_all, 0.0)
        self.validation_scores_: dict[str, float] = {}
        validation = pd.DataFrame(
            {
                "customer_id": val["customer_id"].to_numpy(),
                "actual_transactions": val["actual_transactions"].to_numpy(float),
                "actual_spend": spend_va,
                "next_purchase_days": val["next_purchase_days"].to_numpy(float),
            }
        )

        bins_all = self._bin(X_all)
        bins_tr = self._bin(X_tr) if has_val else None
        bins_va = self._bin(X_va, reference=bins_tr) if has_val else None

        def validate(kind, y_tr, y_va, rows_tr=None, rows_va=None):
            """The validation booster (older full windows, early stopping on window 0), None without them."""
            if has_val and len(y_tr) and len(y_va):
                return self._train(kind, bins_tr, y_tr, bins_va, y_va, rows=rows_tr, rows_val=rows_va)
            return None

        def stage(kind, y_all, y_tr, y_va, rows_all=None, rows_tr=None, rows_va=None):
            """Validation booster, then the final booster on all rows with the rounds it found."""
            vb = validate(kind, y_tr, y_va, rows_tr, rows_va)
            return vb, self._train(kind, bins_all, y_all, rounds=None if vb is None else vb.rounds, rows=rows_all)

        # spend: the validation boosters of every candidate, then final boosters only for those used
        candidates = ("ziln", "tweedie") if self.spend_loss == "auto" else (self.spend_loss,)
        if "ziln" not in candidates:
            candidates = candidates + ("ziln",)  # quantiles come from the ZILN
        spend_vb = {kind: validate(kind, np.maximum(spend_tr, 0.0), np.maximum(spend_va, 0.0)) for kind in candidates}
        val_means = {}
        if has_val:
            for kind, vb in spend_vb.items():
                raw = vb.raw(X_va)
                val_means[kind] = ziln_mean(raw) if kind == "ziln" else np.exp(raw)
                self.validation_scores_[f"gini_{kind}"] = normalized_gini(np.maximum(spend_va, 0.0), val_means[kind])
        if self.spend_loss == "auto" and has_val:
            self.spend_loss_ = max(("ziln", "tweedie"), key=lambda k: self.validation_scores_[f"gini_{k}"])
            self.notes_.append(
                f"{self.name}: spend loss {self.spend_loss_} chosen by validation normalized Gini "
                f"(ZILN {self.validation_scores_['gini_ziln']:.3f}, Tweedie {self.validation_scores_['gini_tweedie']:.3f})"
            )
        else:
            self.spend_loss_ = "ziln" if self.spend_loss == "auto" else self.spend_loss
        spend_models = {
            kind: (vb, self._train(kind, bins_all, pos_all, rounds=None if vb is None else vb.rounds))
            for kind, vb in spend_vb.items()
            if kind in (self.spend_loss_, "ziln")
        }
        self._spend = spend_models[self.spend_loss_][1]
        self._ziln = spend_models["ziln"][1]

        # transactions, churn
        tx_vb, self._tx = stage(
            "poisson",
            frame["actual_transactions"].to_numpy(float),
            full_old["actual_transactions"].to_numpy(float),
            val["actual_transactions"].to_numpy(float),
        )
        churn = lambda f: (f["actual_transactions"].to_numpy(float) == 0).astype(float)  # noqa: E731
        ch_vb, self._churn = stage("binary", churn(frame), churn(full_old), churn(val))

        # next purchase (buyers only)
        b_all = frame["next_purchase_days"].notna().to_numpy()
        b_tr = full_old["next_purchase_days"].notna().to_numpy()
        b_va = val["next_purchase_days"].notna().to_numpy()
        if not b_all.any():
            raise DataError(f"{self.name}: nobody bought in any training window; nothing to learn from")
        nx_vb, self._next = stage(
            "l2",
            frame.loc[b_all, "next_purchase_days"].to_numpy(float),
            full_old.loc[b_tr, "next_purchase_days"].to_numpy(float),
            val.loc[b_va, "next_purchase_days"].to_numpy(float),
            rows_all=b_all, rows_tr=b_tr, rows_va=b_va,
        )

        # calibration on the validation window
        self.level_ = LevelCalibration()
        self.churn_calibration_ = PlattCalibration()
        self.quantile_levels_ = QuantileLevels((QUANTILES[0], QUANTILES[-1]))
        if has_val:
            spend_val = val_means[self.spend_loss_]
            p_val = 1.0 / (1.0 + np.exp(-ch_vb.raw(X_va)))
            if seasonal_idx:
                X_ca = self._matrix(cal)
                vb = spend_models[self.spend_loss_][0]
                spend_cal = ziln_mean(vb.raw(X_ca)) if self.spend_loss_ == "ziln" else np.exp(vb.raw(X_ca))
                self.level_.fit(cal["actual_spend"].to_numpy(float), spend_cal, sample_weight=cal_weight)
                self.churn_calibration_.fit(churn(cal), 1.0 / (1.0 + np.exp(-ch_vb.raw(X_ca))), sample_weight=cal_weight)
            else:
                self.level_.fit(spend_va, spend_val)
                self.churn_calibration_.fit(churn(val), p_val)
            self.notes_.append(f"{self.name}: {cal_note}")
            zraw = spend_models["ziln"][0].raw(X_va)
            if self.calibrate_quantiles:
                self.quantile_levels_.fit(spend_va, lambda q: ziln_quantile(zraw, q))
                self.notes_.append(
                    f"{self.name}: spend quantile levels recalibrated on validation: "
                    + ", ".join(f"p{int(q * 100)} -> {self.quantile_levels_.level(q):.3f}" for q in QUANTILES[::2])
                )
            validation["pred_spend"] = spend_val
            validation["pred_transactions"] = np.exp(tx_vb.raw(X_va))
            validation["p_churn"] = p_val
            for q in QUANTILES:
                validation[f"pred_spend_p{int(q * 100)}"] = ziln_quantile(zraw, self._level(q))
            validation["pred_next_purchase_days"] = (
                np.clip(nx_vb.raw(X_va), 0.0, h - 1.0) if nx_vb is not None else np.nan
            )
            self.notes_.append(
                f"{self.name}: validation window {ex.windows[0].cutoff.date()}: predicted/actual spend total "
                f"{spend_val.sum() / max(np.maximum(spend_va, 0).sum(), 1e-9):.3f}"
                + (f", level factor {self.level_.factor_:.3f} applied" if self.calibrate_level else " (not recalibrated)")
                + (
                    f"; p_churn Platt a={self.churn_calibration_.a_:.3f}, b={self.churn_calibration_.b_:.3f} applied"
                    if self.calibrate_churn
                    else ""
                )
            )
            self.notes_.append(
                f"{self.name}: boosting rounds (early stopping on validation): spend {spend_models[self.spend_loss_][1].rounds}, "
                f"ZILN {self._ziln.rounds}, transactions {self._tx.rounds}, churn {self._churn.rounds}, "
                f"next purchase {self._next.rounds}"
            )
        self.validation_ = validation if has_val else None
        gain = self._spend.booster.feature_importance(importance_type="gain", iteration=self._spend.rounds)
        gain = np.asarray(gain, dtype=float)
        if gain.size != len(self.feature_names_):  # multi-output booster: one block per output
            gain = gain.reshape(-1, len(self.feature_names_)).sum(axis=0)
        self.feature_importance_ = (
            pd.DataFrame({"feature": self.feature_names_, "gain": gain})
            .sort_values("gain", ascending=False, kind="stable")
            .reset_index(drop=True)
        )
        return self

    def _describe_windows(self, ex: ExampleSet, feature_notes: list[str]) -> None:
        self.notes_ += window_notes(self.name, ex)
        seen = set()
        for note in feature_notes:
            if note not in seen:
                seen.add(note)
                self.notes_.append(f"{self.name}: {note}")

    # ------------------------------------------------------------------ predict
    def inputs(self, data: History, cutoff, horizon_days: float) -> pd.DataFrame:
        """This model's inputs at ``cutoff``: one row per customer with a purchase before it.

        Returns:
            ``customer_id`` plus every feature of ``feature_names_`` except
            ``label_days`` (:class:`~ltvcast.models.learned.features.FeatureMaker`),
            sorted by ``customer_id``.

        Raises:
            NotFittedError: ``fit`` was not called.
            DataError: no customer before ``cutoff``.
            SchemaMismatchError: the features differ from those of ``fit``.
        """
        if not hasattr(self, "_spend"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        start, h = scored_window(cutoff, horizon_days)
        return self._own_inputs(self._maker(data)(history_at(data, start, self.name), start, h), h)

    def _own_inputs(self, feats: pd.DataFrame, h: float) -> pd.DataFrame:
        feats = self.known_features(feats)  # unused text columns; columns added after this model was fitted
        self.check_features(feats.drop(columns="customer_id").assign(label_days=h))
        return feats

    def predict_inputs(self, inputs: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
        """Canonical predictions for ``[cutoff, cutoff + horizon_days)`` from :meth:`inputs`' rows.

        A row's prediction depends on that row only, so inputs can be scored
        in chunks. ``pred_spend`` (currency, >= 0): the chosen spend model's
        mean; ``pred_spend_p10/p50/p90``: ZILN quantiles (at the recalibrated
        levels with ``calibrate_quantiles``); ``pred_transactions``:
        expected occasions; ``p_churn``: P(no occasion); ``p_alive``: null
        (not a BTYD model); ``pred_next_purchase_days``: ``E[τ | τ < H]`` in
        days from the cutoff, in ``[0, H − 1]``. With ``calibrate_level`` the
        spend mean and quantiles are multiplied by the level factor; with
        ``calibrate_churn`` ``p_churn`` is Platt-recalibrated.

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: a feature of the model is missing or retyped.
        """
        if not hasattr(self, "_spend"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        start, h = scored_window(cutoff, horizon_days)
        return predictions_frame(inputs["customer_id"], self.name, start, h, **self.predict_features(inputs, h))

    def predict_columns(self, inputs: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
        """The numeric prediction columns of :meth:`predict_inputs` without the frame (batch scoring's path).

        Args:
            inputs: rows of :meth:`inputs`.
            horizon_days: the horizon (days; rounded to whole days as :meth:`predict_inputs` does).

        Returns:
            As :meth:`predict_features`.

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: a feature of the model is missing or retyped.
        """
        if not hasattr(self, "_spend"):
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        return self.predict_features(inputs, float(round(horizon_days)))

    def predict_features(self, features: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
        """Prediction columns for a frame of features at one cutoff.

        Args:
            features: ``customer_id`` plus (at least) this model's features
                except ``label_days``, as made by
                :class:`~ltvcast.models.learned.features.FeatureMaker`.
            horizon_days: the horizon H (days; becomes ``label_days``).

        Returns:
            Dict of canonical column name -> (n,) array in the rows' order
            (``p_alive`` absent).

        Raises:
            SchemaMismatchError: a feature of the model is missing or retyped.
        """
        feats = features.assign(label_days=float(horizon_days))
        self.check_features(feats, allow_extra=True)
        return self.predict_raw(self._matrix(feats), float(horizon_days))

    def predict_raw(self, X: np.ndarray, horizon_days: float) -> dict[str, np.ndarray]:
        """Prediction columns for a feature matrix (rows × ``feature_names_``).

        Returns:
            Dict of canonical column name -> (n,) array (``p_alive`` absent).
        """
        zraw = self._ziln.raw(X)
        mean = ziln_mean(zraw) if self.spend_loss_ == "ziln" else np.exp(self._spend.raw(X))
        factor = self.level_.factor_ if self.calibrate_level else 1.0
        p_churn = 1.0 / (1.0 + np.exp(-self._churn.raw(X)))
        if self.calibrate_churn:
            p_churn = self.churn_calibration_.transform(p_churn)
        out = {
            "pred_transactions": np.exp(self._tx.raw(X)),
            "pred_spend": factor * mean,
            "p_churn": p_churn,
            "pred_next_purchase_days": np.clip(self._next.raw(X), 0.0, horizon_days - 1.0),
        }
        for q in QUANTILES:
            out[f"pred_spend_p{int(q * 100)}"] = factor * ziln_quantile(zraw, self._level(q))
        return out

    def raw_contributions(self, features: pd.DataFrame, horizon_days: float) -> dict[str, np.ndarray]:
        """Exact tree SHAP of each sub-model's raw score, on the matrix :meth:`predict_features` predicts on.

        LightGBM's ``pred_contrib=True`` (Lundberg, Erion & Lee 2018, "Consistent
        individualized feature attribution for tree ensembles", TreeSHAP);
        the constant start of the booster (``init``) is added to the last
        (bias) column, so each row sums to the raw score the prediction uses.

        Args:
            features: as for :meth:`predict_features`.
            horizon_days: the horizon H (days; becomes ``label_days``).

        Returns:
            ``{"spend": (n, p+1) or (n, 3, p+1), "ziln": (n, 3, p+1),
            "churn": (n, p+1), "matrix": (n, p)}`` with p =
            ``len(feature_names_)``: ``spend`` is the chosen spend model's
            (Tweedie: log mean; ZILN: the three raw outputs ``(f_p, μ, f_s)``),
            ``churn`` the uncalibrated logit of P(no occasion); ``matrix`` the
            float32 inputs themselves (NaN = missing).

        Raises:
            NotFittedError: ``fit`` was not called.
            SchemaMismatchError: a feature of the model is missing or retyped.
        """
        if not hasattr(self, "_spend"):
            raise NotFittedError(f"{self.name}: call fit() before raw_contributions()")
        feats = features.assign(label_days=float(horizon_days))
        self.check_features(feats, allow_extra=True)
        X = self._matrix(feats)
        p = X.shape[1]

        def contrib(b: _Booster) -> np.ndarray:
            out = np.asarray(b.booster.predict(X, pred_contrib=True, num_iteration=b.rounds), dtype=float)
            k = out.shape[1] // (p + 1)
            out = out.reshape(len(X), k, p + 1) if k > 1 else out
            out[..., -1] += b.init if k > 1 else b.init[0]
            return out

        return {"spend": contrib(self._spend), "ziln": contrib(self._ziln), "churn": contrib(self._churn), "matrix": X}

    def _level(self, q: float) -> float:
        return self.quantile_levels_.level(q) if self.calibrate_quantiles else q
