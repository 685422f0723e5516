"""`ltvcast simulate`: write a synthetic shop (all source kinds + sources.yaml + ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.simulate import simulate_shop
from ltvcast.simulate.campaigns import Campaign
from ltvcast.simulate.categories import CategoryAffinity
from ltvcast.simulate.process import ShopParams
from ltvcast.simulate.writer import DEFAULT_CHUNK_CUSTOMERS, DEFAULT_DIRTY_RATE, KINDS


@app.command("simulate")
@user_errors
def simulate_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (must be empty unless --overwrite).")],
    customers: Annotated[int, typer.Option("--customers", min=1, help="Number of customers (accounts).")] = 10_000,
    months: Annotated[int, typer.Option("--months", min=1, help="Length of the simulated period in months.")] = 24,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed: same seed, same files.")] = 0,
    start: Annotated[str, typer.Option("--start", metavar="YYYY-MM-DD", help="First day of the period.")] = "2022-01-01",
    dirty_rate: Annotated[
        float,
        typer.Option(
            "--dirty-rate",
            help="Share of dirty rows of each kind: unparseable order timestamps, unknown currency, "
            "duplicated order lines (exact counts in OUT/dirty_manifest.json).",
        ),
    ] = DEFAULT_DIRTY_RATE,
    chunk_customers: Annotated[
        int,
        typer.Option(
            "--chunk-customers",
            min=1,
            help="Customers per chunk = per part file; bounds memory. Changing it changes the draws.",
        ),
    ] = DEFAULT_CHUNK_CUSTOMERS,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier simulation in OUT.")] = False,
    campaign_start: Annotated[
        str | None,
        typer.Option("--campaign-start", metavar="YYYY-MM-DD", show_default=False,
                     help="Run a randomised campaign from this day (ltvcast.simulate.campaigns): truth columns, "
                     "OUT/campaign_assignments.csv, OUT/campaign.json."),
    ] = None,
    campaign_days: Annotated[int, typer.Option("--campaign-days", min=1, help="Campaign effect window in days.")] = 90,
    campaign_share: Annotated[float, typer.Option("--campaign-share", help="Share of customers treated.")] = 0.5,
    campaign_lift: Annotated[
        float, typer.Option("--campaign-lift", help="Base lift: extra purchase rate in units of the mean rate.")
    ] = 0.5,
    category_affinity: Annotated[
        bool,
        typer.Option("--category-affinity", help="Customers with category preferences of their own, cross-selling "
                     "and an early 'home' cohort that ages out (ltvcast.simulate.categories; off: unchanged output)."),
    ] = False,
) -> None:
    """Simulate an online shop: customers, products, orders, order items, returns, events, FX rates.

    Writes every kind as Parquet part files under OUT/<kind>/, a ready
    OUT/sources.yaml (source column names mapped to the canonical ones), the
    latent truth per customer (OUT/truth.parquet) and the injected dirty rows
    (OUT/dirty_manifest.json, OUT/dirty_rows.parquet).

    Example: ltvcast simulate --customers 50000 --months 24 --seed 7 --out shop/
    """
    bar = Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks · {task.fields[lines]:,} order lines"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task("simulate", total=None, lines=0)

        def on_chunk(done: int, total: int, lines: int) -> None:
            bar.update(task, completed=done, total=total, lines=lines)

        summary = simulate_shop(
            out,
            customers=customers,
            months=months,
            seed=seed,
            start=start,
            dirty_rate=dirty_rate,
            chunk_customers=chunk_customers,
            overwrite=overwrite,
            on_chunk=on_chunk,
            campaign=None
            if campaign_start is None
            else Campaign(campaign_start, campaign_days, campaign_share, campaign_lift),
            params=ShopParams(category_affinity=CategoryAffinity()) if category_affinity else None,
        )
    table = Table(title=f"simulated shop: {summary.start.date()} to {summary.end.date()} (exclusive)")
    table.add_column("kind")
    table.add_column("rows", justify="right")
    table.add_column("parts", justify="right")
    table.add_column("dirty rows", justify="right")
    for kind in KINDS:
        dirty = summary.dirty.get(kind, {})
        cell = ", ".join(f"{reason} {count:,}" for reason, count in dirty.items()) if dirty else ""
        table.add_row(kind, f"{summary.rows[kind]:,}", str(len(summary.parts[kind])), cell)
    console.print(table)
    console.print(
        f"{summary.order_lines:,} order lines in {summary.seconds:.1f} s "
        f"({summary.order_lines / max(summary.seconds, 1e-9):,.0f} lines/s)",
        highlight=False,
    )
    console.print(f"config: {summary.sources_yaml}", soft_wrap=True, highlight=False)
    console.print(f"truth:  {summary.truth}", soft_wrap=True, highlight=False)
    console.print(f"dirty:  {summary.dirty_manifest}", soft_wrap=True, highlight=False)
    if summary.campaign_assignments is not None:
        console.print(f"campaign: {summary.campaign_assignments}", soft_wrap=True, highlight=False)
