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
    * ``ltvcast_model_reload_failures``: promoted versions that could not be served.
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

    def set_model(self, name: str, version: int, kind: str) -> None:
        """Record the served version (the previous one's series is removed)."""
        if self._model is not None:
            self.model_info.remove(*self._model)
        self._model = (name, str(version), kind)
        self.model_info.labels(*self._model).set(1)

    def text(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
