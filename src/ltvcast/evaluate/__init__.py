"""Backtest evaluation: metrics and the HTML report.

* :mod:`ltvcast.metrics` — array metrics (normalized Gini, top-decile
  capture, decile calibration and MAPE, total error, MAE/RMSE, Spearman,
  churn ROC/PR AUC and Brier), :func:`evaluate` for a predictions frame
  against actuals, and :func:`summarize_backtest` across cutoffs.
* :mod:`ltvcast.evaluate.report` — :func:`write_report`, one self-contained
  HTML file with the metrics table and inline SVG charts.
"""

from ltvcast.evaluate.report import write_report
from ltvcast.metrics import (
    EVALUATE_COLUMNS,
    METRIC_COLUMNS,
    churn_auc,
    churn_brier,
    churn_labels,
    churn_pr_auc,
    decile_calibration,
    decile_mape,
    evaluate,
    gain_curve,
    join_actuals,
    mae,
    normalized_gini,
    rmse,
    spearman,
    summarize_backtest,
    top_decile_capture,
    total_error_pct,
)

__all__ = [
    "EVALUATE_COLUMNS",
    "METRIC_COLUMNS",
    "churn_auc",
    "churn_brier",
    "churn_labels",
    "churn_pr_auc",
    "decile_calibration",
    "decile_mape",
    "evaluate",
    "gain_curve",
    "join_actuals",
    "mae",
    "normalized_gini",
    "rmse",
    "spearman",
    "summarize_backtest",
    "top_decile_capture",
    "total_error_pct",
    "write_report",
]
