"""`ltvcast retrain`: champion/challenger retraining (:func:`ltvcast.monitor.retrain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.monitor import retrain
from ltvcast.registry import DEFAULT_ROOT


@app.command("retrain")
@user_errors
def retrain_command(
    name: Annotated[str, typer.Option("--name", help="Registry name; its promoted (else latest) version is champion.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB store with the latest data.")],
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default thresholds otherwise).")] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")] = DEFAULT_ROOT,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide, but register, promote and record nothing.")] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Latest cutoff YYYY-MM-DD (default: the day after the data end).")
    ] = None,
) -> None:
    """Fit a challenger on fresh data, backtest it against the champion on the latest matured window, promote a winner.

    The decision is recorded in REGISTRY/NAME/decisions.jsonl; rerun on the same data, the recorded decision is shown.
    """
    with console.status("retraining") as status:
        d = retrain(db, name, policy=policy, registry=registry, dry_run=dry_run, at=at, on_step=status.update)
    table = Table(title=f"{d.name}: champion {d.champion} vs challenger, windows {', '.join(d.windows) or 'none'}",
                  header_style="bold")
    for header in ("metric", "champion", "challenger"):
        table.add_column(header, justify="left" if header == "metric" else "right")
    for metric, value in d.champion_metrics.items():
        other = d.challenger_metrics.get(metric)
        table.add_row(metric, "–" if value is None else f"{value:.4g}", "–" if other is None else f"{other:.4g}")
    console.print(table)
    verdict = f"promoted {d.challenger}" if d.promoted else ("would promote" if d.dry_run and "wins" in d.reason
                                                             else "champion kept")
    console.print(f"{verdict}: {d.reason}" + (" (decided before on the same data)" if d.repeated else "")
                  + (" [dry run: nothing written]" if d.dry_run else ""), soft_wrap=True)
