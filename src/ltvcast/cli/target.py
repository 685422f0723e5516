"""`ltvcast target`: whom to contact under a budget (ltvcast.actions.targeting)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from ltvcast.actions import experiments as ex
from ltvcast.actions import targeting as tg
from ltvcast.cli._app import app, console, user_errors
from ltvcast.errors import DataError


@app.command("target")
@user_errors
def target_command(
    budget: Annotated[float, typer.Option("--budget", help="Money to spend on contacts and redeemed offers.")],
    cost_per_contact: Annotated[float, typer.Option("--cost-per-contact", help="Cost of one contact.")],
    out: Annotated[Path, typer.Option("--out", help="Contact list to write (.csv or .parquet).")],
    offer_cost: Annotated[float, typer.Option("--offer-cost", help="Cost of one redeemed offer.")] = 0.0,
    margin: Annotated[float, typer.Option("--margin", help="Margin as a share of spend.")] = 0.3,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB store (uplift mode).", show_default=False)] = None,
    assignments: Annotated[Path | None, typer.Option(
        "--assignments", help="A past randomised campaign's assignments (customer_id, arm): uplift mode.",
        show_default=False)] = None,
    campaign_start: Annotated[str | None, typer.Option("--campaign-start", metavar="YYYY-MM-DD",
                                                       help="First day of the past campaign's window.",
                                                       show_default=False)] = None,
    campaign_end: Annotated[str | None, typer.Option("--campaign-end", metavar="YYYY-MM-DD",
                                                     help="Last day of its window (inclusive).",
                                                     show_default=False)] = None,
    cutoff: Annotated[str | None, typer.Option("--cutoff", metavar="YYYY-MM-DD",
                                               help="Score customers with their features at this day "
                                               "(default: the day after the data end).", show_default=False)] = None,
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", help="Predictions (pred_spend, p_churn): the fallback without a campaign.",
        show_default=False)] = None,
    pred_model: Annotated[str | None, typer.Option("--pred-model", help="Model of the predictions file to use.",
                                                   show_default=False)] = None,
    assumed_uplift: Annotated[float | None, typer.Option(
        "--assumed-uplift", help="Fallback: the relative uplift on value at risk you ASSUME a contact brings.",
        show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.",
                                                  show_default=False)] = None,
    show: Annotated[int, typer.Option("--show", min=0, help="Print the first N contacts.")] = 5,
) -> None:
    """Choose whom to contact to maximise expected incremental margin within the budget.

    With --assignments (a past randomised campaign in the store): an uplift model, checked on held-out
    campaign customers against the naive policies. Without: --predictions and --assumed-uplift (an assumption).

    Example: ltvcast target --budget 10000 --cost-per-contact 1.5 --offer-cost 5 --margin 0.3 --predictions forecast.parquet --assumed-uplift 0.05 --out contacts.csv
    """
    econ = tg.Economics(budget, cost_per_contact, offer_cost, margin).checked()
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"cannot write the list to {out}: use .csv or .parquet")
    if assignments is not None:
        if db is None or campaign_start is None or campaign_end is None:
            raise DataError("uplift mode needs --db, --campaign-start and --campaign-end with --assignments")
        from ltvcast.data.datasets import open_history

        history = open_history(db=db)
        x, outcomes = tg.campaign_frame(history, ex.read_assignments(assignments), campaign_start, campaign_end)
        day = cutoff or str((history.observation_end + pd.Timedelta(days=1)).date())
        result = tg.target_from_campaign(x, outcomes, tg.features_at(history, day), econ)
    elif predictions is not None:
        if assumed_uplift is None:
            raise DataError("without a campaign (--assignments), state the uplift you assume: --assumed-uplift 0.05")
        from ltvcast.schema.predictions import read_predictions

        result = tg.target_by_assumption(ex.one_model(read_predictions(predictions), pred_model), econ, assumed_uplift)
    else:
        raise DataError("give a past campaign (--assignments with --db) or predictions with --assumed-uplift")

    s = result.summary
    if s["mode"] == "assumption":
        console.print("[bold yellow]ASSUMPTION[/]: no campaign measured the uplift (see the note below)")
    console.print(
        f"contact {s['contacted']:,} of {s['customers_scored']:,} customers, expected cost {s['spent']:,.2f} of "
        f"{s['budget']:,.2f}; expected incremental margin {s['expected_incremental_margin']:,.2f}"
        + (f" (95 % interval {s['ci_low']:,.2f} to {s['ci_high']:,.2f})" if s["ci_low"] is not None else
           " (no interval: assumed uplift)"), highlight=False)
    if not result.policies.empty:
        table = Table(title=f"policies on held-out campaign customers, {s['share_contacted']:.1%} contacted")
        for col in ("policy", "uplift / contact", "margin / contact", "95 % interval", "Qini", "AUUC"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for r in result.policies.itertuples(index=False):
            table.add_row(r.policy, f"{r.uplift_per_contact:,.2f}", f"{r.margin_per_contact:,.2f}",
                          f"[{r.ci_low:,.2f}, {r.ci_high:,.2f}]", f"{r.qini:.3f}", f"{r.auuc:.3f}")
        console.print(table)
    if show and len(result.contacts):
        console.print(result.contacts.head(show).round(2).to_string(index=False), highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if out.suffix.lower() == ".csv":
        result.contacts.to_csv(out, index=False)
    else:
        result.contacts.to_parquet(out, index=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.as_dict(), indent=2, default=float) + "\n", encoding="utf-8")
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)
