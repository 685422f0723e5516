"""`ltvcast tune`: search a learned model's settings before the cutoff and register the best (:mod:`ltvcast.evaluate.tune`)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import progress
from ltvcast.cli.backtest import Cutoff, DataEnd, Dataset, Db
from ltvcast.data.datasets import open_history
from ltvcast.errors import LtvcastError, RegistryError
from ltvcast.evaluate.tune import TUNABLE_MODELS, TUNE_METRICS, TuneResult, tune
from ltvcast.registry import DEFAULT_ROOT, parse_ref, save_model
from ltvcast.timeutil import parse_horizon

_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true``/``false`` -> bool, ``none`` -> None, else the text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _fixed(text: str | None) -> dict[str, Any]:
    """Parse ``--fixed "n_windows=3,max_rounds=50"``."""
    out: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _SETTING.match(part)
        if match is None:
            raise LtvcastError(f"--fixed takes NAME=VALUE pairs separated by commas, got {part.strip()!r}")
        out[match.group(1)] = _value(match.group(2))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return "–" if value is None else str(value)


def _trials_table(result: TuneResult) -> Table:
    """One row per trial: score, seconds, the searched settings; the best marked ★; failures with their reason."""
    column = f"|{result.objective.column}|" if result.objective.absolute else result.objective.column
    better = "lower" if result.objective.direction == "minimize" else "higher"
    table = Table(
        title=f"Trials — fitted at {result.trial_cutoff.date()}, scored on [{result.trial_cutoff.date()}, "
        f"{result.cutoff.date()}) by {column} ({better} is better)",
        header_style="bold",
    )
    failed = bool((result.trials["state"] != "COMPLETE").any())
    headers = ["trial", result.metric, "seconds", *result.search_space] + (["failed because"] if failed else [])
    for header in headers:
        table.add_column(header, justify="left" if header == "failed because" else "right")
    for rec in result.trials.to_dict("records"):
        best = rec["number"] == result.best_trial
        cells = [f"{rec['number']}{' ★' if best else ''}", _fmt(rec["value"]), f"{rec['duration_s']:.1f}"]
        cells += [_fmt(rec[name]) for name in result.search_space]
        table.add_row(*cells, *([rec["error"]] if failed else []), style="bold green" if best else None)
    return table


@app.command(name="tune")
@user_errors
def tune_command(
    model: Annotated[str, typer.Option("--model", help=f"Model to tune: {', '.join(TUNABLE_MODELS)}.")],
    cutoff: Cutoff,
    name: Annotated[str, typer.Option("--name", help="Registry name of the tuned model.")],
    dataset: Dataset = None,
    db: Db = None,
    horizon: Annotated[str, typer.Option("--horizon", help="Horizon: e.g. 26w, 180d, 12m.")] = "26w",
    trials: Annotated[int, typer.Option("--trials", help="Trial budget.")] = 20,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Time budget in seconds: no trial starts after it.")
    ] = None,
    metric: Annotated[str, typer.Option("--metric", help=f"Score of a trial: {', '.join(TUNE_METRICS)}.")] = "rmse",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and the model.")] = 0,
    fixed: Annotated[
        str | None,
        typer.Option("--fixed", help="Settings held fixed, e.g. 'n_windows=4,max_rounds=200' (not searched)."),
    ] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")] = DEFAULT_ROOT,
    data_end: DataEnd = None,
) -> None:
    """Tune MODEL for CUTOFF and HORIZON, then fit it at CUTOFF with the best settings and register it.

    Trials are fitted at CUTOFF − HORIZON and scored up to CUTOFF: nothing from CUTOFF on is read.

    The study is saved in the manifest's `tuning` field.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are shown in the table instead
    ref = parse_ref(name)
    if ref.version is not None:
        raise RegistryError(f"--name takes a name without a version, got {name!r}")
    settings = _fixed(fixed)
    history = open_history(dataset, db, data_end)
    days = parse_horizon(horizon)
    with progress(console, total=trials + 1) as step:
        result = tune(
            model, history, cutoff, days, n_trials=trials, timeout=timeout, metric=metric, seed=seed,
            fixed_params=settings, on_step=step,
        )
    # the table is wide (one column per setting): in a file or pipe, do not squeeze it to 80 columns
    wide = console if console.is_terminal else Console(file=console.file, width=200)
    wide.print(_trials_table(result))
    done = int((result.trials["state"] == "COMPLETE").sum())
    console.print(
        f"{len(result.trials)} trial(s), {done} complete, in {result.seconds:.0f} s (stopped by {result.stopped_by}); "
        f"best trial {result.best_trial}: {result.metric} {result.best_value:.4g}"
    )
    first = result.trials[result.trials["number"] == 0]
    if len(first) and first["state"].iloc[0] == "COMPLETE":  # trial 0 holds the model's default settings
        console.print(f"the default settings (trial 0): {result.metric} {first['value'].iloc[0]:.4g}")
    saved = save_model(
        result.forecaster, name=ref.name, cutoff=result.cutoff, horizon_days=result.horizon_days, history=history,
        tuning=result.manifest(), seed=seed, root=registry,
    )
    console.print(f"saved [bold]{saved.name}:{saved.version}[/] ({saved.path})")
