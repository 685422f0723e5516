"""`ltvcast next-categories` and `ltvcast demand`: a model's predictions split by category (:mod:`ltvcast.models.categories`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.actions.cross_sell import MIN_P, RULES, next_categories
from ltvcast.actions.segments import load_predictions
from ltvcast.cli._app import app, console, user_errors
from ltvcast.cli.backtest import DataEnd, Dataset, Db
from ltvcast.data.datasets import open_history
from ltvcast.errors import DataError
from ltvcast.evaluate.backtest import evaluation_window
from ltvcast.evaluate.categories import demand_backtest, next_category_backtest
from ltvcast.features.categories import OTHER
from ltvcast.models.categories import CategorySplit
from ltvcast.models.demand import aggregate_demand, customer_demand
from ltvcast.registry import DEFAULT_ROOT, load_category_split
from ltvcast.schema.predictions import write_frame
from ltvcast.timeutil import parse_horizon

Model = Annotated[str | None, typer.Option("--model", help="Registered model NAME or NAME:VERSION (the total).")]
Predictions = Annotated[
    Path | None, typer.Option("--predictions", help="Predictions file (.parquet or .csv) instead of --model.")
]
CutoffOpt = Annotated[str | None, typer.Option("--cutoff", help="Prediction date YYYY-MM-DD (required with --model).")]
Top = Annotated[int, typer.Option("--top", help="Named categories: the shop's largest by sales; the rest is 'other'.")]
Evaluate = Annotated[
    bool, typer.Option("--evaluate/--no-evaluate",
                       help="Score against what happened after the cutoff, beside the baselines (a backtest).")
]
Registry = Annotated[Path, typer.Option("--registry", help="Model registry folder.")]


def _cell(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:,.3f}"
    return str(v)


def _table(frame, title: str, caption: str | None = None) -> Table:
    table = Table(title=title, header_style="bold", caption=caption)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "fi" else "left")
    for _, r in frame.iterrows():
        table.add_row(*[_cell(v) for v in r])
    return table


def _check_top(top: int) -> None:
    if top < 1:
        raise DataError(f"--top must be >= 1, got {top}")


def _split(history, model, predictions, cutoff, horizon_days, top, registry, evaluate=False):
    """The predictions, the category split, the cutoff, the horizon (days) and a line saying where the split is from.

    A registered model's split (``ltvcast train --categories``) is used when it
    was fitted for this horizon and ``--top``; otherwise one is fitted here.
    ``evaluate``: refuse, before the fit, a window the data cannot score (as
    ``ltvcast backtest``: :func:`ltvcast.evaluate.backtest.evaluation_window`).
    """
    pred = load_predictions(history, model=model, predictions=None if predictions is None else str(predictions),
                            cutoff=cutoff, horizon_days=horizon_days, registry_root=registry)
    at = cutoff if cutoff is not None else str(pred["cutoff"].iloc[0].date())
    days = float(pred["horizon_days"].iloc[0])
    if evaluate:
        evaluation_window(at, days, history.observation_end)
    registered = pred.attrs.get("registered")
    kept = None if registered is None else load_category_split(registered)
    label = None if registered is None else f"{registered.name}:{registered.version}"
    if kept is not None and abs(kept.horizon_days_ - days) <= 0.5 and kept.top == top:
        return pred, kept, at, days, (f"category split: registered with {label} (fitted at "
                                      f"{kept.cutoff_.date()} for {kept.horizon_days_:g} days)")
    split = CategorySplit(top=top).fit(history, at, days)
    if label is None:
        why = "from a predictions file"
    elif kept is None:
        why = f"{label} has none registered (`ltvcast train --categories` registers one)"
    else:
        why = f"{label}'s registered split is for another horizon or --top"
    return pred, split, at, days, f"category split: fitted at {at} for {days:g} days ({why})"


@app.command("next-categories")
@user_errors
def next_categories_cmd(
    model: Model = None,
    predictions: Predictions = None,
    dataset: Dataset = None,
    db: Db = None,
    cutoff: CutoffOpt = None,
    horizon: Annotated[
        str | None, typer.Option("--horizon", help="Horizon for --model, e.g. 26w (default: the one it was trained for).")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Categories per customer.")] = 3,
    rule: Annotated[str, typer.Option("--rule", help=f"Candidates: {' or '.join(RULES)} (bought, but not recently).")] = "never",
    min_p: Annotated[
        float, typer.Option("--min-p", help="Offer no category below this chance of a purchase in the horizon.")
    ] = MIN_P,
    recent_days: Annotated[
        float | None, typer.Option("--recent-days", help="The 'lapsed' window in days (default: the horizon).")
    ] = None,
    top: Top = 8,
    show: Annotated[int, typer.Option("--show", help="Customers to print.")] = 5,
    out: Annotated[Path, typer.Option("--out", help="One row per customer and category (.parquet or .csv).")] = Path(
        "next_categories.csv"
    ),
    evaluate: Evaluate = False,
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
) -> None:
    """The k categories each customer is most likely to buy next that they have not bought (or not recently)."""
    # the options first: the split below fits for minutes before next_categories would refuse them
    if k < 1:
        raise DataError(f"--k must be >= 1, got {k}")
    if rule not in RULES:
        raise DataError(f"unknown --rule {rule!r}; choose one of {', '.join(RULES)}")
    if recent_days is not None and not (math.isfinite(recent_days) and recent_days > 0):
        raise DataError(f"--recent-days must be a positive number of days, got {recent_days:g}")
    if show < 0:
        raise DataError(f"--show must be >= 0, got {show}")
    if not 0.0 <= min_p <= 1.0:
        raise DataError(f"--min-p must be between 0 and 1, got {min_p:g}")
    _check_top(top)
    history = open_history(dataset, db, data_end)
    days = None if horizon is None else parse_horizon(horizon)
    pred, split, at, days, source = _split(history, model, predictions, cutoff, days, top, registry, evaluate)
    console.print(source, highlight=False, soft_wrap=True)
    if not [c for c in split.categories_ if c != OTHER]:  # else an empty table, silently
        raise DataError(f"the shop's lines before {at} have no categories: nothing to cross-sell "
                        "(the order lines need a category, docs/multisource.md)")
    by_cat = split.split(pred, history, at)
    best = next_categories(by_cat, k=k, rule=rule, recent_days=recent_days, horizon_days=days, min_p=min_p,
                           currency=history.store.meta().get("shop_currency") or None, basis=history.revenue_basis)
    path = write_frame(best, out)
    shown = best[best["customer_id"].isin(best["customer_id"].drop_duplicates().head(show))]
    for _, r in shown.iterrows():
        console.print(f"{r['customer_id']} #{r['rank']} {r['category']}: {r['reason']}", soft_wrap=True,
                      highlight=False)
    if evaluate:
        table = next_category_backtest(history, at, days, split, pred, ks=tuple(sorted({1, k})))
        console.print(_table(table, f"Next categories from {at}: recall@k and NDCG@k beside the baselines"))
        for note in table.attrs["notes"]:
            console.print(note, highlight=False, soft_wrap=True)
        write_frame(table, path.with_name(path.stem + "_backtest.csv"))
    listed = best.groupby("customer_id").size()
    short = int((listed < k).sum()) + (len(pred) - len(listed))
    console.print(f"next categories: {path} ({len(listed):,} customers, rule {rule}, k {k}; {short:,} of "
                  f"{len(pred):,} customers have fewer than {k} categories at --min-p {min_p:g} or above)", soft_wrap=True)


@app.command()
@user_errors
def demand(
    model: Model = None,
    predictions: Predictions = None,
    dataset: Dataset = None,
    db: Db = None,
    cutoff: CutoffOpt = None,
    horizon: Annotated[str, typer.Option("--horizon", help="Whole weeks, e.g. 13w.")] = "13w",
    by: Annotated[str, typer.Option("--by", help="category,week; category; or week.")] = "category,week",
    top: Top = 8,
    out: Annotated[Path, typer.Option("--out", help="Demand table (.parquet or .csv).")] = Path("demand.csv"),
    evaluate: Evaluate = False,
    registry: Registry = DEFAULT_ROOT,
    data_end: DataEnd = None,
) -> None:
    """Gross sales per category and week: the customers' category predictions plus customers not yet acquired."""
    days = parse_horizon(horizon)
    weeks = round(days / 7.0)
    if weeks < 1 or abs(days - 7 * weeks) > 0.5:
        raise DataError(f"--horizon must be whole weeks (e.g. 13w), got {horizon}")
    keys = tuple(b.strip() for b in by.split(",") if b.strip())
    if not keys or set(keys) - {"category", "week"}:  # before the fit: aggregate_demand would refuse it after
        raise DataError(f"--by takes category, week or category,week; got {','.join(keys) or 'nothing'}")
    _check_top(top)
    history = open_history(dataset, db, data_end)
    pred, split, at, days, source = _split(history, model, predictions, cutoff, 7.0 * weeks, top, registry,
                                           evaluate)
    console.print(source, highlight=False, soft_wrap=True)
    if abs(days - 7 * weeks) > 0.5:
        raise DataError(f"the predictions are for {days:g} days; --horizon {horizon} needs {7 * weeks} days")
    by_cat = split.split(pred, history, at)
    cells = customer_demand(by_cat, history, at, weeks)
    table = aggregate_demand(cells, keys)
    path = write_frame(table, out)
    totals = aggregate_demand(cells, ("category",))[["category", "existing", "new", "pred_sales", "lower", "upper"]]
    console.print(_table(totals, f"Demand {at} + {weeks} weeks by category (gross sales, 80 % interval)"))
    if evaluate:
        summary, _ = demand_backtest(history, at, weeks, by_cat)
        console.print(_table(summary, "Demand backtest: WAPE and bias over category × week beside the baselines",
                             caption="coverage: share of the cells inside the 80 % interval; n/a: the baselines "
                                     "give no interval"))
        for note in summary.attrs["notes"]:
            console.print(note, highlight=False, soft_wrap=True)
        write_frame(summary, path.with_name(path.stem + "_backtest.csv"))
    console.print(f"demand: {path} ({len(table):,} rows by {','.join(keys)})")
