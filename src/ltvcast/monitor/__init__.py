"""Watching deployed models and improving them: drift, live accuracy, data health, alerts, retraining.

* :mod:`.stats`: PSI, KS, normalised Wasserstein (samples or a reference sketch);
* :mod:`.policy`: thresholds in YAML with documented defaults;
* :mod:`.checks`: the checks of a monitoring run as ``monitor_log`` rows;
* :mod:`.run`: :func:`run_monitor` (``ltvcast monitor``), the webhook;
* :mod:`.retrain`: :func:`retrain` (``ltvcast retrain``), champion/challenger;
* :mod:`.report`: :func:`health_section`, the report's "model health" section.

See docs/monitoring.md.
"""

from ltvcast.monitor.policy import DEFAULT_POLICY_YAML, Policy, load_policy, policy_from_dict
from ltvcast.monitor.report import health_section
from ltvcast.monitor.retrain import RetrainDecision, read_decisions, retrain
from ltvcast.monitor.run import EXIT_CODES, MonitorResult, post_webhook, run_monitor

__all__ = [
    "DEFAULT_POLICY_YAML",
    "EXIT_CODES",
    "MonitorResult",
    "Policy",
    "RetrainDecision",
    "health_section",
    "load_policy",
    "policy_from_dict",
    "post_webhook",
    "read_decisions",
    "retrain",
    "run_monitor",
]
