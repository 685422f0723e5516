"""`ltvcast demo`: the whole path on the built-in CDNOW data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import forecast_table, ingest_table, metrics_table, progress
from ltvcast.data.datasets import load_dataset, open_history
from ltvcast.errors import LtvcastError
from ltvcast.evaluate.backtest import DEFAULT_MODELS, run_backtest, write_backtest
from ltvcast.ingest.write import write_ingest
from ltvcast.models.forecast import forecast
from ltvcast.schema.predictions import write_predictions
from ltvcast.store import Store
from ltvcast.timeutil import parse_horizon

BACKTEST_CUTOFF = "1998-01-01"
BACKTEST_HORIZON = "26w"
FORECAST_CUTOFF = "1998-07-01"
FORECAST_HORIZON = "52w"
#: The forecast's models (those of the backtest's among them): the BTYD ones and gbm, the fastest learned model.
FORECAST_MODELS = (*DEFAULT_MODELS, "gbm")
DEMO_FILES = ("ltvcast.duckdb", "ltvcast.duckdb.wal", "predictions.parquet", "metrics.csv", "report.html", "forecast.parquet")


@app.command()
@user_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder; the demo's own files in it are replaced, nothing else.")
    ] = Path("ltvcast-demo"),
    models: Annotated[
        str,
        typer.Option("--models", help="Comma-separated models of the backtest (e.g. add gbm,deep,auto: minutes "
                     "more on 2 cores); the forecast uses those of them among naive, bgnbd, paretonbd and gbm."),
    ] = ",".join(DEFAULT_MODELS),
) -> None:
    """Ingest CDNOW, backtest (cutoff 1998-01-01, 26 weeks), then forecast 52 weeks from 1998-07-01.

    The backtest compares MODELS (default naive, BG/NBD, Pareto/NBD); the
    forecast uses those of them among naive, BG/NBD, Pareto/NBD and gbm.

    Writes OUT/ltvcast.duckdb, OUT/predictions.parquet, OUT/metrics.csv,
    OUT/report.html and OUT/forecast.parquet.
    """
    started = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise LtvcastError(f"--out {out} is a file; give a folder for the demo's outputs")
    db = out / "ltvcast.duckdb"
    for name in DEMO_FILES:  # only the demo's own files: never anything else in the folder
        (out / name).unlink(missing_ok=True)
    console.rule("[bold]1. ingest the built-in CDNOW data (23,570 real customers)")
    result = load_dataset("cdnow")
    with Store.open(db) as store:
        write_ingest(store, result)
    console.print(ingest_table(result, str(result.observation_end.date())))

    history = open_history(db=db)
    chosen = [m.strip() for m in models.split(",") if m.strip()]
    console.rule(f"[bold]2. backtest: cutoff {BACKTEST_CUTOFF}, horizon {BACKTEST_HORIZON}")
    with progress(console, total=2 * len(chosen) + 1) as step:
        bt = run_backtest(
            history, BACKTEST_CUTOFF, parse_horizon(BACKTEST_HORIZON), chosen, step
        )
    paths = write_backtest(bt, out, dataset="CDNOW (built-in)")
    console.print(metrics_table(bt.metrics, f"CDNOW backtest — cutoff {BACKTEST_CUTOFF}, {bt.horizon_days:g} days"))
    for note in bt.notes:
        console.print(f"[yellow]note:[/] {note}")

    console.rule(f"[bold]3. forecast: fit on all data, {FORECAST_HORIZON} from {FORECAST_CUTOFF}")
    kept = [m for m in chosen if m in FORECAST_MODELS] or list(DEFAULT_MODELS)
    with progress(console, total=2 * len(kept)) as step:
        predictions, notes = forecast(
            history,
            FORECAST_CUTOFF,
            parse_horizon(FORECAST_HORIZON),
            kept,
            on_step=step,
        )
    forecast_path = write_predictions(predictions, out / "forecast.parquet")
    console.print(forecast_table(predictions))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")

    console.rule("[bold]written")
    for path in (db, *paths.values(), forecast_path):
        console.print(f"  {path}")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
