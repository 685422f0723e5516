"""`ltvcast segments`: value tier × churn-risk grid, RFM groups and the retention list (:mod:`ltvcast.actions.segments`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.actions.segments import (
    DEFAULT_RISK_EDGES,
    DEFAULT_TIER_QUANTILES,
    VAR_METHODS,
    assign_segments,
    frame_cutoff,
    load_predictions,
    retention_list,
    retention_reasons,
    rfm_at,
    segment_summary,
    write_segments,
)
from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import DataEnd, Dataset, Db
from ltvcast.data.datasets import open_history
from ltvcast.errors import DataError
from ltvcast.registry import DEFAULT_ROOT
from ltvcast.timeutil import parse_horizon

Registry = Annotated[Path, typer.Option("--registry", help="Model registry folder.")]


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"{option} takes comma-separated numbers, got {text!r}") from None


def _grid(summary) -> Table:
    g = summary[summary["grid"] == "value x risk"]
    tiers = list(dict.fromkeys(g["value_tier"]))[::-1]
    risks = list(dict.fromkeys(g["churn_risk"]))
    table = Table(title="Value tier × churn risk: customers · share of predicted value · mean p_churn",
                  header_style="bold")
    table.add_column("value tier")
    for r in risks:
        table.add_column(f"{r} risk", justify="right")
    for t in tiers:
        cells = []
        for r in risks:
            c = g[(g["value_tier"] == t) & (g["churn_risk"] == r)].iloc[0]
            share = "–" if c["share_of_value"] != c["share_of_value"] else f"{c['share_of_value']:.1%}"
            p = "–" if c["mean_p_churn"] != c["mean_p_churn"] else f"{c['mean_p_churn']:.2f}"
            cells.append(f"{int(c['customers']):,} · {share} · {p}")
        table.add_row(t, *cells)
    return table


def _rfm(summary) -> Table | None:
    g = summary[summary["grid"] == "rfm"]
    if g.empty:
        return None
    table = Table(title="RFM groups", header_style="bold")
    for col in ("group", "customers", "share", "share of value", "mean p_churn", "value at risk"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for _, c in g.iterrows():
        table.add_row(
            str(c["rfm_group"]), f"{int(c['customers']):,}", f"{c['share_of_customers']:.1%}",
            "–" if c["share_of_value"] != c["share_of_value"] else f"{c['share_of_value']:.1%}",
            "–" if c["mean_p_churn"] != c["mean_p_churn"] else f"{c['mean_p_churn']:.2f}",
            f"{c['value_at_risk']:,.0f}",
        )
    return table


def _retention(frame, method: str) -> Table:
    table = Table(title=f"Retention list: top {len(frame)} by value at risk ({method})", header_style="bold")
    cols = ["rank", "customer", "pred_spend", "p_churn", "value at risk", "value tier"]
    if "rfm_group" in frame.columns:
        cols.append("RFM group")
    for col in cols:
        table.add_column(col, justify="right" if col in ("rank", "pred_spend", "p_churn", "value at risk") else "left")
    for _, r in frame.iterrows():
        row = [str(r["rank"]), str(r["customer_id"]), f"{r['pred_spend']:,.2f}", f"{r['p_churn']:.2f}",
               f"{r['value_at_risk']:,.2f}", str(r["value_tier"])]
        if "rfm_group" in frame.columns:
            row.append(str(r["rfm_group"]))
        table.add_row(*row)
    return table


@app.command()
@user_errors
def segments(
    model: Annotated[
        str | None, typer.Option("--model", help="Registered model NAME or NAME:VERSION (with --cutoff).")
    ] = None,
    predictions: Annotated[
        Path | None, typer.Option("--predictions", help="Predictions file (.parquet or .csv) instead of --model.")
    ] = None,
    dataset: Dataset = None,
    db: Db = None,
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Prediction date YYYY-MM-DD (required with --model; default: the file's)."),
    ] = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="Horizon for --model, e.g. 26w (default: the one it was trained for).")
    ] = None,
    use: Annotated[
        str | None, typer.Option("--use", help="The model's rows to use from a predictions file with several.")
    ] = None,
    tiers: Annotated[
        str, typer.Option("--tiers", help="Value-tier cut points: quantiles of predicted spend.")
    ] = ",".join(f"{q:g}" for q in DEFAULT_TIER_QUANTILES),
    risk_bands: Annotated[
        str, typer.Option("--risk-bands", help="Churn-risk band edges on p_churn.")
    ] = ",".join(f"{q:g}" for q in DEFAULT_RISK_EDGES),
    value_at_risk: Annotated[
        str, typer.Option("--value-at-risk", help=f"Value at risk: {' or '.join(VAR_METHODS)}.")
    ] = VAR_METHODS[0],
    top: Annotated[int, typer.Option("--top", help="Rows of the retention list.")] = 20,
    out: Annotated[
        Path, typer.Option("--out", help="One row per customer (.parquet or .csv).")
    ] = Path("segments.parquet"),
    summary: Annotated[
        Path | None, typer.Option("--summary", help="Summary per cell and RFM group (CSV; default: OUT_summary.csv).")
    ] = None,
    retention: Annotated[
        Path | None, typer.Option("--retention", help="Write the retention list (top rows) to this CSV.")
    ] = None,
    reasons: Annotated[
        bool, typer.Option("--reasons/--no-reasons", help="Churn reasons of the listed customers (with --model).")
    ] = True,
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
) -> None:
    """Put every customer in a value tier × churn-risk cell and an RFM group; rank them by value at risk."""
    history = open_history(dataset, db, data_end)
    pred = load_predictions(
        history,
        model=model,
        predictions=None if predictions is None else str(predictions),
        cutoff=cutoff,
        horizon_days=None if horizon is None else parse_horizon(horizon),
        registry_root=registry,
        use=use,
    )
    at = cutoff if cutoff is not None else frame_cutoff(pred)
    segs = assign_segments(
        pred,
        rfm_at(history, at),
        tier_quantiles=_floats(tiers, "--tiers"),
        risk_edges=_floats(risk_bands, "--risk-bands"),
        var_method=value_at_risk,
    )
    summ = segment_summary(segs)
    ranked = retention_list(segs, top=top)
    note = "reasons: only with --model (a predictions file has no model to explain)"
    if "registered" in pred.attrs and reasons:
        registered = pred.attrs["registered"]
        days = float(registered.manifest["horizon_days"]) if horizon is None else parse_horizon(horizon)
        found, note = retention_reasons(registered.forecaster, history, at, ranked["customer_id"], days)
        if found is not None:
            ranked = ranked.merge(found, on="customer_id", how="left")
    elif not reasons:
        note = None
    out, summary_path = write_segments(segs, summ, out, summary)
    console.print(_grid(summ))
    rfm_table = _rfm(summ)
    if rfm_table is not None:
        console.print(rfm_table)
    console.print(_retention(ranked, value_at_risk))
    if "reasons" in ranked.columns:
        for _, r in ranked.iterrows():
            if isinstance(r["reasons"], str) and r["reasons"]:
                console.print(f"{r['rank']}. {r['customer_id']}: {r['reasons']}", soft_wrap=True, highlight=False)
    if note:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if retention is not None:
        retention.parent.mkdir(parents=True, exist_ok=True)
        ranked.to_csv(retention, index=False)
        console.print(f"retention list: {retention}")
    console.print(f"segments: {out} ({len(segs):,} customers, model {segs['model'].iloc[0]})")
    console.print(f"summary: {summary_path}")
