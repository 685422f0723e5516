"""`ltvcast experiment assign|analyze`: randomised campaign tests (ltvcast.actions.experiments)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from ltvcast.actions import experiments as ex
from ltvcast.cli._app import app, console, user_errors
from ltvcast.errors import DataError

experiment_app = typer.Typer(help="Randomised campaign tests: assign arms, analyse results.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


def _history(db: Path):
    from ltvcast.data.datasets import open_history

    return open_history(db=db)


def _predictions(path: Path, model: str | None):
    from ltvcast.schema.predictions import read_predictions

    return ex.one_model(read_predictions(path), model)


@experiment_app.command("assign")
@user_errors
def assign_command(
    predictions: Annotated[Path, typer.Option("--predictions", help="Predictions file: the customers and their CLV tiers.")],
    out: Annotated[Path, typer.Option("--out", help="Assignments file to write (.csv or .parquet).")],
    db: Annotated[Path | None, typer.Option("--db", help="Store, for the power calculation's σ and ρ.",
                                            show_default=False)] = None,
    salt: Annotated[str, typer.Option("--salt", help="The experiment's salt (same salt, same arms).")] = "ltvcast",
    holdout: Annotated[float, typer.Option("--holdout", help="Share of customers in the control arm.")] = 0.5,
    tiers: Annotated[int, typer.Option("--tiers", min=1, help="CLV tiers to stratify by (pred_spend quantiles).")] = 4,
    pred_model: Annotated[str | None, typer.Option("--pred-model", help="Model of the predictions file to use.",
                                                   show_default=False)] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Test length in days, for the power calculation.")] = 90,
) -> None:
    """Assign customers to treatment/control by a salted hash, stratified by CLV tier; print the power.

    Example: ltvcast experiment assign --predictions forecast.parquet --db shop.duckdb --holdout 0.2 --out arms.csv
    """
    preds = _predictions(predictions, pred_model).drop_duplicates("customer_id").reset_index(drop=True)
    frame = ex.assign(preds["customer_id"], salt, holdout, ex.clv_tiers(preds["pred_spend"].fillna(0.0), tiers))
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    elif out.suffix.lower() == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        raise DataError(f"cannot write assignments to {out}: use .csv or .parquet")
    table = Table(title=f"assignment (salt {salt!r}, holdout {holdout:.0%})")
    for col in ("tier", "customers", "treatment", "control"):
        table.add_column(col, justify="left" if col == "tier" else "right")
    counts = frame.groupby(["stratum", "arm"]).size().unstack(fill_value=0)
    for tier, row in counts.iterrows():
        table.add_row(str(tier), f"{int(row.sum()):,}", f"{int(row.get('treatment', 0)):,}", f"{int(row.get('control', 0)):,}")
    console.print(table)
    n_t, n_c = int((frame["arm"] == ex.TREATMENT).sum()), int((frame["arm"] == ex.CONTROL).sum())
    if db is not None:
        history = _history(db)
        as_of = preds["cutoff"].iloc[0] if "cutoff" in preds.columns else history.observation_end + pd.Timedelta(days=1)
        pw = ex.power_from_history(history, frame["customer_id"], as_of, days, n_t, n_c)
        console.print(
            f"power (α 0.05, power 0.8, {days}-day spend from the last {days} days: mean {pw.mean:,.2f}, "
            f"σ {pw.sd:,.2f}): minimum detectable effect {pw.mde:,.2f} per customer; with CUPED "
            f"(pre-period ρ {pw.rho:.2f}) {pw.mde_cuped:,.2f}", highlight=False)
    console.print(f"wrote {out}", highlight=False, soft_wrap=True)


@experiment_app.command("analyze")
@user_errors
def analyze_command(
    assignments: Annotated[Path, typer.Option("--assignments", help="Assignments file: customer_id, arm.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB store with the outcomes.")],
    start: Annotated[str, typer.Option("--start", metavar="YYYY-MM-DD", help="First day of the test window.")],
    end: Annotated[str, typer.Option("--end", metavar="YYYY-MM-DD", help="Last day of the test window (inclusive).")],
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Predictions made at START: the CLV "
                                                     "covariate for CUPED.", show_default=False)] = None,
    pred_model: Annotated[str | None, typer.Option("--pred-model", help="Model of the predictions file to use.",
                                                   show_default=False)] = None,
    treated_share: Annotated[float | None, typer.Option(
        "--treated-share", help="Designed treatment share for the SRM check (default: from the file's "
        "holdout_share, else 0.5).", show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.",
                                                  show_default=False)] = None,
) -> None:
    """Analyse a randomised test: per arm spend, conversion, orders; Welch and CUPED effects; SRM check.

    Example: ltvcast experiment analyze --assignments arms.csv --db shop.duckdb --start 2024-03-01 --end 2024-05-29
    """
    arms = ex.read_assignments(assignments)
    if treated_share is None:
        treated_share = 1.0 - float(arms["holdout_share"].iloc[0]) if "holdout_share" in arms.columns else 0.5
    preds = _predictions(predictions, pred_model) if predictions is not None else None
    data = ex.campaign_outcomes(_history(db), arms, start, end, preds)
    result = ex.analyze(data, shares={ex.TREATMENT: treated_share, ex.CONTROL: 1.0 - treated_share},
                        window=(start, end))
    table = Table(title=f"experiment {start} to {end}: arms")
    for col in ("arm", "customers", "spend / customer", "conversion", "orders / customer"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for r in result.arms.itertuples(index=False):
        table.add_row(r.arm, f"{r.customers:,}", f"{r.spend_per_customer:,.2f}", f"{r.conversion:.2%}",
                      f"{r.orders_per_customer:.3f}")
    console.print(table)
    table = Table(title="effects: treatment − control, 95 % interval (Welch)")
    for col in ("metric", "method", "difference", "95 % interval", "relative", "p-value", "variance reduction"):
        table.add_column(col, justify="left" if col in ("metric", "method") else "right")
    for r in result.effects.itertuples(index=False):
        table.add_row(r.metric, r.method, f"{r.diff:,.3f}", f"[{r.ci_low:,.3f}, {r.ci_high:,.3f}]",
                      f"{r.relative:+.1%}", f"{r.p_value:.3g}",
                      "" if r.variance_reduction != r.variance_reduction else f"{r.variance_reduction:.1%}")
    console.print(table)
    srm = result.srm
    console.print(f"sample ratio check: counts {srm['counts']}, expected {srm['expected']}, χ² {srm['chi2']:.2f}, "
                  f"p {srm['p_value']:.3g}: {'MISMATCH' if srm['flagged'] else 'no mismatch'}", highlight=False)
    for note in result.notes:
        console.print(f"[bold red]{note}[/]", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.as_dict(), indent=2, default=float) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}", highlight=False, soft_wrap=True)
