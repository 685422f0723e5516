"""Decisions from predictions: segments, value at risk, long-horizon CLV, targeting, experiments.

Modules (import them directly; this package imports nothing):

* :mod:`ltvcast.actions.segments` — CLV tier × churn-risk grid, RFM groups,
  value at risk (the retention list);
* :mod:`ltvcast.actions.clv` — discounted long-horizon CLV with margin;
* :mod:`ltvcast.actions.report` — the report's "decisions" section;
* :mod:`ltvcast.actions.targeting` — targeting under a budget;
* :mod:`ltvcast.actions.experiments` — randomised assignment and analysis.
"""
