"""`ltvcast quarantine`: counts of quarantined rows per source, kind and reason, and examples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ltvcast.cli._app import app, console, user_errors
from ltvcast.errors import DataError
from ltvcast.schema.quarantine import REASON_MEANINGS
from ltvcast.store import Store


@app.command("quarantine")
@user_errors
def quarantine_command(
    db: Annotated[Path, typer.Option("--db", help="DuckDB store to read.")] = Path("ltvcast.duckdb"),
    show: Annotated[
        int,
        typer.Option("--show", metavar="N", help="Also print up to N example rows per kind and reason."),
    ] = 0,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Only this reason (e.g. unknown_currency).", show_default=False)
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this source kind (e.g. orders).", show_default=False)
    ] = None,
) -> None:
    """Print how many rows each source lost to quarantine, and why; --show N prints examples.

    Example: ltvcast quarantine --db shop.duckdb --show 3 --reason unknown_currency
    """
    if show < 0:
        raise DataError("--show must be 0 or more")
    with Store.open(db, read_only=True) as store:
        summary = store.quarantine_summary()
        examples = store.quarantine_examples(show, reason=reason, kind=kind) if show else None
    if reason is not None:
        summary = summary[summary["reason"] == reason]
    if kind is not None:
        summary = summary[summary["kind"] == kind]
    if summary.empty:
        console.print(f"no quarantined rows in {db}" + (" for this filter" if reason or kind else ""), highlight=False)
        return
    base = _common_folder(summary["source"].tolist())
    if base:
        console.print(f"sources under {base}/", highlight=False, soft_wrap=True)
    table = Table(title=f"quarantined rows in {db}", header_style="bold")
    for header in ("source", "kind", "reason", "rows"):
        table.add_column(header, justify="right" if header == "rows" else "left", overflow="fold")
    for row in summary.itertuples(index=False):
        table.add_row(_relative(row.source, base), row.kind, row.reason, f"{row.rows:,}")
    table.add_section()
    table.add_row("total", "", "", f"{int(summary['rows'].sum()):,}")
    console.print(table)
    for code in summary["reason"].unique():
        if code in REASON_MEANINGS:
            console.print(f"  {code}: {REASON_MEANINGS[code]}", highlight=False, soft_wrap=True)
    if examples is not None and not examples.empty:
        console.rule(f"examples (up to {show} per kind and reason)")
        for row in examples.itertuples(index=False):
            where = f"{_relative(row.source, base)} row {row.source_row}"
            what = f"{row.source_column} = {row.raw_value!r}" if row.source_column else ""
            console.print(f"[bold]{row.kind} · {row.reason}[/] · {where} {what}", highlight=False, soft_wrap=True)
            console.print(f"    {row.raw_row}", highlight=False, soft_wrap=True, markup=False)


def _common_folder(sources: list[str]) -> str:
    """The folder all file sources share (empty if none or if a database source is among them)."""
    import os

    files = [s for s in sources if s.startswith("/")]
    if not files or len(files) != len(sources):
        return ""
    return os.path.dirname(os.path.commonprefix([os.path.dirname(f) + "/" for f in files]) + "x")


def _relative(source: str, base: str) -> str:
    return source[len(base) + 1 :] if base and source.startswith(base + "/") else source
