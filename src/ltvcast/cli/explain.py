"""`ltvcast explain`: why a registered model scores customers as it does (:mod:`ltvcast.explain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.panel import Panel
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import DataEnd, Dataset, Db
from ltvcast.cli.registry import Registry
from ltvcast.data.datasets import open_history
from ltvcast.errors import DataError
from ltvcast.explain import explain_registered, write_reasons
from ltvcast.registry import DEFAULT_ROOT, load_model
from ltvcast.timeutil import check_cutoff, parse_horizon


def _card(explanation, customer: str) -> Panel:
    row = explanation.predictions.iloc[0]
    head = Table.grid(padding=(0, 2))
    head.add_row("expected spend", f"{row['pred_spend']:,.2f}", "P(no purchase)", f"{row['p_churn']:.1%}")
    head.add_row("expected purchases", f"{row['pred_transactions']:.2f}", "horizon",
                 f"{row['horizon_days']:g} days from {pd.Timestamp(row['cutoff']).date()}")
    reasons = Table(header_style="bold", expand=True)
    for col in ("output", "#", "driver", "reason"):
        reasons.add_column(col, overflow="fold")
    for r in explanation.reasons.itertuples():
        reasons.add_row(r.target, str(r.rank), r.feature, r.sentence)
    notes = "\n".join(f"[dim]{n}[/]" for n in explanation.notes)
    return Panel(_stack(head, reasons, notes), title=f"customer {customer} — {row['model']}")


def _stack(*parts):
    grid = Table.grid()
    for p in parts:
        grid.add_row(p)
    return grid


@app.command("explain")
@user_errors
def explain_command(
    model: Annotated[str, typer.Option("--model", help="NAME (promoted, else latest version) or NAME:VERSION.")],
    db: Db = None,
    dataset: Dataset = None,
    registry: Registry = DEFAULT_ROOT,
    cutoff: Annotated[
        str | None, typer.Option("--cutoff", help="Prediction date YYYY-MM-DD (default: the day after the data end).")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Show this customer's card.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write every customer's reasons (.parquet or .csv).")] = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="Horizon, e.g. 26w (default: the one the model was trained for).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Reasons per customer and output.")] = 3,
    data_end: DataEnd = None,
) -> None:
    """Explain a registered model's predictions: one customer's card (--customer) or every customer's reasons (--out)."""
    if customer is None and out is None:
        raise DataError("give --customer ID (a card) or --out FILE (every customer's reasons)")
    if top < 1:
        raise DataError(f"--top must be at least 1, got {top}")
    registered = load_model(model, registry)
    history = open_history(dataset, db, data_end)
    day = cutoff if cutoff is not None else str((history.observation_end + pd.Timedelta(days=1)).date())
    check_cutoff(day, history.observation_end)
    days = parse_horizon(horizon) if horizon is not None else None
    result = explain_registered(registered, history, day, days, customer_ids=None if out else [customer], k=top)
    if out is not None:
        write_reasons(result.reasons, out)
        n = result.reasons["customer_id"].nunique()
        console.print(f"reasons of {n:,} customers ({len(result.reasons):,} rows) -> {out}")
        if customer is not None:
            mine = result.reasons[result.reasons["customer_id"] == customer]
            if mine.empty:
                raise DataError(f"customer {customer!r} has no purchase before {day}: no reasons")
            result.reasons = mine
            result.predictions = result.predictions[result.predictions["customer_id"].astype(str) == customer]
    if customer is not None:
        console.print(_card(result, customer))
