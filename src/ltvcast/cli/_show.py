"""Rich renderings shared by commands: metrics table, progress."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

# (column in metrics frame, header, format)
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("spend_mae", "spend MAE", "{:.2f}"),
    ("spend_rmse", "spend RMSE", "{:.2f}"),
    ("total_spend_error_pct", "total spend err %", "{:+.1f}"),
    ("gini_norm", "norm. Gini", "{:.3f}"),
    ("spearman", "Spearman", "{:.3f}"),
    ("top_decile_capture", "top-10% capture", "{:.3f}"),
    ("decile_mape", "decile MAPE", "{:.3f}"),
    ("tx_mae", "tx MAE", "{:.3f}"),
    ("churn_auc", "churn AUC", "{:.3f}"),
    ("churn_pr_auc", "churn PR AUC", "{:.3f}"),
    ("churn_brier", "Brier", "{:.4f}"),
)


def metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """Models × metrics as a Rich table (NaN shown as ``–``)."""
    table = Table(title=title, header_style="bold")
    table.add_column("model", style="bold cyan")
    for _, header, _fmt in METRIC_COLUMNS:
        table.add_column(header, justify="right")
    for _, row in metrics.iterrows():
        cells = [str(row["model"])]
        for col, _, fmt in METRIC_COLUMNS:
            value = row.get(col)
            cells.append("–" if value is None or pd.isna(value) else fmt.format(value))
        table.add_row(*cells)
    return table


@contextlib.contextmanager
def progress(console, total: int) -> Iterator[Callable[[str], None]]:
    """A Rich progress bar; yields ``step(text)`` that advances it by one."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("starting", total=total)
        started = False

        def step(text: str) -> None:
            nonlocal started
            if started:
                bar.advance(task)
            started = True
            bar.update(task, description=text)

        yield step


def forecast_table(predictions: pd.DataFrame) -> Table:
    """Per model: customers, predicted transactions and spend in total, mean P(churn)."""
    table = Table(title="Forecast", header_style="bold")
    for header in ("model", "customers", "pred. transactions", "pred. spend", "mean P(churn)", "mean P(alive)"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for model, group in predictions.groupby("model", sort=False):
        p_alive = group["p_alive"].mean()
        table.add_row(
            str(model),
            f"{len(group):,}",
            f"{group['pred_transactions'].sum():,.0f}",
            f"{group['pred_spend'].sum():,.0f}",
            f"{group['p_churn'].mean():.3f}",
            "–" if pd.isna(p_alive) else f"{p_alive:.3f}",
        )
    return table
