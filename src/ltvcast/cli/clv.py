"""`ltvcast clv`: discounted long-horizon CLV with margin for every customer (:mod:`ltvcast.actions.clv`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.actions.clv import DISCOUNTING, PERIOD_DAYS, CLVSettings, customer_clv, read_margin_table, write_clv
from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import Cutoff, DataEnd, Dataset, Db
from ltvcast.data.datasets import open_history
from ltvcast.registry import DEFAULT_ROOT, check_registered, load_model
from ltvcast.timeutil import check_cutoff

Registry = Annotated[Path, typer.Option("--registry", help="Model registry folder.")]


@app.command()
@user_errors
def clv(
    model: Annotated[str, typer.Option("--model", help="Registered model NAME or NAME:VERSION.")],
    cutoff: Cutoff,
    dataset: Dataset = None,
    db: Db = None,
    years: Annotated[float, typer.Option("--years", help="Horizon in years (365.25 days).")] = 3.0,
    margin: Annotated[float, typer.Option("--margin", help="Gross margin share of revenue, in (0, 1].")] = 1.0,
    margin_table: Annotated[
        Path | None,
        typer.Option("--margin-table", help="CSV category,margin: per-category margins (--margin for the rest)."),
    ] = None,
    discount_rate: Annotated[
        float, typer.Option("--discount-rate", help="Annual discount rate, e.g. 0.1 (see --discounting).")
    ] = 0.1,
    discounting: Annotated[
        str,
        typer.Option("--discounting", help=f"{' or '.join(DISCOUNTING)}: per-period compounding of an effective "
                     "annual rate, revenue at each period's end (default); or a continuous annual rate."),
    ] = DISCOUNTING[0],
    period: Annotated[
        str, typer.Option("--period", help=f"Cash-flow period: {', '.join(PERIOD_DAYS)}.")
    ] = "month",
    out: Annotated[Path, typer.Option("--out", help="One row per customer (.parquet or .csv).")] = Path("clv.parquet"),
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
    allow_future_cutoff: Annotated[
        bool, typer.Option("--allow-future-cutoff", help="Accept a cutoff after the day following the data end.")
    ] = False,
) -> None:
    """Discounted CLV (margin × revenue) over YEARS for every customer, with a p10–p90 interval."""
    settings = CLVSettings(
        years=years, margin=margin, discount_rate=discount_rate, discounting=discounting, period=period
    ).check()
    table = None if margin_table is None else read_margin_table(margin_table)
    registered = load_model(model, registry)
    history = open_history(dataset, db, data_end)
    check_cutoff(cutoff, history.observation_end, allow_future=allow_future_cutoff)
    label = check_registered(registered, cutoff)
    frame = customer_clv(registered.forecaster, history, cutoff, settings, model_label=label, margin_table=table)
    write_clv(frame, out)
    summary = Table(title=f"CLV over {years:g} years — {label}, cutoff {cutoff}", header_style="bold")
    summary.add_column("")
    summary.add_column("value", justify="right")
    lo, hi = frame["clv_p10"].mean(), frame["clv_p90"].mean()
    for name, value in (
        ("customers", f"{len(frame):,}"),
        ("expected revenue, undiscounted", f"{frame['pred_spend'].sum():,.0f}"),
        ("CLV: discounted margin, total", f"{frame['clv'].sum():,.0f}"),
        ("CLV per customer, mean", f"{frame['clv'].mean():,.2f}"),
        ("p10 – p90 per customer, mean", "–" if lo != lo else f"{lo:,.2f} – {hi:,.2f}"),
        ("per-period revenue from", str(frame.attrs.get("method", ""))),
    ):
        summary.add_row(name, value)
    console.print(summary)
    console.print(
        f"margin {'per category (' + str(margin_table) + ')' if table is not None else f'{margin:g}'}, "
        f"discount rate {discount_rate:g} a year ({discounting}), {int(frame['periods'].iloc[0])} periods "
        f"-> {out}",
        soft_wrap=True,
    )
