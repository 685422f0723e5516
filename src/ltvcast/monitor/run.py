"""One monitoring run: ``ltvcast monitor`` (drift, live accuracy, data health), its log and its alerts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ltvcast.data.datasets import History, open_history
from ltvcast.errors import CutoffError, LtvcastError, RegistryError
from ltvcast.features import horizon_labels
from ltvcast.metrics import total_error_pct
from ltvcast.monitor.checks import (
    BTYD_KINDS,
    accuracy_rows,
    data_health_rows,
    drift_rows,
    partial_expectation_prorata,
    row,
    seasonal_index,
    worst,
)
from ltvcast.monitor.policy import Policy, load_policy
from ltvcast.registry import DEFAULT_ROOT, RegisteredModel, load_model, read_reference
from ltvcast.store import Store
from ltvcast.timeutil import check_cutoff, horizon_window, to_day

__all__ = ["EXIT_CODES", "MonitorResult", "live_accuracy", "post_webhook", "run_monitor", "same_window_error"]

#: Exit status of ``ltvcast monitor`` per overall status (for schedulers).
EXIT_CODES = {"ok": 0, "warn": 1, "alert": 2}


@dataclass
class MonitorResult:
    """What one monitoring run found.

    Attributes:
        model: ``NAME:VERSION`` monitored.
        at: the monitored cutoff (UTC midnight).
        status: ``ok``, ``warn`` or ``alert`` (the worst check).
        checks: one row per check (the ``monitor_log`` columns but
            ``checked_at``, ``model``, ``at``).
        deciles: decile calibration of the live-accuracy run (empty without one).
        notes: remarks (no reference, no matured run, ...).
    """

    model: str
    at: pd.Timestamp
    status: str
    checks: pd.DataFrame
    deciles: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warn, 2 alert."""
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict:
        """JSON-able summary: model, at, status, exit_code, checks (records; NaN → null), notes."""
        checks = self.checks.astype(object).where(self.checks.notna(), None).to_dict(orient="records")
        return {"model": self.model, "at": self.at.date().isoformat(), "status": self.status,
                "exit_code": self.exit_code, "checks": checks, "notes": list(self.notes)}


def live_accuracy(history: History, model: RegisteredModel, at, policy: Policy,
                  registry: str | Path = DEFAULT_ROOT) -> tuple[list[dict], pd.DataFrame, list[str]]:
    """Compare the latest logged scoring run of ``model``'s name that has matured enough with what happened.

    The run: among ``score_log`` rows of the registry name with ``cutoff +
    min_elapsed_days ≤ at``, the latest cutoff (then the latest run). Its
    elapsed part is ``e = min(at − cutoff, H)`` days. Expected over ``e``:
    for BTYD models (``bgnbd``, ``paretonbd``) the exact conditional
    expectation at ``e`` of the version that scored the run (the model
    predicts ``[cutoff, cutoff + e)`` from the same inputs); for every other
    model, or when that version is gone, the pro-rata rule of
    :func:`~ltvcast.monitor.checks.partial_expectation_prorata`. Realised:
    :func:`ltvcast.features.horizon_labels` over ``[cutoff, cutoff + e)``.
    ``policy.baseline``: ``last_year`` judges the error minus
    :func:`same_window_error` (the recipe's error on the same window a year
    earlier); ``seasonal_index`` scales the expected total by
    :func:`~ltvcast.monitor.checks.seasonal_index`; ``none`` judges the raw error.

    Returns:
        (rows, decile calibration, notes); no rows when no run qualifies.
    """
    store = history.store
    runs = store.score_runs(model.name)
    at = to_day(at)
    if runs.empty:
        return [], pd.DataFrame(), [f"no scoring run of {model.name} is logged (run `ltvcast score --db ...`)"]
    runs = runs[runs["cutoff"] + pd.to_timedelta(policy.min_elapsed_days, unit="D") <= at]
    if runs.empty:
        return [], pd.DataFrame(), [f"no logged run of {model.name} has {policy.min_elapsed_days:g} days matured"]
    run = runs.sort_values(["cutoff", "run_id"]).iloc[-1]
    cutoff, horizon = run["cutoff"], float(run["horizon_days"])
    elapsed = float(min((at - cutoff).days, round(horizon)))
    logged = store.score_run_predictions(int(run["run_id"]))
    notes = []
    spend, p0 = logged["pred_spend"].to_numpy(float), logged["p_churn"].to_numpy(float)
    rule = "full horizon"
    if elapsed < round(horizon):
        spend, p0 = partial_expectation_prorata(spend, p0, elapsed, horizon)
        rule = "pro rata"
        if run["model_kind"] in BTYD_KINDS:
            try:
                scorer = load_model(f"{run['model_name']}:{int(run['model_version'])}", registry).forecaster
                exact = scorer.predict_inputs(scorer.inputs(history, cutoff, elapsed), cutoff, elapsed)
                exact = logged[["customer_id"]].merge(exact[["customer_id", "pred_spend", "p_churn"]],
                                                      on="customer_id", how="left")
                if exact["pred_spend"].notna().all():
                    spend, p0 = exact["pred_spend"].to_numpy(float), exact["p_churn"].to_numpy(float)
                    rule = "exact BTYD expectation"
            except RegistryError:
                notes.append(f"{run['model']} is no longer in the registry: pro-rata expectation used")
    labels = horizon_labels(history.transactions, logged["customer_id"], cutoff, elapsed,
                            timezone=history.timezone, revenue_basis=history.revenue_basis)
    labels = logged[["customer_id"]].merge(labels, on="customer_id", how="left").fillna(0.0)
    season, base = 1.0, None
    if policy.baseline == "seasonal_index":
        season = seasonal_index(history.transactions, cutoff, elapsed)
    elif policy.baseline == "last_year":
        scorer = model.forecaster
        if int(run["model_version"]) != model.version:
            try:
                scorer = load_model(f"{run['model_name']}:{int(run['model_version'])}", registry).forecaster
            except RegistryError:
                pass
        base = same_window_error(history, scorer, str(run["model_kind"]), cutoff, elapsed, horizon)
        if base is None:
            notes.append("less than a year of history before the run: live error judged without a baseline")
    subject = f"run {int(run['run_id'])} ({run['model']}, {cutoff.date()}, {rule})"
    rows, deciles = accuracy_rows(subject, spend, p0, labels["actual_transactions"], labels["actual_spend"], policy,
                                  elapsed_days=elapsed, horizon_days=horizon, season=season, baseline_error=base)
    return rows, deciles, notes


#: Least history (days) before the baseline window's cutoff.
MIN_BASELINE_HISTORY_DAYS = 182


def same_window_error(history: History, forecaster, kind: str, cutoff, elapsed_days: float,
                      horizon_days: float) -> float | None:
    """Total spend error (%) the same fitted model makes on the same calendar window 52 weeks before ``cutoff``.

    The model (its fitted parameters, no refit) predicts ``[b, b + e)`` with
    ``b = cutoff − 364 days`` from the data before ``b`` (exact expectation
    for BTYD kinds, pro rata of its horizon prediction otherwise, as in
    :func:`live_accuracy`), compared with what happened then
    (:func:`ltvcast.metrics.total_error_pct`). It measures the model's usual
    error in that season (a BTYD model has no calendar; the weeks after a
    holiday peak are over-predicted every year), so the live error minus it
    isolates a change of the shop. The parameters were fitted on data that
    may include that window (population-level parameters: a small in-sample
    effect, stated in docs/monitoring.md).

    Args:
        history: the shop's data; forecaster: fitted; kind: its catalog name.
        cutoff: the live run's cutoff; elapsed_days, horizon_days: e and H.

    Returns:
        The error in percent, or None when fewer than
        :data:`MIN_BASELINE_HISTORY_DAYS` days of data precede ``b`` or the
        model cannot predict there.
    """
    b = to_day(cutoff) - pd.Timedelta(days=364)
    first = history.transactions["timestamp"].min()
    if pd.isna(first) or (b - to_day(first)).days < MIN_BASELINE_HISTORY_DAYS:
        return None
    try:
        if kind in BTYD_KINDS or elapsed_days >= round(horizon_days):
            days = elapsed_days if kind in BTYD_KINDS else horizon_days
            pred = forecaster.predict_inputs(forecaster.inputs(history, b, days), b, days)
            spend = pred["pred_spend"].to_numpy(float)
        else:
            pred = forecaster.predict_inputs(forecaster.inputs(history, b, horizon_days), b, horizon_days)
            spend, _ = partial_expectation_prorata(pred["pred_spend"], pred["p_churn"], elapsed_days, horizon_days)
    except LtvcastError:
        return None
    labels = horizon_labels(history.transactions, pred["customer_id"], b, elapsed_days,
                            timezone=history.timezone, revenue_basis=history.revenue_basis)
    labels = pred[["customer_id"]].merge(labels, on="customer_id", how="left").fillna(0.0)
    return total_error_pct(labels["actual_spend"].to_numpy(float), spend)


def run_monitor(
    db: str | Path,
    model: str,
    *,
    at=None,
    policy: Policy | str | Path | None = None,
    registry: str | Path = DEFAULT_ROOT,
    log: bool = True,
) -> MonitorResult:
    """Monitor a registered model on a store at ``at``: drift, live accuracy, data health, model age.

    Args:
        db: the store (DuckDB file).
        model: ``NAME`` (promoted, else latest) or ``NAME:VERSION``.
        at: the monitored cutoff (default: the day after the store's
            observation end, i.e. "now"); features use data strictly before it.
        policy: a :class:`Policy`, a YAML path, or None (defaults).
        registry: the model registry folder.
        log: append the checks to the store's ``monitor_log``.

    Returns:
        A :class:`MonitorResult`.

    Raises:
        RegistryError: unknown model. DataError: missing/empty store.
        CutoffError: ``at`` after the day following the data, or before the model's training cutoff.
        LtvcastError: a bad policy.
    """
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    registered = load_model(model, registry)
    label = f"{registered.name}:{registered.version}"
    history = open_history(db=db)
    notes: list[str] = []
    try:
        day = to_day(at) if at is not None else to_day(history.observation_end) + pd.Timedelta(days=1)
        check_cutoff(day, history.observation_end)
        trained = to_day(registered.manifest["cutoff"])
        if day < trained:
            raise CutoffError(f"monitored day {day.date()} is before {label}'s training cutoff {trained.date()}: "
                              "the model has seen the data after it; monitor at or after the cutoff")
        start, end = horizon_window(day, float(registered.manifest["horizon_days"]))
        days = float((end - start).days)
        rows: list[dict] = []
        reference = read_reference(registered)
        if reference is None or "error" in reference:
            notes.append(f"{label} has no drift reference (registered before monitoring existed): retrain it")
        else:
            forecaster = registered.forecaster
            inputs = forecaster.inputs(history, start, days)
            preds = forecaster.predict_inputs(inputs, start, days)
            rows += drift_rows(reference, inputs, preds, pol)
        acc, deciles, acc_notes = live_accuracy(history, registered, day, pol, registry)
        rows += acc
        notes += acc_notes
        rows += data_health_rows(history.store, day, pol)
        age = float((day - to_day(registered.manifest["cutoff"])).days)
        rows.append(row("model_age", label, "days", age, pol.model_age_days, "days since the training cutoff"))
    finally:
        history.store.close()
    checks = pd.DataFrame(rows, columns=["check_kind", "subject", "statistic", "value", "warn", "alert", "status",
                                         "detail"])
    result = MonitorResult(label, day, worst(checks["status"]), checks, deciles, notes)
    if log:
        frame = checks.assign(checked_at=pd.Timestamp(datetime.now(timezone.utc).replace(tzinfo=None)),
                              model=label, at=day.tz_localize(None).date())
        with Store.open(db) as store:
            store.log_monitor(frame)
    return result


def check_webhook_url(url: str) -> None:
    """Refuse a webhook URL that is not http(s), before any check runs.

    Raises:
        LtvcastError: ``url`` does not start with ``http://`` or ``https://``.
    """
    if not url.startswith(("http://", "https://")):
        raise LtvcastError(f"webhook URL must start with http:// or https://, got {url!r}")


def post_webhook(url: str, result: MonitorResult, *, timeout: float = 10.0) -> int:
    """POST the result as JSON (``MonitorResult.to_dict`` plus ``alerts``: the warn/alert rows) to ``url``.

    Returns:
        The HTTP status code (2xx).

    Raises:
        LtvcastError: not an http(s) URL, the receiver is unreachable or answers ≥ 300.
    """
    check_webhook_url(url)
    body = result.to_dict()
    body["alerts"] = [c for c in body["checks"] if c["status"] in ("warn", "alert")]
    body["text"] = (f"ltvcast monitor: {result.model} at {body['at']}: {result.status.upper()} "
                    f"({len(body['alerts'])} checks over threshold)")
    data = json.dumps(body, allow_nan=False, default=str).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raise LtvcastError(f"webhook {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LtvcastError(f"cannot reach webhook {url}: {getattr(exc, 'reason', exc)}") from None
    if status >= 300:
        raise LtvcastError(f"webhook {url} answered {status}")
    return status
