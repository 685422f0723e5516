"""The monitoring and retraining policy: thresholds in YAML, with documented defaults.

Every threshold is a ``{warn: x, alert: y}`` pair (either may be null: that
level is never raised). For "higher is worse" statistics a value ≥ warn is a
warning, ≥ alert an alert; for "lower is worse" ones (``churn_auc``,
``gini_norm``, the volume ratio) a value ≤ warn / ≤ alert. The defaults and
their sources are in :data:`DEFAULT_POLICY_YAML` and docs/monitoring.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltvcast.errors import LtvcastError
from ltvcast.yamlfile import read_yaml

__all__ = ["DEFAULT_POLICY_YAML", "Policy", "Threshold", "load_policy", "policy_from_dict"]

#: The default policy, as written by ``ltvcast monitor --write-policy`` (commented YAML).
DEFAULT_POLICY_YAML = """\
# ltvcast monitoring and retraining policy (docs/monitoring.md)
drift:
  # PSI: < 0.1 no significant shift, 0.1-0.25 moderate, > 0.25 significant
  # (Siddiqi 2006, Credit Risk Scorecards, ch. 8; Yurdakul 2018).
  psi: {warn: 0.1, alert: 0.25}
  # Wasserstein-1 over the reference standard deviation (Evidently's drift threshold for numerical
  # columns of more than 1,000 rows is 0.1). Logged, not judged by default: on a stable simulated shop
  # the slow ageing of the customer base moves it past 0.2 within a year (docs/monitoring.md).
  wasserstein: {warn: null, alert: null}
  # KS is computed and logged, never judged (with thousands of customers any shift is "significant").
  # Inputs that grow with the shop's age by construction (customer age T, lifetime totals)
  # drift on a stable shop too: reported, never judged.
  report_only: [T, n_transactions, total_spend, unmatched_refunds, unmatched_refund_amount]
accuracy:
  min_elapsed_days: 28        # a logged run is compared once this much of its horizon has passed
  # what the live error is compared with: last_year = the error the same fitted model makes on the
  # same calendar window 52 weeks earlier (removes its seasonal bias), seasonal_index =
  # expected total x last year's relative revenue of those days, none = the raw error
  baseline: last_year
  total_error_pct: {warn: 30, alert: 50}   # |predicted - realised| / realised (minus the baseline), percent
  churn_auc: {warn: 0.6, alert: 0.5}       # lower is worse
  gini_norm: {warn: null, alert: null}     # lower is worse; report only by default
data_health:
  window_days: 7              # recent volume window
  baseline_days: 28           # the baseline before it
  volume_ratio: {warn: 0.6, alert: 0.3}    # recent daily volume / baseline daily volume; lower is worse
  min_baseline_rows: 200      # a source with fewer rows in the baseline is reported, not judged
  quarantine_rate: {warn: 0.05, alert: 0.2}
  late_share: {warn: 0.01, alert: 0.05}
model_age_days: {warn: 365, alert: null}
retrain:
  # champion/challenger on the latest matured window(s): the challenger (the champion's model
  # kind and parameters fitted on fresh data) is promoted only when
  min_total_error_gain_pct: 10.0     # its |total spend error| is this many points smaller (on a
                                     # stable simulated shop a fresh fit beat a year-old one by 7.7),
  max_metric_loss: {gini_norm: 0.02, churn_auc: 0.02}   # it is no worse than this on each metric,
  guard_total_error_pct: 80.0        # and its own |total spend error| is at most this (guard: a broken fit).
  windows: 1                         # latest matured windows backtested (metrics averaged)
"""

_LOWER_IS_WORSE = {"churn_auc", "gini_norm", "volume_ratio"}


@dataclass(frozen=True)
class Threshold:
    """A warn/alert pair; ``lower_is_worse`` flips the comparison."""

    warn: float | None = None
    alert: float | None = None
    lower_is_worse: bool = False

    def status(self, value: float) -> str:
        """``ok``, ``warn`` or ``alert`` for ``value``; ``info`` when NaN or without thresholds."""
        if value is None or value != value or (self.warn is None and self.alert is None):
            return "info"
        worse = (lambda v, t: v <= t) if self.lower_is_worse else (lambda v, t: v >= t)
        if self.alert is not None and worse(value, self.alert):
            return "alert"
        if self.warn is not None and worse(value, self.warn):
            return "warn"
        return "ok"


@dataclass(frozen=True)
class Policy:
    """The parsed policy (see :data:`DEFAULT_POLICY_YAML` for every key and default)."""

    psi: Threshold
    wasserstein: Threshold
    report_only: tuple[str, ...]
    min_elapsed_days: float
    baseline: str
    total_error_pct: Threshold
    churn_auc: Threshold
    gini_norm: Threshold
    window_days: int
    baseline_days: int
    min_baseline_rows: int
    volume_ratio: Threshold
    quarantine_rate: Threshold
    late_share: Threshold
    model_age_days: Threshold
    max_metric_loss: dict[str, float] = field(default_factory=dict)
    min_total_error_gain_pct: float = 10.0
    guard_total_error_pct: float = 80.0
    windows: int = 1
    raw: dict = field(default_factory=dict)


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = dict(base)
    for key, value in over.items():
        if key not in base:
            raise LtvcastError(f"unknown policy key {where}{key!r}; known: {', '.join(base)}")
        if isinstance(base[key], dict) and key != "max_metric_loss" and not isinstance(value, dict):
            raise LtvcastError(f"policy {where}{key} must be a mapping, got {value!r}")
        if isinstance(base[key], dict) and isinstance(value, dict) and key != "max_metric_loss":
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _threshold(raw: Any, name: str) -> Threshold:
    if not isinstance(raw, dict) or set(raw) - {"warn", "alert"}:
        raise LtvcastError(f"policy {name} must be {{warn: number|null, alert: number|null}}, got {raw!r}")
    vals = {}
    for key in ("warn", "alert"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise LtvcastError(f"policy {name}.{key} must be a number or null, got {v!r}")
        vals[key] = None if v is None else float(v)
        if v is not None and (not math.isfinite(vals[key]) or (vals[key] < 0 and not name.endswith("gini_norm"))):
            raise LtvcastError(f"policy {name}.{key} must be a finite number >= 0 or null, got {v!r}")
    lower = name.split(".")[-1] in _LOWER_IS_WORSE
    w, a = vals["warn"], vals["alert"]
    if w is not None and a is not None and (w < a if lower else w > a):
        raise LtvcastError(f"policy {name}: alert {a:g} is less severe than warn {w:g} "
                           f"({'lower' if lower else 'higher'} is worse)")
    return Threshold(w, a, lower)


def _number(value: Any, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise LtvcastError(f"policy {name} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def _baseline(value: Any) -> str:
    if value not in ("last_year", "seasonal_index", "none"):
        raise LtvcastError(f"policy accuracy.baseline must be last_year, seasonal_index or none, got {value!r}")
    return str(value)


def policy_from_dict(over: dict | None = None) -> Policy:
    """The default policy with ``over`` merged in (nested keys replace the defaults').

    Raises:
        LtvcastError: an unknown key, a section that is not a mapping, a threshold that is not
            ``{warn, alert}`` finite numbers >= 0 (``gini_norm`` may be negative) or null, or
            whose alert is less severe than its warn, a negative or non-finite number, a
            non-positive window, a ``report_only`` that is not a list of names.
    """
    raw = _merge(yaml.safe_load(DEFAULT_POLICY_YAML), over or {})
    d, a, h, r = raw["drift"], raw["accuracy"], raw["data_health"], raw["retrain"]
    for name, value in (("data_health.window_days", h["window_days"]), ("data_health.baseline_days",
                        h["baseline_days"]), ("retrain.windows", r["windows"])):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LtvcastError(f"policy {name} must be a positive integer, got {value!r}")
    margins = r["max_metric_loss"] or {}
    if not isinstance(margins, dict) or not all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
            for v in margins.values()):
        raise LtvcastError("policy retrain.max_metric_loss must map metric names to finite numbers >= 0")
    report_only = d["report_only"] or []
    if not isinstance(report_only, list) or not all(isinstance(c, str) for c in report_only):
        raise LtvcastError(f"policy drift.report_only must be a list of column names, got {report_only!r}")
    if isinstance(h["min_baseline_rows"], bool) or not isinstance(h["min_baseline_rows"], int) \
            or h["min_baseline_rows"] < 0:
        raise LtvcastError(f"policy data_health.min_baseline_rows must be an integer >= 0, "
                           f"got {h['min_baseline_rows']!r}")
    return Policy(
        psi=_threshold(d["psi"], "drift.psi"),
        wasserstein=_threshold(d["wasserstein"], "drift.wasserstein"),
        report_only=tuple(report_only),
        min_elapsed_days=_number(a["min_elapsed_days"], "accuracy.min_elapsed_days"),
        baseline=_baseline(a["baseline"]),
        total_error_pct=_threshold(a["total_error_pct"], "accuracy.total_error_pct"),
        churn_auc=_threshold(a["churn_auc"], "accuracy.churn_auc"),
        gini_norm=_threshold(a["gini_norm"], "accuracy.gini_norm"),
        window_days=int(h["window_days"]),
        baseline_days=int(h["baseline_days"]),
        min_baseline_rows=int(h["min_baseline_rows"]),
        volume_ratio=_threshold(h["volume_ratio"], "data_health.volume_ratio"),
        quarantine_rate=_threshold(h["quarantine_rate"], "data_health.quarantine_rate"),
        late_share=_threshold(h["late_share"], "data_health.late_share"),
        model_age_days=_threshold(raw["model_age_days"], "model_age_days"),
        max_metric_loss={str(k): float(v) for k, v in margins.items()},
        min_total_error_gain_pct=_number(r["min_total_error_gain_pct"], "retrain.min_total_error_gain_pct"),
        guard_total_error_pct=_number(r["guard_total_error_pct"], "retrain.guard_total_error_pct"),
        windows=int(r["windows"]),
        raw=raw,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    """Read a policy YAML file (missing keys take the defaults); ``None`` gives the default policy.

    Raises:
        LtvcastError: the file is missing or not YAML, or a value is invalid (see :func:`policy_from_dict`).
    """
    if path is None:
        return policy_from_dict()
    path = Path(path)
    data = read_yaml(path, "policy")
    if data is not None and not isinstance(data, dict):
        raise LtvcastError(f"policy {path} must be a mapping of sections (drift, accuracy, ...)")
    return policy_from_dict(data or {})
