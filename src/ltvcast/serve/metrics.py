"""Prometheus metrics of one service instance (its own registry, served as text at ``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's metrics.

    * ``ltvcast_http_request_duration_seconds{route,method}``: latency histogram per route template;
    * ``ltvcast_http_requests_total{route,method,status}``;
    * ``ltvcast_events_applied_total{type}``, ``ltvcast_events_duplicate_total``;
    * ``ltvcast_predictions_served_total{model_version}`` (customers predicted);
    * ``ltvcast_model_info{name,version,kind}`` = 1 for the served version;
    * ``ltvcast_model_reload_failures``: promoted versions that could not be served;
    * monitoring (:meth:`set_monitoring`, from ``ltvcast monitor``'s checks):
      ``ltvcast_drift{model,kind,subject,statistic}`` (input/prediction drift: PSI,
      normalised Wasserstein, KS), ``ltvcast_live_accuracy{model,statistic}``
      (total error %, excess over baseline, normalized Gini, churn AUC of the
      latest matured scoring run), ``ltvcast_monitor_status{model}`` (0 ok,
      1 warn, 2 alert).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, reload_failures: Callable[[], float] = lambda: 0.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "ltvcast_http_request_duration_seconds", "Request latency by route template", ["route", "method"],
            buckets=_BUCKETS, registry=r,
        )
        self.requests = Counter("ltvcast_http_requests", "Requests by route and status", ["route", "method", "status"],
                                registry=r)
        self.events_applied = Counter("ltvcast_events_applied", "Events applied to the online state", ["type"],
                                      registry=r)
        self.events_duplicate = Counter("ltvcast_events_duplicate", "Events acknowledged again (id seen before)",
                                        registry=r)
        self.predictions = Counter("ltvcast_predictions_served", "Customers predicted", ["model_version"], registry=r)
        self.model_info = Gauge("ltvcast_model_info", "The served model version (1)", ["name", "version", "kind"],
                                registry=r)
        failures = Gauge("ltvcast_model_reload_failures", "Promoted versions that could not be served", registry=r)
        failures.set_function(reload_failures)
        self._model: tuple[str, str, str] | None = None
        self.drift = Gauge("ltvcast_drift", "Drift of an input or prediction vs the training reference",
                           ["model", "kind", "subject", "statistic"], registry=r)
        self.live_accuracy = Gauge("ltvcast_live_accuracy", "Accuracy of the latest matured scoring run",
                                   ["model", "statistic"], registry=r)
        self.monitor_status = Gauge("ltvcast_monitor_status", "Latest monitoring status: 0 ok, 1 warn, 2 alert",
                                    ["model"], registry=r)

    def set_model(self, name: str, version: int, kind: str) -> None:
        """Record the served version (the previous one's series is removed)."""
        if self._model is not None:
            self.model_info.remove(*self._model)
        self._model = (name, str(version), kind)
        self.model_info.labels(*self._model).set(1)

    def set_monitoring(self, model: str, checks, status: str) -> None:
        """Set the monitoring gauges from one monitoring run (replacing the earlier run's series).

        Args:
            model: ``NAME:VERSION``.
            checks: rows with ``check_kind, subject, statistic, value`` (the
                ``monitor_log`` layout, e.g. ``MonitorResult.checks`` or the
                latest run read back from the store); NaN values are skipped.
            status: ``ok``, ``warn`` or ``alert``.
        """
        self.drift.clear()
        self.live_accuracy.clear()
        for r in checks.itertuples():
            if r.value != r.value:
                continue
            if r.check_kind in ("input_drift", "prediction_drift"):
                self.drift.labels(model, r.check_kind, r.subject, r.statistic).set(r.value)
            elif r.check_kind == "live_accuracy":
                self.live_accuracy.labels(model, r.statistic).set(r.value)
        self.monitor_status.labels(model).set({"ok": 0, "warn": 1, "alert": 2}.get(status, 0))

    def text(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
