"""`ltvcast monitor`: drift, live accuracy and data health of a registered model (:mod:`ltvcast.monitor`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.monitor import DEFAULT_POLICY_YAML, post_webhook, run_monitor
from ltvcast.monitor.run import check_webhook_url
from ltvcast.registry import DEFAULT_ROOT

_STYLE = {"ok": "green", "warn": "yellow", "alert": "bold red", "info": "dim"}


@app.command("monitor")
@user_errors
def monitor_command(
    db: Annotated[Path, typer.Option("--db", help="DuckDB store the model scores.")],
    model: Annotated[str, typer.Option("--model", help="NAME (promoted, else latest) or NAME:VERSION.")],
    at: Annotated[str | None, typer.Option("--at", help="Monitored day YYYY-MM-DD (default: after the data end).")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default thresholds otherwise).")] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Model registry folder.")] = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST the result here when it is an alert.")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Append the checks to the store's monitor_log.")] = True,
    write_policy: Annotated[
        Path | None, typer.Option("--write-policy", help="Write the default policy YAML to this file and stop.")
    ] = None,
) -> None:
    """Check MODEL on the store: input/prediction drift, live accuracy of logged scoring runs, data health.

    Exit status: 0 ok, 1 warn, 2 alert (and 2 for a usage error).
    """
    if write_policy is not None:
        write_policy.write_text(DEFAULT_POLICY_YAML, encoding="utf-8")
        console.print(f"default policy written to {write_policy}")
        return
    if webhook:
        check_webhook_url(webhook)  # a bad URL is refused even when nothing would be posted
    result = run_monitor(db, model, at=at, policy=policy, registry=registry, log=log)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False, default=str))
    else:
        table = Table(title=f"{result.model} at {result.at.date()}: {result.status.upper()}", header_style="bold")
        for header in ("check", "subject", "statistic", "value", "warn", "alert", "status"):
            table.add_column(header, justify="right" if header in ("value", "warn", "alert") else "left")
        for r in result.checks.itertuples():
            table.add_row(r.check_kind, r.subject, r.statistic, _num(r.value), _num(r.warn), _num(r.alert),
                          f"[{_STYLE[r.status]}]{r.status}[/]")
        console.print(table)
        for note in result.notes:
            console.print(f"note: {note}", soft_wrap=True)
    if webhook and result.status == "alert":  # after the output: an unreachable receiver loses no result
        posted = post_webhook(webhook, result)
        if not as_json:
            console.print(f"alert posted to {webhook} ({posted})")
    raise typer.Exit(code=result.exit_code)


def _num(v) -> str:
    return "" if v is None or v != v else f"{v:.4g}"
