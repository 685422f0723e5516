"""`ltvcast backtest` and `ltvcast forecast`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import forecast_table, metrics_table, progress
from ltvcast.data.datasets import open_history
from ltvcast.evaluate.backtest import DEFAULT_MODELS, run_backtest, write_backtest
from ltvcast.forecast import forecast as run_forecast
from ltvcast.predictions import write_predictions
from ltvcast.timeutil import parse_horizon

Dataset = Annotated[str | None, typer.Option("--dataset", help="Built-in dataset: cdnow or cdnow-sample.")]
Db = Annotated[Path | None, typer.Option("--db", help="DuckDB store written by `ltvcast ingest`.")]
Cutoff = Annotated[str, typer.Option("--cutoff", help="Prediction date YYYY-MM-DD; history is strictly before it.")]
Horizon = Annotated[str, typer.Option("--horizon", help="Horizon: e.g. 26w, 180d, 12m (m = 30.4375 days).")]
Models = Annotated[str, typer.Option("--models", help="Comma-separated models: naive, bgnbd, paretonbd.")]
DataEnd = Annotated[
    str | None, typer.Option("--data-end", help="Declare the last observed day (default: the data's last day).")
]


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


@app.command()
@user_errors
def backtest(
    cutoff: Cutoff,
    dataset: Dataset = None,
    db: Db = None,
    horizon: Horizon = "26w",
    models: Models = ",".join(DEFAULT_MODELS),
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("ltvcast-backtest"),
    data_end: DataEnd = None,
) -> None:
    """Fit models before CUTOFF, predict the HORIZON after it and score against what happened.

    Writes OUT/predictions.parquet, OUT/metrics.csv and OUT/report.html.
    """
    history = open_history(dataset, db, data_end)
    names = _models(models)
    with progress(console, total=2 * len(names) + 1) as step:
        result = run_backtest(history, cutoff, parse_horizon(horizon), names, step)
    paths = write_backtest(result, out, dataset=history.origin)
    console.print(metrics_table(result.metrics, f"Backtest — cutoff {result.cutoff.date()}, {result.horizon_days:g} days"))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


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
) -> None:
    """Fit on all history before CUTOFF and predict every customer's next HORIZON."""
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
        )
    write_predictions(predictions, out)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(forecast_table(predictions))
    console.print(f"predictions: {out}")
