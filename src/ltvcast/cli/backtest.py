"""`ltvcast backtest` and `ltvcast forecast`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ltvcast.actions.report import backtest_decisions
from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import failure_lines, forecast_table, metrics_tables, progress, show, summary_tables
from ltvcast.data.datasets import open_history
from ltvcast.errors import CutoffError
from ltvcast.evaluate.backtest import (
    DEFAULT_MODELS,
    run_backtest,
    run_rolling_backtest,
    write_backtest,
    write_rolling_backtest,
)
from ltvcast.evaluate.report import group_notes
from ltvcast.models.forecast import forecast as run_forecast
from ltvcast.schema.predictions import write_predictions
from ltvcast.timeutil import parse_horizon

Dataset = Annotated[str | None, typer.Option("--dataset", help="Built-in dataset: cdnow or cdnow-sample.")]
Db = Annotated[Path | None, typer.Option("--db", help="DuckDB store written by `ltvcast ingest`.")]
Cutoff = Annotated[str, typer.Option("--cutoff", help="Prediction date YYYY-MM-DD; history is strictly before it.")]
Horizon = Annotated[str, typer.Option("--horizon", help="Horizon: e.g. 26w, 180d, 12m (m = 30.4375 days).")]
Models = Annotated[
    str,
    typer.Option(
        "--models",
        help="Comma-separated models: naive, bgnbd, paretonbd (BTYD); gbm, hybrid, auto (LightGBM, minutes to fit); "
        "deep, deep-lstm, deep-transformer (PyTorch, minutes to fit).",
    ),
]
DataEnd = Annotated[
    str | None, typer.Option("--data-end", help="Declare the last observed day (default: the data's last day).")
]
Calendar = Annotated[
    Path | None,
    typer.Option(
        "--calendar",
        help="Shop calendar (calendar.yaml: a list of {name, start, end} events) for the learned models' "
        "calendar inputs; the BTYD models ignore it (docs/models.md).",
    ),
]


def shop_calendar(path: Path | None):
    """The events of ``--calendar`` (read once, before any fit), or None without the option.

    Raises:
        DataError: the file is missing or an event is malformed (file and event named).
    """
    if path is None:
        return None
    from ltvcast.models.learned.calendar import load_calendar

    return load_calendar(path)


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def _cutoff_choice(cutoff: str | None, cutoffs: str | None) -> list[str] | None:
    """The rolling cutoffs, or None for a single ``--cutoff``; exactly one of the two options."""
    if (cutoff is None) == (cutoffs is None):
        raise CutoffError("give either --cutoff DATE or --cutoffs DATE,DATE,... (not both, not neither)")
    return None if cutoffs is None else [c.strip() for c in cutoffs.split(",") if c.strip()]


def _print_outcome(title: str, tables, notes: list[str], failures: dict[str, str], paths: dict) -> None:
    """Print the grouped metric tables, the failed models with their reasons, the notes and the paths."""
    show(console, f"[bold]{title}[/]", *tables)
    for line in failure_lines(failures):
        show(console, f"[bold red]{line}[/]")
    if failures:
        show(console, f"[red]{len(failures)} model(s) failed; the others were scored (exit status 0).[/]")
    for note in group_notes(notes):
        show(console, f"[yellow]note:[/] {note}")
    for kind, path in paths.items():
        show(console, f"{kind}: {path}")


@app.command()
@user_errors
def backtest(
    cutoff: Annotated[
        str | None, typer.Option("--cutoff", help="Prediction date YYYY-MM-DD; history is strictly before it.")
    ] = None,
    cutoffs: Annotated[
        str | None,
        typer.Option(
            "--cutoffs",
            help="Rolling-origin backtest: comma-separated dates, each a backtest with the same horizon "
            "(instead of --cutoff).",
        ),
    ] = None,
    dataset: Dataset = None,
    db: Db = None,
    horizon: Horizon = "26w",
    models: Models = ",".join(DEFAULT_MODELS),
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("ltvcast-backtest"),
    data_end: DataEnd = None,
    categories: Annotated[bool, typer.Option(
        "--categories", help="Add the category section: next categories and demand beside baselines.")] = False,
    calendar: Calendar = None,
) -> None:
    """Fit models before CUTOFF, predict the HORIZON after it and score against what happened.

    Writes OUT/predictions.parquet, OUT/metrics.csv and OUT/report.html; with
    --cutoffs also OUT/metrics_summary.csv (mean and std per model across cutoffs).
    """
    rolling = _cutoff_choice(cutoff, cutoffs)
    events = shop_calendar(calendar)
    history = open_history(dataset, db, data_end)
    names = _models(models)
    if rolling is not None:
        _rolling(history, rolling, parse_horizon(horizon), names, out, events)
        return
    with progress(console, total=2 * len(names) + 1) as step:
        result = run_backtest(history, cutoff, parse_horizon(horizon), names, step, calendar=events)
    sections = backtest_decisions(result, history)
    if categories:
        from ltvcast.actions.report import choose_model
        from ltvcast.actions.segments import assign_segments
        from ltvcast.errors import LtvcastError
        from ltvcast.evaluate.categories import category_section

        try:
            chosen = choose_model(result.predictions, result.metrics)
            try:  # the categories-per-segment table needs complete p_churn; the section stands without it
                segments = assign_segments(result.predictions[result.predictions["model"] == chosen])
            except LtvcastError:
                segments = None
            sections.append(category_section(history, result.cutoff, result.horizon_days, result.predictions, chosen,
                                             segments=segments))
        except LtvcastError as exc:  # the backtest's own results are still written
            show(console, f"[yellow]note:[/] no category section: {exc}")
    if db is not None:
        from ltvcast.monitor.report import health_section  # only when the store may hold monitoring runs

        health = health_section(db)
        sections += [health] if health is not None else []
    paths = write_backtest(result, out, dataset=history.origin, sections=sections)
    title = f"Backtest — cutoff {result.cutoff.date()}, {result.horizon_days:g} days"
    tables = metrics_tables(result.metrics, result.failures)
    _print_outcome(title, tables, result.notes, result.failures, paths)


def _rolling(history, cutoffs: list[str], horizon_days: float, names: list[str], out: Path, events) -> None:
    with progress(console, total=len(cutoffs) * (2 * len(names) + 1)) as step:
        result = run_rolling_backtest(history, cutoffs, horizon_days, names, step, calendar=events)
    paths = write_rolling_backtest(result, out, dataset=history.origin)
    first, last = result.cutoffs[0].date(), result.cutoffs[-1].date()
    title = f"Rolling-origin backtest — {len(result.cutoffs)} cutoffs {first} … {last}, {horizon_days:g} days: mean ± std"
    tables = summary_tables(result.summary, result.failures)
    _print_outcome(title, tables, result.notes, result.failures, paths)


@app.command()
@user_errors
def forecast(
    cutoff: Cutoff,
    dataset: Dataset = None,
    db: Db = None,
    horizon: Horizon = "52w",
    models: Models = ",".join(DEFAULT_MODELS),
    out: Annotated[Path, typer.Option("--out", help="Predictions file (.parquet or .csv).")] = Path("forecast.parquet"),
    data_end: DataEnd = None,
    allow_future_cutoff: Annotated[
        bool, typer.Option("--allow-future-cutoff", help="Accept a cutoff after the day following the data end.")
    ] = False,
    calendar: Calendar = None,
) -> None:
    """Fit on all history before CUTOFF and predict every customer's next HORIZON."""
    events = shop_calendar(calendar)
    history = open_history(dataset, db, data_end)
    names = _models(models)
    with progress(console, total=2 * len(names)) as step:
        predictions, notes = run_forecast(
            history,
            cutoff,
            parse_horizon(horizon),
            names,
            allow_future_cutoff=allow_future_cutoff,
            on_step=step,
            calendar=events,
        )
    write_predictions(predictions, out)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(forecast_table(predictions))
    console.print(f"predictions: {out}")
