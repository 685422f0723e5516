"""Rich renderings shared by commands: metrics table, progress."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ltvcast.evaluate.report import METRIC_GROUPS
from ltvcast.ingest.single import IngestResult

# (column in the metrics frame, label, format, which way is better); shares and errors in percent
METRIC_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("spend_mae", "spend MAE", "{:.2f}", "lower"),
    ("spend_rmse", "spend RMSE", "{:.2f}", "lower"),
    ("total_spend_pred", "total spend predicted", "{:,.0f}", ""),
    ("total_spend_actual", "total spend actual", "{:,.0f}", ""),
    ("total_spend_error_pct", "total spend error (%)", "{:+.1f}%", "closer to 0"),
    ("decile_mape", "decile calibration MAPE (%)", "{:.1%}", "lower"),
    ("tx_mae", "transactions MAE", "{:.3f}", "lower"),
    ("tx_rmse", "transactions RMSE", "{:.3f}", "lower"),
    ("total_tx_error_pct", "total transactions error (%)", "{:+.1f}%", "closer to 0"),
    ("gini_norm", "normalized Gini", "{:.3f}", "higher"),
    ("spearman", "Spearman", "{:.3f}", "higher"),
    ("top_decile_capture", "top-decile capture (%)", "{:.1%}", "higher"),
    ("churn_rate", "churn rate (%)", "{:.1%}", ""),
    ("churn_auc", "churn ROC AUC", "{:.3f}", "higher"),
    ("churn_pr_auc", "churn PR AUC", "{:.3f}", "higher"),
    ("churn_brier", "churn Brier", "{:.4f}", "lower"),
    ("spend_coverage_80", "p10–p90 coverage (%)", "{:.1%}", "80%"),
    ("spend_pinball", "pinball loss (p10/p50/p90)", "{:.3f}", "lower"),
    ("spend_mae_p50", "spend MAE of p50 (median)", "{:.2f}", "lower"),
    ("next_purchase_mae", "next purchase MAE (days)", "{:.1f}", "lower"),
    ("next_purchase_cindex", "next purchase C-index", "{:.3f}", "higher"),
)
_ROWS = {row[0]: row for row in METRIC_ROWS}
FAILED = "failed"
#: width of a console that prints to a file or pipe: wide enough that no table is cut
WIDE = 10_000


def _fmt(fmt: str, value) -> str:
    return "–" if pd.isna(value) else fmt.format(value)


def _group_rows(cols: tuple[str, ...], have) -> list[tuple[str, str, str, str]]:
    return [_ROWS[c] for c in cols if c in _ROWS and have(c)]


def metrics_tables(metrics: pd.DataFrame, failures: Mapping[str, str] | None = None) -> list[Table]:
    """One Rich table per metric group (value, ranking, churn, uncertainty, timing): metrics × models.

    Each table is titled by its group; the caller prints the run's heading above them.

    Groups every model leaves empty are left out (value is always shown). A
    model in ``failures`` (name -> reason) absent from ``metrics`` keeps its
    column, each cell reading ``failed``; :func:`failure_lines` gives the
    reasons. NaN shows as ``–``.
    """
    failed = [m for m in (failures or {}) if m not in set(map(str, metrics["model"]))]
    tables = []
    for key, group_title, cols in METRIC_GROUPS:
        rows = _group_rows(cols, lambda c: c in metrics.columns and (
            key == "value" or metrics[c].notna().any()))
        if not rows:
            continue
        table = Table(title=group_title, header_style="bold", title_justify="left")
        table.add_column("metric")
        for model in metrics["model"]:
            table.add_column(str(model), justify="right", style="cyan")
        for model in failed:
            table.add_column(str(model), justify="right", style="red")
        table.add_column("better", style="dim")
        for col, label, fmt, better in rows:
            cells = [_fmt(fmt, v) for v in metrics[col]]
            table.add_row(label, *cells, *[FAILED] * len(failed), better)
        tables.append(table)
    return tables


def metrics_table(metrics: pd.DataFrame, title: str) -> Table:
    """All metric rows in one Rich table (metrics × models); see :func:`metrics_tables` for the grouped form."""
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    for model in metrics["model"]:
        table.add_column(str(model), justify="right", style="cyan")
    table.add_column("better", style="dim")
    for col, label, fmt, better in METRIC_ROWS:
        if col in metrics.columns:
            table.add_row(label, *[_fmt(fmt, v) for v in metrics[col]], better)
    return table


def summary_tables(summary: pd.DataFrame, failures: Mapping[str, str] | None = None) -> list[Table]:
    """Mean ± standard deviation across cutoffs, one Rich table per metric group.

    Args:
        summary: the frame of :func:`ltvcast.metrics.summarize_backtest`
            (``model``, ``n_cutoffs``, ``<metric>_mean``, ``<metric>_std``).
        failures: model -> reason; a model absent from ``summary`` (failed
            at every cutoff) keeps a column reading ``failed``.

    Rows whose mean is missing for every model are left out.
    """
    failed = [m for m in (failures or {}) if m not in set(map(str, summary["model"]))]
    tables = []
    for key, group_title, cols in METRIC_GROUPS:
        rows = _group_rows(
            cols, lambda c: f"{c}_mean" in summary.columns and summary[f"{c}_mean"].notna().any()
        )
        if not rows:
            continue
        table = Table(title=group_title, header_style="bold", title_justify="left")
        table.add_column("metric")
        for model in summary["model"]:
            table.add_column(str(model), justify="right", style="cyan")
        for model in failed:
            table.add_column(str(model), justify="right", style="red")
        table.add_column("better", style="dim")
        if key == "value":
            table.add_row("cutoffs", *[f"{n:d}" for n in summary["n_cutoffs"]], *["0"] * len(failed), "")
        for col, label, fmt, better in rows:
            cells = []
            for mean, std in zip(summary[f"{col}_mean"], summary[f"{col}_std"]):
                text = _fmt(fmt, mean)
                if not pd.isna(mean) and not pd.isna(std):
                    text += " ± " + fmt.format(std).lstrip("+")
                cells.append(text)
            table.add_row(label, *cells, *[FAILED] * len(failed), better)
        tables.append(table)
    return tables


def summary_table(
    summary: pd.DataFrame, title: str, rows: tuple[tuple[str, str, str, str], ...] = METRIC_ROWS
) -> Table:
    """Mean ± standard deviation across cutoffs in one table (see :func:`summary_tables` for the grouped form)."""
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
            text = _fmt(fmt, mean)
            if not pd.isna(mean) and not pd.isna(std):
                text += " ± " + fmt.format(std).lstrip("+")
            cells.append(text)
        table.add_row(label, *cells, better)
    return table


def failure_lines(failures: Mapping[str, str]) -> list[str]:
    """One line per failed model, ``MODEL failed: reason`` (markup-free)."""
    return [f"{model} failed: {reason}" for model, reason in failures.items()]


def show(console: Console, *objects, **kwargs) -> None:
    """Print on ``console``; to a file or pipe (not a terminal) never cut or wrap a table.

    A console that is not a terminal defaults to 80 columns, which truncates
    wide tables ("142.…"); there the objects are printed by a console of
    :data:`WIDE` columns on the same file, so a table takes its natural width.
    """
    if console.is_terminal:
        console.print(*objects, **kwargs)
        return
    wide = Console(file=console.file, width=WIDE, color_system=None, highlight=False, soft_wrap=False)
    wide.print(*objects, **kwargs)


def _clock() -> str:
    """Local wall-clock time ``HH:MM:SS`` for progress log lines."""
    import time

    return time.strftime("%H:%M:%S")


@contextlib.contextmanager
def progress(console, total: int) -> Iterator[Callable[[str], None]]:
    """A Rich progress bar; yields ``step(text)`` that advances it by one.

    Not a terminal (a file, a pipe, CI): no bar; each step is printed as a
    plain timestamped log line (``HH:MM:SS [k/total] text``).
    """
    if not console.is_terminal:
        count = 0

        def line(text: str) -> None:
            nonlocal count
            count += 1
            where = f"{count}/{total}" if count <= total else str(count)  # a glob may add steps
            console.print(f"{_clock()} [{where}] {text}", markup=False, highlight=False, soft_wrap=True)

        yield line
        return
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
    """A Rich progress bar over items; yields ``advance(done, total)``.

    Not a terminal: plain timestamped log lines instead, at most one per
    10 % of the total (and the last).
    """
    if not console.is_terminal:
        shown = -1

        def report(done: int, total: int) -> None:
            nonlocal shown
            tenth = 10 * done // max(total, 1)
            if tenth > shown or done >= total:
                if done >= total and shown == 10:
                    return
                shown = 10 if done >= total else tenth
                console.print(f"{_clock()} {description}: {done:,}/{total:,}", markup=False, highlight=False,
                              soft_wrap=True)

        yield report
        return
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
    table.add_row("rows excluded (mapping rule)", f"{stats.rows_excluded:,}")
    for rule, count in stats.excluded.items():
        table.add_row(f"  {rule}", f"{count:,}")
    table.add_row("identical rows kept", f"{stats.identical_rows_kept:,}")
    table.add_row("ids normalised (in rows kept)", f"{stats.ids_normalised:,}")
    table.add_row("zero-value sale lines (in rows kept)", f"{stats.zero_value_sales:,}")
    table.add_row("observation end", observation_end)
    table.add_row("seconds", f"{stats.seconds:.2f}")
    return table
