"""The checks of one monitoring run, as rows: input and prediction drift, live accuracy, data health, model age.

Every check returns rows of the ``monitor_log`` layout (without
``checked_at``, ``model``, ``at``): ``check_kind, subject, statistic,
value, warn, alert, status, detail``; ``status`` is ``ok``, ``warn``,
``alert`` or ``info`` (reported, not judged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ltvcast.metrics import (
    churn_auc,
    churn_labels,
    decile_calibration,
    decile_mape,
    normalized_gini,
    total_error_pct,
)
from ltvcast.monitor.policy import Policy, Threshold
from ltvcast.monitor.stats import ks_sketch, psi_sketch, wasserstein_sketch

__all__ = [
    "BTYD_KINDS",
    "accuracy_rows",
    "data_health_rows",
    "drift_rows",
    "partial_expectation_prorata",
    "row",
    "seasonal_index",
    "worst",
]

#: Model kinds whose partial-horizon expectation is exact (closed-form cumulative expectations).
BTYD_KINDS = ("bgnbd", "paretonbd")
_ORDER = {"info": 0, "ok": 1, "warn": 2, "alert": 3}


def row(kind: str, subject: str, statistic: str, value: float, threshold: Threshold | None, detail: str,
        status: str | None = None) -> dict:
    """One check row; ``status`` defaults to ``threshold.status(value)`` (``info`` without a threshold)."""
    value = float(value) if value is not None else float("nan")
    return {
        "check_kind": kind,
        "subject": subject,
        "statistic": statistic,
        "value": value,
        "warn": threshold.warn if threshold else None,
        "alert": threshold.alert if threshold else None,
        "status": status or (threshold.status(value) if threshold else "info"),
        "detail": detail,
    }


def worst(statuses) -> str:
    """The most severe of ``statuses`` (alert > warn > ok > info); ``ok`` when empty or only info."""
    top = max((_ORDER.get(s, 0) for s in statuses), default=1)
    return {0: "ok", 1: "ok", 2: "warn", 3: "alert"}[top]


# ------------------------------------------------------------------------------------------------ drift
def drift_rows(reference: dict, inputs: pd.DataFrame, predictions: pd.DataFrame, policy: Policy) -> list[dict]:
    """Input and prediction drift of the current data against a model's reference.

    Args:
        reference: the model's ``reference.json`` (:func:`ltvcast.registry.read_reference`).
        inputs: the model's inputs at the current cutoff (one row per customer).
        predictions: its predictions there (``pred_spend``, ``p_churn``, ...).
        policy: thresholds (PSI, normalised Wasserstein; ``report_only`` columns get ``info``).

    Returns:
        Per column of the reference: a ``psi``, a ``wasserstein`` and a ``ks``
        row (KS is always ``info``); a column missing now is an ``alert``.
    """
    out: list[dict] = []
    for kind, frame, sketches in (("input_drift", inputs, reference.get("inputs") or {}),
                                  ("prediction_drift", predictions, reference.get("predictions") or {})):
        for column, sketch in sketches.items():
            if column not in frame.columns:
                out.append(row(kind, column, "present", 0.0, None, "column missing at the current cutoff", "alert"))
                continue
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
            judged = column not in policy.report_only
            out.append(row(kind, column, "psi", psi_sketch(sketch, values), policy.psi if judged else None,
                           f"PSI over the reference deciles ({len(sketch['shares'])} bins)"))
            out.append(row(kind, column, "wasserstein", wasserstein_sketch(sketch, values),
                           policy.wasserstein if judged else None, "Wasserstein-1 / reference std"))
            out.append(row(kind, column, "ks", ks_sketch(sketch, values), None, "KS vs the reference quantiles"))
    return out


# ------------------------------------------------------------------------------------------------ accuracy
def partial_expectation_prorata(pred_spend, p_churn, elapsed_days: float, horizon_days: float):
    """Expected spend and P(no purchase) over the first ``elapsed_days`` of a horizon, for models without a trajectory.

    Rule (stated, not derived from the model): spend pro rata,
    ``pred_spend · e/H``; no-purchase probability ``p_churn^(e/H)``, exact
    when purchases are a Poisson process of constant rate over the horizon
    (P(0 in e) = exp(−λe) = P(0 in H)^(e/H)). Ranking by it equals ranking
    by ``p_churn``, so the churn AUC does not depend on the rule.

    Args:
        pred_spend, p_churn: shape (n,), for the whole horizon.
        elapsed_days: e, 0 < e ≤ H.
        horizon_days: H.

    Returns:
        ``(spend_e, p_churn_e)``, arrays of shape (n,).
    """
    f = float(elapsed_days) / float(horizon_days)
    return np.asarray(pred_spend, dtype=np.float64) * f, np.asarray(p_churn, dtype=np.float64) ** f


def seasonal_index(tx: pd.DataFrame, cutoff, elapsed_days: float) -> float:
    """Last year's seasonal level of the window ``[cutoff, cutoff + e)``: how busy those calendar days are.

    ``s = (revenue per day over [c − 364, c − 364 + e)) / (revenue per day
    over the 364 days centred on that window)``: the same weekdays a year
    (52 weeks) earlier, against the level of the surrounding year, so shop
    growth cancels. A model without a calendar (BTYD) expects a flat rate;
    its expectation × s is compared with what was realised. 1.0 when the
    data do not reach back far enough (or the year's revenue is ≤ 0).

    Args:
        tx: transactions (``timestamp`` UTC, ``amount``).
        cutoff: first day of the window; elapsed_days: e (days).
    """
    c = pd.Timestamp(cutoff)
    c = c.tz_localize("UTC") if c.tzinfo is None else c.tz_convert("UTC")
    e = int(round(elapsed_days))
    lo = c - pd.Timedelta(days=364)
    year_lo = lo + pd.Timedelta(days=e / 2.0 - 182)
    stamps = tx["timestamp"]
    stamps = stamps.dt.tz_localize("UTC") if stamps.dt.tz is None else stamps.dt.tz_convert("UTC")
    if len(stamps) == 0 or stamps.min() > year_lo + pd.Timedelta(days=7):
        return 1.0
    amount = pd.to_numeric(tx["amount"], errors="coerce").to_numpy(np.float64)
    ns = stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")

    def per_day(a: pd.Timestamp, days: float) -> float:
        lo_, hi_ = a.tz_localize(None).to_datetime64(), (a + pd.Timedelta(days=days)).tz_localize(None).to_datetime64()
        return float(amount[(ns >= lo_) & (ns < hi_)].sum()) / days

    window = per_day(lo, max(e, 1))
    year = per_day(year_lo, 364.0)
    return float(window / year) if year > 0 and window > 0 else 1.0


def accuracy_rows(
    subject: str,
    expected_spend,
    p_churn,
    actual_transactions,
    actual_spend,
    policy: Policy,
    *,
    elapsed_days: float,
    horizon_days: float,
    season: float = 1.0,
    baseline_error: float | None = None,
    deciles: bool = True,
) -> tuple[list[dict], pd.DataFrame]:
    """Live accuracy of one logged run over the elapsed part of its horizon.

    Args:
        subject: the run's label (e.g. ``run 3 (2024-01-01, 28/182 d)``).
        expected_spend: expected spend per customer over the elapsed days, shape (n,).
        p_churn: P(no purchase over the elapsed days), shape (n,).
        actual_transactions, actual_spend: realised over the same days, shape (n,).
        policy: thresholds.
        elapsed_days, horizon_days: e and H (days).
        season: :func:`seasonal_index` (multiplies the expected total only).
        baseline_error: the total error (%) the same fitted model makes on the
            same calendar window a year earlier (see
            :func:`ltvcast.monitor.run.live_accuracy`); when given, the judged
            statistic is ``excess_total_error_pct`` = error − baseline (the
            model's usual seasonal bias removed) and ``total_error_pct`` is info.
        deciles: compute the decile calibration (and its ``decile_mape`` row).

    Returns:
        Rows ``total_error_pct`` (of the seasonally scaled expected total,
        :func:`ltvcast.metrics.total_error_pct`), ``gini_norm``
        (:func:`ltvcast.metrics.normalized_gini`), ``churn_auc``
        (:func:`ltvcast.metrics.churn_auc`), ``decile_mape`` of the decile
        calibration (:func:`ltvcast.metrics.decile_mape`, a fraction; info), and the decile calibration table
        (:func:`ltvcast.metrics.decile_calibration`).
    """
    exp = np.asarray(expected_spend, dtype=np.float64)
    act = np.asarray(actual_spend, dtype=np.float64)
    churned = churn_labels(np.asarray(actual_transactions, dtype=np.float64))
    part = f"{elapsed_days:g} of {horizon_days:g} days"
    err = total_error_pct(act, exp * season)
    gini = normalized_gini(act, exp)
    auc = churn_auc(churned, np.asarray(p_churn, dtype=np.float64))
    table = decile_calibration(act, exp) if deciles and len(exp) >= 10 else pd.DataFrame()
    # a fraction, as in the backtest and `ltvcast retrain` (one statistic, one unit)
    mape = decile_mape(act, exp * season) if len(table) else float("nan")
    rows = [
        row("live_accuracy", subject, "total_error_pct", err, policy.total_error_pct,
            f"expected total x seasonal index {season:.3f} vs realised, {part}"),
        row("live_accuracy", subject, "gini_norm", gini, policy.gini_norm, f"normalized Gini, {part}"),
        row("live_accuracy", subject, "churn_auc", auc, policy.churn_auc, f"AUC of p(no purchase), {part}"),
        row("live_accuracy", subject, "decile_mape", mape, None, f"mean |error| of the decile totals, {part}"),
    ]
    rows[0]["status"] = policy.total_error_pct.status(abs(err))  # judged on |error|, logged signed
    if baseline_error is not None and np.isfinite(baseline_error):
        rows[0].update(warn=None, alert=None, status="info")
        excess = err - baseline_error
        rows.insert(1, row("live_accuracy", subject, "excess_total_error_pct", excess, policy.total_error_pct,
                           f"total error minus the {baseline_error:+.1f}% the model makes on the same window a year "
                           f"earlier, {part}"))
        rows[1]["status"] = policy.total_error_pct.status(abs(excess))
    return rows, table


# ------------------------------------------------------------------------------------------------ data health
def data_health_rows(store, at, policy: Policy, *, ingest_log: pd.DataFrame | None = None) -> list[dict]:
    """Daily volumes by source against a baseline, quarantine rate and late-arriving rows.

    * ``volume_ratio`` per source kind (``ingest_log.kind`` of the ingest that
      wrote each transaction): transactions per day over the ``window_days``
      before ``at`` ÷ per day over the ``baseline_days`` before that window
      (lower is worse; NaN, ``info``, when the baseline is empty; ``info``
      when it holds fewer than ``min_baseline_rows`` rows: too few to judge).
    * ``quarantine_rate``: quarantined ÷ read rows of the ingests that
      started before ``at`` (all ingests when none has a start time).
    * ``late_share``: of the rows of the latest ingest, the share dated
      before the last day the earlier ingests had already covered
      (``max(last_day)``): data that arrived after later data.

    Args:
        store: an open :class:`ltvcast.store.Store`.
        at: the monitored day (exclusive end of the windows).
        policy: thresholds and windows.
        ingest_log: ``store.ingest_log()`` when the caller has it already
            (a batch of days); read from the store otherwise.
    """
    day = pd.Timestamp(at)
    day = (day.tz_localize("UTC") if day.tzinfo is None else day.tz_convert("UTC")).tz_localize(None)
    w, b = policy.window_days, policy.baseline_days
    lo_w, lo_b = day - pd.Timedelta(days=w), day - pd.Timedelta(days=w + b)
    frame = store.fetch_df(
        "SELECT coalesce(l.kind, 'transactions') AS kind, "
        "count(*) FILTER (WHERE t.timestamp >= ? AND t.timestamp < ?) AS recent, "
        "count(*) FILTER (WHERE t.timestamp >= ? AND t.timestamp < ?) AS base "
        "FROM transactions t LEFT JOIN ingest_log l USING (ingest_id) "
        "WHERE t.timestamp >= ? AND t.timestamp < ? GROUP BY 1 ORDER BY 1",
        [lo_w, day, lo_b, lo_w, lo_b, day],
    )
    out = []
    for r in frame.itertuples():
        ratio = (r.recent / w) / (r.base / b) if r.base else float("nan")
        judged = r.base >= policy.min_baseline_rows
        out.append(row("data_health", f"volume:{r.kind}", "volume_ratio", ratio, policy.volume_ratio if judged else None,
                       f"{r.recent} rows in the last {w} days vs {r.base} in the {b} before"
                       + ("" if judged else f" (fewer than {policy.min_baseline_rows}: not judged)")))
    if frame.empty:
        out.append(row("data_health", "volume", "volume_ratio", float("nan"), policy.volume_ratio,
                       "no transactions in the windows"))
    log = store.ingest_log() if ingest_log is None else ingest_log
    if len(log):
        q = log[log["started_at"].isna() | (log["started_at"] < day.tz_localize("UTC"))]
        if q.empty:  # monitoring a day before every ingest (a replay): judge the ingests there are
            q = log
        read = float(q["rows_read"].fillna(0).sum())
        rate = float(q["rows_quarantined"].fillna(0).sum()) / read if read else float("nan")
        out.append(row("data_health", "quarantine", "quarantine_rate", rate, policy.quarantine_rate,
                       f"{int(q['rows_quarantined'].fillna(0).sum())} of {int(read)} rows read were quarantined"))
        last = int(log["ingest_id"].max())
        earlier = log.loc[log["ingest_id"] < last, "last_day"].dropna()
        share = 0.0
        if len(earlier):
            covered = earlier.max().tz_convert("UTC").tz_localize(None)
            n_last, n_late = store.fetch(
                "SELECT count(*), count(*) FILTER (WHERE timestamp < ?) FROM transactions WHERE ingest_id = ?",
                [covered, last])[0]
            share = n_late / n_last if n_last else 0.0
        out.append(row("data_health", "late", "late_share", share, policy.late_share,
                       f"rows of ingest {last} dated before days earlier ingests had covered"))
    return out
