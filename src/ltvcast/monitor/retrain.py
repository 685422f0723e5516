"""``ltvcast retrain``: champion/challenger retraining on the latest matured window(s).

Protocol (docs/monitoring.md):

1. The **champion** is the registered model ``NAME`` (promoted, else latest
   version). The **challenger** is the same model kind with the same
   parameters, fitted on fresh data.
2. The latest cutoff ``L`` is the day after the store's observation end.
   The latest matured window of the champion's horizon ``H`` starts at
   ``c₁ = L − H`` (whole days); with ``windows: k``, also ``c₂ = c₁ − H``, ...
3. On each window, the champion *as registered* (fitted at its own cutoff
   ``c₀``) predicts ``[cᵢ, cᵢ + H)`` from the data before ``cᵢ``; the
   challenger's recipe is fitted on the data before ``cᵢ`` and predicts the
   same window. Both are scored with the backtest's metric functions
   (:func:`window_metrics`) on the realised window. A window that starts before ``c₀`` is skipped (the
   champion has seen it); none left means *keep*.
4. The challenger wins when, averaged over the windows, its ``|total spend
   error|`` is at least ``min_total_error_gain_pct`` points below the
   champion's, it is at most ``max_metric_loss`` worse on each listed metric
   (``gini_norm``, ``churn_auc``: higher is better), and its own ``|total
   spend error|`` is at most ``guard_total_error_pct`` (the guard).
5. A winner is fitted on the data before ``L``, registered as the next
   version and promoted. Losers are not registered (an unpromoted newer
   version would otherwise become ``NAME``'s default).
6. The decision, with both metric sets, is appended to
   ``REGISTRY/NAME/decisions.jsonl``, keyed by the SHA-256 of the data
   fingerprint (:func:`ltvcast.registry.data_fingerprint` before ``L``) and
   ``L``: a rerun on the same data returns the recorded decision and fits
   nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ltvcast.data.datasets import History, open_history
from ltvcast.errors import CutoffError
from ltvcast.features import horizon_labels
from ltvcast.metrics import (
    churn_auc,
    churn_labels,
    decile_mape,
    normalized_gini,
    rmse,
    top_decile_capture,
    total_error_pct,
)
from ltvcast.monitor.policy import Policy, load_policy
from ltvcast.registry import DEFAULT_ROOT, data_fingerprint, load_model, promote, save_model
from ltvcast.timeutil import check_cutoff, to_day

__all__ = ["DECISIONS", "RetrainDecision", "compare", "read_decisions", "retrain", "window_metrics"]

DECISIONS = "decisions.jsonl"
#: Metrics recorded for each side (columns of :func:`ltvcast.metrics.evaluate`).
RECORDED = ("total_spend_error_pct", "gini_norm", "churn_auc", "spend_rmse", "decile_mape", "top_decile_capture")


@dataclass
class RetrainDecision:
    """One champion/challenger decision (a line of ``decisions.jsonl``).

    Attributes:
        key: SHA-256 of ``fingerprint|cutoff`` (the data the decision is about).
        name: registry name; champion: ``NAME:VERSION``; challenger: the
            version registered when promoted, else None.
        cutoff: the latest cutoff ``L`` (ISO day); windows: the window starts.
        horizon_days: ``H``.
        champion_metrics, challenger_metrics: metric → mean over the windows.
        promoted: whether the challenger was promoted.
        reason: why, in one sentence.
        decided_at: UTC time; dry_run: nothing was written;
        repeated: the decision was read back (same data), not taken now.
    """

    key: str
    name: str
    champion: str
    challenger: str | None
    cutoff: str
    horizon_days: float
    windows: list[str]
    champion_metrics: dict[str, float | None]
    challenger_metrics: dict[str, float | None]
    promoted: bool
    reason: str
    decided_at: str
    fingerprint: str
    dry_run: bool = False
    repeated: bool = False
    policy: dict = field(default_factory=dict)


def read_decisions(name: str, registry: str | Path = DEFAULT_ROOT) -> list[dict]:
    """Every recorded decision of ``name`` (oldest first); [] when none."""
    path = Path(registry) / name / DECISIONS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append(path: Path, record: dict) -> None:
    line = json.dumps(record, allow_nan=False, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:  # one write of one line: appends do not interleave
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def window_metrics(history: History, forecaster, cutoff, horizon_days: float, label: str) -> dict[str, float]:
    """Metrics of a fitted forecaster predicting ``[cutoff, cutoff + H)`` against what happened.

    The realised window is :func:`ltvcast.features.horizon_labels` (as the
    backtest's actuals); each metric is the function of :mod:`ltvcast.metrics`
    the backtest uses (:func:`~ltvcast.metrics.total_error_pct`,
    :func:`~ltvcast.metrics.normalized_gini`, :func:`~ltvcast.metrics.churn_auc`
    on :func:`~ltvcast.metrics.churn_labels`, :func:`~ltvcast.metrics.rmse`,
    :func:`~ltvcast.metrics.decile_mape`, :func:`~ltvcast.metrics.top_decile_capture`).

    Returns:
        :data:`RECORDED` metric → value (NaN where undefined).
    """
    preds = forecaster.predict(history, cutoff, horizon_days)
    labels = horizon_labels(history.transactions, preds["customer_id"], cutoff, horizon_days,
                            timezone=history.timezone, revenue_basis=history.revenue_basis)
    labels = preds[["customer_id"]].merge(labels, on="customer_id", how="left").fillna(0.0)
    actual, pred = labels["actual_spend"].to_numpy(float), preds["pred_spend"].to_numpy(float)
    churned = churn_labels(labels["actual_transactions"].to_numpy(float))
    return {
        "total_spend_error_pct": total_error_pct(actual, pred),
        "gini_norm": normalized_gini(actual, pred),
        "churn_auc": churn_auc(churned, preds["p_churn"].to_numpy(float)),
        "spend_rmse": rmse(actual, pred),
        "decile_mape": decile_mape(actual, pred),
        "top_decile_capture": top_decile_capture(actual, pred),
    }


def _mean(metrics: list[dict[str, float]]) -> dict[str, float | None]:
    out = {}
    for m in RECORDED:
        vals = [d[m] for d in metrics if np.isfinite(d[m])]
        out[m] = float(np.mean(vals)) if vals else None
    return out


def compare(champion: dict, challenger: dict, policy: Policy) -> tuple[bool, str]:
    """The decision rule (module doc, step 4) on mean metrics; returns (promote, reason).

    Raises nothing; a missing metric on either side keeps the champion.
    """
    ce, ne = champion.get("total_spend_error_pct"), challenger.get("total_spend_error_pct")
    if ce is None or ne is None:
        return False, "total spend error undefined on the window: champion kept"
    if abs(ne) > policy.guard_total_error_pct:
        return False, f"challenger fails the guard: |total error| {abs(ne):.1f}% > {policy.guard_total_error_pct:g}%"
    gain = abs(ce) - abs(ne)
    if gain < policy.min_total_error_gain_pct:
        return False, (f"challenger's |total error| {abs(ne):.1f}% is not {policy.min_total_error_gain_pct:g} points "
                       f"below the champion's {abs(ce):.1f}%")
    for metric, loss in policy.max_metric_loss.items():
        a, b = champion.get(metric), challenger.get(metric)
        if a is not None and (b is None or b < a - loss):
            return False, f"challenger's {metric} {b} is more than {loss:g} below the champion's {a:.4f}"
    return True, f"challenger wins: |total error| {abs(ne):.1f}% vs {abs(ce):.1f}% and no metric worse beyond the margins"


def retrain(
    db: str | Path,
    name: str,
    *,
    policy: Policy | str | Path | None = None,
    registry: str | Path = DEFAULT_ROOT,
    dry_run: bool = False,
    at=None,
    on_step: Callable[[str], None] | None = None,
) -> RetrainDecision:
    """Run the champion/challenger protocol of the module doc for registry name ``name`` on the store ``db``.

    Args:
        db: the store; name: registry name (the champion is its promoted, else latest, version).
        policy: :class:`Policy`, YAML path or None (defaults).
        registry: registry folder; dry_run: decide but register, promote and record nothing.
        at: the latest cutoff ``L`` (default: the day after the store's
            observation end); data on or after it are ignored (a replay).
        on_step: called with a short text before each step (progress).

    Returns:
        The :class:`RetrainDecision` (``repeated`` when read back for the same data).

    Raises:
        RegistryError: unknown name; DataError: missing store; ConvergenceError: a fit failed;
        CutoffError: ``at`` after the day following the data.
    """
    step = on_step or (lambda _msg: None)
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    champion = load_model(name, registry)
    history = open_history(db=db)
    try:
        latest = to_day(at) if at is not None else to_day(history.observation_end) + pd.Timedelta(days=1)
        check_cutoff(latest, history.observation_end)
        fp = data_fingerprint(history, latest)["fingerprint"]
        key = hashlib.sha256(f"{fp}|{latest.date().isoformat()}".encode()).hexdigest()
        for record in read_decisions(champion.name, registry):
            if record.get("key") == key and not record.get("dry_run"):
                return RetrainDecision(**{**record, "repeated": True})
        if latest <= to_day(champion.manifest["cutoff"]):
            raise CutoffError(
                f"--at {latest.date()} is not after the champion {champion.name}:{champion.version}'s training "
                f"cutoff {to_day(champion.manifest['cutoff']).date()}: there is nothing newer to retrain on"
            )
        horizon = float(champion.manifest["horizon_days"])
        c0 = to_day(champion.manifest["cutoff"])
        starts = [latest - pd.Timedelta(days=round(horizon) * (k + 1)) for k in range(pol.windows)]
        starts = [s for s in starts if s >= c0]
        label = f"{champion.name}:{champion.version}"
        kind = type(champion.forecaster)
        params = champion.manifest["model"]["params"]
        champ_m, chal_m = [], []
        for start in starts:
            step(f"backtest {label} on {start.date()}")
            champ_m.append(window_metrics(history, champion.forecaster, start, horizon, label))
            step(f"fit challenger at {start.date()}")
            fresh = kind(**params).fit(history, start, horizon)
            chal_m.append(window_metrics(history, fresh, start, horizon, "challenger"))
        champ_mean, chal_mean = _mean(champ_m), _mean(chal_m)
        if not starts:
            win, reason = False, (f"no matured {horizon:g}-day window starts on or after the champion's cutoff "
                                  f"{c0.date()}: champion kept")
        else:
            win, reason = compare(champ_mean, chal_mean, pol)
        challenger = None
        if win and not dry_run:
            step(f"fit challenger at {latest.date()}")
            final = kind(**params).fit(history, latest, horizon)
            saved = save_model(final, name=champion.name, cutoff=latest, horizon_days=horizon, history=history,
                               metrics={f"backtest_{k}": v for k, v in chal_mean.items()}, root=registry)
            promote(f"{saved.name}:{saved.version}", registry)
            challenger = f"{saved.name}:{saved.version}"
    finally:
        history.store.close()
    decision = RetrainDecision(
        key=key, name=champion.name, champion=label, challenger=challenger, cutoff=latest.date().isoformat(),
        horizon_days=horizon, windows=[s.date().isoformat() for s in starts], champion_metrics=champ_mean,
        challenger_metrics=chal_mean, promoted=bool(win and not dry_run), reason=reason,
        decided_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), fingerprint=fp, dry_run=dry_run,
        policy=pol.raw.get("retrain", {}),
    )
    if not dry_run:
        record = asdict(decision)
        record.pop("repeated")
        _append(Path(registry) / champion.name / DECISIONS, record)
    return decision
