"""Reasons: why a customer is scored as they are (per customer) and what drives a model (global).

Public API (every function takes a *fitted* forecaster and its inputs, or a
registered model and a history)::

    attribute(forecaster, inputs, cutoff, horizon_days) -> list[Attribution]
        every driver of pred_spend and p_churn for every row of inputs
    explain_inputs(forecaster, inputs, cutoff, horizon_days, *, k=3) -> Explanation
    explain(forecaster, history, cutoff, horizon_days, *, customer_ids=None, k=3) -> Explanation
    explain_registered(model, history, cutoff, horizon_days=None, *, customer_ids=None, k=3) -> Explanation
        Explanation: .predictions (canonical frame), .reasons (long frame:
        customer_id, target, rank, feature, value, contribution, effect,
        scale, method, source, sentence), .attributions, .notes
    global_importance(forecaster, inputs, cutoff, horizon_days, *, max_customers=5000, seed=0) -> DataFrame
        columns model, target, rank, feature, method, scale,
        mean_abs_contribution, direction (-1/0/+1), correlation, customers
    partial_dependence(forecaster, inputs, cutoff, horizon_days, feature, *, grid=12,
                       max_customers=500, seed=0) -> DataFrame
        columns feature, value, pred_spend, p_churn, customers
    importance_section(forecaster, inputs, cutoff, horizon_days, *, top=10, pd_features=3,
                       max_customers=2000, seed=0, title=None) -> ltvcast.evaluate.report.ReportSection
        the report's importance tables and partial-dependence SVG
    write_reasons(reasons, path) -> None      .parquet or .csv
    explanation_record(explanation, customer_id) -> dict   one customer, JSON-ready (the service's body)

``inputs`` is ``forecaster.inputs(history, cutoff, horizon_days)`` (BTYD:
the RFM summary in weeks); ``horizon_days`` in days.

Methods per model family (docs/explain.md):

* ``gbm``, ``hybrid`` — exact tree SHAP (LightGBM ``pred_contrib``) in the
  link space: factors on expected spend, on the odds of churn
  (:mod:`~ltvcast.explain.trees`);
* ``deep*`` — Captum integrated gradients on the customer features and
  feature ablation of sequence channels × recent/older periods
  (:mod:`~ltvcast.explain.deep`);
* ``naive``, ``bgnbd``, ``paretonbd`` — elasticities of the closed forms in
  frequency, recency, T, monetary_value (:mod:`~ltvcast.explain.btyd`);
* ``auto`` — per output, the drivers of its component with the largest
  weight (said in the notes).
"""

from ltvcast.explain.attribution import REASON_COLUMNS, TARGETS, Attribution
from ltvcast.explain.core import (
    Explanation,
    attribute,
    explain,
    explain_inputs,
    explain_registered,
    explanation_record,
    write_reasons,
)
from ltvcast.explain.importance import (
    IMPORTANCE_COLUMNS,
    global_importance,
    importance_from,
    importance_section,
    partial_dependence,
)
from ltvcast.explain.reasons import top_reasons

__all__ = [
    "IMPORTANCE_COLUMNS",
    "REASON_COLUMNS",
    "TARGETS",
    "Attribution",
    "Explanation",
    "attribute",
    "explain",
    "explain_inputs",
    "explain_registered",
    "explanation_record",
    "global_importance",
    "importance_from",
    "importance_section",
    "partial_dependence",
    "top_reasons",
    "write_reasons",
]
