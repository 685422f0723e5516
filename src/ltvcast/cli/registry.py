"""`ltvcast train`, `ltvcast predict`, `ltvcast promote` and `ltvcast models`: the model registry (:mod:`ltvcast.registry`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli._show import chunk_progress, forecast_table, progress
from ltvcast.cli.backtest import Calendar, Cutoff, DataEnd, Dataset, Db, shop_calendar
from ltvcast.cli.features import Engine, Source, SparkMaster, check_engine
from ltvcast.data.datasets import open_history
from ltvcast.errors import RegistryError
from ltvcast.models.catalog import make_forecaster
from ltvcast.registry import (
    DEFAULT_ROOT,
    list_models,
    load_model,
    parse_ref,
    promote,
    promoted_version,
    save_category_split,
    save_model,
)
from ltvcast.schema.predictions import FORECAST_COLUMNS, read_predictions
from ltvcast.serve.score import log_score, score
from ltvcast.timeutil import check_cutoff, horizon_window, parse_horizon

Registry = Annotated[Path, typer.Option("--registry", help="Model registry folder.")]


@app.command()
@user_errors
def train(
    cutoff: Cutoff,
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated models: naive, bgnbd, paretonbd, gbm, hybrid, auto.")
    ],
    name: Annotated[str, typer.Option("--name", help="Registry name; several models get NAME-<model>.")],
    dataset: Dataset = None,
    db: Db = None,
    horizon: Annotated[str, typer.Option("--horizon", help="Horizon: e.g. 26w, 180d, 12m.")] = "26w",
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
    engine: Engine = "duckdb",
    source: Source = None,
    spark_master: SparkMaster = None,
    max_customers: Annotated[
        int, typer.Option("--max-customers", help="--engine spark: stratified sample of customers collected to train.")
    ] = 1_000_000,
    calendar: Calendar = None,
    categories: Annotated[bool, typer.Option(
        "--categories", help="Also fit the category split (docs/categories.md) and register it with each model.")] = False,
) -> None:
    """Fit MODELS on the history before CUTOFF for HORIZON and register a new version of each.

    One model is registered as NAME, several as NAME-<model> (e.g. shop-gbm,
    shop-paretonbd), each with its own versions. With --engine spark the
    customers' rows are read from --source (a stratified sample above
    --max-customers) and the models train on the driver (docs/scale.md).
    """
    check_engine(engine, db, source)
    base = parse_ref(name)
    if base.version is not None:
        raise RegistryError(f"--name takes a name without a version, got {name!r}")
    kinds = list(dict.fromkeys(m.strip() for m in models.split(",") if m.strip()))
    if not kinds:
        raise RegistryError("--models names no model")
    events = shop_calendar(calendar)  # kept in the learned models: they predict with it later
    forecasters = [make_forecaster(kind, events) for kind in kinds]  # unknown names fail before any fit
    if engine == "spark":
        from ltvcast.engines.spark import session
        from ltvcast.features.spark import collect_history, open_shop

        shop = open_shop(session(spark_master, conf={"spark.ui.showConsoleProgress": "false"}), source)
        history = collect_history(shop, cutoff, max_customers=max_customers, data_end=data_end)
        console.print(f"collected {history.origin}")
    else:
        history = open_history(dataset, db, data_end)
    check_cutoff(cutoff, history.observation_end)
    start, end = horizon_window(cutoff, parse_horizon(horizon))
    days = float((end - start).days)
    split, fitted, saved = None, [], []
    with progress(console, total=len(kinds) + categories) as step:
        # every fit before any registration: a failed step (e.g. no window for the split) registers nothing
        if categories:  # one split serves every model fitted here: it depends on the data, not the total model
            from ltvcast.models.categories import CategorySplit

            step("fit the category split")
            split = CategorySplit().fit(history, cutoff, days)
        for kind, forecaster in zip(kinds, forecasters):
            step(f"fit {kind}")
            began = time.perf_counter()
            forecaster.fit(history, cutoff, days)
            fitted.append((kind, forecaster, time.perf_counter() - began))
    for kind, forecaster, seconds in fitted:
        target = base.name if len(kinds) == 1 else f"{base.name}-{kind}"
        model = save_model(forecaster, name=target, cutoff=cutoff, horizon_days=days, history=history, root=registry)
        if split is not None and len(split.categories_) > 1:  # else the lines carry no category: nothing to split by
            save_category_split(model, split)
        saved.append((model, seconds))
    table = Table(title=f"Registered in {registry} — cutoff {start.date()}, {days:g} days", header_style="bold")
    for header in ("model", "kind", "fit s", "validation metrics"):
        table.add_column(header, justify="right" if header == "fit s" else "left")
    for model, seconds in saved:
        metrics = ", ".join(
            f"{k.removeprefix('validation_')} {v:.4g}"
            for k, v in model.manifest["metrics"].items()
            if isinstance(v, (int, float))
        )
        table.add_row(f"{model.name}:{model.version}", model.manifest["model"]["kind"], f"{seconds:.1f}", metrics or "–")
    console.print(table)
    if categories:
        entry = saved[0][0].manifest.get("categories")
        console.print(f"category split registered with each: {', '.join(entry['categories'])}" if entry else
                      "no category split registered: the order lines before the cutoff carry no category",
                      highlight=False, soft_wrap=True)


@app.command("predict")
@user_errors
def predict_command(
    model: Annotated[str, typer.Option("--model", help="NAME (promoted, else latest version) or NAME:VERSION.")],
    cutoff: Cutoff,
    dataset: Dataset = None,
    db: Db = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="Horizon, e.g. 26w (default: the one the model was trained for).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Predictions file (.parquet or .csv).")] = Path(
        "predictions.parquet"
    ),
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
    allow_future_cutoff: Annotated[
        bool, typer.Option("--allow-future-cutoff", help="Accept a cutoff after the day following the data end.")
    ] = False,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Customers predicted and written at a time.")] = 100_000,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="With --db: log the run in the store for `ltvcast monitor`.")
    ] = True,
    engine: Engine = "duckdb",
    source: Source = None,
    spark_master: SparkMaster = None,
) -> None:
    """Score every customer's next HORIZON after CUTOFF with a registered model (in chunks; `score` is the same).

    With --engine spark the inputs are computed on Spark from --source and
    the model predicts on the executors; --out is then a Parquet folder.
    """
    check_engine(engine, db, source)
    registered = load_model(model, registry)
    if engine == "spark":
        from ltvcast.engines.spark import session
        from ltvcast.features.spark import open_shop
        from ltvcast.serve.spark_score import score_spark

        shop = open_shop(session(spark_master, conf={"spark.ui.showConsoleProgress": "false"}), source)
        days = parse_horizon(horizon) if horizon is not None else float(registered.manifest["horizon_days"])
        done = score_spark(registered, shop, cutoff, days, str(out))
        console.print(f"{done.customers:,} customers scored by {done.model} on Spark in {done.seconds:.1f} s "
                      f"({done.customers / max(done.seconds, 1e-9):,.0f} customers/s) -> {done.path}", soft_wrap=True)
        return
    history = open_history(dataset, db, data_end)
    check_cutoff(cutoff, history.observation_end, allow_future=allow_future_cutoff)
    days = parse_horizon(horizon) if horizon is not None else float(registered.manifest["horizon_days"])
    with chunk_progress(console, "scoring") as advance:
        result = score(registered, history, cutoff, days, out, chunk_size=chunk_size, progress=advance)
    console.print(forecast_table(read_predictions(out, FORECAST_COLUMNS)))
    if db is not None and log:  # live-accuracy monitoring (docs/monitoring.md)
        history.store.close()
        run_id = log_score(db, result, registered, cutoff, days)
        console.print(f"logged as scoring run {run_id} in {db}")
    rate = result.customers / max(result.predict_seconds, 1e-9)
    console.print(
        f"{result.customers:,} customers scored by {result.model}"
        + (f" ({result.runtime})" if result.runtime else "")
        + f": inputs {result.inputs_seconds:.1f} s, "
        f"predictions {result.predict_seconds:.1f} s ({rate:,.0f} customers/s) -> {out}",
        soft_wrap=True,
    )


app.command("score")(predict_command)


@app.command("promote")
@user_errors
def promote_command(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION to promote.", show_default=False)],
    registry: Registry = DEFAULT_ROOT,
) -> None:
    """Promote NAME:VERSION: `--model NAME` (and a server watching the registry) use it from now on."""
    before = promoted_version(parse_ref(ref).name, registry)
    model = promote(ref, registry)
    was = "" if before is None else f" (was version {before})"
    console.print(f"promoted {model.name}:{model.version}{was}")


@app.command("models")
@user_errors
def models_command(registry: Registry = DEFAULT_ROOT) -> None:
    """List the registered models: every name and version, which is promoted."""
    frame = list_models(registry)
    if frame.empty:
        console.print(f"no models in {registry}")
        return
    table = Table(title=f"Models in {registry}", header_style="bold")
    for header in ("model", "kind", "cutoff", "horizon days", "created (UTC)", "promoted"):
        table.add_column(header)
    for row in frame.itertuples():
        table.add_row(
            f"{row.name}:{row.version}",
            str(row.kind),
            str(row.cutoff.date()),
            f"{row.horizon_days:g}",
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            "yes" if row.promoted else "",
        )
    console.print(table)
