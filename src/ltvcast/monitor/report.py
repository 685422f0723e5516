"""The report's "model health" section, built from the store's ``monitor_log`` and the retraining decisions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ltvcast.evaluate.report import ReportSection
from ltvcast.monitor.retrain import read_decisions
from ltvcast.registry import DEFAULT_ROOT
from ltvcast.store import Store

__all__ = ["health_section", "latest_run"]


def latest_run(db: str | Path, model: str) -> tuple[pd.DataFrame, str] | None:
    """The checks and overall status of the latest monitoring run of ``model`` in the store.

    Args:
        db: the store (opened read only).
        model: ``NAME:VERSION`` or registry name.

    Returns:
        ``(checks, status)``: the run's ``monitor_log`` rows and ``ok``/``warn``/``alert``
        (the worst check); None when the model was never monitored.

    Raises:
        DataError: the store cannot be opened (e.g. missing, or locked by a writer).
    """
    with Store.open(db, read_only=True) as store:
        log = store.monitor_log(model)
    if log.empty:
        return None
    last = log.sort_values(["checked_at", "at"]).iloc[-1]
    checks = log[(log["checked_at"] == last["checked_at"]) & (log["model"] == last["model"]) & (log["at"] == last["at"])]
    worst = "alert" if (checks["status"] == "alert").any() else "warn" if (checks["status"] == "warn").any() else "ok"
    return checks, worst


def health_section(db: str | Path, model: str | None = None, registry: str | Path = DEFAULT_ROOT,
                   *, last_runs: int = 30) -> ReportSection | None:
    """A "Model health" :class:`~ltvcast.evaluate.report.ReportSection`, or None when no monitoring data exist.

    Args:
        db: the store (read only).
        model: registry name or ``NAME:VERSION`` (None: every model monitored).
        registry: registry folder (for ``decisions.jsonl``).
        last_runs: monitoring runs shown in the history table.

    Returns:
        Tables: the latest run's warn/alert checks (or "all checks ok"), the
        status of the last ``last_runs`` runs, and the retraining decisions
        of the model's name; None when ``monitor_log`` is empty for it.

    Raises:
        DataError: the store is missing.
    """
    with Store.open(db, read_only=True) as store:
        log = store.monitor_log(model)
    if log.empty:
        return None
    runs = (log.groupby(["checked_at", "model", "at"], as_index=False)["status"]
            .agg(lambda s: "alert" if (s == "alert").any() else "warn" if (s == "warn").any() else "ok")
            .sort_values(["checked_at", "at"]).tail(last_runs))
    last = runs.iloc[-1]
    latest = log[(log["checked_at"] == last["checked_at"]) & (log["model"] == last["model"]) & (log["at"] == last["at"])]
    flagged = latest[latest["status"].isin(["warn", "alert"])]
    show = flagged if len(flagged) else latest[latest["check_kind"] == "live_accuracy"]
    table = show[["check_kind", "subject", "statistic", "value", "warn", "alert", "status"]].round(4)
    history = runs.assign(checked_at=runs["checked_at"].dt.strftime("%Y-%m-%d %H:%M"),
                          at=runs["at"].dt.date.astype(str))
    tables = [(f"Latest run: {last['model']} at {last['at'].date()} — {last['status'].upper()}"
               + ("" if len(flagged) else " (live accuracy shown; every check ok)"), table),
              ("Monitoring runs", history[["checked_at", "model", "at", "status"]])]
    name = (model or str(last["model"])).split(":")[0]
    decisions = read_decisions(name, registry)
    if decisions:
        rows = [{"cutoff": d["cutoff"], "champion": d["champion"], "challenger": d.get("challenger") or "–",
                 "promoted": "yes" if d["promoted"] else "no",
                 "champion |err| %": _fmt(d["champion_metrics"].get("total_spend_error_pct")),
                 "challenger |err| %": _fmt(d["challenger_metrics"].get("total_spend_error_pct")),
                 "reason": d["reason"]} for d in decisions]
        tables.append(("Retraining decisions (champion/challenger)", pd.DataFrame(rows)))
    return ReportSection(
        title="Model health",
        intro=("What `ltvcast monitor` found on the live data: input and prediction drift against the "
               "model's training reference, accuracy of logged scoring runs on the part of their horizon that "
               "has passed, data health. Warn/alert use the policy's thresholds (docs/monitoring.md)."),
        tables=tables,
    )


def _fmt(v) -> str:
    return "–" if v is None else f"{abs(float(v)):.1f}"
