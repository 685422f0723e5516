"""Rich renderings shared by commands: metrics table, progress."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ltvcast.ingest.single import IngestResult

# (column in the metrics frame, label, format, which way is better)
METRIC_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("spend_mae", "spend MAE", "{:.2f}", "lower"),
    ("spend_rmse", "spend RMSE", "{:.2f}", "lower"),
    ("total_spend_error_pct", "total spend error %", "{:+.1f}", "closer to 0"),
    ("gini_norm", "normalized Gini", "{:.3f}", "higher"),
    ("spearman", "Spearman", "{:.3f}", "higher"),
    ("top_decile_capture", "top-decile capture", "{:.3f}", "higher"),
    ("decile_mape", "decile calibration MAPE", "{:.3f}", "lower"),
    ("tx_mae", "transactions MAE", "{:.3f}", "lower"),
    ("tx_rmse", "transactions RMSE", "{:.3f}", "lower"),
    ("total_tx_error_pct", "total transactions error %", "{:+.1f}", "closer to 0"),
    ("churn_auc", "churn ROC AUC", "{:.3f}", "higher"),
    ("churn_pr_auc", "churn PR AUC", "{:.3f}", "higher"),
    ("churn_brier", "churn Brier", "{:.4f}", "lower"),
)


def metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """Metrics (rows) × models (columns) as a Rich table; NaN shows as ``–``."""
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    for model in metrics["model"]:
        table.add_column(str(model), justify="right", style="cyan")
    table.add_column("better", style="dim")
    for col, label, fmt, better in METRIC_ROWS:
        cells = ["–" if pd.isna(v) else fmt.format(v) for v in metrics[col]]
        table.add_row(label, *cells, better)
    return table


def summary_table(
    summary: pd.DataFrame, title: str, rows: tuple[tuple[str, str, str, str], ...] = METRIC_ROWS
) -> Table:
    """Mean ± standard deviation across cutoffs: metrics (rows) × models (columns).

    Args:
        summary: the frame of :func:`ltvcast.metrics.summarize_backtest`
            (``model``, ``n_cutoffs``, ``<metric>_mean``, ``<metric>_std``).
        title: table title.
        rows: ``(metric column, label, format, which way is better)``; rows
            whose mean is missing for every model are left out.
    """
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    for model in summary["model"]:
        table.add_column(str(model), justify="right", style="cyan")
    table.add_column("better", style="dim")
    table.add_row("cutoffs", *[f"{n:d}" for n in summary["n_cutoffs"]], "")
    for col, label, fmt, better in rows:
        if f"{col}_mean" not in summary.columns or summary[f"{col}_mean"].isna().all():
            continue
        cells = []
        for mean, std in zip(summary[f"{col}_mean"], summary[f"{col}_std"]):
            text = "–" if pd.isna(mean) else fmt.format(mean)
            if not pd.isna(mean) and not pd.isna(std):
                text += " ± " + fmt.format(std).lstrip("+")
            cells.append(text)
        table.add_row(label, *cells, better)
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


@contextlib.contextmanager
def chunk_progress(console, description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar over items; yields ``advance(done, total)``."""
    bar = Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


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


def ingest_table(result: IngestResult, observation_end: str) -> Table:
    """Counts of one ingest: rows read, kept, quarantined per reason, duplicates."""
    stats = result.stats
    table = Table(show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{stats.rows_read:,}")
    table.add_row("rows kept", f"{stats.rows_kept:,}")
    table.add_row("rows quarantined", f"{stats.rows_quarantined:,}")
    for reason, count in stats.quarantined.items():
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("duplicates dropped", f"{stats.duplicates_dropped:,}")
    table.add_row("identical rows kept", f"{stats.identical_rows_kept:,}")
    table.add_row("ids normalised", f"{stats.ids_normalised:,}")
    table.add_row("observation end", observation_end)
    table.add_row("seconds", f"{stats.seconds:.2f}")
    return table
