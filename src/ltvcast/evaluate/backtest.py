"""Temporal backtest: fit before a cutoff, predict the horizon after it, score.

Protocol: every model is fitted on transactions strictly before the cutoff
and predicts the window ``[cutoff, cutoff + horizon)`` for every customer
first seen before the cutoff; the actuals are what those customers did in
that window. Nothing from the window reaches a model's fit.

A *rolling-origin* backtest (:func:`run_rolling_backtest`) repeats this at
several cutoffs with the same horizon and condenses the per-cutoff metrics
to mean ± standard deviation per model (Tashman 2000, "Out-of-sample tests
of forecasting accuracy", IJF 16(4): rolling-origin evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ltvcast.data.datasets import History
from ltvcast.errors import CutoffError, DataError, LtvcastError
from ltvcast.evaluate.report import ReportSection, write_report
from ltvcast.features.labels import window_labels
from ltvcast.metrics import evaluate, summarize_backtest
from ltvcast.models.base import Forecaster
from ltvcast.models.forecast import fit_predict
from ltvcast.models.level import LevelForecast, top_down_level
from ltvcast.schema.predictions import write_predictions
from ltvcast.timeutil import horizon_window, local_midnight, to_day

DEFAULT_MODELS: tuple[str, ...] = ("naive", "bgnbd", "paretonbd")
MAX_CLIPPED_SHARE = 0.05


@dataclass
class BacktestResult:
    """Everything one backtest produced.

    Attributes:
        predictions: canonical predictions frame, all models stacked.
        actuals: ``customer_id, actual_transactions, actual_spend,
            actual_next_purchase_days`` (days from the cutoff to the first
            purchase occasion in the window; NaN for non-buyers).
        metrics: one row per model (see :func:`ltvcast.metrics.evaluate`).
        cutoff: the prediction date (UTC midnight).
        horizon_days: the evaluated window length in days (after clipping).
        notes: remarks for the report (clipped window, left-out customers).
        level: the top-down level of the horizon from the daily revenue
            before the cutoff (:func:`ltvcast.models.level.top_down_level`),
            None when it cannot be made.
        models: the fitted forecasters by model name (for explanations).
        failures: the models that failed to fit, model name -> reason (they
            have no predictions; the report and the terminal show them).
        revenue_basis: ``net`` or ``gross`` (:class:`~ltvcast.data.datasets.History`).
        currency: the shop's currency code from the store's meta, or None.
    """

    predictions: pd.DataFrame
    actuals: pd.DataFrame
    metrics: pd.DataFrame
    cutoff: pd.Timestamp
    horizon_days: float
    notes: list[str] = field(default_factory=list)
    level: LevelForecast | None = None
    models: dict[str, Forecaster] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    revenue_basis: str = "net"
    currency: str | None = None


def evaluation_window(cutoff, horizon_days: float, observation_end) -> tuple[float, list[str]]:
    """Return the window length (days) that the data can score, and notes.

    The window ``[cutoff, cutoff + horizon)`` must lie within the observed
    data, which ends with the day ``observation_end``. A window that reaches
    past it by at most 5% of the horizon is clipped to the observed days (and
    noted) — e.g. CDNOW ends 1998-06-30, so 26 weeks from 1998-01-01 is
    scored on 181 days; a longer overhang is refused.

    Raises:
        CutoffError: the cutoff is not before the observation end, or the
            window reaches more than 5% of the horizon past it.
    """
    start, end = horizon_window(cutoff, horizon_days)
    data_stop = to_day(observation_end) + pd.Timedelta(days=1)
    if start >= data_stop:
        raise CutoffError(
            f"backtest cutoff {start.date()} leaves no observed days to score: the data ends "
            f"{to_day(observation_end).date()}"
        )
    if end <= data_stop:
        return float((end - start).days), []
    observed = (data_stop - start).days
    if observed < (1 - MAX_CLIPPED_SHARE) * (end - start).days:
        raise CutoffError(
            f"the horizon window {start.date()} .. {(end - pd.Timedelta(days=1)).date()} reaches "
            f"past the end of the data ({to_day(observation_end).date()}); choose an earlier cutoff "
            "or a shorter horizon"
        )
    note = (
        f"The horizon window was clipped to the observed data: {observed} days "
        f"({start.date()} .. {to_day(observation_end).date()}) instead of {(end - start).days}."
    )
    return float(observed), [note]


def horizon_actuals(data: History, customers: pd.Series, cutoff, horizon_days: float) -> pd.DataFrame:
    """What each customer did in ``[cutoff, cutoff + horizon_days)``: the backtest's actuals.

    Args:
        data: the shop's history (transactions, time zone, revenue basis).
        customers: ids to label, shape ``(n,)`` (unique).
        cutoff: first day of the window.
        horizon_days: window length in days (whole local days).

    Returns:
        Frame of ``n`` rows: ``customer_id`` (string), ``actual_transactions``
        (purchase occasions), ``actual_spend`` (currency, net or gross as the
        store says) and ``actual_next_purchase_days`` (days from the cutoff
        to the first occasion in the window; NaN for non-buyers), as
        :func:`ltvcast.features.horizon_labels` and
        :func:`ltvcast.features.labels.next_purchase_labels` define them
        (one query: :func:`ltvcast.features.labels.window_labels`).
    """
    actuals = window_labels(
        data.transactions, customers, cutoff, horizon_days, timezone=data.timezone, revenue_basis=data.revenue_basis
    )
    return actuals.rename(columns={"next_purchase_days": "actual_next_purchase_days"})


def run_backtest(
    data: History,
    cutoff,
    horizon_days: float,
    models: Sequence[str] = DEFAULT_MODELS,
    on_step: Callable[[str], None] | None = None,
    calendar=None,
) -> BacktestResult:
    """Fit every model before ``cutoff``, predict the horizon, score against actuals.

    Args:
        data: the shop's history (all of it; the split is done here).
        cutoff: prediction date.
        horizon_days: requested horizon in days (see
            :func:`evaluation_window` for clipping at the end of the data).
        models: model names (:data:`ltvcast.models.catalog.MODEL_NAMES`).
        on_step: called with a short description before each step (the CLI
            drives a progress bar with it); the library itself never prints.
        calendar: the shop calendar (``calendar.yaml`` path or parsed events)
            for the learned models; None: no declared events.

    Returns:
        A :class:`BacktestResult`.

    Raises:
        CutoffError: the window does not fit the data.
        DataError: no customer is seen before the cutoff.
        ConvergenceError: a model fit failed.
    """
    step = on_step or (lambda _msg: None)
    days, notes = evaluation_window(cutoff, horizon_days, data.observation_end)
    failures: dict[str, str] = {}
    predictions, fit_notes, fitted = fit_predict(data, cutoff, days, models, step, failures, calendar=calendar)
    notes.extend(fit_notes)
    if predictions.empty:
        raise DataError(f"no customer has a purchase before the cutoff {to_day(cutoff).date()}")
    step("score")
    actuals = horizon_actuals(data, predictions["customer_id"].drop_duplicates(), cutoff, days)
    nonpos = int(((actuals["actual_transactions"] > 0) & (actuals["actual_spend"] <= 0)).sum())
    if nonpos:
        notes.append(
            f"{nonpos:,} customer(s) bought in the horizon but have a net spend <= 0 (returns outweigh "
            "purchases); they are scored with their actual (net) spend, while the learned models count "
            "such values as zero when training"
        )
    notes.extend(unmatched_refund_notes(data, cutoff))
    order = {name: i for i, name in enumerate(models)}
    metrics = evaluate(predictions, actuals).sort_values("model", key=lambda m: m.map(order), kind="stable")
    metrics = metrics.reset_index(drop=True)
    try:
        level = top_down_level(data.transactions, cutoff, days, data.timezone)
    except DataError:
        level = None
    try:
        currency = data.store.meta().get("shop_currency")
    except (AttributeError, LtvcastError):
        currency = None
    return BacktestResult(
        predictions, actuals, metrics, to_day(cutoff), days, notes, level, fitted, failures,
        data.revenue_basis, currency,
    )


def basis_context(revenue_basis: str, currency: str | None) -> dict[str, str]:
    """The report's context rows for what the money figures mean: revenue basis and currency."""
    basis = {
        "net": "net (sales minus returns and refunds)",
        "gross": "gross (sales; returns not subtracted)",
    }.get(revenue_basis, str(revenue_basis))
    return {"Revenue basis": basis, "Currency": currency or "not declared (amounts as stored)"}


def unmatched_refund_notes(data: History, cutoff) -> list[str]:
    """A report note on the refunds before ``cutoff`` that name no order of their customer.

    Such a refund lowers the customer's total spend only, never an occasion
    (features/sql/README.md, "Refunds"); the note counts them so that they
    are not lost from sight.

    Returns:
        One line, or nothing when there are none (or the data hold no order ids or returns).
    """
    tx = data.transactions
    if "order_id" not in tx.columns or not tx["order_id"].notna().any():
        return []
    stamps = tx["timestamp"] if tx["timestamp"].dt.tz is not None else tx["timestamp"].dt.tz_localize("UTC")
    tx = tx[(stamps < local_midnight(cutoff, data.timezone)).to_numpy()]
    is_return = (tx["kind"] == "return" if "kind" in tx.columns else tx["amount"] < 0).to_numpy(dtype=bool)
    if not is_return.any():
        return []
    ids = tx["customer_id"].astype(str) + "\x1f" + tx["order_id"].astype("string").fillna("")
    has_ids = tx.loc[tx["order_id"].notna(), "customer_id"].unique()
    sale_orders = set(ids[~is_return & tx["order_id"].notna().to_numpy()])
    unmatched = is_return & tx["customer_id"].isin(has_ids).to_numpy() & ~ids.isin(sale_orders).to_numpy()
    if not unmatched.any():
        return []
    rows = tx[unmatched]
    return [
        f"{len(rows):,} refund(s) before the cutoff ({float(-rows['amount'].sum()):,.2f} in all, "
        f"{rows['customer_id'].nunique():,} customer(s)) name no order of their customer: they lower those "
        "customers' total spend only, never a purchase occasion"
    ]


def backtest_context(result: BacktestResult, dataset: str) -> dict[str, str]:
    """The report's context block of one backtest: dataset, cutoff, horizon, customers, then :func:`level_context`.

    Returns:
        Ordered mapping of label -> text.
    """
    return {
        "dataset": dataset,
        "cutoff": str(result.cutoff.date()),
        "horizon": f"{result.horizon_days:g} days",
        "customers": f"{result.actuals.shape[0]:,}",
        **basis_context(result.revenue_basis, result.currency),
        **level_context(result),
    }


def level_context(result: BacktestResult) -> dict[str, str]:
    """The report's context rows for the level: seasonal index, top-down total, each model's bottom-up total.

    Returns:
        Ordered mapping of label -> text (empty without a top-down level).
    """
    lf = result.level
    if lf is None:
        return {}
    si = "n/a (less than a year and a quarter of history)" if pd.isna(lf.seasonal_index) else f"{lf.seasonal_index:.2f}"
    out = {
        "Seasonal index of the horizon": si,
        "Top-down total (shop)": f"{lf.total:,.0f} [{lf.low:,.0f}, {lf.high:,.0f}] by {lf.method}"
        + (" — short history: interval doubled" if lf.short_history else ""),
        "Top-down total (existing customers)": f"{lf.existing_total:,.0f} (share {lf.existing_share:.2f})",
    }
    totals = result.predictions.groupby("model", sort=False)["pred_spend"].sum()
    out["Bottom-up totals"] = ", ".join(f"{m} {v:,.0f}" for m, v in totals.items())
    return out


def write_backtest(
    result: BacktestResult, out_dir: str | Path, *, dataset: str, sections: Sequence[ReportSection] = ()
) -> dict[str, Path]:
    """Write ``predictions.parquet``, ``metrics.csv`` and ``report.html`` into ``out_dir``.

    ``sections`` are added to the report (decisions, model health: built by the rooms above).

    Returns:
        The written paths by kind (``predictions``, ``metrics``, ``report``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out / "predictions.parquet",
        "metrics": out / "metrics.csv",
        "report": out / "report.html",
    }
    write_predictions(result.predictions, paths["predictions"])
    result.metrics.to_csv(paths["metrics"], index=False)
    context = backtest_context(result, dataset)
    write_report(
        result.predictions,
        result.actuals,
        result.metrics,
        paths["report"],
        title=f"ltvcast backtest — {dataset}, cutoff {result.cutoff.date()}",
        context=context,
        notes=result.notes,
        sections=sections,
        failures=result.failures,
    )
    return paths


@dataclass
class RollingBacktestResult:
    """A rolling-origin backtest: the same models and horizon at several cutoffs.

    Attributes:
        runs: one :class:`BacktestResult` per cutoff, oldest cutoff first.
        predictions: canonical predictions frame of every cutoff and model
            (the ``cutoff`` column tells them apart).
        actuals: ``cutoff``, ``customer_id``, ``actual_transactions``,
            ``actual_spend``, ``actual_next_purchase_days``; one row per
            customer and cutoff.
        metrics: one row per model and cutoff (columns of
            :func:`ltvcast.metrics.evaluate`), by cutoff, then in the
            order the models were given.
        summary: one row per model (in the given order): ``model``,
            ``n_cutoffs``, ``first_cutoff``, ``last_cutoff``, ``horizon_days``
            and ``<metric>_mean`` / ``<metric>_std`` (sample standard
            deviation, ``ddof=1``) over the model's cutoffs
            (:func:`ltvcast.metrics.summarize_backtest`).
        horizon_days: the requested horizon (days); each run holds the
            length it scored (shorter where clipped at the end of the data).
        notes: every run's notes, each prefixed with its cutoff.
        failures: model name -> reason, for the models that failed at one
            cutoff or more (``cutoff YYYY-MM-DD: reason``, joined by `` | ``).
    """

    runs: list[BacktestResult]
    predictions: pd.DataFrame
    actuals: pd.DataFrame
    metrics: pd.DataFrame
    summary: pd.DataFrame
    horizon_days: float
    notes: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def cutoffs(self) -> list[pd.Timestamp]:
        """The cutoffs, oldest first (UTC midnight)."""
        return [run.cutoff for run in self.runs]


def _rolling_cutoffs(cutoffs: Sequence) -> list[pd.Timestamp]:
    if isinstance(cutoffs, str) or not isinstance(cutoffs, Sequence):
        raise CutoffError("cutoffs must be a list of dates, e.g. ['1997-10-01', '1998-01-01']")
    days = [to_day(c) for c in cutoffs]
    if len(days) < 2:
        raise CutoffError(
            f"a rolling-origin backtest needs at least two cutoffs, got {len(days)}; for one cutoff run a plain backtest"
        )
    repeated = sorted({d for d in days if days.count(d) > 1})
    if repeated:
        raise CutoffError("cutoffs repeat: " + ", ".join(str(d.date()) for d in repeated))
    return sorted(days)


def run_rolling_backtest(
    data: History,
    cutoffs: Sequence,
    horizon_days: float,
    models: Sequence[str] = DEFAULT_MODELS,
    on_step: Callable[[str], None] | None = None,
    calendar=None,
) -> RollingBacktestResult:
    """Run :func:`run_backtest` at every cutoff with the same horizon and summarise.

    Every cutoff is an independent backtest (fit strictly before it, score
    ``[cutoff, cutoff + horizon)``); a window that runs past the end of the
    data is clipped or refused per cutoff as :func:`evaluation_window` says.
    All windows are checked before the first model is fitted.

    Args:
        data: the shop's history.
        cutoffs: two or more distinct prediction dates, in any order (run
            and reported oldest first).
        horizon_days: requested horizon in days, the same at every cutoff.
        models: model names (:data:`ltvcast.models.catalog.MODEL_NAMES`).
        on_step: progress callback; each text is prefixed with the cutoff.
        calendar: the shop calendar for the learned models (as :func:`run_backtest`).

    Returns:
        A :class:`RollingBacktestResult`.

    Raises:
        CutoffError: fewer than two cutoffs, a repeated cutoff, a value that
            is not a date, or a window that does not fit the data.
        DataError, ConvergenceError: as :func:`run_backtest` at any cutoff.
    """
    days = _rolling_cutoffs(cutoffs)
    for day in days:
        evaluation_window(day, horizon_days, data.observation_end)
    step = on_step or (lambda _msg: None)
    runs, notes = [], []
    for day in days:
        label = str(day.date())
        run = run_backtest(data, day, horizon_days, models, lambda msg, label=label: step(f"{label}: {msg}"),
                           calendar=calendar)
        runs.append(run)
        notes.extend(f"cutoff {label}: {note}" for note in run.notes)
    failures: dict[str, list[str]] = {}
    for run in runs:
        for model, reason in run.failures.items():
            failures.setdefault(model, []).append(f"cutoff {run.cutoff.date()}: {reason}")
    order = {name: i for i, name in enumerate(dict.fromkeys(models))}
    summary = summarize_backtest(pd.concat([run.metrics for run in runs], ignore_index=True))
    summary = summary.sort_values("model", key=lambda m: m.map(order), kind="stable").reset_index(drop=True)
    return RollingBacktestResult(
        runs=runs,
        predictions=pd.concat([run.predictions for run in runs], ignore_index=True),
        actuals=pd.concat([run.actuals.assign(cutoff=run.cutoff) for run in runs], ignore_index=True)[
            ["cutoff", *runs[0].actuals.columns]
        ],
        metrics=pd.concat([run.metrics for run in runs], ignore_index=True),
        summary=summary,
        horizon_days=float(horizon_days),
        notes=notes,
        failures={m: " | ".join(r) for m, r in failures.items()},
    )


def write_rolling_backtest(result: RollingBacktestResult, out_dir: str | Path, *, dataset: str) -> dict[str, Path]:
    """Write a rolling-origin backtest into ``out_dir``.

    Files: ``predictions.parquet`` (every cutoff), ``metrics.csv`` (one row
    per model and cutoff, the columns of a single backtest's file),
    ``metrics_summary.csv`` (one row per model: ``<metric>_mean`` and
    ``<metric>_std`` across cutoffs) and ``report.html`` (the per-cutoff
    table, the mean ± standard deviation table, and the charts of the latest
    cutoff).

    Returns:
        The written paths by kind (``predictions``, ``metrics``,
        ``summary``, ``report``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "predictions": out / "predictions.parquet",
        "metrics": out / "metrics.csv",
        "summary": out / "metrics_summary.csv",
        "report": out / "report.html",
    }
    write_predictions(result.predictions, paths["predictions"])
    result.metrics.to_csv(paths["metrics"], index=False)
    result.summary.to_csv(paths["summary"], index=False)
    first, last = result.cutoffs[0].date(), result.cutoffs[-1].date()
    write_report(
        result.predictions,
        result.actuals,
        result.metrics,
        paths["report"],
        title=f"ltvcast rolling-origin backtest — {dataset}, {len(result.runs)} cutoffs {first} … {last}",
        context={
            "dataset": dataset,
            "Horizon requested": f"{result.horizon_days:g} days at every cutoff",
            **basis_context(result.runs[0].revenue_basis, result.runs[0].currency),
        },
        notes=result.notes,
        failures=result.failures,
    )
    return paths
